//! A memory backend that can lose power (tests only): it keeps what a
//! write-back disk would have on its platters apart from what reads see, and
//! [`PowerCutBackend::power_cut`] throws away everything not yet flushed.
//!
//! A flush makes durable the writes that completed before it *started*,
//! whatever other flushes run at the same time; writes that complete while
//! it runs wait for a later one, as with `fdatasync` on a real disk.
//! Flushes are counted, can be slowed down to let writes pile up, and can be
//! made to fail; writes can be made to fail too (a failing disk).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{BackendError, BlockBackend};

#[derive(Debug, Default)]
struct Images {
    /// What reads see.
    current: Vec<u8>,
    /// What survives a power cut.
    durable: Vec<u8>,
    /// Writes not yet durable, numbered in completion order.
    pending: Vec<(u64, u64, Bytes)>,
    written: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PowerCutBackend {
    images: Mutex<Images>,
    flushes: AtomicU64,
    flush_delay_ms: AtomicU64,
    fail_next_flush: AtomicBool,
    fail_writes: AtomicBool,
}

impl PowerCutBackend {
    pub fn new(size: u64) -> Self {
        let zero = vec![0u8; size as usize];
        PowerCutBackend {
            images: Mutex::new(Images { current: zero.clone(), durable: zero, pending: Vec::new(), written: 0 }),
            flushes: AtomicU64::new(0),
            flush_delay_ms: AtomicU64::new(0),
            fail_next_flush: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
        }
    }

    fn images(&self) -> std::sync::MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Flushes started so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Each flush takes this long (between taking its writes and reporting).
    pub fn set_flush_delay(&self, d: Duration) {
        self.flush_delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// The next flush to start fails (and makes nothing durable).
    pub fn fail_next_flush(&self) {
        self.fail_next_flush.store(true, Ordering::Relaxed);
    }

    /// While `fail` holds, every write fails with an I/O error and changes nothing.
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::Relaxed);
    }

    /// Loses everything not flushed; what is left is what reads see after.
    pub fn power_cut(&self) -> Vec<u8> {
        let mut im = self.images();
        im.current = im.durable.clone();
        im.pending.clear();
        im.current.clone()
    }

    /// What would survive a power cut now.
    pub fn durable_image(&self) -> Vec<u8> {
        self.images().durable.clone()
    }
}

fn put(image: &mut [u8], offset: u64, data: &[u8]) {
    image[offset as usize..offset as usize + data.len()].copy_from_slice(data);
}

#[async_trait]
impl BlockBackend for PowerCutBackend {
    fn size(&self) -> u64 {
        self.images().current.len() as u64
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        let im = self.images();
        Ok(BytesMut::from(&im.current[offset as usize..offset as usize + len]))
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(BackendError::Io(std::io::Error::other("simulated write failure")));
        }
        let mut im = self.images();
        put(&mut im.current, offset, &data);
        if fua {
            put(&mut im.durable, offset, &data);
        } else {
            im.written += 1;
            let n = im.written;
            im.pending.push((n, offset, data));
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let fail = self.fail_next_flush.swap(false, Ordering::Relaxed);
        // What this flush covers: every write completed before it started.
        let upto = self.images().written;
        let delay = self.flush_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if fail {
            // The data stays volatile: a later flush may still save it.
            return Err(BackendError::Io(std::io::Error::other("simulated flush failure")));
        }
        let mut im = self.images();
        let covered: Vec<(u64, u64, Bytes)> = im.pending.iter().filter(|w| w.0 <= upto).cloned().collect();
        im.pending.retain(|w| w.0 > upto);
        for (_, offset, data) in covered {
            put(&mut im.durable, offset, &data);
        }
        Ok(())
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.write(offset, Bytes::from(vec![0u8; len as usize]), false).await
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        let mut im = self.images();
        let n = (new_size as usize).max(im.current.len());
        im.current.resize(n, 0);
        im.durable.resize(n, 0);
        Ok(())
    }
}
