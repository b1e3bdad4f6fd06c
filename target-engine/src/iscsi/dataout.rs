//! Collecting the Data-Out of one write command (RFC 7143 §11.7, §11.8):
//! immediate data, the unsolicited first burst, then R2T-solicited bursts,
//! with up to MaxOutstandingR2T R2Ts in flight.
//!
//! We negotiate DataPDUInOrder=Yes and DataSequenceInOrder=Yes, so every
//! Data-Out must continue exactly where the previous one stopped; DataSN
//! restarts at 0 for each sequence. Any violation is a protocol error, which
//! at ErrorRecoveryLevel 0 ends the connection.

//!
//! The data is kept as the `Bytes` the PDUs arrived in (no copy, and no
//! memory before it arrives); a command whose data came in one PDU gets
//! that buffer itself, others get one contiguous copy when complete.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::keys::Params;

pub const UNSOLICITED_TTT: u32 = 0xffff_ffff;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataOutError {
    #[error("Data-Out for an unknown transfer tag {0:#x}")]
    UnknownTtt(u32),
    #[error("DataSN {got}, expected {want}")]
    DataSn { got: u32, want: u32 },
    #[error("buffer offset {got}, expected {want}")]
    Offset { got: u32, want: u32 },
    #[error("Data-Out beyond the burst or the expected length")]
    TooMuch,
    #[error("immediate data not negotiated or longer than allowed")]
    BadImmediate,
}

/// One R2T to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    pub ttt: u32,
    pub r2tsn: u32,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug)]
struct Burst {
    ttt: u32,
    end: u32,
    next_datasn: u32,
}

/// Data-Out state of one write command.
#[derive(Debug)]
pub struct WriteCollector {
    pub edtl: u32,
    chunks: Vec<Bytes>,
    received: u32,
    /// Bursts in flight, in offset order (the unsolicited one first, if any).
    bursts: VecDeque<Burst>,
    next_r2t_offset: u32,
    r2tsn: u32,
}

impl WriteCollector {
    /// Starts collecting for a command with `edtl` bytes of Data-Out and
    /// `immediate` data carried in the command PDU.
    pub fn new(edtl: u32, immediate: Bytes, p: &Params) -> Result<Self, DataOutError> {
        let imm = immediate.len() as u32;
        if imm > 0 && (!p.immediate_data || imm > p.first_burst_length || imm > edtl) {
            return Err(DataOutError::BadImmediate);
        }
        let chunks = if imm > 0 { vec![immediate] } else { Vec::new() };
        let unsolicited_end = if p.initial_r2t { imm } else { p.first_burst_length.min(edtl) };
        let mut bursts = VecDeque::new();
        if unsolicited_end > imm {
            bursts.push_back(Burst { ttt: UNSOLICITED_TTT, end: unsolicited_end, next_datasn: 0 });
        }
        Ok(WriteCollector { edtl, chunks, received: imm, bursts, next_r2t_offset: unsolicited_end.max(imm), r2tsn: 0 })
    }

    pub fn complete(&self) -> bool {
        self.received == self.edtl
    }

    /// Bytes of Data-Out received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// R2Ts to send now; `next_ttt` hands out fresh target transfer tags.
    pub fn next_r2ts(&mut self, p: &Params, mut next_ttt: impl FnMut() -> u32) -> Vec<R2t> {
        let mut out = Vec::new();
        let solicited_in_flight = self.bursts.iter().filter(|b| b.ttt != UNSOLICITED_TTT).count() as u32;
        let mut room = p.max_outstanding_r2t.saturating_sub(solicited_in_flight);
        while room > 0 && self.next_r2t_offset < self.edtl {
            let len = p.max_burst_length.min(self.edtl - self.next_r2t_offset);
            let r = R2t { ttt: next_ttt(), r2tsn: self.r2tsn, offset: self.next_r2t_offset, len };
            self.r2tsn += 1;
            self.next_r2t_offset += len;
            self.bursts.push_back(Burst { ttt: r.ttt, end: r.offset + len, next_datasn: 0 });
            out.push(r);
            room -= 1;
        }
        out
    }

    /// Accepts one Data-Out PDU. Returns true when a solicited burst finished
    /// (so more R2Ts may be sent).
    pub fn data_out(&mut self, ttt: u32, datasn: u32, offset: u32, data: &Bytes) -> Result<bool, DataOutError> {
        let Some(b) = self.bursts.iter_mut().find(|b| b.ttt == ttt) else {
            return Err(DataOutError::UnknownTtt(ttt));
        };
        if datasn != b.next_datasn {
            return Err(DataOutError::DataSn { got: datasn, want: b.next_datasn });
        }
        let want = self.received;
        if offset != want {
            return Err(DataOutError::Offset { got: offset, want });
        }
        if offset as u64 + data.len() as u64 > b.end as u64 {
            return Err(DataOutError::TooMuch);
        }
        b.next_datasn += 1;
        let done = offset + data.len() as u32 == b.end;
        if !data.is_empty() {
            self.chunks.push(data.clone());
            self.received += data.len() as u32;
        }
        if done {
            let solicited = b.ttt != UNSOLICITED_TTT;
            self.bursts.retain(|x| x.end != offset + data.len() as u32);
            return Ok(solicited);
        }
        Ok(false)
    }

    pub fn into_data(mut self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.pop().expect("one chunk"),
            _ => {
                let mut all = BytesMut::with_capacity(self.received as usize);
                for c in &self.chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    fn params(initial_r2t: bool, fb: u32, mb: u32, maxr2t: u32) -> Params {
        Params {
            initial_r2t,
            first_burst_length: fb,
            max_burst_length: mb,
            max_outstanding_r2t: maxr2t,
            ..Params::default()
        }
    }

    #[test]
    fn immediate_then_r2ts() {
        let p = params(true, 1024, 1000, 2);
        let mut w = WriteCollector::new(3000, Bytes::from(vec![1u8; 512]), &p).unwrap();
        let mut t = 10;
        let r = w.next_r2ts(&p, || {
            t += 1;
            t
        });
        assert_eq!(
            r,
            vec![R2t { ttt: 11, r2tsn: 0, offset: 512, len: 1000 }, R2t { ttt: 12, r2tsn: 1, offset: 1512, len: 1000 }]
        );
        assert!(w.next_r2ts(&p, || 0).is_empty());
        assert!(!w.data_out(11, 0, 512, &z(500)).unwrap());
        assert_eq!(w.data_out(11, 0, 1012, &z(500)), Err(DataOutError::DataSn { got: 0, want: 1 }));
        assert!(w.data_out(11, 1, 1012, &z(500)).unwrap());
        let r = w.next_r2ts(&p, || 13);
        assert_eq!(r, vec![R2t { ttt: 13, r2tsn: 2, offset: 2512, len: 488 }]);
        assert_eq!(w.data_out(13, 0, 2512, &z(488)), Err(DataOutError::Offset { got: 2512, want: 1512 }));
        assert!(w.data_out(12, 0, 1512, &z(1000)).unwrap());
        assert!(w.data_out(13, 0, 2512, &z(488)).unwrap());
        assert!(w.complete());
    }

    #[test]
    fn unsolicited_first_burst() {
        let p = params(false, 1024, 4096, 1);
        let mut w = WriteCollector::new(2048, Bytes::from(vec![1u8; 100]), &p).unwrap();
        let r = w.next_r2ts(&p, || 5);
        assert_eq!(r, vec![R2t { ttt: 5, r2tsn: 0, offset: 1024, len: 1024 }]);
        assert!(!w.data_out(UNSOLICITED_TTT, 0, 100, &z(924)).unwrap());
        assert_eq!(w.data_out(UNSOLICITED_TTT, 1, 1024, &z(4)), Err(DataOutError::UnknownTtt(UNSOLICITED_TTT)));
        assert!(w.data_out(5, 0, 1024, &z(1024)).unwrap());
        assert!(w.complete());
    }

    #[test]
    fn immediate_too_long() {
        let p = params(true, 512, 4096, 1);
        assert_eq!(
            WriteCollector::new(2048, Bytes::from(vec![0u8; 1024]), &p).unwrap_err(),
            DataOutError::BadImmediate
        );
    }

    proptest::proptest! {
        /// Whatever Data-Out arrives, the collector never panics, never holds
        /// more than EDTL and only completes with exactly EDTL bytes.
        #[test]
        fn arbitrary_data_out_is_safe(
            edtl in 0u32..20_000,
            imm in 0usize..5000,
            initial_r2t in proptest::prelude::any::<bool>(),
            pdus in proptest::collection::vec((0u32..4, 0u32..4, 0u32..20_000, 0usize..6000), 0..20),
        ) {
            let p = params(initial_r2t, 8192, 4096, 2);
            let Ok(mut w) = WriteCollector::new(edtl, Bytes::from(vec![0u8; imm]), &p) else { return Ok(()) };
            let mut ttts = vec![UNSOLICITED_TTT];
            let mut next = 1;
            for r in w.next_r2ts(&p, || { next += 1; next }) { ttts.push(r.ttt); }
            for (t, sn, off, len) in pdus {
                let ttt = ttts.get(t as usize).copied().unwrap_or(t);
                if let Ok(true) = w.data_out(ttt, sn, off, &Bytes::from(vec![1u8; len])) {
                    for r in w.next_r2ts(&p, || { next += 1; next }) { ttts.push(r.ttt); }
                }
                proptest::prop_assert!(w.received() <= edtl);
                proptest::prop_assert_eq!(w.chunks.iter().map(|c| c.len() as u32).sum::<u32>(), w.received());
            }
        }
    }
}
