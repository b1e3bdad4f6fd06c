//! A backend that keeps blocks in memory: tests, scratch volumes, benchmarks.
//!
//! Storage is split into fixed-size chunks allocated on first write, so a
//! large, mostly empty volume costs little; unmapping a whole chunk frees it.
//! Nothing is durable, so `flush` and FUA are no-ops.

use std::sync::RwLock;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{BackendError, BlockBackend, Run};

const CHUNK: usize = 64 * 1024;

#[derive(Debug)]
struct Inner {
    size: u64,
    chunks: Vec<Option<Box<[u8]>>>,
}

/// In-memory block store; holes read as zeros.
#[derive(Debug)]
pub struct MemoryBackend {
    inner: RwLock<Inner>,
}

fn chunk_count(size: u64) -> usize {
    size.div_ceil(CHUNK as u64) as usize
}

impl MemoryBackend {
    /// A zero-filled volume of `size` bytes.
    pub fn new(size: u64) -> Self {
        MemoryBackend { inner: RwLock::new(Inner { size, chunks: (0..chunk_count(size)).map(|_| None).collect() }) }
    }

    fn check(size: u64, offset: u64, len: u64) -> Result<(), BackendError> {
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BackendError::OutOfRange { offset, len, size }),
        }
    }

    fn read_sync(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Self::check(inner.size, offset, len as u64)?;
        let mut out = BytesMut::zeroed(len);
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let (idx, within) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = (CHUNK - within).min(len - done);
            if let Some(chunk) = &inner.chunks[idx] {
                out[done..done + n].copy_from_slice(&chunk[within..within + n]);
            }
            done += n;
        }
        Ok(out)
    }

    fn write_sync(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        Self::check(inner.size, offset, data.len() as u64)?;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let (idx, within) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = (CHUNK - within).min(data.len() - done);
            let src = &data[done..done + n];
            let slot = &mut inner.chunks[idx];
            if slot.is_none() && src.iter().all(|&b| b == 0) {
                // Writing zeros into a hole changes nothing; keep it sparse.
            } else {
                let chunk = slot.get_or_insert_with(|| vec![0u8; CHUNK].into_boxed_slice());
                chunk[within..within + n].copy_from_slice(src);
            }
            done += n;
        }
        Ok(())
    }

    fn unmap_sync(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        Self::check(inner.size, offset, len)?;
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let (idx, within) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = ((CHUNK - within) as u64).min(end - pos) as usize;
            if n == CHUNK {
                inner.chunks[idx] = None;
            } else if let Some(chunk) = &mut inner.chunks[idx] {
                chunk[within..within + n].fill(0);
            }
            pos += n as u64;
        }
        Ok(())
    }
}

#[async_trait]
impl BlockBackend for MemoryBackend {
    fn size(&self) -> u64 {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).size
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        self.read_sync(offset, len)
    }

    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), BackendError> {
        self.write_sync(offset, &data)
    }

    async fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.unmap_sync(offset, len)
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Self::check(inner.size, offset, len)?;
        let mut runs: Vec<Run> = Vec::new();
        let (mut pos, end) = (offset, offset + len);
        while pos < end {
            let idx = (pos / CHUNK as u64) as usize;
            let n = (CHUNK as u64 - pos % CHUNK as u64).min(end - pos);
            let mapped = inner.chunks[idx].is_some();
            let full = runs.len() == max_runs;
            match runs.last_mut() {
                Some(r) if r.mapped == mapped => r.len += n,
                _ if full => break,
                _ => runs.push(Run { len: n, mapped }),
            }
            pos += n;
        }
        Ok(runs)
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if new_size < inner.size {
            return Err(BackendError::Resize { requested: new_size, reason: "shrinking is not supported".into() });
        }
        // The old last chunk may be partial; its tail is already zero.
        inner.size = new_size;
        let n = chunk_count(new_size);
        inner.chunks.resize_with(n, || None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holes_read_as_zero_and_writes_round_trip() {
        let b = MemoryBackend::new(1 << 20);
        assert!(b.read(0, 4096).await.unwrap().iter().all(|&x| x == 0));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        b.write(CHUNK as u64 - 100, Bytes::from(data.clone()), false).await.unwrap();
        let back = b.read(CHUNK as u64 - 100, data.len()).await.unwrap();
        assert_eq!(&back[..], &data[..]);
    }

    #[tokio::test]
    async fn out_of_range_is_refused() {
        let b = MemoryBackend::new(8192);
        assert!(matches!(b.read(8000, 200).await, Err(BackendError::OutOfRange { .. })));
        assert!(matches!(
            b.write(u64::MAX, Bytes::from_static(b"x"), false).await,
            Err(BackendError::OutOfRange { .. })
        ));
    }

    #[tokio::test]
    async fn unmap_zeroes_partial_and_frees_whole_chunks() {
        let b = MemoryBackend::new(4 * CHUNK as u64);
        b.write(0, Bytes::from(vec![7u8; 3 * CHUNK]), false).await.unwrap();
        b.unmap(10, 2 * CHUNK as u64).await.unwrap();
        let back = b.read(0, 3 * CHUNK).await.unwrap();
        assert!(back[..10].iter().all(|&x| x == 7));
        assert!(back[10..10 + 2 * CHUNK].iter().all(|&x| x == 0));
        assert!(back[10 + 2 * CHUNK..].iter().all(|&x| x == 7));
        assert!(b.inner.read().unwrap().chunks[1].is_none());
    }

    #[tokio::test]
    async fn allocation_reports_chunks() {
        let b = MemoryBackend::new(4 * CHUNK as u64);
        b.write(CHUNK as u64, Bytes::from(vec![1u8; 10]), false).await.unwrap();
        let runs = b.allocation(0, 4 * CHUNK as u64, 8).await.unwrap();
        let c = CHUNK as u64;
        assert_eq!(
            runs,
            vec![Run { len: c, mapped: false }, Run { len: c, mapped: true }, Run { len: 2 * c, mapped: false }]
        );
        assert_eq!(b.allocation(0, 4 * c, 1).await.unwrap(), vec![Run { len: c, mapped: false }]);
    }

    #[tokio::test]
    async fn grows_but_never_shrinks() {
        let b = MemoryBackend::new(1000);
        b.write(0, Bytes::from(vec![1u8; 1000]), false).await.unwrap();
        b.resize(200_000).await.unwrap();
        assert_eq!(b.size(), 200_000);
        let back = b.read(990, 20).await.unwrap();
        assert_eq!(&back[..10], &[1u8; 10]);
        assert_eq!(&back[10..], &[0u8; 10]);
        assert!(b.resize(10).await.is_err());
    }
}
