//! Building target PDUs for a finished command: Data-In with status
//! collapse and residuals (RFC 7143 §11.7, §11.4.5), SCSI Response with
//! sense (§11.4.7), R2T (§11.8), Reject (§11.17).
//!
//! StatSN, ExpCmdSN and MaxCmdSN are left zero: the writer fills them in as
//! the PDU goes out, so they are always current and in order.

use bytes::{BufMut, Bytes, BytesMut};

use super::dataout::R2t;
use super::pdu::{op, Bhs, Pdu};
use crate::scsi::{ScsiResponse, ScsiStatus};

/// A PDU ready for the writer; `status` says whether it carries a StatSN
/// (and so advances it).
#[derive(Debug)]
pub struct OutPdu {
    pub pdu: Pdu,
    pub status: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    None,
    Overflow(u32),
    Underflow(u32),
}

impl Residual {
    pub fn of(expected: u32, actual: u64) -> Residual {
        if actual > expected as u64 {
            Residual::Overflow((actual - expected as u64).min(u32::MAX as u64) as u32)
        } else if actual < expected as u64 {
            Residual::Underflow(expected - actual as u32)
        } else {
            Residual::None
        }
    }
    fn apply(self, b: &mut Bhs) {
        match self {
            Residual::None => {}
            Residual::Overflow(n) => {
                b.0[1] |= 0x04;
                b.set_u32(44, n)
            }
            Residual::Underflow(n) => {
                b.0[1] |= 0x02;
                b.set_u32(44, n)
            }
        }
    }
}

/// What the transport needs to answer one command.
pub struct CmdRef {
    pub itt: u32,
    pub lun_raw: u64,
    pub edtl: u32,
    pub read: bool,
}

/// Turns a SCSI response into Data-In PDUs and, unless the status could be
/// collapsed into the last Data-In, a SCSI Response PDU.
pub fn command_pdus(
    c: &CmdRef,
    resp: ScsiResponse,
    write_residual: Residual,
    mrdsl: u32,
    max_burst: u32,
) -> Vec<OutPdu> {
    let mut out = Vec::new();
    let (data, residual) = if c.read {
        let r = Residual::of(c.edtl, resp.data_in.len() as u64);
        let n = resp.data_in.len().min(c.edtl as usize);
        // A few bytes of a large buffer are copied, so that the buffer is
        // not held while they wait for the socket.
        let data = if n < resp.data_in.len() / 2 {
            Bytes::copy_from_slice(&resp.data_in[..n])
        } else {
            resp.data_in.slice(..n)
        };
        (data, r)
    } else {
        (Bytes::new(), write_residual)
    };
    let collapse = resp.status == ScsiStatus::Good && resp.sense.is_empty();
    let mrdsl = mrdsl.max(512) as usize;
    let max_burst = max_burst.max(512) as usize;
    let mut off = 0usize;
    let mut datasn = 0u32;
    while off < data.len() {
        let in_burst = max_burst - off % max_burst;
        let n = mrdsl.min(in_burst).min(data.len() - off);
        let last = off + n == data.len();
        let mut b = Bhs::new(op::DATA_IN);
        let mut flags = 0;
        if last || n == in_burst {
            flags |= 0x80;
        }
        if last && collapse {
            flags |= 0x01;
        }
        b.set_flags(flags);
        b.set_u64(8, c.lun_raw);
        b.set_itt(c.itt);
        b.set_u32(20, 0xffff_ffff);
        b.set_u32(36, datasn);
        b.set_u32(40, off as u32);
        let status = last && collapse;
        if status {
            b.0[3] = resp.status as u8;
            residual.apply(&mut b);
        }
        out.push(OutPdu { pdu: Pdu::with_data(b, data.slice(off..off + n)), status });
        datasn += 1;
        off += n;
    }
    if !collapse || data.is_empty() {
        let mut b = Bhs::new(op::SCSI_RESP);
        b.set_flags(0x80);
        b.0[2] = 0; // command completed at target
        b.0[3] = resp.status as u8;
        b.set_itt(c.itt);
        b.set_u32(36, datasn);
        residual.apply(&mut b);
        let payload = if resp.sense.is_empty() {
            Bytes::new()
        } else {
            let mut p = BytesMut::with_capacity(2 + resp.sense.len());
            p.put_u16(resp.sense.len() as u16);
            p.put_slice(&resp.sense);
            p.freeze()
        };
        out.push(OutPdu { pdu: Pdu::with_data(b, payload), status: true });
    }
    out
}

/// Fixed-format sense for conditions the transport itself detects.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Bytes {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    Bytes::from(s)
}

pub fn r2t_pdu(itt: u32, lun_raw: u64, r: &R2t) -> OutPdu {
    let mut b = Bhs::new(op::R2T);
    b.set_flags(0x80);
    b.set_u64(8, lun_raw);
    b.set_itt(itt);
    b.set_u32(20, r.ttt);
    b.set_u32(36, r.r2tsn);
    b.set_u32(40, r.offset);
    b.set_u32(44, r.len);
    OutPdu { pdu: Pdu::new(b), status: false }
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject {
    pub const DATA_DIGEST: u8 = 0x02;
    pub const SNACK: u8 = 0x03;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const NOT_SUPPORTED: u8 = 0x05;
    pub const IMMEDIATE_COMMAND: u8 = 0x06;
    pub const INVALID_FIELD: u8 = 0x09;
}

pub fn reject_pdu(reason: u8, offending: &Bhs) -> OutPdu {
    let mut b = Bhs::new(op::REJECT);
    b.set_flags(0x80);
    b.0[2] = reason;
    b.set_itt(0xffff_ffff);
    OutPdu { pdu: Pdu::with_data(b, Bytes::copy_from_slice(&offending.0)), status: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(len: usize, status: ScsiStatus, sense: bool) -> ScsiResponse {
        ScsiResponse {
            status,
            data_in: Bytes::from(vec![7u8; len]),
            sense: if sense { fixed_sense(5, 0x24, 0) } else { Bytes::new() },
        }
    }

    #[test]
    fn collapse_and_underflow() {
        let c = CmdRef { itt: 1, lun_raw: 0, edtl: 10000, read: true };
        let v = command_pdus(&c, resp(5000, ScsiStatus::Good, false), Residual::None, 2048, 1 << 20);
        assert_eq!(v.len(), 3);
        assert!(v[2].status);
        assert_eq!(v[2].pdu.bhs.flags(), 0x80 | 0x01 | 0x02);
        assert_eq!(v[2].pdu.bhs.u32_at(44), 5000);
        assert_eq!(v[1].pdu.bhs.u32_at(40), 2048);
        assert_eq!(v[1].pdu.bhs.u32_at(36), 1);
    }

    #[test]
    fn overflow_truncates() {
        let c = CmdRef { itt: 1, lun_raw: 0, edtl: 100, read: true };
        let v = command_pdus(&c, resp(512, ScsiStatus::Good, false), Residual::None, 8192, 1 << 20);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].pdu.data.len(), 100);
        assert_eq!(v[0].pdu.bhs.flags() & 0x04, 0x04);
        assert_eq!(v[0].pdu.bhs.u32_at(44), 412);
    }

    #[test]
    fn check_condition_separate_response() {
        let c = CmdRef { itt: 1, lun_raw: 0, edtl: 0, read: false };
        let v = command_pdus(&c, resp(0, ScsiStatus::CheckCondition, true), Residual::None, 8192, 1 << 20);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].pdu.bhs.opcode(), op::SCSI_RESP);
        assert_eq!(v[0].pdu.data.len(), 20);
    }

    #[test]
    fn burst_boundaries_set_final() {
        let c = CmdRef { itt: 1, lun_raw: 0, edtl: 4096, read: true };
        let v = command_pdus(&c, resp(4096, ScsiStatus::Good, false), Residual::None, 1024, 2048);
        let f: Vec<bool> = v.iter().map(|o| o.pdu.bhs.final_bit()).collect();
        assert_eq!(f, vec![false, true, false, true]);
    }
}
