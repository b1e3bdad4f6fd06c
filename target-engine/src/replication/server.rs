//! The replica's side: a listener on the node's replication address that
//! takes streams from primaries, checks each one's hello against the
//! placement this node has applied for the volume, and applies what comes
//! to the local copy (FUA writes, flushes, copies and unit state durably)
//! before answering.
//!
//! Bounds: a connection that has not proven who it is yet holds one of
//! [`OPENINGS`] places (at most [`OPENINGS_PER_ADDRESS`] per address), for
//! at most [`HELLO`] per step, and may send frames of at most
//! `frame::MAX_OPENING_BODY` bytes; only then does it take one of the
//! [`MAX_STREAMS`] places of streams, so strangers who connect and never
//! finish fill only the openings, and of their own addresses first. A
//! stream has [`IN_FLIGHT`] bytes of operations being applied at once
//! (reading stops while it is spent). A stream is accepted only from a
//! primary that proves who it is (in a cluster node, the node's
//! [`StreamGuard`]: mutual TLS with the nodes' certificates; on its own,
//! the replication key, [`super::auth`]), and only for the epoch and
//! primary this node has applied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::auth::{self, Key, Side};
use super::backend::apply;
use super::core::dirty::DirtyMap;
use super::core::ops::{Epoch, Op, ReplicaId};
use super::core::primary::{FromReplica, ToReplica};
use super::core::replica::{Replica, ReplicaAction};
use super::frame::{self, Frame, Refusal};
use super::guard::StreamGuard;
use crate::backend::BlockBackend;
use crate::scsi::{LogicalUnit, WriteCache};

/// Streams accepted at once.
pub const MAX_STREAMS: usize = 64;
/// Connections not yet through their opening (TLS, hello, proof) at once.
pub const OPENINGS: usize = 32;
/// ... of them from one address.
pub const OPENINGS_PER_ADDRESS: usize = 4;
/// Time a new stream has to say hello.
pub const HELLO: Duration = Duration::from_secs(5);
/// Bytes of operations being applied at once per stream.
pub const IN_FLIGHT: usize = 256 << 20;
/// A write of answers that makes no progress for this long ends the stream.
const WRITE: Duration = Duration::from_secs(5);

/// One volume this node keeps a replica of.
#[derive(Debug)]
pub struct ReplicaVolume {
    pub name: String,
    core: Mutex<Replica>,
    local: Arc<dyn BlockBackend>,
    /// The unit this node exports the volume as (on a standby path), which
    /// takes the unit state the primary sends.
    unit: Mutex<Weak<LogicalUnit>>,
    state_file: Option<PathBuf>,
    write_cache: Mutex<WriteCache>,
    /// SYNCHRONIZE CACHEs from the primary made durable here.
    flushes: std::sync::atomic::AtomicU64,
    routes: Mutex<Routes>,
}

/// Where answers go and what budget work holds, for the whole volume: work
/// that came on one stream may be started by another stream's work
/// finishing ([`Replica`]'s sequencer spans streams), so neither can belong
/// to the task that happens to run it.
#[derive(Debug, Default)]
struct Routes {
    /// The answer channel of each open stream, by the replica's number.
    answers: HashMap<u64, mpsc::UnboundedSender<Frame>>,
    /// The stream budget each piece of work holds until it is applied, by id.
    held: HashMap<u64, OwnedSemaphorePermit>,
}

impl ReplicaVolume {
    /// `settled`: this copy was the primary until now and handed over
    /// with everything settled (see [`Replica::settled`]).
    pub fn new(
        name: String,
        epoch: Epoch,
        primary: ReplicaId,
        local: Arc<dyn BlockBackend>,
        state_file: Option<PathBuf>,
        write_cache: WriteCache,
        settled: bool,
    ) -> Arc<Self> {
        let core = if settled { Replica::settled(epoch, primary) } else { Replica::new(epoch, primary) };
        Arc::new(ReplicaVolume {
            name,
            core: Mutex::new(core),
            local,
            unit: Mutex::new(Weak::new()),
            state_file,
            write_cache: Mutex::new(write_cache),
            flushes: Default::default(),
            routes: Mutex::default(),
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A primary's hello, checked against the placement applied here: the
    /// stream's number and this copy's activity log. Its answers go to `tx`.
    fn open_stream(
        &self,
        epoch: Epoch,
        primary: ReplicaId,
        tx: mpsc::UnboundedSender<Frame>,
    ) -> Result<(u64, Option<DirtyMap>), FromReplica> {
        let mut core = self.core();
        let stream = core.hello(epoch, primary)?;
        self.routes().answers.insert(stream, tx);
        Ok((stream, core.unsettled()))
    }

    /// The answer to a ping on a stream a primary opened at `epoch`: a pong
    /// while that placement stands here; once this node has applied a newer
    /// one, `Err` with that epoch, and the stream ends. So a primary fenced
    /// by a failover hears it within a ping even while it sends nothing
    /// else (issue 29, finding 6).
    fn ping(&self, epoch: Epoch, n: u64) -> Result<Frame, Frame> {
        let current = self.core().epoch();
        if current > epoch {
            return Err(Frame::FromReplica(FromReplica::StaleEpoch { current }));
        }
        Ok(Frame::Pong(n))
    }

    /// Stream `stream` ended; its work already started carries on, unanswered.
    fn close_stream(&self, stream: u64) {
        self.core().closed(stream);
        self.routes().answers.remove(&stream);
    }

    /// One frame of stream `stream`, which holds `permit` of its budget until
    /// the work it makes is applied. False if the stream is to close.
    fn take(self: &Arc<Self>, stream: u64, msg: ToReplica, permit: OwnedSemaphorePermit) -> bool {
        let actions = {
            let mut core = self.core();
            let before = core.last_id();
            let actions = core.receive(stream, msg);
            // Kept before the core is let go: another stream's work may
            // start this one as soon as it is.
            if core.last_id() != before {
                self.routes().held.insert(core.last_id(), permit);
            }
            actions
        };
        self.run(actions)
    }

    /// Does what the replica's state machine asked; false if the stream
    /// that brought it is to close.
    fn run(self: &Arc<Self>, actions: Vec<ReplicaAction>) -> bool {
        let mut open = true;
        for a in actions {
            match a {
                ReplicaAction::Send { stream, msg } => {
                    if let Some(tx) = self.routes().answers.get(&stream) {
                        let _ = tx.send(Frame::FromReplica(msg));
                    }
                }
                ReplicaAction::Disconnect => open = false,
                work => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let next = if let ReplicaAction::Verify { id, offset, len, crc } = work {
                            let same = me.matches(offset, len, crc).await;
                            me.routes().held.remove(&id);
                            me.core().verified(id, same)
                        } else {
                            let id = match &work {
                                ReplicaAction::Apply { id, .. } | ReplicaAction::WriteCopy { id, .. } => *id,
                                _ => unreachable!("only work is spawned"),
                            };
                            let result = me.apply(&work).await;
                            me.routes().held.remove(&id);
                            me.core().applied(id, result)
                        };
                        let _ = me.run(next);
                    });
                }
            }
        }
        open
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_unit(&self, lu: &Arc<LogicalUnit>) {
        *self.unit.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(lu);
    }

    pub fn epoch(&self) -> Epoch {
        self.core().epoch()
    }

    /// Whether the local region's CRC32C is `crc`.
    async fn matches(&self, offset: u64, len: u64, crc: u32) -> Result<bool, String> {
        let data = self.local.read(offset, len as usize).await.map_err(|e| e.to_string())?;
        Ok(crc32c::crc32c(&data) == crc)
    }

    /// SYNCHRONIZE CACHEs from the primary made durable on this copy.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This copy is no longer kept as a replica of the placement it had:
    /// it refuses everything, answering with `next`'s epoch (the placement
    /// that replaced it), or with the highest epoch if the volume is gone.
    pub fn retire(&self, next: Option<(Epoch, ReplicaId)>) {
        let epoch = next.map_or(Epoch(u64::MAX), |(epoch, _)| epoch);
        // No primary's id is ReplicaId::MAX: nothing is taken any more.
        let _ = self.core().set_placement(epoch, ReplicaId::MAX);
        tracing::info!(volume = %self.name, %epoch, "replica: this copy is retired");
    }

    /// This copy becomes the primary at `epoch`: it takes nothing more from
    /// the old primary, what it was applying lands first (within 5 s), and
    /// its activity log says where the copies may differ (`None`: not known).
    pub async fn hand_over(&self, epoch: Epoch) -> Option<DirtyMap> {
        let _ = self.core().set_placement(epoch, ReplicaId::MAX);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.core().in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(volume = %self.name, "operations of the old primary are still being applied here");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.core().unsettled()
    }

    /// The placement this node applied moved on: the old primary's stream
    /// ends at its next frame, and only the new primary is accepted.
    pub fn set_placement(&self, epoch: Epoch, primary: ReplicaId) {
        let _ = self.core().set_placement(epoch, primary);
        tracing::info!(volume = %self.name, %epoch, primary, "replica: new placement applied");
    }

    /// Applies one operation or copy, durably where it asks, and the unit
    /// state to the state file and the unit.
    async fn apply(&self, work: &ReplicaAction) -> Result<(), String> {
        match work {
            ReplicaAction::Apply { op: Op::UnitState { text }, .. } => {
                let text = text.as_ref().map(|t| String::from_utf8_lossy(t).into_owned());
                if let Some(path) = self.state_file.clone() {
                    let t = text.clone();
                    tokio::task::spawn_blocking(move || crate::scsi::save_file(&path, t.as_deref()))
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| e.to_string())?;
                }
                if let Some(lu) = self.unit.lock().unwrap_or_else(|e| e.into_inner()).upgrade() {
                    let policy = *self.write_cache.lock().unwrap_or_else(|e| e.into_inner());
                    lu.take_replicated_state(text.as_deref(), policy).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            // Grown through the unit, so that its nexuses here hear of it
            // (CAPACITY DATA HAS CHANGED) as the primary's do.
            ReplicaAction::Apply { op: Op::Resize { size }, .. } if *size > self.local.size() => {
                let unit = self.unit.lock().unwrap_or_else(|e| e.into_inner()).upgrade();
                match unit {
                    Some(lu) => lu.resize(*size).await.map_err(|e| e.to_string()),
                    None => self.local.resize(*size).await.map_err(|e| e.to_string()),
                }
            }
            ReplicaAction::Apply { op, .. } => {
                apply(&*self.local, op.clone()).await.map_err(|e| e.to_string())?;
                if matches!(op, Op::Flush) {
                    self.flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            }
            ReplicaAction::WriteCopy { offset, data, .. } => {
                // A copy that missed its volume's growth grows to what the
                // primary sends (the last region ends at the volume's end).
                let end = offset.saturating_add(data.len() as u64);
                if end > self.local.size() {
                    self.local.resize(end).await.map_err(|e| e.to_string())?;
                }
                // Copies are durable before the region counts as copied.
                self.local.write(*offset, data.clone(), true).await.map_err(|e| e.to_string())
            }
            ReplicaAction::Send { .. } | ReplicaAction::Disconnect | ReplicaAction::Verify { .. } => Ok(()),
        }
    }
}

/// Places of connections not yet through their opening, at most
/// [`OPENINGS`] in all and [`OPENINGS_PER_ADDRESS`] per address.
#[derive(Debug, Default)]
struct Openings {
    by_address: Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// What the other end of a stream has proven before its hello.
#[derive(Debug, Clone, Copy)]
enum Proven {
    /// It is this node (the node's guard: mutual TLS with certificates).
    Node(ReplicaId),
    /// It holds the replication key (TLS keyed by it).
    Key,
    /// Nothing yet: it proves the key after its hello.
    NotYet,
}

/// One connection's place while it opens; given back when dropped.
#[derive(Debug)]
pub(crate) struct Opening {
    openings: Arc<Openings>,
    address: std::net::IpAddr,
}

impl Openings {
    fn take(self: &Arc<Self>, address: std::net::IpAddr) -> Option<Opening> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let all: usize = by_address.values().sum();
        let here = by_address.entry(address).or_default();
        if all >= OPENINGS || *here >= OPENINGS_PER_ADDRESS {
            return None;
        }
        *here += 1;
        Some(Opening { openings: self.clone(), address })
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut by_address = self.openings.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// The volumes this node keeps replicas of, and its replication listener.
#[derive(Debug)]
pub struct ReplicaNode {
    pub cluster: String,
    pub me: ReplicaId,
    key: Key,
    /// The node's guard: streams run inside it, and the key is not used.
    guard: Option<Arc<dyn StreamGuard>>,
    volumes: RwLock<HashMap<String, Arc<ReplicaVolume>>>,
    streams: Arc<Semaphore>,
    openings: Arc<Openings>,
    /// Set when the node stops: every stream ends.
    stop: watch::Sender<bool>,
}

impl ReplicaNode {
    pub fn new(cluster: String, me: ReplicaId, key: Key, guard: Option<Arc<dyn StreamGuard>>) -> Arc<Self> {
        Arc::new(ReplicaNode {
            cluster,
            me,
            key,
            guard,
            volumes: RwLock::default(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            openings: Arc::default(),
            stop: watch::channel(false).0,
        })
    }

    /// Ends every stream (the listener is stopped by its owner).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The volumes replicated here, replaced as a whole.
    pub fn set_volumes(&self, volumes: HashMap<String, Arc<ReplicaVolume>>) {
        *self.volumes.write().unwrap_or_else(|e| e.into_inner()) = volumes;
    }

    pub fn volume(&self, name: &str) -> Option<Arc<ReplicaVolume>> {
        self.volumes.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Listens on `addr` until the returned task is aborted.
    pub async fn listen(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, "replication: listening");
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((sock, peer)) => {
                        let Some(opening) = me.openings.take(peer.ip()) else {
                            tracing::warn!(%peer, "replication: too many connections opening, from there or at all; refusing one");
                            continue;
                        };
                        let me = me.clone();
                        tokio::spawn(async move {
                            if let Err(why) = me.serve(sock, opening).await {
                                tracing::info!(%peer, "replication stream ended: {why}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("replication: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok((bound, task))
    }

    async fn serve(&self, sock: TcpStream, opening: Opening) -> Result<(), String> {
        let _ = sock.set_nodelay(true);
        match &self.guard {
            Some(guard) => {
                let (stream, peer) = tokio::time::timeout(HELLO, guard.accept(sock))
                    .await
                    .map_err(|_| "the connection was not secured in time".to_string())??;
                let (rd, wr) = tokio::io::split(stream);
                let proven = match peer {
                    Some(node) => Proven::Node(node),
                    None => Proven::Key,
                };
                self.serve_stream(rd, wr, proven, opening).await
            }
            None => {
                let (rd, wr) = sock.into_split();
                self.serve_stream(rd, wr, Proven::NotYet, opening).await
            }
        }
    }

    /// One stream from its hello.
    async fn serve_stream<R, W>(&self, mut rd: R, mut wr: W, proven: Proven, opening: Opening) -> Result<(), String>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let hello =
            tokio::time::timeout(HELLO, frame::read_at_most(&mut rd, &mut buf, "primary", frame::MAX_OPENING_BODY))
                .await
                .map_err(|_| "no hello".to_string())??;
        let Frame::Hello { cluster, volume, epoch, primary, replica, nonce: primary_nonce } = hello else {
            return Err("the first frame is not a hello".into());
        };
        let answer = |f: Frame| {
            let mut out = BytesMut::new();
            frame::encode(&f, &mut out);
            out
        };
        match proven {
            // The guard proved who the other end is: the primary the hello names, or no one.
            Proven::Node(peer) if peer != primary => {
                let _ = send(&mut wr, &answer(Frame::Refused(Refusal::Unauthenticated))).await;
                return Err(format!("hello for {volume:?} as primary {primary} from node {peer}: refused"));
            }
            Proven::Node(_) | Proven::Key => {}
            Proven::NotYet => {
                let fields = (cluster.as_str(), volume.as_str(), epoch, primary, replica);
                self.prove_key(&mut rd, &mut wr, &mut buf, fields, primary_nonce).await?
            }
        }
        // Proven: from here on it holds a stream's place, not an opening's.
        let Ok(_place) = self.streams.clone().try_acquire_owned() else {
            return Err(format!("{MAX_STREAMS} streams are open already; refused one for {volume:?}"));
        };
        drop(opening);
        let vol = self.volume(&volume).filter(|_| cluster == self.cluster && replica == self.me);
        let Some(vol) = vol else {
            let _ = send(&mut wr, &answer(Frame::Refused(Refusal::UnknownVolume))).await;
            return Err(format!("hello for {volume:?} (replica {replica} of {cluster:?}): not kept here"));
        };
        let (tx, rx) = mpsc::unbounded_channel::<Frame>();
        let (stream, unsettled) = match vol.open_stream(epoch, primary, tx.clone()) {
            Ok(s) => s,
            Err(FromReplica::StaleEpoch { current }) => {
                let _ = send(&mut wr, &answer(Frame::Refused(Refusal::StaleEpoch(current)))).await;
                return Err(format!("{volume}: refused primary {primary} at {epoch}, this node has applied {current}"));
            }
            Err(other) => return Err(format!("{other:?}")),
        };
        // Answers wait in the channel until the hello is answered.
        if let Err(e) = send(&mut wr, &answer(Frame::HelloOk { unsettled })).await {
            vol.close_stream(stream);
            return Err(e.to_string());
        }
        tracing::info!(volume = %vol.name, primary, %epoch, "replication stream accepted");

        // A primary that stops reading is dropped.
        let writer = tokio::spawn(frame::write_all(rx, wr, WRITE));
        let budget = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut stop = self.stop.subscribe();
        let result = loop {
            let f = tokio::select! {
                f = frame::read(&mut rd, &mut buf, "primary") => match f {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                },
                _ = stop.wait_for(|s| *s) => break Err("this node stops".into()),
            };
            let msg = match f {
                Frame::ToReplica(msg) => msg,
                Frame::Ping(n) => match vol.ping(epoch, n) {
                    Ok(pong) => {
                        let _ = tx.send(pong);
                        continue;
                    }
                    Err(stale) => {
                        let _ = tx.send(stale);
                        break Ok(());
                    }
                },
                other => break Err(format!("unexpected frame {other:?}")),
            };
            let bytes = match &msg {
                ToReplica::Op { op, .. } => op.payload(),
                ToReplica::Copy { data, .. } => data.len(),
                // The region is read to compare it.
                ToReplica::Verify { len, .. } => *len as usize,
            }
            .clamp(1, IN_FLIGHT) as u32;
            // Reading stops while the stream's budget is spent.
            let Ok(permit) = budget.clone().acquire_many_owned(bytes).await else { break Ok(()) };
            if !vol.take(stream, msg, permit) {
                break Ok(());
            }
        };
        vol.close_stream(stream);
        drop(tx);
        let _ = writer.await;
        result
    }

    /// The key-file exchange (the engine on its own): this end proves it
    /// holds the key, then the primary must.
    async fn prove_key<R, W>(
        &self,
        rd: &mut R,
        wr: &mut W,
        buf: &mut BytesMut,
        (cluster, volume, epoch, primary, replica): (&str, &str, Epoch, ReplicaId, ReplicaId),
        primary_nonce: [u8; auth::NONCE],
    ) -> Result<(), String>
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let replica_nonce = auth::nonce();
        let exchange = auth::Exchange {
            cluster,
            volume,
            epoch: epoch.0,
            primary,
            replica,
            primary_nonce: &primary_nonce,
            replica_nonce: &replica_nonce,
        };
        let encoded = |f: Frame| {
            let mut out = BytesMut::new();
            frame::encode(&f, &mut out);
            out
        };
        let challenge = Frame::Challenge { nonce: replica_nonce, proof: exchange.proof(&self.key, Side::Replica) };
        send(wr, &encoded(challenge)).await.map_err(|e| e.to_string())?;
        let proof = tokio::time::timeout(HELLO, frame::read_at_most(rd, buf, "primary", frame::MAX_OPENING_BODY))
            .await
            .map_err(|_| "no proof after the hello".to_string())??;
        let proven = matches!(&proof, Frame::Proof(p) if exchange.verify(&self.key, Side::Primary, p));
        if !proven {
            let _ = send(wr, &encoded(Frame::Refused(Refusal::Unauthenticated))).await;
            return Err(format!(
                "hello for {volume:?} from primary {primary}: it did not prove that it holds the replication key"
            ));
        }
        Ok(())
    }
}

/// Writes one frame of the opening exchange and flushes it.
async fn send<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    wr.write_all(bytes).await?;
    wr.flush().await
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use bytes::{Bytes, BytesMut};
    use tokio::sync::Notify;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::BackendError;

    /// A copy whose writes wait until they are let go.
    #[derive(Debug)]
    struct Gated {
        inner: MemoryBackend,
        gate: Notify,
    }

    #[async_trait]
    impl BlockBackend for Gated {
        fn size(&self) -> u64 {
            self.inner.size()
        }
        async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BackendError> {
            self.inner.read(offset, len).await
        }
        async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BackendError> {
            self.gate.notified().await;
            self.inner.write(offset, data, fua).await
        }
        async fn flush(&self) -> Result<(), BackendError> {
            self.inner.flush().await
        }
        async fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
            self.inner.unmap(offset, len).await
        }
        async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
            self.inner.resize(new_size).await
        }
    }

    #[test]
    fn a_ping_from_a_primary_whose_placement_was_replaced_is_answered_with_the_newer_epoch() {
        let local = Arc::new(MemoryBackend::new(1 << 20));
        let vol = ReplicaVolume::new("v".into(), Epoch(1), 2, local, None, WriteCache::default(), false);
        let (tx, _rx) = mpsc::unbounded_channel();
        let _ = vol.open_stream(Epoch(1), 2, tx).unwrap();
        assert_eq!(vol.ping(Epoch(1), 5), Ok(Frame::Pong(5)));
        vol.set_placement(Epoch(2), 3);
        assert_eq!(vol.ping(Epoch(1), 6), Err(Frame::FromReplica(FromReplica::StaleEpoch { current: Epoch(2) })));
        assert_eq!(vol.ping(Epoch(2), 7), Ok(Frame::Pong(7)), "the new primary's stream");
    }

    fn permit(budget: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        budget.clone().try_acquire_many_owned(1).unwrap()
    }

    /// The driver side of `Replica`'s cross-stream test: a late write of
    /// the old stream, then the new stream's overlapping copy. The copy is
    /// answered on the new stream, and no budget is kept once all is done.
    #[tokio::test]
    async fn a_copy_released_by_the_old_streams_write_is_answered_on_the_new_stream() {
        let local = Arc::new(Gated { inner: MemoryBackend::new(1 << 20), gate: Notify::new() });
        let vol = ReplicaVolume::new("v".into(), Epoch(1), 2, local.clone(), None, WriteCache::default(), false);
        let budget = Arc::new(Semaphore::new(8));
        let (old_tx, mut old_rx) = mpsc::unbounded_channel();
        let (old, _) = vol.open_stream(Epoch(1), 2, old_tx).unwrap();
        let late = ToReplica::Op {
            seq: 7,
            epoch: Epoch(1),
            settled: 1,
            op: Op::Write { offset: 0, data: Bytes::from_static(b"late"), fua: true },
        };
        assert!(vol.take(old, late, permit(&budget)));
        let (new_tx, mut new_rx) = mpsc::unbounded_channel();
        let (new, _) = vol.open_stream(Epoch(1), 2, new_tx).unwrap();
        let copy = ToReplica::Copy { seq: 9, epoch: Epoch(1), offset: 0, data: Bytes::from(vec![5u8; 4096]) };
        assert!(vol.take(new, copy, permit(&budget)));
        vol.close_stream(old);
        assert_eq!(vol.routes().answers.len(), 1, "a closed stream's route goes with it");
        assert_eq!(budget.available_permits(), 6, "both hold their budget");

        local.gate.notify_one(); // the old stream's write lands
        tokio::task::yield_now().await;
        local.gate.notify_one(); // then the copy
        let answer = tokio::time::timeout(Duration::from_secs(5), new_rx.recv()).await.expect("the copy is answered");
        assert_eq!(answer, Some(Frame::FromReplica(FromReplica::Done { seq: 9 })));
        assert!(old_rx.try_recv().is_err(), "nothing goes to the closed stream");
        assert_eq!(budget.available_permits(), 8, "no budget is kept");
        assert_eq!(&local.inner.read(0, 4).await.unwrap()[..], &[5u8; 4][..]);
    }
}
