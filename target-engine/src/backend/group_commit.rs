//! Group commit: durable writes without one flush per write.
//!
//! A write-through volume acknowledges a write only once it is on stable
//! storage (SBC-3 §4.15: with WCE zero, or FUA, the data is written to the
//! medium before GOOD). Flushing after every write would serialise the
//! volume behind its disk's cache flushes, so [`GroupCommit`] shares them:
//!
//! * a durable write is written, then waits for a flush that *began after
//!   the write completed*: the next one to start;
//! * while a flush runs, every write that completes joins the next flush,
//!   which starts as soon as the running one ends; so one flush covers every
//!   write that completed while the previous one ran;
//! * a flush that fails fails every write that waited for it (the SCSI
//!   layer answers MEDIUM ERROR, WRITE ERROR); later flushes start afresh;
//! * SYNCHRONIZE CACHE is a waiter like any other: every write completed
//!   before it is covered by the flush it waits for.
//!
//! One flush runs at a time, on a task of its own, so a waiter that goes away
//! (its command aborted) does not stop a flush others wait for. If the
//! engine stops while writes wait, a flush that never ran fails them: no
//! write is acknowledged without its flush.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::{BackendError, BlockBackend, Run};

/// The outcome of one flush: `None` while it has not ended.
type Outcome = Option<Result<(), Arc<str>>>;

/// One flush, started or to start, and the writes waiting for it.
#[derive(Debug)]
struct Flush {
    done: watch::Sender<Outcome>,
}

impl Flush {
    fn new() -> Arc<Flush> {
        Arc::new(Flush { done: watch::channel(None).0 })
    }
}

#[derive(Debug, Default)]
struct State {
    /// The flush running now.
    running: Option<Arc<Flush>>,
    /// The flush that starts when the running one ends; writes that
    /// complete while one runs wait for this one.
    next: Option<Arc<Flush>>,
    /// Flushes started since the layer was made (for tests and statistics).
    started: u64,
}

/// A backend whose durable writes and flushes share flushes of `inner`.
#[derive(Debug)]
pub struct GroupCommit {
    inner: Arc<dyn BlockBackend>,
    state: Arc<Mutex<State>>,
}

impl GroupCommit {
    pub fn new(inner: Arc<dyn BlockBackend>) -> Self {
        GroupCommit { inner, state: Arc::default() }
    }

    /// Flushes of `inner` started so far.
    pub fn flushes(&self) -> u64 {
        self.lock().started
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a flush of `inner` that began after this call has ended.
    pub async fn sync(&self) -> Result<(), BackendError> {
        let mine = {
            let mut st = self.lock();
            let flush = st.next.get_or_insert_with(Flush::new).clone();
            if st.running.is_none() {
                st.running = st.next.take();
                st.started += 1;
                tokio::spawn(run_flushes(self.inner.clone(), self.state.clone()));
            }
            flush
        };
        let mut rx = mine.done.subscribe();
        drop(mine);
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().expect("waited for Some"),
            // The flush task ended without running this flush (the runtime stopped).
            Err(_) => Err(Arc::from("the flush was never run: the engine stopped")),
        };
        outcome.map_err(|why| BackendError::Io(std::io::Error::other(why.to_string())))
    }
}

/// Runs the running flush, then the next one while writes wait for it.
async fn run_flushes(inner: Arc<dyn BlockBackend>, state: Arc<Mutex<State>>) {
    // Should this task be dropped half-way (the runtime stops), the flushes
    // it owns fail rather than leave their writes waiting for ever.
    let mut guard = FailOnDrop(Some(state.clone()));
    loop {
        let Some(flush) = state.lock().unwrap_or_else(|e| e.into_inner()).running.clone() else { break };
        let outcome = inner.flush().await.map_err(|e| Arc::from(e.to_string()));
        if let Err(why) = &outcome {
            tracing::error!("flush failed; the writes waiting for it fail: {why}");
        }
        flush.done.send_replace(Some(outcome));
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.running = st.next.take();
        if st.running.is_none() {
            break;
        }
        st.started += 1;
    }
    guard.0 = None;
}

/// Armed while the flush task runs; see [`run_flushes`].
struct FailOnDrop(Option<Arc<Mutex<State>>>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        let Some(state) = self.0.take() else { return };
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        for flush in [st.running.take(), st.next.take()].into_iter().flatten() {
            flush.done.send_replace(Some(Err(Arc::from("the flush was never run: the engine stopped"))));
        }
    }
}

#[async_trait]
impl BlockBackend for GroupCommit {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
        self.inner.read(offset, len).await
    }

    async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
        self.inner.write(offset, data, false).await?;
        if fua {
            self.sync().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        self.sync().await
    }

    async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.inner.unmap(offset, len).await
    }

    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        self.inner.resize(new_size).await
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        self.inner.allocation(offset, len, max_runs).await
    }
}

#[cfg(test)]
mod tests;
