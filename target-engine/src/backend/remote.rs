//! The backend of a volume whose data is on another node. This node exports
//! the volume only through standby port groups (SPC-4 §5.16.2.4.4), which
//! refuse media access before any backend is asked; this backend is the
//! second line: whatever reaches it is refused as a standby port refuses
//! it, and it holds nothing but the size the cluster gave the volume.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{BackendError, BlockBackend};

#[derive(Debug)]
pub struct RemoteBackend {
    size: AtomicU64,
}

impl RemoteBackend {
    pub fn new(size: u64) -> Self {
        RemoteBackend { size: AtomicU64::new(size) }
    }
}

#[async_trait]
impl BlockBackend for RemoteBackend {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    async fn read(&self, _offset: u64, _len: usize) -> Result<BytesMut, BackendError> {
        Err(BackendError::Remote)
    }

    async fn write(&self, _offset: u64, _data: Bytes, _fua: bool) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    async fn flush(&self) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    async fn unmap(&self, _offset: u64, _len: u64) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    async fn write_same(&self, _offset: u64, _len: u64, _block: Bytes, _fua: bool) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    async fn replicate_state(&self, _text: Option<Bytes>) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    fn serving(&self) -> Result<(), BackendError> {
        Err(BackendError::Remote)
    }

    /// The size the cluster now gives the volume (READ CAPACITY is refused
    /// here, but MODE SENSE's block descriptor counts the blocks).
    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        self.size.fetch_max(new_size, Ordering::Relaxed);
        Ok(())
    }

    async fn allocation(&self, _offset: u64, _len: u64, _max_runs: usize) -> Result<Vec<super::Run>, BackendError> {
        Err(BackendError::Remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn everything_but_the_size_is_refused() {
        let b = RemoteBackend::new(4096);
        assert!(matches!(b.read(0, 512).await, Err(BackendError::Remote)));
        assert!(matches!(b.write(0, Bytes::from_static(&[0; 512]), true).await, Err(BackendError::Remote)));
        assert!(matches!(b.flush().await, Err(BackendError::Remote)));
        assert!(matches!(b.unmap(0, 512).await, Err(BackendError::Remote)));
        assert!(matches!(b.serving(), Err(BackendError::Remote)));
        b.resize(8192).await.unwrap();
        assert_eq!(b.size(), 8192);
    }
}
