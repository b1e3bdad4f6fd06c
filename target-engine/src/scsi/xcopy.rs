//! EXTENDED COPY(LID1) (SPC-4 §6.4) with block-to-block segment descriptors
//! (§6.4.5.5) between logical units this nexus can address, named by
//! identification descriptor target descriptors (§6.4.4.2, type E4h), and
//! RECEIVE COPY RESULTS (§6.18): COPY STATUS and OPERATING PARAMETERS.
//!
//! Copies run to completion before status (no background copies), so COPY
//! STATUS only ever reports finished operations; the last few list IDs per
//! nexus are remembered unless LIST ID USAGE says not to.
//!
//! The copy manager acts for the nexus that sent the command: before any
//! block moves, every source must allow that nexus to read and every
//! destination to write, exactly as a READ or WRITE from it would be
//! checked (ALUA state, persistent and SPC-2 reservations, write
//! protection), not only the unit the command was sent to. A reservation
//! another host holds ends the command with RESERVATION CONFLICT; a copy
//! target whose port group is not accessible with COPY ABORTED, COPY TARGET
//! DEVICE NOT REACHABLE (SPC-4 §5.17.4.3, errors found while processing
//! segment descriptors); a write-protected destination with DATA PROTECT.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::lu::{LogicalUnit, Reply};
use super::sbc::{read_error, write_error};
use super::sense::{Field, SenseReason};
use super::{LunMap, NexusId};

const HEADER: usize = 16;
const TARGET_DESCRIPTOR: usize = 32;
const B2B_SEGMENT: usize = 28;
const MAX_TARGETS: u16 = 2;
const MAX_SEGMENTS: u16 = 16;
const MAX_DESCRIPTOR_BYTES: u32 = 1024;
const MAX_SEGMENT_BYTES: u64 = 256 << 20;
const CHUNK: u64 = 1 << 20;
const REMEMBERED: usize = 16;

/// Finished copies whose status may still be asked for.
#[derive(Debug, Default)]
pub(crate) struct CopyLog {
    done: VecDeque<(NexusId, u8, u16, u64)>,
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// The unit an identification descriptor target descriptor names.
fn target(desc: &[u8], luns: &LunMap) -> Result<Arc<LogicalUnit>, SenseReason> {
    if desc[0] != 0xe4 {
        return Err(SenseReason::UnsupportedTargetDescriptor);
    }
    // Only block devices (peripheral device type 0) can be copied between.
    if desc[1] & 0x1f != 0 {
        return Err(SenseReason::CopyTargetNotReachable);
    }
    let designator = &desc[4..24];
    let (kind, len) = (designator[1] & 0x0f, usize::from(designator[3]));
    if kind != 0x3 || len != 16 {
        return Err(SenseReason::CopyTargetNotReachable);
    }
    let naa = &designator[4..20];
    luns.values().find(|lu| lu.spec.naa == naa).cloned().ok_or(SenseReason::CopyTargetNotReachable)
}

struct Segment {
    src: usize,
    dst: usize,
    blocks: u64,
    src_lba: u64,
    dst_lba: u64,
    /// With DC the block count is in destination blocks.
    dc: bool,
}

fn parse(data: &[u8]) -> Result<(usize, &[u8], &[u8]), SenseReason> {
    if data.len() < HEADER {
        return Err(SenseReason::ParameterListLength);
    }
    let tdl = be(&data[2..4]) as usize;
    let sdl = be(&data[8..12]) as usize;
    let inline = be(&data[12..16]) as usize;
    if HEADER + tdl + sdl + inline > data.len() || (tdl + sdl) as u64 > u64::from(MAX_DESCRIPTOR_BYTES) {
        return Err(SenseReason::ParameterListLength);
    }
    if inline != 0 {
        return Err(SenseReason::InvalidFieldInParameterList(Field::byte(12)));
    }
    if !tdl.is_multiple_of(TARGET_DESCRIPTOR) {
        return Err(SenseReason::ParameterListLength);
    }
    Ok((usize::from(data[1] >> 3 & 0x03), &data[HEADER..HEADER + tdl], &data[HEADER + tdl..HEADER + tdl + sdl]))
}

fn segments(list: &[u8]) -> Result<Vec<Segment>, SenseReason> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < list.len() {
        if list.len() - pos < 4 {
            return Err(SenseReason::ParameterListLength);
        }
        let d = &list[pos..];
        if d[0] != 0x02 {
            return Err(SenseReason::UnsupportedSegmentDescriptor);
        }
        if out.len() == usize::from(MAX_SEGMENTS) {
            return Err(SenseReason::TooManySegmentDescriptors);
        }
        let len = 4 + be(&d[2..4]) as usize;
        if len != B2B_SEGMENT {
            return Err(SenseReason::InvalidFieldInParameterList(Field::byte((HEADER + pos + 2) as u16)));
        }
        if d.len() < len {
            return Err(SenseReason::ParameterListLength);
        }
        out.push(Segment {
            src: be(&d[4..6]) as usize,
            dst: be(&d[6..8]) as usize,
            blocks: be(&d[10..12]),
            src_lba: be(&d[12..20]),
            dst_lba: be(&d[20..28]),
            dc: d[1] & 0x02 != 0,
        });
        pos += len;
    }
    Ok(out)
}

/// A copy target the nexus may not reach through its port group is not
/// reachable for the copy manager either; other refusals stand as they are.
fn reachable(access: Result<(), SenseReason>) -> Result<(), SenseReason> {
    access.map_err(|e| match e {
        SenseReason::AluaStandby | SenseReason::AluaUnavailable | SenseReason::AluaTransitioning => {
            SenseReason::CopyTargetNotReachable
        }
        other => other,
    })
}

/// Copies one segment, a chunk at a time.
async fn copy(src: &LogicalUnit, dst: &LogicalUnit, s: &Segment) -> Result<u64, SenseReason> {
    let (sbs, dbs) = (u64::from(src.spec.block_size), u64::from(dst.spec.block_size));
    let bytes = s.blocks * if s.dc { dbs } else { sbs };
    if !bytes.is_multiple_of(sbs) || !bytes.is_multiple_of(dbs) || bytes > MAX_SEGMENT_BYTES {
        return Err(SenseReason::CopyAborted);
    }
    let in_range =
        |lba: u64, bs: u64, lu: &LogicalUnit| lba.checked_add(bytes / bs).is_some_and(|end| end <= lu.blocks());
    if !in_range(s.src_lba, sbs, src) || !in_range(s.dst_lba, dbs, dst) {
        return Err(SenseReason::CopyAborted);
    }
    let durable = !dst.mode().wce;
    let mut pos = 0u64;
    while pos < bytes {
        let n = CHUNK.min(bytes - pos);
        let data = {
            let _io = src.io.read().await;
            src.backend.read(s.src_lba * sbs + pos, n as usize).await.map_err(read_error)?
        };
        let _io = dst.io.read().await;
        dst.backend.write(s.dst_lba * dbs + pos, data.freeze(), durable).await.map_err(write_error)?;
        pos += n;
    }
    src.count_read(bytes);
    dst.count_written(bytes);
    Ok(bytes)
}

pub(crate) async fn extended_copy(
    lu: &LogicalUnit,
    luns: &LunMap,
    nexus: &NexusId,
    param_len: u32,
    data_out: &Bytes,
) -> Result<Reply, SenseReason> {
    if param_len == 0 {
        return Ok(Reply::good());
    }
    let data = &data_out[..data_out.len().min(param_len as usize)];
    let list_id = data.first().copied().unwrap_or(0);
    let (usage, targets, segs) = parse(data)?;
    if targets.len() / TARGET_DESCRIPTOR > usize::from(MAX_TARGETS) {
        return Err(SenseReason::TooManyTargetDescriptors);
    }
    let units: Vec<Arc<LogicalUnit>> =
        targets.chunks_exact(TARGET_DESCRIPTOR).map(|d| target(d, luns)).collect::<Result<_, _>>()?;
    let segments = segments(segs)?;
    let mut pairs = Vec::with_capacity(segments.len());
    for s in &segments {
        let (Some(src), Some(dst)) = (units.get(s.src), units.get(s.dst)) else {
            return Err(SenseReason::CopyTargetNotReachable);
        };
        reachable(src.check_medium_access(nexus, false))?;
        reachable(dst.check_medium_access(nexus, true))?;
        pairs.push((src, dst, s));
    }
    let mut done = (0u16, 0u64);
    for (src, dst, s) in pairs {
        done.1 += copy(src, dst, s).await?;
        done.0 += 1;
    }
    // LIST ID USAGE 00b and 10b keep the list ID for COPY STATUS; 11b does not.
    if usage != 0b11 {
        let mut st = lu.state();
        let log = &mut st.xcopy.done;
        log.retain(|(n, id, _, _)| !(n == nexus && *id == list_id));
        if log.len() == REMEMBERED {
            log.pop_front();
        }
        log.push_back((nexus.clone(), list_id, done.0, done.1));
    }
    Ok(Reply::good())
}

pub(crate) fn receive_copy_results(
    lu: &LogicalUnit,
    nexus: &NexusId,
    operating_parameters: bool,
    list_id: u8,
    alloc_len: u32,
) -> Result<Reply, SenseReason> {
    if operating_parameters {
        let mut d = vec![0u8; 44];
        d[4] = 0x01; // SNLID: list IDs are honoured
        d[8..10].copy_from_slice(&MAX_TARGETS.to_be_bytes());
        d[10..12].copy_from_slice(&MAX_SEGMENTS.to_be_bytes());
        d[12..16].copy_from_slice(&MAX_DESCRIPTOR_BYTES.to_be_bytes());
        d[16..20].copy_from_slice(&(MAX_SEGMENT_BYTES as u32).to_be_bytes());
        d[34..36].copy_from_slice(&1u16.to_be_bytes()); // TOTAL CONCURRENT COPIES
        d[36] = 1; // MAXIMUM CONCURRENT COPIES
        d.extend_from_slice(&[0x02, 0xe4]); // block-to-block, identification descriptor
        d[43] = 2;
        let n = (d.len() - 4) as u32;
        d[..4].copy_from_slice(&n.to_be_bytes());
        return Ok(Reply::data(d, alloc_len));
    }
    let st = lu.state();
    let Some(&(_, _, segments, bytes)) = st.xcopy.done.iter().find(|(n, id, _, _)| n == nexus && *id == list_id) else {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(2)));
    };
    let mut d = vec![0u8; 12];
    d[3] = 8;
    d[4] = 0x01; // completed, no errors
    d[5..7].copy_from_slice(&segments.to_be_bytes());
    d[7] = 0xf1; // TRANSFER COUNT in KiB
    d[8..12].copy_from_slice(&u32::try_from(bytes / 1024).unwrap_or(u32::MAX).to_be_bytes());
    Ok(Reply::data(d, alloc_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::testkit::{lun_map, ready_nexus, run};
    use crate::scsi::ScsiStatus;

    fn target_descriptor(naa: &[u8; 16]) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = 0xe4;
        d[4..8].copy_from_slice(&[0x01, 0x03, 0x00, 0x10]);
        d[8..24].copy_from_slice(naa);
        d[30] = 2; // block length 512
        d
    }

    fn b2b(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
        let mut d = vec![0x02, 0, 0, 24];
        d.extend_from_slice(&src.to_be_bytes());
        d.extend_from_slice(&dst.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&blocks.to_be_bytes());
        d.extend_from_slice(&src_lba.to_be_bytes());
        d.extend_from_slice(&dst_lba.to_be_bytes());
        d
    }

    fn list(list_id: u8, targets: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let t: Vec<u8> = targets.concat();
        let s: Vec<u8> = segs.concat();
        let mut d = vec![0u8; 16];
        d[0] = list_id;
        d[2..4].copy_from_slice(&(t.len() as u16).to_be_bytes());
        d[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
        d.extend(t);
        d.extend(s);
        d
    }

    fn xcopy_cdb(len: usize) -> Vec<u8> {
        let mut c = vec![0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        c
    }

    #[tokio::test]
    async fn copies_blocks_and_reports_status() {
        let (luns, lu) = lun_map(512, 4096, false);
        let n = ready_nexus(&luns, 1).await;
        let mut w = vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 4, 0];
        assert_eq!(run(&luns, &n, 0, &w, &[b'A'; 2048]).await.status, ScsiStatus::Good);
        let pl = list(7, &[target_descriptor(&lu.spec.naa)], &[b2b(0, 0, 4, 0, 4000)]);
        let r = run(&luns, &n, 0, &xcopy_cdb(pl.len()), &pl).await;
        assert_eq!(r.status, ScsiStatus::Good, "{:?}", r.sense);
        w[0] = 0x28;
        w[2..6].copy_from_slice(&4000u32.to_be_bytes());
        let back = run(&luns, &n, 0, &w, &[]).await;
        assert!(back.data_in.iter().all(|&b| b == b'A'));
        let cs = run(&luns, &n, 0, &[0x84, 0x00, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!(&cs.data_in[4..7], &[0x01, 0, 1]);
        let none = run(&luns, &n, 0, &[0x84, 0x00, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!((none.sense[2], none.sense[12]), (0x05, 0x24));
        let op = run(&luns, &n, 0, &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[]).await;
        assert_eq!(&op.data_in[8..12], &[0, 2, 0, 16]);
    }

    #[test]
    fn descriptor_errors() {
        let naa = [0x60u8; 16];
        let (luns, _) = lun_map(512, 64, false);
        let bad_type = list(
            1,
            &[{
                let mut t = target_descriptor(&naa);
                t[0] = 0xe0;
                t
            }],
            &[b2b(0, 0, 1, 0, 1)],
        );
        let (_, targets, _) = parse(&bad_type).unwrap();
        assert!(matches!(target(targets, &luns), Err(SenseReason::UnsupportedTargetDescriptor)));
        assert!(matches!(target(&target_descriptor(&naa), &luns), Err(SenseReason::CopyTargetNotReachable)));
        let too_many: Vec<Vec<u8>> = (0..17).map(|_| b2b(0, 0, 1, 0, 1)).collect();
        assert!(matches!(segments(&too_many.concat()), Err(SenseReason::TooManySegmentDescriptors)));
        let mut stream = b2b(0, 0, 1, 0, 1);
        stream[0] = 0x0a;
        assert!(matches!(segments(&stream), Err(SenseReason::UnsupportedSegmentDescriptor)));
        let full = list(1, &[target_descriptor(&naa)], &[b2b(0, 0, 1, 0, 1)]);
        assert!(matches!(parse(&full[..full.len() - 1]), Err(SenseReason::ParameterListLength)));
    }
}
