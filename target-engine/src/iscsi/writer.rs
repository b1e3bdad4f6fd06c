//! The one task that writes a connection's PDUs (RFC 7143 §4.2.2.2: StatSN
//! is assigned in the order responses go out).
//!
//! Headers go into small buffers, data segments are written straight from
//! the `Bytes` the SCSI layer returned (vectored writes, no copy), and the
//! socket is flushed only when the queue has drained.
//!
//! Every queued PDU holds permits of a byte budget until it is written
//! (see [`super::admission`]): control PDUs the connection's
//! [`CONTROL_BUDGET`], Data-In the session's and the engine's read budgets.
//! A write that makes no progress for [`WRITE_TIMEOUT`] ends the writer;
//! dropping its queue gives every permit back, and the session's reader,
//! which watches [`Outbox::closed`], stops too.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::admission::{CONTROL_BUDGET, WRITE_TIMEOUT};
use super::pdu::{encode_header, Framing, BHS_LEN};
use super::response::OutPdu;

/// Budget permits that travel with queued PDUs and are given back once
/// they are written (or dropped).
#[derive(Debug, Default)]
pub struct Permits {
    /// The connection's control budget or the session's read budget.
    pub connection: Option<OwnedSemaphorePermit>,
    /// The engine-wide data budget.
    pub engine: Option<OwnedSemaphorePermit>,
}

/// Messages to the writer.
#[derive(Debug)]
pub enum Out {
    /// PDUs whose memory counts against budgets until written.
    Held(Vec<OutPdu>, Permits),
    /// Write everything queued so far, then close the connection.
    Close,
}

/// The sending side of a connection's writer.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    control: Arc<Semaphore>,
}

/// Bytes a PDU takes on the wire, near enough for budgeting.
fn wire_len(p: &OutPdu) -> usize {
    BHS_LEN + p.pdu.ahs.len() + p.pdu.data.len() + 8
}

impl Outbox {
    /// An outbox and the receiver its writer drains.
    pub fn new() -> (Outbox, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx, control: Arc::new(Semaphore::new(CONTROL_BUDGET)) }, rx)
    }

    /// Queues control PDUs, waiting while the connection's control budget
    /// is spent (the peer is not reading what we sent).
    pub async fn send(&self, pdus: Vec<OutPdu>) {
        if pdus.is_empty() {
            return;
        }
        let bytes = pdus.iter().map(wire_len).sum::<usize>().clamp(1, CONTROL_BUDGET);
        let Ok(permit) = self.control.clone().acquire_many_owned(bytes as u32).await else { return };
        let _ = self.tx.send(Out::Held(pdus, Permits { connection: Some(permit), engine: None }));
    }

    /// Queues PDUs whose memory is already paid for by `permits`.
    pub fn send_held(&self, pdus: Vec<OutPdu>, permits: Permits) {
        let _ = self.tx.send(Out::Held(pdus, permits));
    }

    /// Asks the writer to send what is queued and close the connection.
    pub fn close(&self) {
        let _ = self.tx.send(Out::Close);
    }

    /// Resolves once the writer has stopped (closed, or the socket failed).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Control budget free right now (for tests and diagnostics).
    pub fn control_available(&self) -> usize {
        self.control.available_permits()
    }
}

/// Command-window counters shared by the reader (which advances them) and
/// the writer (which stamps them on every PDU).
#[derive(Debug)]
pub struct SnState {
    pub exp_cmd_sn: AtomicU32,
    pub window: u32,
    /// Commands received and not yet answered: they use up window slots, so
    /// MaxCmdSN bounds the tasks an initiator can have in the target.
    pub in_flight: AtomicU32,
    /// The highest MaxCmdSN announced so far: commands numbered beyond it
    /// are not accepted (RFC 7143 §4.2.2.1).
    pub max_cmd_sn: AtomicU32,
}

impl SnState {
    /// Counters after a login that announced `exp_cmd_sn` and a window of `window`.
    pub fn new(exp_cmd_sn: u32, window: u32) -> Self {
        SnState {
            exp_cmd_sn: AtomicU32::new(exp_cmd_sn),
            window,
            in_flight: AtomicU32::new(0),
            max_cmd_sn: AtomicU32::new(exp_cmd_sn.wrapping_add(window - 1)),
        }
    }
}

const FLUSH_AT: usize = 512 * 1024;

struct Queue {
    segs: VecDeque<Bytes>,
    bytes: usize,
}

impl Queue {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.bytes += b.len();
            self.segs.push_back(b);
        }
    }

    /// Writes everything queued; a write that makes no progress for
    /// [`WRITE_TIMEOUT`] fails with `TimedOut`.
    async fn flush(&mut self, w: &mut OwnedWriteHalf) -> std::io::Result<()> {
        while !self.segs.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.segs.iter().take(64).map(|b| IoSlice::new(b)).collect();
            let mut n = match tokio::time::timeout(WRITE_TIMEOUT, w.write_vectored(&slices)).await {
                Ok(r) => r?,
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.bytes -= n;
            while n > 0 {
                let front = self.segs.front_mut().expect("written bytes were queued");
                if front.len() <= n {
                    n -= front.len();
                    self.segs.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

/// Runs until the channel closes, `Out::Close` arrives, or the socket fails.
pub async fn run(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    framing: Framing,
    mut stat_sn: u32,
    sn: Arc<SnState>,
) {
    let mut q = Queue { segs: VecDeque::new(), bytes: 0 };
    let mut hdr = BytesMut::with_capacity(16 * 1024);
    let mut held: Vec<Permits> = Vec::new();
    // MaxCmdSN never moves backwards (initiators ignore a decrease anyway).
    let mut last_max = sn.exp_cmd_sn.load(Ordering::Acquire).wrapping_add(sn.window - 1);
    loop {
        let mut next = rx.try_recv().ok();
        if next.is_none() && !q.segs.is_empty() {
            // Give commands finishing right now a chance to join this write:
            // fewer, larger writes under load.
            tokio::task::yield_now().await;
            next = rx.try_recv().ok();
        }
        let msg = match next {
            Some(m) => m,
            None => {
                if let Err(e) = q.flush(&mut w).await {
                    tracing::info!("cannot write to the initiator, closing: {e}");
                    return;
                }
                held.clear();
                match rx.recv().await {
                    Some(m) => m,
                    None => break,
                }
            }
        };
        let pdus = match msg {
            Out::Held(p, permits) => {
                held.push(permits);
                p
            }
            Out::Close => break,
        };
        for OutPdu { mut pdu, status } in pdus {
            let exp = sn.exp_cmd_sn.load(Ordering::Acquire);
            pdu.bhs.set_u32(24, stat_sn);
            if status {
                stat_sn = stat_sn.wrapping_add(1);
            }
            let busy = sn.in_flight.load(Ordering::Acquire).min(sn.window - 1);
            let max = exp.wrapping_add(sn.window - 1 - busy);
            if max.wrapping_sub(last_max) as i32 > 0 {
                last_max = max;
                sn.max_cmd_sn.store(max, Ordering::Release);
            }
            pdu.bhs.set_u32(28, exp);
            pdu.bhs.set_u32(32, last_max);
            if hdr.capacity() < 128 {
                hdr.reserve(16 * 1024);
            }
            let (trailer, tlen) = encode_header(&mut pdu, &framing, &mut hdr);
            q.push(hdr.split().freeze());
            q.push(pdu.data);
            if tlen > 0 {
                q.push(Bytes::copy_from_slice(&trailer[..tlen]));
            }
        }
        if q.bytes >= FLUSH_AT {
            if let Err(e) = q.flush(&mut w).await {
                tracing::info!("cannot write to the initiator, closing: {e}");
                return;
            }
            held.clear();
        }
    }
    let _ = q.flush(&mut w).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, w.shutdown()).await;
}
