//! Logical block provisioning and the atomic commands (SBC-3 §4.7):
//! WRITE SAME(10/16) (§5.41, §5.42), UNMAP (§5.28), GET LBA STATUS
//! (§5.5), and the read-modify-write commands COMPARE AND WRITE (§5.2) and
//! ORWRITE(16) (§5.14).
//!
//! Units are thin (provisioning type 2): UNMAP and WRITE SAME with UNMAP
//! deallocate, and deallocated blocks read as zeros (LBPRZ=1), which both
//! backends guarantee. WRITE SAME with UNMAP deallocates whatever the
//! Data-Out block holds, as SBC-3 §4.7.3.4 allows and initiators (libiscsi's
//! WriteSame*.Unmap* tests) expect.

use bytes::Bytes;

use super::cdb::Extent;
use super::lu::{LogicalUnit, Reply};
use super::sbc::{read_error, write_error};
use super::sense::{Field, SenseReason};

/// Block Limits: MAXIMUM WRITE SAME LENGTH, in bytes.
pub(crate) const MAX_WRITE_SAME_BYTES: u64 = 16 << 20;
/// Block Limits: MAXIMUM UNMAP LBA COUNT, in bytes.
pub(crate) const MAX_UNMAP_BYTES: u64 = 512 << 20;
/// Block Limits: MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
pub(crate) const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// Block Limits: MAXIMUM COMPARE AND WRITE LENGTH, in blocks.
pub(crate) const MAX_COMPARE_AND_WRITE: u8 = 255;
/// GET LBA STATUS looks this far ahead at most.
const LBA_STATUS_WINDOW: u64 = 1 << 30;

fn durable(lu: &LogicalUnit, fua: bool) -> bool {
    fua || !lu.mode().wce
}

pub(crate) async fn write_same(
    lu: &LogicalUnit,
    ext: &Extent,
    unmap: bool,
    ndob: bool,
    data_out: &Bytes,
) -> Result<Reply, SenseReason> {
    let bs = u64::from(lu.spec.block_size);
    let capacity = lu.blocks();
    if ext.lba > capacity {
        return Err(SenseReason::LbaOutOfRange);
    }
    let blocks = if ext.blocks == 0 { capacity - ext.lba } else { u64::from(ext.blocks) };
    if ext.lba + blocks > capacity {
        return Err(SenseReason::LbaOutOfRange);
    }
    if blocks * bs > MAX_WRITE_SAME_BYTES {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(ext.len_field)));
    }
    // The Data-Out buffer of WRITE SAME is exactly one logical block, or
    // nothing with NDOB (SBC-3 §5.42), which stands for a block of zeros.
    let expected = if ndob { 0 } else { bs };
    if data_out.len() as u64 != expected {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(ext.len_field)));
    }
    let zeros;
    let data_out = if ndob {
        zeros = Bytes::from(vec![0u8; bs as usize]);
        &zeros
    } else {
        data_out
    };
    if blocks == 0 {
        return Ok(Reply::good());
    }
    let (offset, len) = (ext.lba * bs, blocks * bs);
    let _io = lu.io.read().await;
    if unmap {
        lu.backend.unmap(offset, len).await.map_err(write_error)?;
        return Ok(Reply::good());
    }
    // One block and a length: the backend expands it, or sends it on as it is.
    lu.backend.write_same(offset, len, data_out.clone(), durable(lu, false)).await.map_err(write_error)?;
    lu.count_written(len);
    Ok(Reply::good())
}

pub(crate) async fn unmap(lu: &LogicalUnit, param_len: u32, data_out: &Bytes) -> Result<Reply, SenseReason> {
    if param_len == 0 {
        return Ok(Reply::good());
    }
    let data = &data_out[..data_out.len().min(param_len as usize)];
    if data.len() < 8 {
        return Err(SenseReason::ParameterListLength);
    }
    let bdl = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let descriptors: Vec<&[u8]> = data[8..].chunks_exact(16).take(bdl / 16).collect();
    if descriptors.len() > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(SenseReason::InvalidFieldInParameterList(Field::byte(2)));
    }
    let bs = u64::from(lu.spec.block_size);
    let capacity = lu.blocks();
    let mut ranges = Vec::with_capacity(descriptors.len());
    for (i, d) in descriptors.iter().enumerate() {
        let lba = u64::from_be_bytes(d[0..8].try_into().expect("8 bytes"));
        let n = u64::from(u32::from_be_bytes(d[8..12].try_into().expect("4 bytes")));
        match lba.checked_add(n) {
            Some(end) if end <= capacity => {}
            _ => return Err(SenseReason::LbaOutOfRange),
        }
        if n * bs > MAX_UNMAP_BYTES {
            return Err(SenseReason::InvalidFieldInParameterList(Field::byte((8 + 16 * i + 8) as u16)));
        }
        if n > 0 {
            ranges.push((lba * bs, n * bs));
        }
    }
    let _io = lu.io.read().await;
    for (offset, len) in ranges {
        lu.backend.unmap(offset, len).await.map_err(write_error)?;
    }
    Ok(Reply::good())
}

/// One LBA status descriptor's range and whether it is mapped.
fn descriptor(out: &mut Vec<u8>, lba: u64, blocks: u64, mapped: bool) {
    out.extend_from_slice(&lba.to_be_bytes());
    out.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
    out.push(if mapped { 0 } else { 1 });
    out.extend_from_slice(&[0; 3]);
}

pub(crate) async fn get_lba_status(lu: &LogicalUnit, lba: u64, alloc_len: u32) -> Result<Reply, SenseReason> {
    let capacity = lu.blocks();
    if lba >= capacity {
        return Err(SenseReason::LbaOutOfRange);
    }
    let bs = u64::from(lu.spec.block_size);
    let max = (alloc_len.saturating_sub(8) / 16).clamp(1, 64) as usize;
    let len = ((capacity - lba) * bs).min(LBA_STATUS_WINDOW);
    // Ask for one run more than needed so the last reported one is complete.
    let runs = lu.backend.allocation(lba * bs, len, max + 1).await.map_err(read_error)?;
    // Runs are in bytes; a block holding any data counts as mapped.
    let mut blocks: Vec<(u64, u64, bool)> = Vec::new();
    let (mut pos, mut next_lba) = (lba * bs, lba);
    for r in runs {
        let end = pos + r.len;
        let end_lba = if r.mapped { end.div_ceil(bs) } else { end / bs };
        pos = end;
        if end_lba <= next_lba {
            continue;
        }
        match blocks.last_mut() {
            Some(last) if last.2 == r.mapped => last.1 += end_lba - next_lba,
            _ => blocks.push((next_lba, end_lba - next_lba, r.mapped)),
        }
        next_lba = end_lba;
    }
    blocks.truncate(max);
    let mut d = vec![0u8; 8];
    for (start, n, mapped) in blocks {
        descriptor(&mut d, start, n, mapped);
    }
    let n = (d.len() - 4) as u32;
    d[..4].copy_from_slice(&n.to_be_bytes());
    Ok(Reply::data(d, alloc_len))
}

/// Compares the medium with the first half of Data-Out and, if they match,
/// writes the second half; no other command touches the blocks in between.
pub(crate) async fn compare_and_write(
    lu: &LogicalUnit,
    ext: &Extent,
    fua: bool,
    data_out: &Bytes,
) -> Result<Reply, SenseReason> {
    if ext.lba.checked_add(u64::from(ext.blocks)).is_none_or(|end| end > lu.blocks()) {
        return Err(SenseReason::LbaOutOfRange);
    }
    if ext.blocks > u32::from(MAX_COMPARE_AND_WRITE) {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(ext.len_field)));
    }
    let bs = u64::from(lu.spec.block_size);
    let len = (u64::from(ext.blocks) * bs) as usize;
    if data_out.len() != 2 * len {
        // Verify and write data must both be there, whole.
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(ext.len_field)));
    }
    if ext.blocks == 0 {
        return Ok(Reply::good());
    }
    let _exclusive = lu.io.write().await;
    let medium = lu.backend.read(ext.lba * bs, len).await.map_err(read_error)?;
    if let Some(i) = medium.iter().zip(&data_out[..len]).position(|(a, b)| a != b) {
        return Err(SenseReason::Miscompare { offset: i as u64 });
    }
    lu.backend.write(ext.lba * bs, data_out.slice(len..), durable(lu, fua)).await.map_err(write_error)?;
    lu.count_written(len as u64);
    Ok(Reply::good())
}

/// ORs the whole blocks of Data-Out received into the medium, with no other
/// command touching them in between. Range and length are checked by the caller.
pub(crate) async fn or_write(
    lu: &LogicalUnit,
    ext: &Extent,
    fua: bool,
    data_out: &Bytes,
) -> Result<Reply, SenseReason> {
    let bs = lu.spec.block_size as usize;
    let n = (ext.blocks as usize * bs).min(data_out.len() / bs * bs);
    if n == 0 {
        return Ok(Reply::good());
    }
    let offset = ext.lba * bs as u64;
    let _exclusive = lu.io.write().await;
    let mut medium = lu.backend.read(offset, n).await.map_err(read_error)?;
    for (m, d) in medium.iter_mut().zip(&data_out[..n]) {
        *m |= d;
    }
    lu.backend.write(offset, medium.freeze(), durable(lu, fua)).await.map_err(write_error)?;
    lu.count_written(n as u64);
    Ok(Reply::good())
}
