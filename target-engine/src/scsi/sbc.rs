//! Block commands (SBC-3 §5): READ CAPACITY(10/16) (§5.16, §5.17),
//! READ(6/10/12/16) (§5.8–5.11), WRITE(6/10/12/16) (§5.32–5.35), WRITE AND
//! VERIFY(10/12/16) (§5.36–5.38), VERIFY(10/12/16) (§5.27–5.29),
//! SYNCHRONIZE CACHE(10/16) (§5.22, §5.23) and PRE-FETCH(10/16) (§5.6, §5.7);
//! WRITE ATOMIC(16) (SBC-4 §5.48) and READ DEFECT DATA(10/12) (§5.12, §5.13);
//! provisioning and COMPARE AND WRITE live in [`super::thin`].
//!
//! Durability: FUA, WRITE AND VERIFY and writes while the Caching page's WCE
//! is zero are durable before status; SYNCHRONIZE CACHE makes every earlier
//! write durable.

use bytes::Bytes;

use super::cdb::{ByteCheck, Cdb, Extent};
use super::inquiry::MAX_TRANSFER_BYTES;
use super::lu::{LogicalUnit, Reply};
use super::sense::{Field, SenseReason};
use super::spc::condition_met;
use super::thin;
use crate::backend::BackendError;

/// The host page: the granule holes are punched in.
pub(crate) const PAGE: u32 = 4096;

/// How much VERIFY without BYTCHK reads at a time.
const VERIFY_CHUNK: u64 = 1 << 20;

pub(crate) fn read_error(e: BackendError) -> SenseReason {
    match e {
        BackendError::OutOfRange { .. } => SenseReason::LbaOutOfRange,
        BackendError::ReadOnly => SenseReason::WriteProtected,
        BackendError::Io(_) => SenseReason::ReadError,
        BackendError::Resize { .. } => SenseReason::InternalFailure,
        // Initiators retry NOT READY, TRANSITIONING on another path.
        BackendError::NotServing(_) => SenseReason::AluaTransitioning,
        // The port is standby for this unit, whatever its table says.
        BackendError::Remote => SenseReason::AluaStandby,
    }
}

pub(crate) fn write_error(e: BackendError) -> SenseReason {
    match e {
        BackendError::Io(_) => SenseReason::WriteError,
        other => read_error(other),
    }
}

/// LBA OUT OF RANGE unless the whole extent lies within the unit (SBC-3 §4.5).
fn check_range(lu: &LogicalUnit, ext: &Extent) -> Result<(), SenseReason> {
    match ext.lba.checked_add(u64::from(ext.blocks)) {
        Some(end) if end <= lu.blocks() => Ok(()),
        _ => Err(SenseReason::LbaOutOfRange),
    }
}

/// Transfers longer than the Block Limits page's MAXIMUM TRANSFER LENGTH are refused.
fn check_transfer(lu: &LogicalUnit, ext: &Extent) -> Result<(), SenseReason> {
    if u64::from(ext.blocks) * u64::from(lu.spec.block_size) > u64::from(MAX_TRANSFER_BYTES) {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(ext.len_field)));
    }
    Ok(())
}

fn byte_range(lu: &LogicalUnit, ext: &Extent) -> (u64, usize) {
    let bs = u64::from(lu.spec.block_size);
    (ext.lba * bs, (u64::from(ext.blocks) * bs) as usize)
}

pub(crate) async fn flush(lu: &LogicalUnit) -> Result<(), SenseReason> {
    lu.backend.flush().await.map_err(write_error)
}

pub(crate) async fn execute(lu: &LogicalUnit, cdb: Cdb, data_out: &Bytes) -> Result<Reply, SenseReason> {
    match cdb {
        Cdb::ReadCapacity10 => {
            let last = lu.blocks().saturating_sub(1);
            let mut d = Vec::with_capacity(8);
            d.extend_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_be_bytes());
            d.extend_from_slice(&lu.spec.block_size.to_be_bytes());
            Ok(Reply::data(d, 8))
        }
        Cdb::ReadCapacity16 { alloc_len } => {
            let mut d = vec![0u8; 32];
            d[0..8].copy_from_slice(&lu.blocks().saturating_sub(1).to_be_bytes());
            d[8..12].copy_from_slice(&lu.spec.block_size.to_be_bytes());
            // No protection information. The medium's physical block is a
            // page, the unit the backends allocate, punch and cache in: a
            // 512-byte volume is 512e, with the page aligned at LBA 0.
            d[13] = physical_block_exponent(lu.spec.block_size);
            // Thin provisioned (LBPME) with unmapped blocks reading zero (LBPRZ).
            d[14] = 0x80 | 0x40;
            Ok(Reply::data(d, alloc_len))
        }
        Cdb::Read { ext, .. } => {
            check_range(lu, &ext)?;
            check_transfer(lu, &ext)?;
            if ext.blocks == 0 {
                return Ok(Reply::good());
            }
            let (offset, len) = byte_range(lu, &ext);
            let data = {
                let _io = lu.io.read().await;
                lu.backend.read(offset, len).await.map_err(read_error)?
            };
            lu.count_read(len as u64);
            Ok(Reply::bytes(data.freeze()))
        }
        Cdb::Write { ext, fua } => write(lu, &ext, fua, data_out).await,
        Cdb::WriteAtomic { ext, fua } => {
            // The whole write happens while no other command reads or writes.
            let _exclusive = lu.io.write().await;
            write_locked(lu, &ext, fua, data_out).await
        }
        Cdb::ReadDefectData { ten, list_format, alloc_len } => {
            // No defects: an empty list in the requested format (SBC-3 §5.12).
            let d = if ten { vec![0, 0x18 | list_format, 0, 0] } else { vec![0, 0x18 | list_format, 0, 0, 0, 0, 0, 0] };
            Ok(Reply::data(d, alloc_len))
        }
        Cdb::WriteAndVerify { ext, .. } => {
            // What is written is what the medium holds once it is durable,
            // so the verification (with or without BYTCHK) cannot fail.
            write(lu, &ext, true, data_out).await
        }
        Cdb::Verify { ext, bytchk } => verify(lu, &ext, bytchk, data_out).await,
        Cdb::SynchronizeCache { ext } => {
            check_range(lu, &ext)?;
            flush(lu).await?;
            Ok(Reply::good())
        }
        Cdb::PreFetch { ext, .. } => {
            check_range(lu, &ext)?;
            // A TRANSFER LENGTH of zero means "to the last logical block".
            let blocks = if ext.blocks == 0 { lu.blocks() - ext.lba } else { u64::from(ext.blocks) };
            // Our cache is the host page cache; a range up to the maximum
            // prefetch length fits in it: CONDITION MET (SBC-3 §5.6).
            if blocks * u64::from(lu.spec.block_size) <= u64::from(MAX_TRANSFER_BYTES) {
                Ok(condition_met())
            } else {
                Ok(Reply::good())
            }
        }
        Cdb::WriteSame { ext, unmap, ndob } => thin::write_same(lu, &ext, unmap, ndob, data_out).await,
        Cdb::Unmap { param_len } => thin::unmap(lu, param_len, data_out).await,
        Cdb::CompareAndWrite { ext, fua } => thin::compare_and_write(lu, &ext, fua, data_out).await,
        Cdb::OrWrite { ext, fua } => {
            check_range(lu, &ext)?;
            check_transfer(lu, &ext)?;
            thin::or_write(lu, &ext, fua, data_out).await
        }
        Cdb::GetLbaStatus { lba, alloc_len } => thin::get_lba_status(lu, lba, alloc_len).await,
        other => unreachable!("{other:?} is not a block command"),
    }
}

/// Writes the blocks the initiator actually sent: never more than the CDB
/// names, and only whole blocks of the Data-Out received (the transport
/// reports the residual).
async fn write(lu: &LogicalUnit, ext: &Extent, fua: bool, data_out: &Bytes) -> Result<Reply, SenseReason> {
    let _io = lu.io.read().await;
    write_locked(lu, ext, fua, data_out).await
}

/// [`write`] for a caller that already holds the unit's I/O lock.
async fn write_locked(lu: &LogicalUnit, ext: &Extent, fua: bool, data_out: &Bytes) -> Result<Reply, SenseReason> {
    check_range(lu, ext)?;
    check_transfer(lu, ext)?;
    let (offset, len) = byte_range(lu, ext);
    let bs = lu.spec.block_size as usize;
    let n = len.min(data_out.len() / bs * bs);
    if n == 0 {
        return Ok(Reply::good());
    }
    let durable = fua || !lu.mode().wce;
    lu.backend.write(offset, data_out.slice(..n), durable).await.map_err(write_error)?;
    lu.count_written(n as u64);
    Ok(Reply::good())
}

async fn verify(lu: &LogicalUnit, ext: &Extent, bytchk: ByteCheck, data_out: &Bytes) -> Result<Reply, SenseReason> {
    check_range(lu, ext)?;
    let (offset, len) = byte_range(lu, ext);
    let bs = lu.spec.block_size as usize;
    match bytchk {
        ByteCheck::None => {
            // Medium verification: read it all back, a chunk at a time.
            let mut pos = 0u64;
            while pos < len as u64 {
                let n = VERIFY_CHUNK.min(len as u64 - pos) as usize;
                lu.backend.read(offset + pos, n).await.map_err(read_error)?;
                pos += n as u64;
            }
            Ok(Reply::good())
        }
        ByteCheck::Each => {
            check_transfer(lu, ext)?;
            let n = len.min(data_out.len());
            let medium = lu.backend.read(offset, n).await.map_err(read_error)?;
            match medium.iter().zip(&data_out[..n]).position(|(a, b)| a != b) {
                Some(i) => Err(SenseReason::Miscompare { offset: i as u64 }),
                None => Ok(Reply::good()),
            }
        }
        ByteCheck::OneBlock => {
            if ext.blocks == 0 || data_out.len() < bs {
                return Ok(Reply::good());
            }
            let pattern = &data_out[..bs];
            let mut pos = 0usize;
            while pos < len {
                let n = (VERIFY_CHUNK as usize / bs * bs).min(len - pos);
                let medium = lu.backend.read(offset + pos as u64, n).await.map_err(read_error)?;
                for (k, block) in medium.chunks(bs).enumerate() {
                    if let Some(i) = block.iter().zip(pattern).position(|(a, b)| a != b) {
                        return Err(SenseReason::Miscompare { offset: (pos + k * bs + i) as u64 });
                    }
                }
                pos += n;
            }
            Ok(Reply::good())
        }
    }
}

/// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (SBC-3 §5.16.2): log2 of the
/// logical blocks in one page.
pub(crate) fn physical_block_exponent(block_size: u32) -> u8 {
    (PAGE / block_size).max(1).trailing_zeros() as u8
}
