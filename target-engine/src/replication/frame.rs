//! The replication stream's frames, sans-IO (the same check-then-parse shape
//! as the iSCSI PDU codec): [`check`] says whether a whole frame is
//! buffered, validating the header and bounding the length before anything
//! of the body is awaited; [`parse`] takes it off the buffer.
//!
//! A frame is a 12-byte header — `P`, `R`, version 2, the frame type, the
//! body length (big-endian u32) and the body's CRC32C — then the body.
//! Bodies are at most [`MAX_BODY`] bytes: one operation carries at most a
//! SCSI transfer (8 MiB) or a 64 KiB region.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::auth;
use super::core::dirty::DirtyMap;
use super::core::ops::{Epoch, Op, ReplicaId};
use super::core::primary::{FromReplica, ToReplica};
use super::core::replica::MAX_UNSETTLED_REGIONS;

pub const HEADER: usize = 12;
/// The largest body a frame may carry.
pub const MAX_BODY: usize = (8 << 20) + 4096;
/// The longest body read before the other end is authenticated: a hello
/// (two names of at most [`MAX_TEXT`] bytes) and the key exchange.
pub const MAX_OPENING_BODY: usize = 4096;
/// Version 2: operations carry the settled mark, and the replica's hello
/// answer its activity log.
const VERSION: u8 = 2;
/// The longest text (names, reasons) a frame carries.
const MAX_TEXT: usize = 1024;

/// Why a refused stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The replica has applied another placement; `current` is its epoch.
    StaleEpoch(Epoch),
    /// This node keeps no replica of that volume.
    UnknownVolume,
    /// The primary did not prove that it holds the replication key.
    Unauthenticated,
}

/// Everything that travels on a replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The primary opens a stream for `volume` of `cluster`, at `epoch`, to
    /// replica `replica`, with its nonce (see [`super::auth`]).
    Hello {
        cluster: String,
        volume: String,
        epoch: Epoch,
        primary: ReplicaId,
        replica: ReplicaId,
        nonce: [u8; auth::NONCE],
    },
    /// The replica's nonce and its proof that it holds the key.
    Challenge {
        nonce: [u8; auth::NONCE],
        proof: [u8; auth::PROOF],
    },
    /// The primary's proof that it holds the key.
    Proof([u8; auth::PROOF]),
    /// The stream is accepted; the replica's activity log (the regions in
    /// which its copy may differ from the others, `None` if not known).
    HelloOk {
        unsettled: Option<DirtyMap>,
    },
    Refused(Refusal),
    ToReplica(ToReplica),
    FromReplica(FromReplica),
    Ping(u64),
    Pong(u64),
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a replication frame (bad magic or version)")]
    Magic,
    #[error("frame body of {0} bytes is longer than allowed")]
    TooLong(usize),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed frame body")]
    Malformed,
}

mod kind {
    pub const HELLO: u8 = 1;
    pub const HELLO_OK: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const OP: u8 = 4;
    pub const COPY: u8 = 5;
    pub const DONE: u8 = 6;
    pub const FAILED: u8 = 7;
    pub const STALE: u8 = 8;
    pub const PING: u8 = 9;
    pub const PONG: u8 = 10;
    pub const VERIFY: u8 = 11;
    pub const DIFFERS: u8 = 12;
    pub const CHALLENGE: u8 = 13;
    pub const PROOF: u8 = 14;
}

mod op_kind {
    pub const WRITE: u8 = 1;
    pub const WRITE_SAME: u8 = 2;
    pub const UNMAP: u8 = 3;
    pub const FLUSH: u8 = 4;
    pub const STATE: u8 = 5;
    pub const STATE_REMOVED: u8 = 6;
    pub const RESIZE: u8 = 7;
}

fn put_text(b: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(MAX_TEXT)];
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

/// Appends `frame`, encoded, to `out`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    let (head, payload) = encode_parts(frame);
    out.put(head);
    if let Some(p) = payload {
        out.put(p);
    }
}

/// A frame as its header and fixed fields, and the data that ends its body
/// (a write's or a copy's, shared, not copied): a writer sends the two one
/// after the other. The checksum covers both.
pub fn encode_parts(frame: &Frame) -> (Bytes, Option<Bytes>) {
    let mut body = BytesMut::new();
    let mut payload: Option<Bytes> = None;
    let t = match frame {
        Frame::Hello { cluster, volume, epoch, primary, replica, nonce } => {
            put_text(&mut body, cluster);
            put_text(&mut body, volume);
            body.put_u64(epoch.0);
            body.put_u32(*primary);
            body.put_u32(*replica);
            body.put_slice(nonce);
            kind::HELLO
        }
        Frame::Challenge { nonce, proof } => {
            body.put_slice(nonce);
            body.put_slice(proof);
            kind::CHALLENGE
        }
        Frame::Proof(proof) => {
            body.put_slice(proof);
            kind::PROOF
        }
        Frame::HelloOk { unsettled } => {
            match unsettled {
                Some(regions) => {
                    body.put_u8(1);
                    body.put_u32(regions.len().min(MAX_UNSETTLED_REGIONS) as u32);
                    for r in regions.regions().take(MAX_UNSETTLED_REGIONS as usize) {
                        body.put_u64(r);
                    }
                }
                None => body.put_u8(0),
            }
            kind::HELLO_OK
        }
        Frame::Refused(r) => {
            match r {
                Refusal::StaleEpoch(e) => {
                    body.put_u8(1);
                    body.put_u64(e.0);
                }
                Refusal::UnknownVolume => {
                    body.put_u8(2);
                    body.put_u64(0);
                }
                Refusal::Unauthenticated => {
                    body.put_u8(3);
                    body.put_u64(0);
                }
            }
            kind::REFUSED
        }
        Frame::ToReplica(ToReplica::Op { seq, epoch, settled, op }) => {
            body.put_u64(*seq);
            body.put_u64(epoch.0);
            body.put_u64(*settled);
            let (k, fua, offset, len, data) = match op {
                Op::Write { offset, data, fua } => (op_kind::WRITE, *fua, *offset, data.len() as u64, Some(data)),
                Op::WriteSame { offset, len, block, fua } => (op_kind::WRITE_SAME, *fua, *offset, *len, Some(block)),
                Op::Unmap { offset, len } => (op_kind::UNMAP, false, *offset, *len, None),
                Op::Flush => (op_kind::FLUSH, false, 0, 0, None),
                Op::UnitState { text: Some(t) } => (op_kind::STATE, false, 0, t.len() as u64, Some(t)),
                Op::UnitState { text: None } => (op_kind::STATE_REMOVED, false, 0, 0, None),
                Op::Resize { size } => (op_kind::RESIZE, false, *size, 0, None),
            };
            body.put_u8(k);
            body.put_u8(u8::from(fua));
            body.put_u64(offset);
            body.put_u64(len);
            payload = data.cloned();
            kind::OP
        }
        Frame::ToReplica(ToReplica::Copy { seq, epoch, offset, data }) => {
            body.put_u64(*seq);
            body.put_u64(epoch.0);
            body.put_u64(*offset);
            payload = Some(data.clone());
            kind::COPY
        }
        Frame::ToReplica(ToReplica::Verify { seq, epoch, offset, len, crc }) => {
            body.put_u64(*seq);
            body.put_u64(epoch.0);
            body.put_u64(*offset);
            body.put_u64(*len);
            body.put_u32(*crc);
            kind::VERIFY
        }
        Frame::FromReplica(FromReplica::Differs { seq }) => {
            body.put_u64(*seq);
            kind::DIFFERS
        }
        Frame::FromReplica(FromReplica::Done { seq }) => {
            body.put_u64(*seq);
            kind::DONE
        }
        Frame::FromReplica(FromReplica::Failed { seq, why }) => {
            body.put_u64(*seq);
            put_text(&mut body, why);
            kind::FAILED
        }
        Frame::FromReplica(FromReplica::StaleEpoch { current }) => {
            body.put_u64(current.0);
            kind::STALE
        }
        Frame::Ping(n) => {
            body.put_u64(*n);
            kind::PING
        }
        Frame::Pong(n) => {
            body.put_u64(*n);
            kind::PONG
        }
    };
    let payload_len = payload.as_ref().map_or(0, Bytes::len);
    let crc = payload.as_ref().map_or(crc32c::crc32c(&body), |p| crc32c::crc32c_append(crc32c::crc32c(&body), p));
    let mut head = BytesMut::with_capacity(HEADER + body.len());
    head.put_slice(&[b'P', b'R', VERSION, t]);
    head.put_u32((body.len() + payload_len) as u32);
    head.put_u32(crc);
    head.put_slice(&body);
    (head.freeze(), payload)
}

/// Reads the next whole frame from `sock`, keeping what follows it in
/// `buf`; `peer` names the other side in the error when it closes.
pub async fn read<R: tokio::io::AsyncRead + Unpin>(
    sock: &mut R,
    buf: &mut BytesMut,
    peer: &str,
) -> Result<Frame, String> {
    read_at_most(sock, buf, peer, MAX_BODY).await
}

/// [`read`], with bodies of at most `max` bytes (before the other end is
/// authenticated, [`MAX_OPENING_BODY`]).
pub async fn read_at_most<R: tokio::io::AsyncRead + Unpin>(
    sock: &mut R,
    buf: &mut BytesMut,
    peer: &str,
    max: usize,
) -> Result<Frame, String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(n) = check_at_most(buf, max).map_err(|e| e.to_string())? {
            return parse(buf, n).map_err(|e| e.to_string());
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        match sock.read_buf(buf).await {
            Ok(0) => return Err(format!("closed by the {peer}")),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Writes the frames `rx` gives, in order and up to 1 MiB per batch, until
/// it closes; a batch that takes longer than `deadline` (a peer that stops
/// reading) ends it.
pub async fn write_all<W: tokio::io::AsyncWrite + Unpin>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Frame>,
    mut w: W,
    deadline: std::time::Duration,
) {
    let mut out = std::collections::VecDeque::new();
    while let Some(f) = rx.recv().await {
        let mut queued = queue(&f, &mut out);
        while queued < 1 << 20 {
            let Ok(more) = rx.try_recv() else { break };
            queued += queue(&more, &mut out);
        }
        if !matches!(tokio::time::timeout(deadline, write_queued(&mut w, &mut out)).await, Ok(Ok(()))) {
            return;
        }
    }
}

/// Queues `frame` for [`write_queued`].
pub fn queue(frame: &Frame, queue: &mut std::collections::VecDeque<Bytes>) -> usize {
    let (head, payload) = encode_parts(frame);
    let n = head.len() + payload.as_ref().map_or(0, Bytes::len);
    queue.push_back(head);
    queue.extend(payload);
    n
}

/// Writes everything queued, in order, many pieces per system call, and
/// flushes (a TLS stream holds what it was given until then).
pub async fn write_queued<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    queue: &mut std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    while !queue.is_empty() {
        let slices: Vec<std::io::IoSlice<'_>> = queue.iter().take(64).map(|b| std::io::IoSlice::new(b)).collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let front = queue.front_mut().expect("written bytes were queued");
            if n >= front.len() {
                n -= front.len();
                queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    w.flush().await
}

/// `Ok(None)` until a whole frame is buffered, then `Ok(Some(total_len))`.
/// The header is checked, and the length bounded, as soon as it is there.
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    check_at_most(buf, MAX_BODY)
}

/// [`check`], with bodies of at most `max` bytes.
pub fn check_at_most(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    if buf[0] != b'P' || buf[1] != b'R' || buf[2] != VERSION {
        return Err(FrameError::Magic);
    }
    if !(kind::HELLO..=kind::PROOF).contains(&buf[3]) {
        return Err(FrameError::UnknownType(buf[3]));
    }
    let len = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if len > max.min(MAX_BODY) {
        return Err(FrameError::TooLong(len));
    }
    Ok((buf.len() >= HEADER + len).then_some(HEADER + len))
}

/// Reads a body field by field; every read is bounded by what is there.
struct Body(Bytes);

impl Body {
    fn u8(&mut self) -> Result<u8, FrameError> {
        (self.0.remaining() >= 1).then(|| self.0.get_u8()).ok_or(FrameError::Malformed)
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        (self.0.remaining() >= 4).then(|| self.0.get_u32()).ok_or(FrameError::Malformed)
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        (self.0.remaining() >= 8).then(|| self.0.get_u64()).ok_or(FrameError::Malformed)
    }
    fn text(&mut self) -> Result<String, FrameError> {
        let n = usize::from((self.0.remaining() >= 2).then(|| self.0.get_u16()).ok_or(FrameError::Malformed)?);
        if n > MAX_TEXT || self.0.remaining() < n {
            return Err(FrameError::Malformed);
        }
        String::from_utf8(self.0.split_to(n).to_vec()).map_err(|_| FrameError::Malformed)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        if self.0.remaining() < N {
            return Err(FrameError::Malformed);
        }
        let mut out = [0u8; N];
        self.0.copy_to_slice(&mut out);
        Ok(out)
    }
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }
    fn end(self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed)
        }
    }
}

/// Takes one frame of `total` bytes (as [`check`] returned) off `buf`.
pub fn parse(buf: &mut BytesMut, total: usize) -> Result<Frame, FrameError> {
    let mut raw = buf.split_to(total).freeze();
    let t = raw[3];
    let crc = u32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
    raw.advance(HEADER);
    if crc32c::crc32c(&raw) != crc {
        return Err(FrameError::Checksum);
    }
    let mut b = Body(raw);
    let frame = match t {
        kind::HELLO => {
            let cluster = b.text()?;
            let volume = b.text()?;
            let epoch = Epoch(b.u64()?);
            let primary = b.u32()?;
            let replica = b.u32()?;
            let nonce = b.array()?;
            b.end()?;
            return Ok(Frame::Hello { cluster, volume, epoch, primary, replica, nonce });
        }
        kind::CHALLENGE => {
            let nonce = b.array()?;
            let proof = b.array()?;
            b.end()?;
            return Ok(Frame::Challenge { nonce, proof });
        }
        kind::PROOF => {
            let proof = b.array()?;
            b.end()?;
            return Ok(Frame::Proof(proof));
        }
        kind::HELLO_OK => {
            let unsettled = match b.u8()? {
                0 => None,
                1 => {
                    let n = b.u32()?;
                    if u64::from(n) > MAX_UNSETTLED_REGIONS {
                        return Err(FrameError::Malformed);
                    }
                    let mut regions = DirtyMap::default();
                    for _ in 0..n {
                        let r = b.u64()?;
                        if r > u64::MAX / super::core::dirty::REGION {
                            return Err(FrameError::Malformed);
                        }
                        regions.mark(r * super::core::dirty::REGION, 1);
                    }
                    Some(regions)
                }
                _ => return Err(FrameError::Malformed),
            };
            Frame::HelloOk { unsettled }
        }
        kind::REFUSED => {
            let why = b.u8()?;
            let epoch = Epoch(b.u64()?);
            Frame::Refused(match why {
                1 => Refusal::StaleEpoch(epoch),
                2 => Refusal::UnknownVolume,
                3 => Refusal::Unauthenticated,
                _ => return Err(FrameError::Malformed),
            })
        }
        kind::OP => {
            let seq = b.u64()?;
            let epoch = Epoch(b.u64()?);
            let settled = b.u64()?;
            let k = b.u8()?;
            let fua = match b.u8()? {
                0 => false,
                1 => true,
                _ => return Err(FrameError::Malformed),
            };
            let offset = b.u64()?;
            let len = b.u64()?;
            let data = b.rest();
            let op = match k {
                op_kind::WRITE if data.len() as u64 == len => Op::Write { offset, data, fua },
                op_kind::WRITE_SAME if !data.is_empty() && len % data.len() as u64 == 0 => {
                    Op::WriteSame { offset, len, block: data, fua }
                }
                op_kind::UNMAP if data.is_empty() => Op::Unmap { offset, len },
                op_kind::FLUSH if data.is_empty() => Op::Flush,
                op_kind::STATE if data.len() as u64 == len => Op::UnitState { text: Some(data) },
                op_kind::STATE_REMOVED if data.is_empty() => Op::UnitState { text: None },
                op_kind::RESIZE if data.is_empty() && len == 0 => Op::Resize { size: offset },
                _ => return Err(FrameError::Malformed),
            };
            if offset.checked_add(len).is_none() {
                return Err(FrameError::Malformed);
            }
            return Ok(Frame::ToReplica(ToReplica::Op { seq, epoch, settled, op }));
        }
        kind::COPY => {
            let seq = b.u64()?;
            let epoch = Epoch(b.u64()?);
            let offset = b.u64()?;
            let data = b.rest();
            if offset.checked_add(data.len() as u64).is_none() {
                return Err(FrameError::Malformed);
            }
            return Ok(Frame::ToReplica(ToReplica::Copy { seq, epoch, offset, data }));
        }
        kind::VERIFY => {
            let (seq, epoch, offset, len, crc) = (b.u64()?, Epoch(b.u64()?), b.u64()?, b.u64()?, b.u32()?);
            if offset.checked_add(len).is_none() || len > MAX_BODY as u64 {
                return Err(FrameError::Malformed);
            }
            Frame::ToReplica(ToReplica::Verify { seq, epoch, offset, len, crc })
        }
        kind::DIFFERS => Frame::FromReplica(FromReplica::Differs { seq: b.u64()? }),
        kind::DONE => Frame::FromReplica(FromReplica::Done { seq: b.u64()? }),
        kind::FAILED => {
            let seq = b.u64()?;
            let why = b.text()?;
            Frame::FromReplica(FromReplica::Failed { seq, why })
        }
        kind::STALE => Frame::FromReplica(FromReplica::StaleEpoch { current: Epoch(b.u64()?) }),
        kind::PING => Frame::Ping(b.u64()?),
        kind::PONG => Frame::Pong(b.u64()?),
        other => return Err(FrameError::UnknownType(other)),
    };
    b.end()?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut b = BytesMut::new();
        encode(&f, &mut b);
        let n = check(&b).unwrap().expect("whole");
        assert_eq!(n, b.len());
        assert_eq!(parse(&mut b, n).unwrap(), f);
    }

    #[test]
    fn every_frame_round_trips() {
        let e = Epoch(7);
        round_trip(Frame::Hello {
            cluster: "c1".into(),
            volume: "vol1".into(),
            epoch: e,
            primary: 1,
            replica: 2,
            nonce: [7; auth::NONCE],
        });
        round_trip(Frame::Challenge { nonce: [1; auth::NONCE], proof: [2; auth::PROOF] });
        round_trip(Frame::Proof([3; auth::PROOF]));
        round_trip(Frame::Refused(Refusal::Unauthenticated));
        round_trip(Frame::HelloOk { unsettled: None });
        round_trip(Frame::HelloOk { unsettled: Some(DirtyMap::default()) });
        let mut log = DirtyMap::default();
        log.mark(0, 1);
        log.mark(77 << 16, 3 << 16);
        round_trip(Frame::HelloOk { unsettled: Some(log) });
        round_trip(Frame::Refused(Refusal::StaleEpoch(Epoch(9))));
        round_trip(Frame::Refused(Refusal::UnknownVolume));
        for op in [
            Op::Write { offset: 512, data: Bytes::from(vec![3; 1024]), fua: true },
            Op::WriteSame { offset: 0, len: 8192, block: Bytes::from(vec![1; 512]), fua: false },
            Op::Unmap { offset: 4096, len: 1 << 20 },
            Op::Flush,
            Op::UnitState { text: Some(Bytes::from_static(b"[mode]\nwce = false\n")) },
            Op::UnitState { text: None },
            Op::Resize { size: 3 << 30 },
        ] {
            round_trip(Frame::ToReplica(ToReplica::Op { seq: 42, epoch: e, settled: 40, op }));
        }
        round_trip(Frame::ToReplica(ToReplica::Copy {
            seq: 3,
            epoch: e,
            offset: 65536,
            data: Bytes::from(vec![9; 65536]),
        }));
        round_trip(Frame::ToReplica(ToReplica::Verify {
            seq: 4,
            epoch: e,
            offset: 65536,
            len: 65536,
            crc: 0xdead_beef,
        }));
        round_trip(Frame::FromReplica(FromReplica::Differs { seq: 4 }));
        round_trip(Frame::FromReplica(FromReplica::Done { seq: 5 }));
        round_trip(Frame::FromReplica(FromReplica::Failed { seq: 5, why: "EIO".into() }));
        round_trip(Frame::FromReplica(FromReplica::StaleEpoch { current: Epoch(8) }));
        round_trip(Frame::Ping(1));
        round_trip(Frame::Pong(1));
    }

    #[test]
    fn bad_headers_are_refused_before_the_body_arrives() {
        assert_eq!(check(b"PR\x02\x04\x7f\xff\xff\xff\0\0\0\0"), Err(FrameError::TooLong(0x7fff_ffff)));
        assert_eq!(check(b"XX\x02\x04\0\0\0\0\0\0\0\0"), Err(FrameError::Magic));
        assert_eq!(check(b"PR\x01\x04\0\0\0\0\0\0\0\0"), Err(FrameError::Magic), "version 1 is not spoken");
        assert_eq!(check(b"PR\x02\x63\0\0\0\0\0\0\0\0"), Err(FrameError::UnknownType(0x63)));
        let mut b = BytesMut::new();
        encode(&Frame::Ping(5), &mut b);
        b[HEADER] ^= 1;
        let n = check(&b).unwrap().unwrap();
        assert_eq!(parse(&mut b, n), Err(FrameError::Checksum));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut b = BytesMut::from(&data[..]);
            if let Ok(Some(n)) = check(&b) {
                let _ = parse(&mut b, n);
            }
        }

        /// A valid header over an arbitrary body (right checksum) never panics either.
        #[test]
        fn arbitrary_bodies_never_panic(t in 1u8..=14, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let mut b = BytesMut::new();
            b.put_slice(&[b'P', b'R', VERSION, t]);
            b.put_u32(body.len() as u32);
            b.put_u32(crc32c::crc32c(&body));
            b.put_slice(&body);
            let n = check(&b).unwrap().unwrap();
            let _ = parse(&mut b, n);
        }
    }
}
