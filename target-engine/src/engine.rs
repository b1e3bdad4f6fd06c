//! The live engine: applies an [`EngineConfig`] and keeps running what did
//! not change.
//!
//! `apply` prepares everything that can fail (validation, opening new
//! backends, binding new portals) before it changes anything, so a refused
//! configuration leaves the running one untouched.
//!
//! ```no_run
//! # async fn demo() -> Result<(), target_engine::EngineError> {
//! use target_engine::{Engine, EngineConfig};
//! let engine = Engine::new(); // cheap to clone, Send + Sync
//! let config = EngineConfig::from_toml(&std::fs::read_to_string("engine.toml").unwrap())?;
//! engine.apply(config).await?; // again with a new config to reconcile live
//! for s in engine.sessions() {
//!     println!("{} from {} on {} (TSIH {})", s.initiator, s.address, s.target, s.tsih);
//! }
//! for v in engine.volume_stats().await {
//!     println!("{}: {} commands, {} bytes read", v.volume, v.counters.commands, v.counters.bytes_read);
//! }
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::backend::throttle::{Throttle, ThrottledBackend};
use crate::backend::{
    file::FileBackend, group_commit::GroupCommit, memory::MemoryBackend, remote::RemoteBackend, BackendError,
    BlockBackend,
};
use crate::config::{AluaState, BackendKind, ConfigError, EngineConfig, VolumeConfig, WriteCache};
use crate::iscsi::name;
use crate::iscsi::registry::{AclEntry, Catalog, Registry, TargetEntry};
use crate::portal::Portal;
use crate::replication::config::ReplicationNode;
use crate::replication::control::{ControlPlane, Placement};
use crate::replication::server::ReplicaNode;
use crate::replication::volumes::{self, Copy};
use crate::scsi::{LogicalUnit, LuCounters, LuSpec, LunMap, ReservationStatus};

pub use crate::iscsi::registry::SessionInfo;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("volume {volume:?}: {source}")]
    Backend { volume: String, source: BackendError },
    #[error("volume {0:?} cannot shrink")]
    Shrink(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("volume {volume:?}: cannot load its saved state (reservations, mode parameters): {source}")]
    Reservations { volume: String, source: std::io::Error },
    #[error("no target {0:?}")]
    UnknownTarget(String),
    #[error("target {target:?} has no LUN {lun}")]
    UnknownLun { target: String, lun: u64 },
    #[error("volume {volume:?}: {why}")]
    Replication { volume: String, why: String },
    #[error("cannot listen for replication on {addr}: {source}")]
    ReplicationBind { addr: SocketAddr, source: std::io::Error },
    #[error("replication: {0}")]
    ReplicationKey(String),
}

/// A replicated volume as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationStatus {
    pub volume: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    pub epoch: u64,
    /// On the primary: writes wait for lack of in-sync copies.
    pub suspended: bool,
    /// On the primary: each replica, its state and resync progress.
    pub replicas: Vec<ReplicaStatus>,
    /// On a replica: the primary's SYNCHRONIZE CACHEs made durable here.
    pub flushes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node: u32,
    /// `in-sync`, `failing`, `out-of-sync`, `resyncing` or `catching-up`.
    pub state: String,
    pub copied_bytes: u64,
    pub left_bytes: u64,
    /// Regions a full resync found equal there by checksum, not sent.
    pub matched_bytes: u64,
    /// While resyncing: bytes copied a second so far.
    pub resync_rate: u64,
}

/// Per-volume activity for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStats {
    pub volume: String,
    pub size: u64,
    pub counters: LuCounters,
}

#[derive(Debug, Default)]
struct State {
    config: EngineConfig,
    volumes: HashMap<String, (VolumeConfig, Arc<LogicalUnit>)>,
    /// The IOPS/throughput limiter in front of each volume's backend.
    throttles: HashMap<String, Arc<Throttle>>,
    portals: HashMap<SocketAddr, Portal>,
    relative_ports: HashMap<String, u16>,
    /// This node in replication, if any volume is replicated.
    replication: Option<ReplicationRuntime>,
    /// Replicated volumes as this node keeps them.
    copies: HashMap<String, Copy>,
    /// A configuration was applied: volumes opened from now on are opened
    /// while the node runs, not at its start.
    started: bool,
}

/// The replica side's listener and the control plane of `portico engine`.
#[derive(Debug)]
struct ReplicationRuntime {
    config: ReplicationNode,
    node: Arc<ReplicaNode>,
    /// What streams run inside (none: plain TCP with the key proven).
    guard: Option<Arc<dyn crate::replication::guard::StreamGuard>>,
    bound: SocketAddr,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for ReplicationRuntime {
    fn drop(&mut self) {
        self.listener.abort();
        self.node.stop();
    }
}

#[derive(Debug)]
struct Inner {
    registry: Arc<Registry>,
    state: tokio::sync::Mutex<State>,
    placement: ControlPlane,
    /// Where units send reservation commands while this node does not serve
    /// their volume (`portico serve`; see `scsi::forward`).
    forwarder: std::sync::OnceLock<Arc<dyn crate::scsi::forward::UnitForwarder>>,
    /// What replication streams run inside (`portico serve`: mutual TLS
    /// with the nodes' certificates; see `replication::guard`).
    stream_guard: std::sync::OnceLock<Arc<dyn crate::replication::guard::StreamGuard>>,
    /// What fault tests put under replicated copies instead of their files
    /// (set only through `Engine::replace_local_copies`, with `test-util`).
    local_copies: std::sync::OnceLock<LocalCopies>,
}

/// Given a replicated volume's name and the local copy opened from its
/// file, the backend this node keeps the copy on instead.
pub type ReplaceCopy = dyn Fn(&str, Arc<dyn BlockBackend>) -> Arc<dyn BlockBackend> + Send + Sync;

/// See [`ReplaceCopy`].
#[derive(Clone)]
pub struct LocalCopies(pub Arc<ReplaceCopy>);

impl std::fmt::Debug for LocalCopies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCopies")
    }
}

/// The engine handle: cheap to clone, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a running volume can be kept (possibly grown) for a new config.
/// `me` is this node in replication.
fn same_volume(a: &VolumeConfig, b: &VolumeConfig, me: Option<u32>) -> bool {
    a.backend == b.backend
        && a.path == b.path
        && a.block_size == b.block_size
        && a.read_only == b.read_only
        && a.naa() == b.naa()
        && a.serial() == b.serial()
        && a.reservations == b.reservations
        && a.state_path() == b.state_path()
        && same_placement(a, b, me)
}

/// A new placement (another primary, epoch or copies) opens the volume
/// anew, except on a node that stays a replica: its copy is kept and takes
/// the new placement, so that work still being applied for the old primary
/// stays ordered before the new primary's (and the old primary is fenced).
/// A primary keeps its copy when only the replicas' in-sync marks differ:
/// it read them when it opened at this epoch and has made every mark since
/// (with `portico serve` the cluster's state then shows its own marks).
fn same_placement(a: &VolumeConfig, b: &VolumeConfig, me: Option<u32>) -> bool {
    use crate::replication::config::Role;
    match (&a.replication, &b.replication, me) {
        (x, y, _) if x == y => true,
        (Some(x), Some(y), Some(me)) => match (x.role(me), y.role(me)) {
            (Ok(Role::Replica), Ok(Role::Replica)) => true,
            (Ok(Role::Primary), Ok(Role::Primary)) => x.without_marks() == y.without_marks(),
            _ => false,
        },
        _ => false,
    }
}

/// How long a primary reopened by a change of its placement has to drain.
const HAND_OVER: std::time::Duration = std::time::Duration::from_secs(5);

/// Primaries demoted for a change that was not applied in the end: they
/// serve again.
struct ResumeUnlessApplied(Vec<Arc<crate::replication::backend::PrimaryVolume>>);

impl Drop for ResumeUnlessApplied {
    fn drop(&mut self) {
        for v in self.0.drain(..) {
            v.resume();
        }
    }
}

/// A volume opened for this node: its unit, its limiter and, if it is
/// replicated, this node's copy.
type Opened = (Arc<LogicalUnit>, Arc<Throttle>, Option<Copy>);

/// `succession`: what this node's copy was until now.
#[allow(clippy::too_many_arguments)]
fn open_volume(
    v: &VolumeConfig,
    replication: Option<&ReplicationNode>,
    guard: Option<&Arc<dyn crate::replication::guard::StreamGuard>>,
    placement: &ControlPlane,
    warm: bool,
    succession: volumes::Succession,
    local_copies: Option<&LocalCopies>,
) -> Result<Opened, EngineError> {
    let mut copy = None;
    let backend: Arc<dyn BlockBackend> = match v.backend {
        BackendKind::Memory => Arc::new(MemoryBackend::new(v.size.0)),
        BackendKind::Remote => Arc::new(RemoteBackend::new(v.size.0)),
        BackendKind::File => {
            let path = v.path.as_ref().expect("validated: file volumes have a path");
            let file = FileBackend::open(path, v.size.0, v.read_only)
                .map_err(|source| EngineError::Backend { volume: v.name.clone(), source })?;
            // Durable writes share their flushes (write-through at speed).
            let local: Arc<dyn BlockBackend> = Arc::new(GroupCommit::new(Arc::new(file)));
            match (&v.replication, replication) {
                (Some(p), Some(node)) => {
                    let local = match local_copies {
                        Some(replace) => (replace.0)(&v.name, local),
                        None => local,
                    };
                    let (backend, c) = volumes::open(
                        &v.name,
                        path,
                        p,
                        (node, guard),
                        local,
                        placement,
                        v.state_path(),
                        v.write_cache,
                        succession,
                    )
                    .map_err(|why| EngineError::Replication { volume: v.name.clone(), why })?;
                    copy = Some(c);
                    backend
                }
                _ => local,
            }
        }
    };
    let throttle = Arc::new(Throttle::new(v.limits()));
    let backend: Arc<dyn BlockBackend> = Arc::new(ThrottledBackend::new(backend, throttle.clone()));
    let spec = LuSpec {
        name: v.name.clone(),
        naa: v.naa(),
        serial: v.serial(),
        block_size: v.block_size,
        read_only: v.read_only,
        reservations: v.reservations,
        remote: v.backend == BackendKind::Remote,
    };
    let lu = LogicalUnit::new(spec, backend);
    let state_error = |source| EngineError::Reservations { volume: v.name.clone(), source };
    if warm {
        lu.reopen_state(v.state_path(), v.write_cache).map_err(state_error)?;
    } else {
        lu.open_state(v.state_path(), v.write_cache).map_err(state_error)?;
    }
    match &copy {
        Some(Copy::Replica(r)) => r.set_unit(&lu),
        Some(Copy::Primary { volume, .. }) => {
            volume.set_unit_state(lu.saved_state().map_err(state_error)?.map(bytes::Bytes::from))
        }
        None => {}
    }
    Ok((lu, throttle, copy))
}

impl Engine {
    pub fn new() -> Self {
        Engine {
            inner: Arc::new(Inner {
                registry: Registry::new(),
                state: Default::default(),
                placement: ControlPlane::default(),
                forwarder: std::sync::OnceLock::new(),
                stream_guard: std::sync::OnceLock::new(),
                local_copies: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Puts the cluster's control plane over this node's own marks of
    /// replicas (`portico serve`); set once, before the first `apply`.
    /// False if one was set already.
    pub fn set_control_plane(&self, above: Arc<dyn Placement>) -> bool {
        self.inner.placement.set_above(above)
    }

    /// Sends reservation commands that arrive through a port of a volume
    /// this node does not serve to the node that does (`portico serve`);
    /// set once, before the first `apply`. False if one was set already.
    pub fn set_unit_forwarder(&self, forwarder: Arc<dyn crate::scsi::forward::UnitForwarder>) -> bool {
        self.inner.forwarder.set(forwarder).is_ok()
    }

    /// Runs every replication stream inside `guard`, which says who is at
    /// the other end, instead of proving the replication key (`portico
    /// serve`); set once, before the first `apply`. False if one was set
    /// already.
    pub fn set_stream_guard(&self, guard: Arc<dyn crate::replication::guard::StreamGuard>) -> bool {
        self.inner.stream_guard.set(guard).is_ok()
    }

    /// Fault tests: every replicated copy this node opens from now on is
    /// kept on what `replace` gives for it (a backend that fails or loses
    /// power) instead of its file. Set once; false if set already.
    #[cfg(feature = "test-util")]
    pub fn replace_local_copies(&self, replace: LocalCopies) -> bool {
        self.inner.local_copies.set(replace).is_ok()
    }

    /// Runs a command forwarded from another node's port
    /// (`scsi::forward`) on this node's unit of the volume.
    pub async fn run_forwarded(
        &self,
        command: crate::scsi::forward::ForwardedCommand,
    ) -> crate::scsi::forward::ForwardedOutcome {
        let lu = self.unit_of(&command.volume).await;
        // Not here (any more): the sender's placement is behind or ahead.
        let lu = lu.ok_or(crate::scsi::SenseReason::AluaTransitioning)?;
        let id = crate::scsi::NexusId::from(&command.nexus);
        let reply = lu.run_forwarded(id, &command.cdb, bytes::Bytes::from(command.data)).await?;
        Ok(crate::scsi::forward::ForwardedReply { status: reply.status as u8, data: reply.data.to_vec() })
    }

    /// A LOGICAL UNIT RESET came through another node's port for `volume`:
    /// every nexus of this node's unit gets the unit attention, and their
    /// tasks on it are aborted. False if no unit of the volume is open here.
    pub async fn reset_unit_from_elsewhere(&self, volume: &str) -> bool {
        let Some(lu) = self.unit_of(volume).await else { return false };
        lu.reset_from_elsewhere();
        true
    }

    async fn unit_of(&self, volume: &str) -> Option<Arc<crate::scsi::LogicalUnit>> {
        self.inner.state.lock().await.volumes.get(volume).map(|(_, lu)| lu.clone())
    }

    /// Reconciles the running engine to `config`, or changes nothing and
    /// returns why not.
    pub async fn apply(&self, config: EngineConfig) -> Result<(), EngineError> {
        let mut st = self.inner.state.lock().await;
        self.apply_locked(&mut st, config).await
    }

    /// Sets the asymmetric access state of `target`'s port group for its
    /// LUN `lun` (SPC-4 §5.16.2.6, an implicit transition), as a change of
    /// the configuration: every nexus of the unit then gets ASYMMETRIC
    /// ACCESS STATE CHANGED, and sessions carry on.
    pub async fn set_alua_state(&self, target: &str, lun: u64, state: AluaState) -> Result<(), EngineError> {
        let mut st = self.inner.state.lock().await;
        let mut config = st.config.clone();
        let t = config.targets.iter_mut().find(|t| t.iqn == target);
        let t = t.ok_or_else(|| EngineError::UnknownTarget(target.to_string()))?;
        if !t.lun_map().contains_key(&lun) {
            return Err(EngineError::UnknownLun { target: target.to_string(), lun });
        }
        t.alua.retain(|k, _| k.trim().parse() != Ok(lun));
        t.alua.insert(lun.to_string(), state);
        self.apply_locked(&mut st, config).await
    }

    async fn apply_locked(&self, st: &mut State, config: EngineConfig) -> Result<(), EngineError> {
        config.validate()?;

        // 0. Replication: this node's listener, bound before anything changes.
        // A node that changes its id in replication opens its copies anew.
        let me = config
            .replication
            .as_ref()
            .filter(|r| st.replication.as_ref().is_some_and(|rt| rt.config.node == r.node))
            .map(|r| r.node);
        let new_runtime = match &config.replication {
            Some(r) if st.replication.as_ref().is_none_or(|rt| rt.config != *r) => {
                // Free the address first if only the listener moves.
                if st.replication.as_ref().is_some_and(|rt| rt.config.listen == r.listen) {
                    st.replication = None;
                }
                let key = crate::replication::auth::Key::load(&r.key_file).map_err(EngineError::ReplicationKey)?;
                let guard: Option<Arc<dyn crate::replication::guard::StreamGuard>> =
                    match (self.inner.stream_guard.get(), r.transport) {
                        (Some(injected), _) => Some(injected.clone()),
                        (None, crate::replication::config::Transport::Tls) => Some(Arc::new(
                            crate::replication::keyed_tls::KeyedTls::new(key.clone())
                                .map_err(EngineError::ReplicationKey)?,
                        )),
                        (None, crate::replication::config::Transport::Plain) => None,
                    };
                let node = ReplicaNode::new(r.cluster.clone(), r.node, key, guard.clone());
                let (bound, listener) = node
                    .listen(r.listen)
                    .await
                    .map_err(|source| EngineError::ReplicationBind { addr: r.listen, source })?;
                Some(ReplicationRuntime { config: r.clone(), node, guard, bound, listener })
            }
            _ => None,
        };

        // 1. Volumes: keep, grow, replace or open.
        let mut resume_if_not_applied = ResumeUnlessApplied(Vec::new());
        let mut volumes = HashMap::new();
        let mut throttles = HashMap::new();
        let mut copies = HashMap::new();
        let mut grow = Vec::new();
        let mut opened = HashSet::new();
        for v in &config.volumes {
            match st.volumes.get(&v.name) {
                Some((old, lu)) if same_volume(old, v, me) => {
                    let cur = lu.backend().size();
                    if v.size.0 < cur {
                        return Err(EngineError::Shrink(v.name.clone()));
                    }
                    if v.size.0 > cur {
                        grow.push((lu.clone(), v.size.0, v.name.clone()));
                    }
                    volumes.insert(v.name.clone(), (v.clone(), lu.clone()));
                    if let Some(t) = st.throttles.get(&v.name) {
                        throttles.insert(v.name.clone(), t.clone());
                    }
                }
                _ => {
                    // A primary reopened here (its placement changed) hands
                    // over to the new one first: what it admitted completes
                    // and is settled on the replicas, so that the new one
                    // opens clean (nothing to compare) and nothing in flight
                    // is left waiting on streams that close.
                    let mut handed_over = false;
                    if let Some(Copy::Primary { volume: old, .. }) = st.copies.get(&v.name) {
                        let demoted = old.demote(HAND_OVER).await;
                        resume_if_not_applied.0.push(old.clone());
                        handed_over = old.handed_over();
                        if demoted.drained && demoted.settled || handed_over {
                            self.inner.placement.local().closed_cleanly(&v.name, demoted.epoch, old.instance());
                        }
                    }
                    let node = new_runtime.as_ref().map(|r| &r.config).or(config.replication.as_ref());
                    // A replica that becomes the primary takes nothing more
                    // from the old one, and brings its activity log.
                    let promoted = match (st.copies.get(&v.name), &v.replication, node) {
                        (Some(Copy::Replica(r)), Some(p), Some(n))
                            if matches!(p.role(n.node), Ok(crate::replication::config::Role::Primary)) =>
                        {
                            Some(r.hand_over(p.epoch()).await)
                        }
                        _ => None,
                    };
                    let succession = match promoted {
                        Some(log) => volumes::Succession::PromotedReplica(log),
                        None if handed_over => volumes::Succession::HandedOver,
                        None if st.copies.contains_key(&v.name) => volumes::Succession::Unknown,
                        None => volumes::Succession::FirstOpen,
                    };
                    let guard = new_runtime.as_ref().or(st.replication.as_ref()).and_then(|rt| rt.guard.as_ref());
                    let (lu, throttle, copy) = open_volume(
                        v,
                        node,
                        guard,
                        &self.inner.placement,
                        st.started,
                        succession,
                        self.inner.local_copies.get(),
                    )?;
                    if let Some((_, old)) = st.volumes.get(&v.name).filter(|(_, old)| old.spec.naa == lu.spec.naa) {
                        lu.carry_over_from(old);
                    }
                    if let Some(forwarder) = self.inner.forwarder.get() {
                        lu.forward_to_serving_node(forwarder.clone());
                    }
                    volumes.insert(v.name.clone(), (v.clone(), lu));
                    throttles.insert(v.name.clone(), throttle);
                    opened.insert(v.name.clone());
                    if let Some(c) = copy {
                        copies.insert(v.name.clone(), c);
                    }
                }
            }
        }

        // 2. Portals: bind new addresses before anything is committed.
        let wanted: Vec<SocketAddr> = {
            let mut w: Vec<SocketAddr> = config.targets.iter().flat_map(|t| t.portals.iter().copied()).collect();
            w.sort();
            w.dedup();
            w
        };
        // Portals that go away are closed first so that a new address on the
        // same port (0.0.0.0:3260 -> 127.0.0.1:3260) can bind; on failure
        // they are reopened and nothing else changes.
        let removed: Vec<SocketAddr> = st.portals.keys().filter(|a| !wanted.contains(a)).copied().collect();
        let mut closed: Vec<(SocketAddr, SocketAddr)> = Vec::new();
        for a in &removed {
            if let Some(p) = st.portals.remove(a) {
                let bound = p.bound;
                p.close().await;
                closed.push((*a, bound));
            }
        }
        let mut new_portals = HashMap::new();
        for a in &wanted {
            if !st.portals.contains_key(a) {
                match Portal::open(*a, self.inner.registry.clone()).await {
                    Ok(p) => {
                        new_portals.insert(*a, p);
                    }
                    Err(source) => {
                        for (_, p) in new_portals.drain() {
                            p.close().await;
                        }
                        for (addr, bound) in closed.drain(..) {
                            match Portal::open(bound, self.inner.registry.clone()).await {
                                Ok(mut p) => {
                                    p.configured = addr;
                                    st.portals.insert(addr, p);
                                }
                                Err(e) => {
                                    tracing::error!(portal = %addr, "cannot reopen portal after a refused apply: {e}")
                                }
                            }
                        }
                        return Err(EngineError::Bind { addr: *a, source });
                    }
                }
            }
        }

        // 3. Commit: grow volumes (raises CAPACITY DATA HAS CHANGED), apply
        // write-cache policies (MODE PARAMETERS CHANGED where WCE changes).
        for (lu, size, name) in grow {
            lu.resize(size).await.map_err(|source| EngineError::Backend { volume: name, source })?;
        }
        for v in &config.volumes {
            if let (false, Some((_, lu))) = (opened.contains(&v.name), volumes.get(&v.name)) {
                lu.set_write_cache(v.write_cache).await;
            }
        }
        st.portals.extend(new_portals);
        for v in &config.volumes {
            if let Some(t) = throttles.get(&v.name) {
                t.set_limits(v.limits());
            }
        }
        // Replicated volumes kept as they were keep their copies; the replica
        // side takes streams for exactly the replicas this node now keeps.
        for (name, (v, _)) in volumes.iter().filter(|(n, _)| !opened.contains(*n)) {
            if let Some(c) = st.copies.remove(name) {
                if let (Copy::Replica(r), Some(p)) = (&c, &v.replication) {
                    r.set_placement(p.epoch(), p.primary);
                }
                copies.insert(name.clone(), c);
            }
        }
        for (name, (v, _)) in &volumes {
            let in_sync_here = match (&v.replication, config.replication.as_ref().map(|r| r.node), &v.path) {
                (Some(p), Some(me), Some(_)) => p.primary != me && p.replicas.iter().any(|r| r.node == me && r.in_sync),
                _ => false,
            };
            if let (true, Some(path)) = (in_sync_here, &v.path) {
                self.inner.placement.in_sync_as_replica(name, &volumes::marks_file(path));
            }
        }
        // Replicas this node no longer keeps as they were (promoted, moved
        // away, removed) refuse their old primary from now on: a stream
        // still open to the old copy must not apply anything more.
        for (name, old) in st.copies.drain() {
            if let Copy::Replica(r) = old {
                let next = volumes.get(&name).and_then(|(v, _)| v.replication.as_ref());
                r.retire(next.map(|p| (p.epoch(), p.primary)));
            }
        }
        st.copies = copies;
        resume_if_not_applied.0.clear();
        if let Some(rt) = new_runtime {
            st.replication = Some(rt);
        }
        if config.replication.is_none() {
            st.replication = None;
        }
        if let Some(rt) = &st.replication {
            let replicas = st
                .copies
                .iter()
                .filter_map(|(n, c)| match c {
                    Copy::Replica(r) => Some((n.clone(), r.clone())),
                    Copy::Primary { .. } => None,
                })
                .collect();
            rt.node.set_volumes(replicas);
        }
        st.volumes = volumes;
        st.throttles = throttles;
        st.started = true;

        // Relative target port ids: as the configuration gives them, else
        // numbered here, never one that a given id takes.
        let given: HashSet<u16> = config.targets.iter().filter_map(|t| t.relative_port).collect();
        for t in &config.targets {
            match t.relative_port {
                Some(rtp) => {
                    st.relative_ports.insert(t.iqn.clone(), rtp);
                }
                None if st.relative_ports.get(&t.iqn).is_some_and(|r| given.contains(r)) => {
                    st.relative_ports.remove(&t.iqn);
                }
                None => {}
            }
        }
        let mut next_rtp = st.relative_ports.values().chain(given.iter()).copied().max().unwrap_or(0);
        let mut targets = Vec::new();
        for t in &config.targets {
            let rtp = *st.relative_ports.entry(t.iqn.clone()).or_insert_with(|| {
                next_rtp += 1;
                next_rtp
            });
            let luns: LunMap = t
                .lun_map()
                .into_iter()
                .filter_map(|(n, vol)| st.volumes.get(&vol).map(|(_, lu)| (n, lu.clone())))
                .collect();
            targets.push(Arc::new(TargetEntry {
                iqn: t.iqn.clone(),
                tpg: t.tpg,
                portals: t.portals.iter().map(|p| st.portals.get(p).map(|x| x.bound).unwrap_or(*p)).collect(),
                luns,
                chap: t.chap.as_ref().map(|c| c.policy()).unwrap_or_default(),
                acl: t.acl.as_ref().map(|l| {
                    l.iter()
                        .map(|a| AclEntry {
                            initiator: name::normalize(&a.initiator).expect("validated"),
                            luns: a.luns.clone(),
                            chap: a.chap.as_ref().map(|c| c.policy()),
                            privileges: a.privileges,
                        })
                        .collect()
                }),
                relative_port: rtp,
                privileges: t.privileges,
                session: t.session,
            }));
        }
        // 4. ALUA: the ports through which each unit is exported, and the
        // state of their groups (a change raises ASYMMETRIC ACCESS STATE
        // CHANGED). A state the configuration did not change is left alone,
        // so that one an initiator set with SET TARGET PORT GROUPS stays.
        let configured = |c: &EngineConfig| -> HashMap<(String, u16), AluaState> {
            let mut m = HashMap::new();
            for t in &c.targets {
                for (lun, volume) in t.lun_map() {
                    m.insert((volume, t.tpg), t.alua_state(lun));
                }
            }
            m
        };
        let before = configured(&st.config);
        let mut ports: HashMap<&str, Vec<(u16, u16)>> = HashMap::new();
        for (t, entry) in config.targets.iter().zip(&targets) {
            for volume in t.luns.values() {
                ports.entry(volume.as_str()).or_default().push((t.tpg, entry.relative_port));
            }
        }
        for (name, (v, lu)) in &st.volumes {
            lu.set_target_ports(ports.get(name.as_str()).map(Vec::as_slice).unwrap_or_default());
            let peers: Vec<(u16, u16, AluaState)> =
                v.peer_port_groups.iter().map(|p| (p.tpg, p.relative_port, p.state)).collect();
            lu.set_peer_port_groups(&peers);
        }
        for ((volume, tpg), state) in configured(&config) {
            let Some((_, lu)) = st.volumes.get(&volume) else { continue };
            if opened.contains(&volume) {
                lu.set_initial_alua_state(tpg, state);
            } else if before.get(&(volume.clone(), tpg)) != Some(&state) {
                lu.set_alua_state(tpg, state);
            }
        }
        for (v, lu) in st.volumes.values() {
            lu.set_preferred_port_group(v.preferred_port_group);
        }
        let catalog = Catalog {
            targets,
            discovery_chap: config.discovery.chap.as_ref().map(|c| c.policy()).unwrap_or_default(),
            peer_targets: config.discovery.peer_targets.clone(),
        };

        // 5. Sessions: end those whose target or permission is gone, update LUN views.
        for s in self.inner.registry.sessions() {
            if s.info.discovery {
                continue;
            }
            match catalog.target(&s.info.target) {
                Some(t) if t.allows(&s.info.initiator) => {
                    s.update_luns(t.lun_view(&s.info.initiator));
                    if let Some(n) = &s.nexus {
                        n.set_privileges(t.privileges_for(&s.info.initiator));
                    }
                }
                _ => {
                    tracing::info!(tsih = s.info.tsih, target = %s.info.target, "target or access removed: closing session");
                    s.close();
                }
            }
        }
        self.inner.registry.set_catalog(catalog);
        self.inner.registry.admission().set_limits(config.limits);
        st.config = config;
        Ok(())
    }

    /// Live sessions, discovery ones included.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner.registry.sessions().iter().map(|s| s.info.clone()).collect()
    }

    /// iSCSI connections still in their login phase.
    pub fn logins_in_progress(&self) -> usize {
        self.inner.registry.admission().logins_in_progress()
    }

    /// Counters of every volume, by name.
    /// A volume whose data is on another node is counted there, not here.
    pub async fn volume_stats(&self) -> Vec<VolumeStats> {
        let st = self.inner.state.lock().await;
        let mut v: Vec<VolumeStats> = st
            .volumes
            .iter()
            .filter(|(_, (config, _))| config.backend != BackendKind::Remote)
            .map(|(n, (_, lu))| VolumeStats { volume: n.clone(), size: lu.backend().size(), counters: lu.counters() })
            .collect();
        v.sort_by(|a, b| a.volume.cmp(&b.volume));
        v
    }

    /// Each volume's write-cache policy and the WCE its initiators see now, by name.
    pub async fn write_caches(&self) -> Vec<(String, WriteCache, bool)> {
        let st = self.inner.state.lock().await;
        let mut v: Vec<_> = st
            .volumes
            .iter()
            .map(|(n, (_, lu))| {
                let (policy, wce) = lu.write_cache();
                (n.clone(), policy, wce)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The address this node takes replication streams on, once listening.
    pub async fn replication_address(&self) -> Option<SocketAddr> {
        self.inner.state.lock().await.replication.as_ref().map(|r| r.bound)
    }

    /// Every replicated volume, by name.
    pub async fn replication(&self) -> Vec<ReplicationStatus> {
        let st = self.inner.state.lock().await;
        let mut v: Vec<ReplicationStatus> = st
            .copies
            .iter()
            .map(|(name, c)| match c {
                Copy::Primary { volume, .. } => ReplicationStatus {
                    volume: name.clone(),
                    role: "primary",
                    epoch: volume.epoch().0,
                    suspended: volume.suspended(),
                    flushes: 0,
                    replicas: volume
                        .replicas()
                        .into_iter()
                        .map(|(node, state, p, rate)| ReplicaStatus {
                            node,
                            state,
                            copied_bytes: p.copied_bytes,
                            left_bytes: p.left_bytes,
                            matched_bytes: p.matched_bytes,
                            resync_rate: rate,
                        })
                        .collect(),
                },
                Copy::Replica(r) => ReplicationStatus {
                    volume: name.clone(),
                    role: "replica",
                    epoch: r.epoch().0,
                    suspended: false,
                    replicas: Vec::new(),
                    flushes: r.flushes(),
                },
            })
            .collect();
        v.sort_by(|a, b| a.volume.cmp(&b.volume));
        v
    }

    /// Demotes `volume`, of which this node is the primary (the hook a
    /// planned move calls before the new placement is committed, CLUSTER.md
    /// §3): its unit admits no media command and no change of its state
    /// any more (NOT READY, ASYMMETRIC ACCESS STATE TRANSITION), what was
    /// admitted completes, and the replicas are told that everything is
    /// settled, so that the next primary has nothing to reconcile. Waits at
    /// most `within` and says how far it got. Promotion is the other half:
    /// applying a placement that makes this node the primary at a new epoch.
    pub async fn demote(
        &self,
        volume: &str,
        within: std::time::Duration,
    ) -> Result<crate::replication::backend::Demoted, EngineError> {
        let primary = {
            let st = self.inner.state.lock().await;
            match st.copies.get(volume) {
                Some(Copy::Primary { volume, .. }) => volume.clone(),
                _ => {
                    return Err(EngineError::Replication {
                        volume: volume.to_string(),
                        why: "this node is not its primary".into(),
                    })
                }
            }
        };
        Ok(primary.demote(within).await)
    }

    /// Serves `volume` again after a [`Self::demote`] for a move that did
    /// not happen.
    pub async fn resume(&self, volume: &str) -> Result<(), EngineError> {
        let st = self.inner.state.lock().await;
        match st.copies.get(volume) {
            Some(Copy::Primary { volume, .. }) => {
                volume.resume();
                Ok(())
            }
            _ => {
                Err(EngineError::Replication { volume: volume.to_string(), why: "this node is not its primary".into() })
            }
        }
    }

    /// The reservations of every volume, by name.
    pub async fn reservations(&self) -> Vec<(String, ReservationStatus)> {
        let st = self.inner.state.lock().await;
        let mut v: Vec<_> = st.volumes.iter().map(|(n, (_, lu))| (n.clone(), lu.reservations())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The configuration currently applied.
    pub async fn config(&self) -> EngineConfig {
        self.inner.state.lock().await.config.clone()
    }

    /// Addresses actually bound, by configured address (differs for port 0).
    pub async fn portals(&self) -> BTreeMap<SocketAddr, SocketAddr> {
        self.inner.state.lock().await.portals.iter().map(|(c, p)| (*c, p.bound)).collect()
    }

    /// Stops listening and ends every session and replication stream.
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        for (_, p) in st.portals.drain() {
            p.close().await;
        }
        st.replication = None;
        st.copies.clear();
        for s in self.inner.registry.sessions() {
            s.close();
        }
        self.inner.registry.set_catalog(Catalog::default());
    }
}

fn load(config_path: &Path) -> Result<EngineConfig, EngineError> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|source| EngineError::Read { path: config_path.display().to_string(), source })?;
    Ok(EngineConfig::from_toml(&text)?)
}

/// Loads `config_path` (TOML), applies it and serves until `shutdown`
/// resolves. Each message on `reload` reads the file again and applies it
/// live (what did not change keeps running, changed ALUA states raise their
/// unit attention); a file that cannot be read or is refused is logged and
/// the running configuration stays.
pub async fn run_standalone(
    config_path: &Path,
    shutdown: impl Future<Output = ()>,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), EngineError> {
    let engine = Engine::new();
    engine.apply(load(config_path)?).await?;
    tracing::info!(config = %config_path.display(), "engine running");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = reload.recv() => {
                match load(config_path) {
                    Ok(config) => match engine.apply(config).await {
                        Ok(()) => tracing::info!(config = %config_path.display(), "configuration reloaded"),
                        Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                    },
                    Err(e) => tracing::error!("reload refused, the running configuration stays: {e}"),
                }
            }
        }
    }
    engine.shutdown().await;
    Ok(())
}
