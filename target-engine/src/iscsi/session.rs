//! Full feature phase of one session on one connection (RFC 7143 §4.2,
//! §11): command numbering and window (§4.2.2.1), SCSI commands run
//! concurrently, Data-Out collection, task management (§11.5), NOP
//! (§11.18, §11.19), Text/SendTargets (§11.10), Logout (§11.14), Reject.
//!
//! What one session may hold is bounded as [`super::admission`] says:
//! a command numbered beyond the last MaxCmdSN announced is ignored (as
//! §4.2.2.1 requires), an immediate command beyond the window is rejected
//! ("too many immediate commands", §11.17.1), early commands have a byte
//! budget, control PDUs wait for room in the connection's control budget
//! (and so does the reading of the socket), and discovery sessions are
//! rate-limited.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::admission::{
    Admission, RateLimit, DATA_OUT_TIMEOUT, DISCOVERY_BURST, DISCOVERY_REQUESTS_PER_SECOND, EARLY_COMMANDS_BUDGET,
    MAX_WRITE, READ_BUDGET, WRITE_BUDGET,
};
use super::dataout::{WriteCollector, UNSOLICITED_TTT};
use super::keys::Params;
use super::login::LoginResult;
use super::pdu::{self, op, Framing, Pdu};
use super::registry::{Registry, SessionHandle};
use super::response::{self, reject, CmdRef, OutPdu, Residual};
use super::writer::{Outbox, Permits, SnState};
use crate::scsi::nexus::AbortMailbox;
use crate::scsi::{self, Nexus, ScsiCommand, ScsiResponse, ScsiStatus, TaskAttr};

mod control;

fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

#[derive(Debug)]
struct Running {
    abort: AbortHandle,
    lun: u64,
}

type Tasks = Arc<Mutex<HashMap<u32, Running>>>;

struct PendingWrite {
    cmd: ScsiCommand,
    cref: CmdRef,
    collector: WriteCollector,
    /// Its share of the engine-wide data budget, until the command ends.
    budget: OwnedSemaphorePermit,
    /// When Data-Out last arrived (or the command, if none has).
    progress: Instant,
}

/// Everything the reader loop needs.
pub struct Session {
    pub params: Params,
    pub result: LoginResult,
    pub handle: Arc<SessionHandle>,
    pub nexus: Option<Arc<Nexus>>,
    pub registry: Arc<Registry>,
    pub local: SocketAddr,
    out: Outbox,
    /// Control PDUs produced while handling one PDU, sent after it.
    unsent: Vec<OutPdu>,
    sn: Arc<SnState>,
    exp_cmd_sn: u32,
    /// Commands that arrived before an earlier CmdSN, and their bytes.
    queued: BTreeMap<u32, Pdu>,
    queued_bytes: usize,
    tasks: Tasks,
    writes: HashMap<u32, PendingWrite>,
    ttt_owner: HashMap<u32, u32>,
    next_ttt: u32,
    text_rest: Option<(u32, Bytes)>,
    ping_ttt: u32,
    read_budget: Arc<Semaphore>,
    admission: Arc<Admission>,
    discovery_rate: RateLimit,
    last_ordered: Option<u32>,
    task_done: Arc<Notify>,
}

/// Ends a task's accounting however it ends (answered or aborted): frees
/// its command-window slot and wakes tasks waiting on task-set order.
struct TaskGuard {
    done: Arc<Notify>,
    sn: Arc<SnState>,
    counted: bool,
}

impl TaskGuard {
    fn release_slot(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.sn.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.release_slot();
        self.done.notify_waiters();
    }
}

/// Why the reader stopped.
#[derive(Debug)]
enum Stop {
    Logout,
    Closed,
    Protocol(String),
}

/// Runs the full feature phase until logout, error or close request.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    out: Outbox,
    sn: Arc<SnState>,
    result: LoginResult,
    handle: Arc<SessionHandle>,
    mut close: watch::Receiver<bool>,
    registry: Arc<Registry>,
    local: SocketAddr,
) {
    let params = result.params;
    let framing = Framing {
        header_digest: params.header_digest,
        data_digest: params.data_digest,
        max_data: params.target_mrdsl as usize,
    };
    let mut s = Session {
        params,
        nexus: handle.nexus.clone(),
        exp_cmd_sn: result.exp_cmd_sn,
        result,
        handle,
        admission: registry.admission().clone(),
        registry,
        local,
        out,
        unsent: Vec::new(),
        sn,
        queued: BTreeMap::new(),
        queued_bytes: 0,
        tasks: Arc::new(Mutex::new(HashMap::new())),
        writes: HashMap::new(),
        ttt_owner: HashMap::new(),
        next_ttt: 1,
        text_rest: None,
        ping_ttt: 0x1000_0000,
        read_budget: Arc::new(Semaphore::new(READ_BUDGET as usize)),
        discovery_rate: RateLimit::new(DISCOVERY_REQUESTS_PER_SECOND, DISCOVERY_BURST, Instant::now()),
        last_ordered: None,
        task_done: Arc::new(Notify::new()),
    };
    // NOP-In timing: the target's settings (RFC 7143 §11.18); a discovery
    // session gets no pings, only the same time to live while idle.
    let timing = s.result.target.as_ref().map(|t| t.session).unwrap_or_default();
    let ping_after = Duration::from_secs(timing.nop_in_interval.into());
    let dead_after = ping_after + Duration::from_secs(timing.nop_in_timeout.into());
    let mut reset = s.handle.subscribe_reset();
    let aborts = s.nexus.as_ref().map(|n| n.aborts.clone());
    let mut last_rx = Instant::now();
    let mut pinged = false;
    let stop = loop {
        match pdu::check(&buf, &framing) {
            Ok(Some(n)) => match pdu::parse(&mut buf, n, &framing) {
                Ok(p) => {
                    last_rx = Instant::now();
                    pinged = false;
                    let handled = s.dispatch(p).await;
                    // Waits while the control budget is spent: the socket
                    // is not read again until the peer reads what we sent.
                    s.flush_unsent().await;
                    match handled {
                        Ok(()) => continue,
                        Err(e) => break e,
                    }
                }
                Err(e) => break Stop::Protocol(e.to_string()),
            },
            Ok(None) => {}
            Err(e) => break Stop::Protocol(e.to_string()),
        }
        // Busy connections read in large chunks; idle ones keep a small buffer.
        let (min_spare, grow) = if pinged { (512, 4096) } else { (64 * 1024, framing.max_data + 64 * 1024) };
        if buf.capacity() - buf.len() < min_spare {
            buf.reserve(grow);
        }
        let idle = last_rx.elapsed();
        let discovery = s.result.target.is_none();
        let wait = if pinged || discovery { dead_after } else { ping_after }.saturating_sub(idle);
        let data_out_due = s.writes.values().map(|w| w.progress).min().map(|t| t + DATA_OUT_TIMEOUT);
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break Stop::Closed,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(wait) => {
                // Discovery sessions carry only Text and Logout (§4.3): no
                // pings there, an idle one is simply closed.
                if pinged || s.result.target.is_none() {
                    break Stop::Protocol("no answer to NOP-In ping".into());
                }
                pinged = true;
                if buf.is_empty() {
                    // Idle: give back the receive buffer (memory per idle session stays small).
                    buf = BytesMut::new();
                }
                s.ping();
                s.flush_unsent().await;
            }
            _ = close.changed() => break Stop::Closed,
            _ = s.out.closed() => break Stop::Closed,
            _ = async {
                match data_out_due {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                break Stop::Protocol(format!("solicited Data-Out did not arrive within {DATA_OUT_TIMEOUT:?}"));
            }
            _ = reset.changed() => {
                tracing::info!("tasks aborted by a target reset from another session");
                s.abort_all(None);
            }
            units = async {
                match &aborts {
                    Some(m) => m.requested().await,
                    None => std::future::pending().await,
                }
            } => {
                let luns = s.handle.current_luns();
                for (lun, lu) in luns.iter() {
                    if units.iter().any(|&u| AbortMailbox::is(u, lu)) {
                        tracing::info!(lun, "tasks aborted by a reset or PREEMPT AND ABORT from another nexus");
                        s.abort_all(Some(*lun));
                    }
                }
            }
        }
    };
    match &stop {
        Stop::Protocol(why) => tracing::warn!(reason = %why, "closing connection"),
        Stop::Logout => tracing::info!("logged out"),
        Stop::Closed => tracing::debug!("connection closed"),
    }
    s.abort_all(None);
    s.flush_unsent().await;
    s.out.close();
}

impl Session {
    /// Queues control PDUs; they go out after the PDU being handled.
    fn send(&mut self, pdus: Vec<OutPdu>) {
        self.unsent.extend(pdus);
    }

    async fn flush_unsent(&mut self) {
        if !self.unsent.is_empty() {
            self.out.send(std::mem::take(&mut self.unsent)).await;
        }
    }

    fn set_exp(&mut self, v: u32) {
        self.exp_cmd_sn = v;
        self.sn.exp_cmd_sn.store(v, Ordering::Release);
    }

    /// Applies CmdSN ordering (§4.2.2.1): out-of-window numbers are dropped,
    /// early ones wait, in-order ones run and release their successors.
    async fn dispatch(&mut self, p: Pdu) -> Result<(), Stop> {
        let opc = p.bhs.opcode();
        let numbered = matches!(opc, op::NOP_OUT | op::SCSI_CMD | op::TMF_REQ | op::TEXT_REQ | op::LOGOUT_REQ);
        if !numbered {
            return self.handle_pdu(p).await;
        }
        if p.bhs.immediate() {
            // Immediate commands bypass the window (§3.2.2.1), so they are
            // counted against it here: beyond it they are rejected.
            if opc == op::SCSI_CMD && self.sn.in_flight.load(Ordering::Acquire) >= self.sn.window {
                self.send(vec![response::reject_pdu(reject::IMMEDIATE_COMMAND, &p.bhs)]);
                return Ok(());
            }
            return self.handle_pdu(p).await;
        }
        let cmd_sn = p.bhs.u32_at(24);
        // Only up to the MaxCmdSN the initiator was told (§4.2.2.1).
        let max = self.sn.max_cmd_sn.load(Ordering::Acquire);
        if cmd_sn == self.exp_cmd_sn {
            self.set_exp(cmd_sn.wrapping_add(1));
            self.handle_pdu(p).await?;
            while let Some(next) = self.queued.remove(&self.exp_cmd_sn) {
                self.queued_bytes -= pdu_bytes(&next);
                self.set_exp(self.exp_cmd_sn.wrapping_add(1));
                self.handle_pdu(next).await?;
            }
            Ok(())
        } else if sn_lt(self.exp_cmd_sn, cmd_sn) && !sn_lt(max, cmd_sn) {
            let bytes = pdu_bytes(&p);
            if self.queued_bytes + bytes > EARLY_COMMANDS_BUDGET {
                tracing::debug!(cmd_sn, exp = self.exp_cmd_sn, "early command beyond the budget: ignored");
                return Ok(());
            }
            if let Some(old) = self.queued.insert(cmd_sn, p) {
                self.queued_bytes -= pdu_bytes(&old);
            }
            self.queued_bytes += bytes;
            Ok(())
        } else {
            tracing::debug!(cmd_sn, exp = self.exp_cmd_sn, max, "CmdSN outside the window: ignored");
            Ok(())
        }
    }

    async fn handle_pdu(&mut self, p: Pdu) -> Result<(), Stop> {
        let opc = p.bhs.opcode();
        if self.result.target.is_none() && matches!(opc, op::TEXT_REQ | op::NOP_OUT) {
            let wait = self.discovery_rate.take(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        match opc {
            op::SCSI_CMD => self.scsi_command(p),
            op::DATA_OUT => self.data_out(p),
            op::NOP_OUT => {
                self.nop_out(p);
                Ok(())
            }
            op::TMF_REQ => {
                self.tmf(p).await;
                Ok(())
            }
            op::TEXT_REQ => {
                self.text(p);
                Ok(())
            }
            op::LOGOUT_REQ => self.logout(p).await,
            op::SNACK => {
                self.send(vec![response::reject_pdu(reject::PROTOCOL_ERROR, &p.bhs)]);
                Ok(())
            }
            op::LOGIN_REQ => {
                self.send(vec![response::reject_pdu(reject::PROTOCOL_ERROR, &p.bhs)]);
                Ok(())
            }
            _ => {
                self.send(vec![response::reject_pdu(reject::NOT_SUPPORTED, &p.bhs)]);
                Ok(())
            }
        }
    }

    fn scsi_command(&mut self, p: Pdu) -> Result<(), Stop> {
        let b = p.bhs;
        if self.result.target.is_none() {
            self.send(vec![response::reject_pdu(reject::PROTOCOL_ERROR, &b)]);
            return Ok(());
        }
        let flags = b.flags();
        let read = flags & 0x40 != 0;
        let write = flags & 0x20 != 0;
        let attr = match flags & 7 {
            0 => TaskAttr::Untagged,
            1 => TaskAttr::Simple,
            2 => TaskAttr::Ordered,
            3 => TaskAttr::HeadOfQueue,
            4 => TaskAttr::Aca,
            _ => TaskAttr::Simple,
        };
        let itt = b.itt();
        let edtl = b.u32_at(20);
        let mut cdb = BytesMut::from(&b.0[32..48]);
        // Extended CDB AHS (type 1): AHSLength(2) type(1) reserved(1) CDB bytes.
        let mut ahs = &p.ahs[..];
        while ahs.len() >= 4 {
            let len = u16::from_be_bytes([ahs[0], ahs[1]]) as usize;
            let total = (3 + len).div_ceil(4) * 4;
            if ahs[2] == 1 && len >= 1 && 4 + len - 1 <= ahs.len() {
                cdb.extend_from_slice(&ahs[4..4 + len - 1]);
            }
            if total > ahs.len() || total == 0 {
                break;
            }
            ahs = &ahs[total..];
        }
        let lun_raw = b.lun_raw();
        let lun = decode_lun(lun_raw);
        let cdb = cdb.freeze();
        let cref = CmdRef { itt, lun_raw, edtl, read };
        let cmd = ScsiCommand { lun, cdb, attr, data_out: Bytes::new(), expected_in_len: if read { edtl } else { 0 } };

        if !write || edtl == 0 {
            let wants = scsi::expected_data_out(&self.handle.current_luns(), lun, &cmd.cdb).unwrap_or(0);
            if wants > 0 && p.data.is_empty() {
                // A write-type CDB with no Data-Out expected: overflow residual.
                self.start_write(cmd, cref, Bytes::new(), None);
                return Ok(());
            }
            if !p.data.is_empty() {
                self.send(vec![response::reject_pdu(reject::PROTOCOL_ERROR, &b)]);
                return Ok(());
            }
            self.execute(cmd, cref, Residual::None, None);
            return Ok(());
        }
        if edtl > MAX_WRITE {
            let resp = ScsiResponse {
                status: ScsiStatus::CheckCondition,
                data_in: Bytes::new(),
                sense: response::fixed_sense(0x05, 0x55, 0x00),
            };
            self.send(response::command_pdus(&cref, resp, Residual::None, 0, 0));
            return Ok(());
        }
        // The session's and the engine's budgets for Data-Out: beyond
        // either, TASK SET FULL (the initiator retries with fewer commands).
        let collecting: u64 = self.writes.values().map(|w| w.collector.edtl as u64).sum();
        let budget = (collecting + edtl as u64 <= WRITE_BUDGET).then(|| self.admission.try_data(edtl)).flatten();
        let Some(budget) = budget else {
            let resp = ScsiResponse { status: ScsiStatus::TaskSetFull, data_in: Bytes::new(), sense: Bytes::new() };
            self.send(response::command_pdus(&cref, resp, Residual::None, 0, 0));
            return Ok(());
        };
        let mut collector = match WriteCollector::new(edtl, p.data, &self.params) {
            Ok(c) => c,
            Err(e) => return Err(Stop::Protocol(e.to_string())),
        };
        if collector.complete() {
            let data = collector.into_data();
            self.start_write(cmd, cref, data, Some(budget));
            return Ok(());
        }
        let r2ts = self.issue_r2ts(itt, &mut collector);
        let lun_raw = cref.lun_raw;
        self.writes.insert(itt, PendingWrite { cmd, cref, collector, budget, progress: Instant::now() });
        self.send(r2ts.into_iter().map(|r| response::r2t_pdu(itt, lun_raw, &r)).collect());
        Ok(())
    }

    fn issue_r2ts(&mut self, itt: u32, c: &mut WriteCollector) -> Vec<super::dataout::R2t> {
        let mut next = self.next_ttt;
        let r = c.next_r2ts(&self.params, || {
            let t = next;
            next = next.wrapping_add(1);
            if next == UNSOLICITED_TTT || next >= 0x1000_0000 {
                next = 1;
            }
            t
        });
        self.next_ttt = next;
        for x in &r {
            self.ttt_owner.insert(x.ttt, itt);
        }
        r
    }

    fn data_out(&mut self, p: Pdu) -> Result<(), Stop> {
        let b = p.bhs;
        let itt = b.itt();
        let ttt = b.u32_at(20);
        let Some(w) = self.writes.get_mut(&itt) else {
            // The task may have been aborted; its data is simply dropped.
            return Ok(());
        };
        w.progress = Instant::now();
        let burst_done = match w.collector.data_out(ttt, b.u32_at(36), b.u32_at(40), &p.data) {
            Ok(d) => d,
            Err(e) => {
                // The command fails, the connection stays: later Data-Out for
                // this ITT is ignored (DATA PHASE ERROR, SPC-4 Table 44).
                tracing::warn!(itt = format_args!("{itt:#x}"), "bad Data-Out: {e}");
                let w = self.writes.remove(&itt).expect("present");
                let writes = &self.writes;
                self.ttt_owner.retain(|_, i| writes.contains_key(i));
                let resp = ScsiResponse {
                    status: ScsiStatus::CheckCondition,
                    data_in: Bytes::new(),
                    sense: response::fixed_sense(0x0b, 0x4b, 0x00),
                };
                self.send(response::command_pdus(&w.cref, resp, Residual::None, 0, 0));
                return Ok(());
            }
        };
        if ttt != UNSOLICITED_TTT && burst_done {
            self.ttt_owner.remove(&ttt);
        }
        if w.collector.complete() {
            let w = self.writes.remove(&itt).expect("present");
            let data = w.collector.into_data();
            self.start_write(w.cmd, w.cref, data, Some(w.budget));
        } else if burst_done {
            let mut w = self.writes.remove(&itt).expect("present");
            let r2ts = self.issue_r2ts(itt, &mut w.collector);
            let lun_raw = w.cref.lun_raw;
            self.writes.insert(itt, w);
            self.send(r2ts.into_iter().map(|r| response::r2t_pdu(itt, lun_raw, &r)).collect());
        }
        Ok(())
    }

    /// Reconciles EDTL with the Data-Out the CDB asks for (RFC 7143
    /// §11.4.5.1): beyond EDTL nothing is transferred (overflow, the unit
    /// writes what it got); beyond the CDB's length data is dropped (underflow).
    fn start_write(
        &mut self,
        mut cmd: ScsiCommand,
        cref: CmdRef,
        mut data: Bytes,
        budget: Option<OwnedSemaphorePermit>,
    ) {
        let luns = self.handle.current_luns();
        let mut residual = Residual::None;
        if let Some(want) = scsi::expected_data_out(&luns, cmd.lun, &cmd.cdb) {
            let have = cref.edtl as u64;
            if have < want {
                residual = Residual::Overflow((want - have).min(u32::MAX as u64) as u32);
            } else if have > want {
                residual = Residual::Underflow((have - want) as u32);
                data = data.slice(..want as usize);
            }
        }
        cmd.data_out = data;
        self.execute(cmd, cref, residual, budget);
    }

    /// Runs a command on its own task; its PDUs go to the writer in one batch.
    ///
    /// A write brings its share of the engine's data budget (`written`),
    /// given back when the command ends. Every command takes room in the
    /// session's read budget, and a read as much of the engine's, for the
    /// larger of its CDB's transfer length and its Expected Data Transfer
    /// Length, until its Data-In is written.
    fn execute(&mut self, cmd: ScsiCommand, cref: CmdRef, residual: Residual, written: Option<OwnedSemaphorePermit>) {
        let luns = self.handle.current_luns();
        let Some(nexus) = self.nexus.clone() else { return };
        let out = self.out.clone();
        let tasks = self.tasks.clone();
        let mrdsl = self.params.initiator_mrdsl;
        let burst = self.params.max_burst_length;
        let lun = cmd.lun;
        let itt = cref.itt;
        let span =
            tracing::debug_span!("cmd", itt = format_args!("{itt:#x}"), op = cmd.cdb.first().copied().unwrap_or(0));
        let budget = self.read_budget.clone();
        let engine_budget = self.admission.data_budget().clone();
        let media = scsi::media_data_in(&luns, lun, &cmd.cdb);
        let asked = if cref.read { u64::from(cref.edtl) } else { 0 };
        let need = asked.max(media).clamp(1, u64::from(READ_BUDGET)) as u32;
        let reads = need > 1;
        let mut g = tasks.lock().unwrap_or_else(|e| e.into_inner());
        // SAM-5 §8.6: an ORDERED task waits for every earlier task; later
        // SIMPLE tasks wait for the ORDERED one; HEAD OF QUEUE waits for none.
        let wait_for: Vec<u32> = match cmd.attr {
            TaskAttr::Ordered => g.keys().copied().collect(),
            TaskAttr::HeadOfQueue => Vec::new(),
            _ => self.last_ordered.filter(|o| g.contains_key(o)).into_iter().collect(),
        };
        if cmd.attr == TaskAttr::Ordered {
            self.last_ordered = Some(itt);
        }
        let done = self.task_done.clone();
        self.sn.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut guard = TaskGuard { done: done.clone(), sn: self.sn.clone(), counted: true };
        let tasks2 = tasks.clone();
        let h = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = &guard;
                if !wait_for.is_empty() {
                    loop {
                        let n = done.notified();
                        tokio::pin!(n);
                        n.as_mut().enable();
                        let pending = {
                            let t = tasks2.lock().unwrap_or_else(|e| e.into_inner());
                            wait_for.iter().any(|i| t.contains_key(i))
                        };
                        if !pending {
                            break;
                        }
                        n.await;
                    }
                }
                let Ok(permit) = budget.acquire_many_owned(need).await else { return };
                let engine = if reads {
                    let Ok(p) = engine_budget.acquire_many_owned(need).await else { return };
                    Some(p)
                } else {
                    None
                };
                let resp = scsi::execute(&luns, &nexus, cmd).await;
                drop(written);
                let pdus = response::command_pdus(&cref, resp, residual, mrdsl, burst);
                // Remove first so an ABORT TASK racing with us sees no task and
                // answers "task does not exist" while the status goes out.
                let still_ours = tasks2.lock().unwrap_or_else(|e| e.into_inner()).remove(&itt).is_some();
                // The slot is free before the status goes out, so the status
                // itself carries the reopened window.
                guard.release_slot();
                if still_ours {
                    out.send_held(pdus, Permits { connection: Some(permit), engine });
                }
            },
            span,
        ));
        g.insert(itt, Running { abort: h.abort_handle(), lun });
    }
}

/// Bytes a PDU held in memory takes, near enough for budgeting.
fn pdu_bytes(p: &Pdu) -> usize {
    pdu::BHS_LEN + p.ahs.len() + p.data.len()
}

/// LUN field to LUN number (SAM-5 §4.7: peripheral and flat space addressing).
pub fn decode_lun(raw: u64) -> u64 {
    let b = raw.to_be_bytes();
    match b[0] >> 6 {
        0 => b[1] as u64,
        1 => (((b[0] & 0x3f) as u64) << 8) | b[1] as u64,
        _ => u64::MAX,
    }
}

/// LUN number to the 8-byte LUN field.
pub fn encode_lun(lun: u64) -> u64 {
    if lun < 256 {
        lun << 48
    } else {
        (0x4000 | (lun & 0x3fff)) << 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_codes() {
        assert_eq!(decode_lun(encode_lun(5)), 5);
        assert_eq!(decode_lun(encode_lun(300)), 300);
        assert_eq!(decode_lun(0xc000_0000_0000_0000), u64::MAX);
    }

    #[test]
    fn serial_arithmetic() {
        assert!(sn_lt(1, 2));
        assert!(sn_lt(u32::MAX, 0));
        assert!(!sn_lt(2, 2));
        assert!(!sn_lt(3, 2));
    }
}
