//! IOPS and throughput limits of a volume: a token-bucket wrapper around any
//! backend. Each read or write takes one operation token and one token per
//! byte; when a bucket is empty the request waits (it is delayed, never
//! failed), so an initiator sees a slower disk, not errors. Buckets hold one
//! second of credit, so short bursts above the limit pass unhindered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{BackendError, BlockBackend, Run};

/// Limits per second; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub iops: Option<u64>,
    pub bytes_per_second: Option<u64>,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: a debt later requests wait for.
    tokens: f64,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    ops: Bucket,
    bytes: Bucket,
    refilled: Instant,
}

/// The shared limiter of one volume; limits can change while it runs.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
    /// False when both limits are off: requests pass without taking the lock.
    limited: AtomicBool,
}

fn is_limited(l: &Limits) -> bool {
    l.iops.is_some_and(|v| v > 0) || l.bytes_per_second.is_some_and(|v| v > 0)
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        let full = |rate: Option<u64>| Bucket { tokens: rate.unwrap_or(0) as f64 };
        Throttle {
            state: Mutex::new(State {
                limits,
                ops: full(limits.iops),
                bytes: full(limits.bytes_per_second),
                refilled: Instant::now(),
            }),
            limited: AtomicBool::new(is_limited(&limits)),
        }
    }

    pub fn limits(&self) -> Limits {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).limits
    }

    pub fn set_limits(&self, limits: Limits) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.limits = limits;
        self.limited.store(is_limited(&limits), Ordering::Release);
        st.ops.tokens = st.ops.tokens.min(limits.iops.unwrap_or(0) as f64);
        st.bytes.tokens = st.bytes.tokens.min(limits.bytes_per_second.unwrap_or(0) as f64);
    }

    /// Takes the tokens for one request of `bytes` and says how long to wait
    /// before running it.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        let elapsed = now.saturating_duration_since(st.refilled).as_secs_f64();
        st.refilled = now;
        let limits = st.limits;
        let mut wait: f64 = 0.0;
        for (bucket, rate, need) in
            [(&mut st.ops, limits.iops, 1.0), (&mut st.bytes, limits.bytes_per_second, bytes as f64)]
        {
            let Some(rate) = rate.filter(|r| *r > 0) else { continue };
            let rate = rate as f64;
            bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
            bucket.tokens -= need;
            if bucket.tokens < 0.0 {
                wait = wait.max(-bucket.tokens / rate);
            }
        }
        Duration::from_secs_f64(wait)
    }

    /// Waits until `bytes` may pass.
    pub async fn admit(&self, bytes: u64) {
        if !self.limited.load(Ordering::Acquire) {
            return;
        }
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A backend whose reads and writes pass through a [`Throttle`].
#[derive(Debug)]
pub struct ThrottledBackend {
    inner: Arc<dyn BlockBackend>,
    throttle: Arc<Throttle>,
}

impl ThrottledBackend {
    pub fn new(inner: Arc<dyn BlockBackend>, throttle: Arc<Throttle>) -> Self {
        ThrottledBackend { inner, throttle }
    }
}

#[async_trait]
impl BlockBackend for ThrottledBackend {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        self.throttle.admit(len as u64).await;
        self.inner.read(offset, len).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        self.throttle.admit(data.len() as u64).await;
        self.inner.write(offset, data, fua).await
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.inner.flush().await
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.throttle.admit(0).await;
        self.inner.unmap(offset, len).await
    }

    async fn write_same(&self, offset: u64, len: u64, block: Bytes, fua: bool) -> Result<(), BackendError> {
        self.throttle.admit(len).await;
        self.inner.write_same(offset, len, block, fua).await
    }

    async fn replicate_state(&self, text: Option<Bytes>) -> Result<(), BackendError> {
        self.inner.replicate_state(text).await
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        self.inner.resize(new_size).await
    }

    fn serving(&self) -> Result<(), BackendError> {
        self.inner.serving()
    }

    fn transitioning(&self) -> bool {
        self.inner.transitioning()
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        self.inner.allocation(offset, len, max_runs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn unlimited_never_waits() {
        let t = Throttle::new(Limits::default());
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(t.reserve(1 << 20, now), Duration::ZERO);
        }
    }

    #[test]
    fn iops_limit_spaces_requests_after_one_second_of_burst() {
        let t = Throttle::new(Limits { iops: Some(100), bytes_per_second: None });
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(t.reserve(4096, now), Duration::ZERO, "the first second's credit");
        }
        assert_eq!(t.reserve(4096, now), MS(10), "then one request per 10 ms");
        assert_eq!(t.reserve(4096, now), MS(20));
        // Time pays the debt back.
        assert_eq!(t.reserve(4096, now + MS(1000)), Duration::ZERO);
    }

    #[test]
    fn throughput_limit_delays_in_proportion_to_size() {
        let t = Throttle::new(Limits { iops: None, bytes_per_second: Some(1_000_000) });
        let now = Instant::now();
        assert_eq!(t.reserve(1_000_000, now), Duration::ZERO);
        assert_eq!(t.reserve(500_000, now), MS(500));
        assert_eq!(t.reserve(500_000, now), MS(1000));
    }

    #[test]
    fn limits_change_live() {
        let t = Throttle::new(Limits { iops: Some(10), bytes_per_second: None });
        let now = Instant::now();
        for _ in 0..10 {
            t.reserve(0, now);
        }
        assert!(t.reserve(0, now) > Duration::ZERO);
        t.set_limits(Limits::default());
        assert_eq!(t.reserve(0, now), Duration::ZERO);
        assert_eq!(t.limits(), Limits::default());
    }

    #[tokio::test]
    async fn the_wrapper_passes_data_through() {
        let inner: Arc<dyn BlockBackend> = Arc::new(super::super::memory::MemoryBackend::new(1 << 20));
        let b =
            ThrottledBackend::new(inner, Arc::new(Throttle::new(Limits { iops: Some(1000), bytes_per_second: None })));
        b.write(4096, Bytes::from(vec![7u8; 512]), false).await.unwrap();
        assert_eq!(&b.read(4096, 512).await.unwrap()[..], &[7u8; 512][..]);
        assert_eq!(b.size(), 1 << 20);
    }
}
