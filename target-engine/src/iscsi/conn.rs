//! One TCP connection from accept to close: the login exchange, then the
//! session's reader loop and writer task (RFC 7143 §6 then §4.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::keys::TargetLimits;
use super::login::{self, Login, Step, CMD_WINDOW};
use super::pdu::{self, Framing};
use super::registry::{Registry, SessionInfo};
use super::writer::{self, SnState};
use crate::scsi::{Nexus, NexusId};

/// The login must finish within this time.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one accepted connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, local: SocketAddr, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let limits = TargetLimits::default();
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let framing = Framing::default();
    let mut login = Login::new(registry.catalog(), local, peer, limits);
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;

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
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        };
        match login.step(&pdu) {
            Step::Continue(r) => {
                if wr.write_all(&pdu::encode(r, &framing)).await.is_err() {
                    return;
                }
            }
            Step::Fail(r) => {
                let _ = wr.write_all(&pdu::encode(r, &framing)).await;
                let _ = wr.shutdown().await;
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
            (Some(Arc::new(Nexus::new(id))), t.lun_view(&initiator), t.iqn.clone())
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
    let (handle, close) = registry.register(info, nexus, luns);
    let mut resp = resp;
    login::set_tsih(&mut resp, handle.info.tsih);
    if wr.write_all(&pdu::encode(resp, &framing)).await.is_err() {
        registry.unregister(&handle);
        return;
    }

    let span = tracing::info_span!("session", initiator = %initiator, tsih = handle.info.tsih, target = %target_name);
    let p = result.params;
    let out_framing =
        Framing { header_digest: p.header_digest, data_digest: p.data_digest, max_data: p.initiator_mrdsl as usize };
    let sn = Arc::new(SnState::new(result.exp_cmd_sn, CMD_WINDOW));
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer::run(wr, rx, out_framing, result.stat_sn, sn.clone()).instrument(span.clone()));
    super::session::run(rd, buf, tx, sn, result, handle.clone(), close, registry.clone(), local).instrument(span).await;
    let _ = writer.await;
    registry.unregister(&handle);
}
