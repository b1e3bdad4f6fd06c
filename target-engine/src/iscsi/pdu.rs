//! Sans-IO PDU framing (RFC 7143 §11.2): the 48-byte Basic Header Segment,
//! Additional Header Segments, the data segment with its padding, and the
//! optional CRC32C header and data digests (§11.2.1, Appendix B.4).
//!
//! [`check`] looks at a buffer and says whether a whole PDU is there; it
//! validates the header (and its digest) *before* anything is read of the
//! data segment, and bounds every length that comes from the network.
//! [`parse`] then splits that many bytes off without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Initiator opcodes (RFC 7143 §11.1.1).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_CMD: u8 = 0x01;
    pub const TMF_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESP: u8 = 0x21;
    pub const TMF_RESP: u8 = 0x22;
    pub const LOGIN_RESP: u8 = 0x23;
    pub const TEXT_RESP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const REJECT: u8 = 0x3f;
}

/// Why bytes from the network are not a PDU we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data digest mismatch")]
    DataDigest,
    #[error("data segment of {len} bytes exceeds the limit of {max}")]
    DataTooLong { len: usize, max: usize },
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
}

/// Framing parameters of one connection, from login negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment accepted (the MaxRecvDataSegmentLength we declared).
    pub max_data: usize,
}

impl Default for Framing {
    fn default() -> Self {
        // During login the limit is 8192 (RFC 7143 §13.12) and no digests.
        Framing { header_digest: false, data_digest: false, max_data: 8192 }
    }
}

/// The 48-byte Basic Header Segment with named accessors for the fields
/// shared by several opcodes (RFC 7143 §11.2.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bhs(op={:#04x} itt={:#x} dlen={})", self.opcode(), self.itt(), self.data_len())
    }
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl Bhs {
    pub fn new(opcode: u8) -> Self {
        let mut b = Bhs::default();
        b.0[0] = opcode & 0x3f;
        b
    }
    pub fn opcode(&self) -> u8 {
        self.0[0] & 0x3f
    }
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    pub fn set_immediate(&mut self, on: bool) {
        if on {
            self.0[0] |= 0x40
        } else {
            self.0[0] &= !0x40
        }
    }
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    pub fn set_flags(&mut self, f: u8) {
        self.0[1] = f;
    }
    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    pub fn ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    pub fn data_len(&self) -> usize {
        ((self.0[5] as usize) << 16) | ((self.0[6] as usize) << 8) | self.0[7] as usize
    }
    pub fn set_data_len(&mut self, len: usize) {
        debug_assert!(len < 1 << 24);
        self.0[5] = (len >> 16) as u8;
        self.0[6] = (len >> 8) as u8;
        self.0[7] = len as u8;
    }
    pub fn lun_raw(&self) -> u64 {
        self.u64_at(8)
    }
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }
    pub fn set_itt(&mut self, v: u32) {
        self.set_u32(16, v)
    }
    pub fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.0[off], self.0[off + 1]])
    }
    pub fn set_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub fn u64_at(&self, off: usize) -> u64 {
        u64::from_be_bytes(self.0[off..off + 8].try_into().unwrap())
    }
    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_be_bytes());
    }
}

/// One PDU: header, raw AHS bytes, data segment without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: Bhs,
    pub ahs: Bytes,
    pub data: Bytes,
}

impl Pdu {
    pub fn new(bhs: Bhs) -> Self {
        Pdu { bhs, ahs: Bytes::new(), data: Bytes::new() }
    }
    pub fn with_data(bhs: Bhs, data: Bytes) -> Self {
        Pdu { bhs, ahs: Bytes::new(), data }
    }
}

pub fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn known_opcode(op: u8) -> bool {
    matches!(op, 0x00..=0x06 | 0x10 | 0x1c..=0x1e | 0x20..=0x26 | 0x31 | 0x32 | 0x3c..=0x3f)
}

/// Returns `Ok(None)` until a whole PDU is buffered, then `Ok(Some(total_len))`.
///
/// The header (and header digest) is validated as soon as it is complete,
/// so an oversized or corrupt PDU is refused before its data is awaited.
pub fn check(buf: &[u8], framing: &Framing) -> Result<Option<usize>, PduError> {
    if buf.len() < BHS_LEN {
        return Ok(None);
    }
    let bhs: [u8; BHS_LEN] = buf[..BHS_LEN].try_into().unwrap();
    let bhs = Bhs(bhs);
    if !known_opcode(bhs.opcode()) {
        return Err(PduError::UnknownOpcode(bhs.opcode()));
    }
    let ahs = bhs.ahs_len();
    let dlen = bhs.data_len();
    if dlen > framing.max_data {
        return Err(PduError::DataTooLong { len: dlen, max: framing.max_data });
    }
    let hlen = BHS_LEN + ahs;
    let hd = if framing.header_digest { 4 } else { 0 };
    if buf.len() < hlen + hd {
        return Ok(None);
    }
    if framing.header_digest {
        let want = u32::from_le_bytes(buf[hlen..hlen + 4].try_into().unwrap());
        if crc32c::crc32c(&buf[..hlen]) != want {
            return Err(PduError::HeaderDigest);
        }
    }
    let mut total = hlen + hd;
    if dlen > 0 {
        total += dlen + pad_len(dlen) + if framing.data_digest { 4 } else { 0 };
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(total))
}

/// Splits one PDU of `total` bytes (as returned by [`check`]) off `buf`.
pub fn parse(buf: &mut BytesMut, total: usize, framing: &Framing) -> Result<Pdu, PduError> {
    let mut raw = buf.split_to(total).freeze();
    let bhs = Bhs(raw[..BHS_LEN].try_into().unwrap());
    raw.advance(BHS_LEN);
    let ahs = raw.split_to(bhs.ahs_len());
    if framing.header_digest {
        raw.advance(4);
    }
    let dlen = bhs.data_len();
    let mut data = Bytes::new();
    if dlen > 0 {
        let padded = dlen + pad_len(dlen);
        let seg = raw.split_to(padded);
        if framing.data_digest {
            let want = u32::from_le_bytes(raw[..4].try_into().unwrap());
            if crc32c::crc32c(&seg) != want {
                return Err(PduError::DataDigest);
            }
        }
        data = seg.slice(..dlen);
    }
    Ok(Pdu { bhs, ahs, data })
}

/// Serialises the header part of `pdu` (BHS, AHS, header digest) into `out`
/// and returns the trailer (padding + data digest) to write after the data.
///
/// The data segment itself is left to the caller so that large Data-In
/// payloads go to the socket without being copied into a frame buffer.
pub fn encode_header(pdu: &mut Pdu, framing: &Framing, out: &mut BytesMut) -> ([u8; 8], usize) {
    debug_assert!(pdu.ahs.len().is_multiple_of(4));
    pdu.bhs.0[4] = (pdu.ahs.len() / 4) as u8;
    pdu.bhs.set_data_len(pdu.data.len());
    let start = out.len();
    out.put_slice(&pdu.bhs.0);
    out.put_slice(&pdu.ahs);
    if framing.header_digest {
        let d = crc32c::crc32c(&out[start..]);
        out.put_u32_le(d);
    }
    let mut trailer = [0u8; 8];
    let mut tlen = 0;
    if !pdu.data.is_empty() {
        let pad = pad_len(pdu.data.len());
        tlen += pad;
        if framing.data_digest {
            let mut d = crc32c::crc32c(&pdu.data);
            if pad > 0 {
                d = crc32c::crc32c_append(d, &[0u8; 3][..pad]);
            }
            trailer[tlen..tlen + 4].copy_from_slice(&d.to_le_bytes());
            tlen += 4;
        }
    }
    (trailer, tlen)
}

/// Serialises a whole PDU into one buffer (login, tests, small PDUs).
pub fn encode(mut pdu: Pdu, framing: &Framing) -> BytesMut {
    let mut out = BytesMut::with_capacity(BHS_LEN + pdu.data.len() + 16);
    let (trailer, tlen) = encode_header(&mut pdu, framing, &mut out);
    out.put_slice(&pdu.data);
    out.put_slice(&trailer[..tlen]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framing(h: bool, d: bool) -> Framing {
        Framing { header_digest: h, data_digest: d, max_data: 1 << 16 }
    }

    #[test]
    fn incomplete_until_whole() {
        let mut b = Bhs::new(op::NOP_OUT);
        b.set_itt(7);
        let f = framing(true, true);
        let enc = encode(Pdu::with_data(b, Bytes::from_static(b"hello")), &f);
        assert_eq!(enc.len(), 48 + 4 + 8 + 4);
        for i in 0..enc.len() {
            assert_eq!(check(&enc[..i], &f), Ok(None));
        }
        assert_eq!(check(&enc, &f), Ok(Some(enc.len())));
    }

    #[test]
    fn oversized_rejected_from_header_alone() {
        let mut b = Bhs::new(op::SCSI_CMD);
        b.set_data_len(1 << 20);
        assert!(matches!(check(&b.0, &framing(false, false)), Err(PduError::DataTooLong { .. })));
    }

    #[test]
    fn corrupt_digests_detected() {
        let f = framing(true, true);
        let mut enc = encode(Pdu::with_data(Bhs::new(op::NOP_OUT), Bytes::from_static(b"abcd")), &f);
        enc[50] ^= 1;
        assert_eq!(check(&enc, &f), Err(PduError::HeaderDigest));
        let mut enc = encode(Pdu::with_data(Bhs::new(op::NOP_OUT), Bytes::from_static(b"abcd")), &f);
        enc[53] ^= 1;
        let n = check(&enc, &f).unwrap().unwrap();
        assert_eq!(parse(&mut enc, n, &f), Err(PduError::DataDigest));
    }

    proptest! {
        #[test]
        fn round_trip(op in prop::sample::select(vec![0u8, 1, 2, 4, 5, 6]),
                      hdr in prop::collection::vec(any::<u8>(), 48),
                      ahs_words in 0usize..4,
                      data in prop::collection::vec(any::<u8>(), 0..3000),
                      h in any::<bool>(), d in any::<bool>()) {
            let f = framing(h, d);
            let mut b = Bhs(hdr.try_into().unwrap());
            b.0[0] = op;
            let pdu = Pdu { bhs: b, ahs: Bytes::from(vec![9u8; ahs_words * 4]), data: Bytes::from(data) };
            let mut enc = encode(pdu.clone(), &f);
            let n = check(&enc, &f).unwrap().unwrap();
            prop_assert_eq!(n, enc.len());
            let back = parse(&mut enc, n, &f).unwrap();
            prop_assert_eq!(back.data, pdu.data);
            prop_assert_eq!(back.ahs, pdu.ahs);
            prop_assert_eq!(back.bhs.opcode(), op);
        }

        #[test]
        fn no_panic_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..400), h in any::<bool>(), d in any::<bool>()) {
            let f = Framing { header_digest: h, data_digest: d, max_data: 256 };
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(n)) = check(&buf, &f) {
                if parse(&mut buf, n, &f).is_err() { break; }
            }
        }
    }
}
