//! One session of the test initiator with many commands in flight, as a
//! host's queue depth looks to the target: every command is sent as soon
//! as the command window allows (CmdSN up to the last MaxCmdSN announced,
//! RFC 7143 §4.2.2.1), and responses are matched to commands by their
//! Initiator Task Tag, in whatever order they come. Writes carry all their
//! data as immediate data (§13.11, `ImmediateData=Yes` is the default), so
//! a write must fit in one data segment; there is no R2T here.
//!
//! The session runs in its own task. When the connection ends, or the
//! target sends what this tool does not handle (an R2T, a Reject), every
//! command still in flight gets no answer ([`Pipeline::command`] returns
//! `None`), as a host sees a path fail. Dropping the session resets its
//! connection ([`Initiator::reset_on_close`]): a caller that gives up on
//! it and sends the same commands another way must not have the old ones
//! delivered later, when a dead link comes back.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::initiator::{CmdResult, Initiator};
use crate::iscsi::pdu::{self, op, Pdu};

/// How many commands may wait for the window before `command` waits too.
const QUEUED: usize = 256;

struct Request {
    lun: u64,
    cdb: Vec<u8>,
    read_len: u32,
    data: Bytes,
    answer: oneshot::Sender<CmdResult>,
}

/// A logged-in session carrying many commands at once. Dropping it closes
/// the connection.
pub struct Pipeline {
    requests: mpsc::Sender<Request>,
    task: AbortHandle,
    max_write: usize,
}

impl Pipeline {
    /// Takes over a session that has logged in. Panics if the target
    /// refused immediate data.
    pub fn start(session: Initiator) -> Pipeline {
        let immediate = session.key("ImmediateData").is_none_or(|v| v == "Yes");
        assert!(immediate, "the pipelined test session needs ImmediateData=Yes");
        let first_burst = session.key("FirstBurstLength").and_then(|v| v.parse::<usize>().ok()).unwrap_or(65536);
        let max_write = session.tx_framing.max_data.min(first_burst);
        session.reset_on_close().expect("SO_LINGER on the session's socket");
        let (requests, queue) = mpsc::channel(QUEUED);
        let task = tokio::spawn(run(session, queue)).abort_handle();
        Pipeline { requests, task, max_write }
    }

    /// The largest write this session can carry.
    pub fn max_write(&self) -> usize {
        self.max_write
    }

    /// Runs one command; `None` if the session ended before it was answered.
    pub async fn command(&self, lun: u64, cdb: &[u8], read_len: u32, data: Bytes) -> Option<CmdResult> {
        assert!(data.len() <= self.max_write, "a write of {} bytes does not fit in immediate data", data.len());
        let (answer, answered) = oneshot::channel();
        let request = Request { lun, cdb: cdb.to_vec(), read_len, data, answer };
        self.requests.send(request).await.ok()?;
        answered.await.ok()
    }

    /// Ends the session now (its connection reset); commands in flight get
    /// no answer.
    pub fn close(&self) {
        self.task.abort();
    }

    /// Whether the session still runs.
    pub fn is_open(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `a` comes after `b` in serial number arithmetic (RFC 1982).
fn after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// A command in flight: who waits for it, and its Data-In so far.
struct InFlight {
    answer: oneshot::Sender<CmdResult>,
    data: Vec<u8>,
}

async fn run(mut session: Initiator, mut queue: mpsc::Receiver<Request>) {
    let mut in_flight: HashMap<u32, InFlight> = HashMap::new();
    loop {
        // Every whole PDU received so far.
        loop {
            match pdu::check(&session.buf, &session.rx_framing) {
                Ok(Some(n)) => {
                    let Ok(p) = pdu::parse(&mut session.buf, n, &session.rx_framing) else { return };
                    if !received(&mut session, &mut in_flight, p) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let window_open = !after(session.cmd_sn, session.max_cmd_sn);
        tokio::select! {
            // Cancel-safe: nothing is lost when a request comes first.
            read = session.stream.read_buf(&mut session.buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
            request = queue.recv(), if window_open => {
                let Some(r) = request else { return };
                let edtl = if r.data.is_empty() { r.read_len } else { r.data.len() as u32 };
                let bhs = session.scsi_pdu(r.lun, &r.cdb, r.read_len > 0, !r.data.is_empty(), edtl);
                in_flight.insert(bhs.itt(), InFlight { answer: r.answer, data: Vec::new() });
                let bytes = pdu::encode(Pdu::with_data(bhs, r.data), &session.tx_framing);
                if session.stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Handles one PDU from the target; false ends the session.
fn received(session: &mut Initiator, in_flight: &mut HashMap<u32, InFlight>, p: Pdu) -> bool {
    let opcode = p.bhs.opcode();
    if matches!(opcode, op::SCSI_RESP | op::DATA_IN | op::NOP_IN) {
        let max = p.bhs.u32_at(32);
        if after(max, session.max_cmd_sn) {
            session.max_cmd_sn = max;
        }
    }
    let status_sent = opcode == op::SCSI_RESP || (opcode == op::DATA_IN && p.bhs.flags() & 1 != 0);
    if status_sent || opcode == op::NOP_IN {
        session.exp_stat_sn = p.bhs.u32_at(24).wrapping_add(1);
    }
    match opcode {
        op::NOP_IN => true,
        op::DATA_IN | op::SCSI_RESP => {
            let itt = p.bhs.itt();
            let Some(command) = in_flight.get_mut(&itt) else { return false };
            if opcode == op::DATA_IN {
                command.data.extend_from_slice(&p.data);
            }
            if !status_sent {
                return true;
            }
            let command = in_flight.remove(&itt).expect("present");
            // A SCSI Response's data segment is its sense (2-byte length first).
            let sense = if opcode == op::SCSI_RESP && p.data.len() >= 2 { p.data[2..].to_vec() } else { Vec::new() };
            let data = command.data;
            let _ = command.answer.send(CmdResult {
                status: p.bhs.0[3],
                data,
                sense,
                flags: p.bhs.flags(),
                residual: p.bhs.u32_at(44),
            });
            true
        }
        _ => false,
    }
}
