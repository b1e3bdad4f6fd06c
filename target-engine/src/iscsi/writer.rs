//! The one task that writes a connection's PDUs (RFC 7143 §4.2.2.2: StatSN
//! is assigned in the order responses go out).
//!
//! Headers go into small buffers, data segments are written straight from
//! the `Bytes` the SCSI layer returned (vectored writes, no copy), and the
//! socket is flushed only when the queue has drained.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::pdu::{encode_header, Framing};
use super::response::OutPdu;

/// Messages to the writer.
#[derive(Debug)]
pub enum Out {
    Pdus(Vec<OutPdu>),
    /// PDUs whose memory counts against the session's budget until written.
    Held(Vec<OutPdu>, OwnedSemaphorePermit),
    /// Write everything queued so far, then close the connection.
    Close,
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
}

impl SnState {
    pub fn new(exp_cmd_sn: u32, window: u32) -> Self {
        SnState { exp_cmd_sn: AtomicU32::new(exp_cmd_sn), window, in_flight: AtomicU32::new(0) }
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

    async fn flush(&mut self, w: &mut OwnedWriteHalf) -> std::io::Result<()> {
        while !self.segs.is_empty() {
            let slices: Vec<IoSlice<'_>> = self.segs.iter().take(64).map(|b| IoSlice::new(b)).collect();
            let mut n = w.write_vectored(&slices).await?;
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
    let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
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
                if q.flush(&mut w).await.is_err() {
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
            Out::Pdus(p) => p,
            Out::Held(p, permit) => {
                held.push(permit);
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
            if q.flush(&mut w).await.is_err() {
                return;
            }
            held.clear();
        }
    }
    let _ = q.flush(&mut w).await;
    let _ = w.shutdown().await;
}
