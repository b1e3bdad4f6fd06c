//! Where blocks live.
//!
//! A backend is a flat array of bytes addressed by byte offset; the SCSI layer
//! converts LBAs. The replicated backend of a later release implements the same
//! trait, so nothing above this module knows where the bytes are stored.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

/// Why a backend operation failed. The SCSI layer maps each to a sense reason.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("access beyond the end of the backend (offset {offset}, length {len}, size {size})")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("the backend is read-only")]
    ReadOnly,
    #[error("the backend cannot grow to {requested} bytes: {reason}")]
    Resize { requested: u64, reason: String },
    /// This copy may not serve the volume now: it is not the primary, its
    /// lease ran out, or another primary took over.
    #[error("this node does not serve the volume now: {0}")]
    NotServing(&'static str),
    /// The volume's data is on another node ([`remote::RemoteBackend`]).
    #[error("the volume's data is on another node")]
    Remote,
}

/// The small set of operations every store of blocks offers.
///
/// Offsets and lengths are in bytes and always within `size()`; callers check
/// ranges before calling. Implementations keep blocking system calls off the
/// async workers.
#[async_trait]
pub trait BlockBackend: Send + Sync + std::fmt::Debug {
    /// Current size in bytes.
    fn size(&self) -> u64;

    /// Reads `len` bytes at `offset`. Holes read as zeros.
    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError>;

    /// Writes `data` at `offset`. With `fua`, the data is durable when this returns.
    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError>;

    /// Makes every completed write durable (SYNCHRONIZE CACHE).
    async fn flush(&self) -> Result<(), BackendError>;

    /// Deallocates a range; later reads of it return zeros.
    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError>;

    /// Writes `len` bytes at `offset`, each block a copy of `block`
    /// (WRITE SAME). Backends that can do better than writing the expanded
    /// data (a replicated one sends the operation) override it.
    async fn write_same(&self, offset: u64, len: u64, block: Bytes, fua: bool) -> Result<(), BackendError> {
        const CHUNK: u64 = 1 << 20;
        let per_chunk = (CHUNK / block.len().max(1) as u64).max(1) as usize;
        let mut pattern = BytesMut::with_capacity(per_chunk * block.len());
        for _ in 0..per_chunk {
            pattern.extend_from_slice(&block);
        }
        let pattern = pattern.freeze();
        let mut pos = 0u64;
        while pos < len {
            let n = (pattern.len() as u64).min(len - pos) as usize;
            self.write(offset + pos, pattern.slice(..n), fua).await?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Keeps the unit's saved state (`None`: removed) on every other copy of
    /// the volume before returning; a backend with no other copy has
    /// nothing to do.
    async fn replicate_state(&self, text: Option<Bytes>) -> Result<(), BackendError> {
        let _ = text;
        Ok(())
    }

    /// Whether this copy may serve the volume now: a replica's, or one whose
    /// primary was fenced or lost its lease, may not (`NotServing`). Checked
    /// before a change of the unit's state, which would otherwise be made
    /// here and refused on the other copies.
    fn serving(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the unit's access is changing hands here (a primary handing
    /// over, without its lease, or reconciling after a promotion): REPORT
    /// TARGET PORT GROUPS shows this node's active groups TRANSITIONING.
    fn transitioning(&self) -> bool {
        false
    }

    /// Grows the backend to `new_size` bytes (never shrinks).
    async fn resize(&self, new_size: u64) -> Result<(), BackendError>;

    /// Which parts of `len` bytes at `offset` hold data and which are holes,
    /// in order, as at most `max_runs` runs (the last may end early).
    /// Backends that cannot tell report everything as mapped.
    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        let _ = (offset, max_runs);
        Ok(vec![Run { len, mapped: true }])
    }
}

/// A stretch of a backend that is either all allocated or all a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub len: u64,
    pub mapped: bool,
}

pub mod file;
pub mod group_commit;
pub mod memory;
#[cfg(any(test, feature = "test-util"))]
pub mod power_cut;
pub mod remote;
pub mod throttle;
