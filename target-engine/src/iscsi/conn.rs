//! One TCP connection from accept to close: admission, the login exchange,
//! then the session's reader loop and writer task (RFC 7143 §6 then §4.2).
//!
//! Whatever happens, the connection ends with its session unregistered and
//! its memory given back: the login has one deadline for all its reads and
//! writes, and a writer that cannot drain its queue within
//! [`DRAIN_TIMEOUT`] after the session ended is stopped
//! (see [`super::admission`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::admission::{Refusal, DRAIN_TIMEOUT, LOGIN_TIMEOUT};
use super::keys::TargetLimits;
use super::login::{self, Login, Step, CMD_WINDOW};
use super::pdu::{self, Framing};
use super::registry::{Registry, SessionInfo};
use super::writer::{self, Outbox, SnState};
use crate::scsi::{Nexus, NexusId};

/// Serves one accepted connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, local: SocketAddr, registry: Arc<Registry>) {
    let admission = registry.admission().clone();
    let login_permit = match admission.admit_login(peer.ip()) {
        Ok(p) => p,
        Err(refusal) => {
            if admission.may_warn() {
                match refusal {
                    Refusal::LoginsTotal(cap) => {
                        tracing::warn!(%peer, cap, "connection refused: {cap} connections are logging in already")
                    }
                    Refusal::LoginsFromAddress(cap) => tracing::warn!(
                        %peer,
                        cap,
                        "connection refused: {cap} connections from {} are logging in already",
                        peer.ip()
                    ),
                }
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let limits = TargetLimits::default();
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let framing = Framing::default();
    let mut login = Login::new(registry.catalog(), local, peer, limits);
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    // Every write of the login counts against the same deadline as its reads.
    macro_rules! send_or_end {
        ($pdu:expr) => {
            match tokio::time::timeout_at(deadline, wr.write_all(&pdu::encode($pdu, &framing))).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        };
    }

    let (resp, result) = loop {
        let pdu = loop {
            match pdu::check(&buf, &framing) {
                Ok(Some(n)) => match pdu::parse(&mut buf, n, &framing) {
                    Ok(p) => break p,
                    Err(_) => return,
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%peer, "bad PDU during login: {e}");
                    return;
                }
            }
            tokio::select! {
                read = tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)) => match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                // A newer connection took the place of this silent one.
                () = login_permit.evicted() => {
                    tracing::debug!(%peer, "a silent connection closed for a newer one");
                    return;
                }
            }
        };
        login_permit.spoke();
        match login.step(&pdu) {
            Step::Continue(r) => send_or_end!(r),
            Step::Fail(r) => {
                send_or_end!(r);
                let _ = tokio::time::timeout_at(deadline, wr.shutdown()).await;
                return;
            }
            Step::Done(r, res) => break (r, res),
        }
    };

    let result = *result;
    let initiator = result.initiator.clone();
    let (nexus, luns, target_name) = match &result.target {
        Some(t) => {
            let id = NexusId {
                initiator_name: Arc::from(initiator.as_str()),
                isid: result.isid,
                target_name: Arc::from(t.iqn.as_str()),
                tpgt: t.tpg,
                relative_target_port: t.relative_port,
                target_port_group: t.tpg,
            };
            let nexus = Nexus::with_privileges(id, t.privileges_for(&initiator));
            (Some(Arc::new(nexus)), t.lun_view(&initiator), t.iqn.clone())
        }
        None => (None, Default::default(), String::new()),
    };
    let info = SessionInfo {
        initiator: initiator.clone(),
        address: peer.to_string(),
        target: target_name.clone(),
        portal: local.to_string(),
        tsih: 0,
        isid: result.isid.iter().map(|b| format!("{b:02x}")).collect(),
        discovery: result.target.is_none(),
        since: SystemTime::now(),
    };
    let (handle, close) = match registry.register(info, nexus, luns) {
        Ok(registered) => registered,
        Err(e) => {
            if admission.may_warn() {
                tracing::warn!(%peer, initiator = %initiator, "login refused: {e}");
            }
            let mut resp = resp;
            login::refuse(&mut resp, login::status::OUT_OF_RESOURCES);
            send_or_end!(resp);
            return;
        }
    };
    let mut resp = resp;
    login::set_tsih(&mut resp, handle.info.tsih);
    let sent = tokio::time::timeout_at(deadline, wr.write_all(&pdu::encode(resp, &framing))).await;
    if !matches!(sent, Ok(Ok(()))) {
        registry.unregister(&handle);
        return;
    }
    drop(login_permit);

    let span = tracing::info_span!("session", initiator = %initiator, tsih = handle.info.tsih, target = %target_name);
    let p = result.params;
    let out_framing =
        Framing { header_digest: p.header_digest, data_digest: p.data_digest, max_data: p.initiator_mrdsl as usize };
    let sn = Arc::new(SnState::new(result.exp_cmd_sn, CMD_WINDOW));
    let (outbox, rx) = Outbox::new();
    let mut writer =
        tokio::spawn(writer::run(wr, rx, out_framing, result.stat_sn, sn.clone()).instrument(span.clone()));
    super::session::run(rd, buf, outbox, sn, result, handle.clone(), close, registry.clone(), local)
        .instrument(span)
        .await;
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut writer).await.is_err() {
        tracing::info!(initiator = %initiator, "the initiator is not reading: dropping what was queued for it");
        writer.abort();
    }
    registry.unregister(&handle);
}
