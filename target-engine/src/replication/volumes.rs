//! How the engine opens a replicated volume on this node, by its role in
//! the volume's placement:
//!
//! * the primary's unit writes through a [`ReplicatedBackend`] over the
//!   local copy, with a link to every replica; replicas the control plane
//!   counts out of sync get the whole volume when they connect (this node
//!   kept no map of what they missed: a full resync, by checksums). A
//!   primary promoted from a replica reconciles the replicas in sync by the
//!   activity logs (its own, and each replica's); one that finds it did not
//!   stop cleanly here, or whose log is not known, cannot tell where the
//!   copies differ: it has them marked out of sync and compares them all.
//! * a replica's copy takes the primary's stream ([`ReplicaVolume`]), and the
//!   unit this node exports on a standby path refuses media access (a
//!   replica never serves its copy to an initiator).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::backend::{PrimaryVolume, ReplicatedBackend};
use super::config::{ReplicationNode, Role, VolumePlacement};
use super::control::ControlPlane;
use super::core::dirty::DirtyMap;
use super::core::primary::{Primary, ReplicaState};
use super::link::{self, LinkConfig};
use super::server::ReplicaVolume;
use crate::backend::{BackendError, BlockBackend, Run};
use crate::scsi::WriteCache;

/// A replicated volume as this node keeps it.
#[derive(Debug)]
pub enum Copy {
    Primary {
        volume: Arc<PrimaryVolume>,
        /// Dropped with the copy: its links stop.
        _links: watch::Sender<bool>,
    },
    Replica(Arc<ReplicaVolume>),
}

/// Where the control plane's marks for a volume are kept beside its image.
pub fn marks_file(image: &std::path::Path) -> PathBuf {
    let mut name = image.file_name().unwrap_or_default().to_os_string();
    name.push(".placement.toml");
    image.with_file_name(name)
}

/// What this node's copy of a volume was until it is opened anew.
#[derive(Debug)]
pub enum Succession {
    /// The engine had no copy of it open: the node starts, or the copy is
    /// new here. What this node was before is read from the volume's marks
    /// file (see `open`).
    FirstOpen,
    /// It had the copy open, and neither handed it over nor was promoted
    /// from a replica (its own marks say whether it stopped cleanly).
    Unknown,
    /// A replica, with its activity log (`None`: not known).
    PromotedReplica(Option<DirtyMap>),
    /// The primary, which handed over with every operation completed and
    /// settled on every in-sync copy: as a replica, it differs from them
    /// nowhere.
    HandedOver,
}

/// Opens `local` (the volume's own file, with group commit) as this node's
/// copy; returns the backend its unit is to use and the copy.
#[allow(clippy::too_many_arguments)]
pub fn open(
    name: &str,
    image: &std::path::Path,
    placement: &VolumePlacement,
    (node, guard): (&ReplicationNode, Option<&Arc<dyn super::guard::StreamGuard>>),
    local: Arc<dyn BlockBackend>,
    control: &ControlPlane,
    state_file: Option<PathBuf>,
    write_cache: WriteCache,
    succession: Succession,
) -> Result<(Arc<dyn BlockBackend>, Copy), String> {
    let settled = matches!(succession, Succession::HandedOver);
    let first_open = matches!(succession, Succession::FirstOpen);
    let promoted = match succession {
        Succession::PromotedReplica(log) => Some(log),
        _ => None,
    };
    let epoch = placement.epoch();
    match placement.role(node.node)? {
        Role::Primary => {
            let opened = control.local().open(name, epoch, marks_file(image)).map_err(|e| e.to_string())?;
            // Where the copies in sync may differ: nowhere, in the regions
            // of the activity logs, or anywhere (`None`).
            // Primary at an epoch it never opened here as the primary, with
            // nothing handed to it: it was promoted from a replica and
            // restarted before it opened the volume, and its activity log
            // was in its memory (issue 29, finding 5).
            let promoted_then_restarted = first_open && opened.previous.is_some_and(|e| e != epoch.0);
            let unsettled = if opened.unclean {
                tracing::warn!(volume = name, "the primary did not stop cleanly here: writes it had in flight may be on some copies only, so every replica is marked out of sync and compared in full");
                None
            } else if promoted_then_restarted {
                tracing::warn!(volume = name, %epoch, "promoted from a replica, and restarted before opening the volume: its activity log is not known, so every replica is marked out of sync and compared in full");
                None
            } else {
                match promoted {
                    None => Some(None),
                    Some(Some(log)) => {
                        tracing::info!(volume = name, regions = log.len(), "promoted from a replica: the replicas in sync are reconciled by the activity logs before anything is written");
                        Some(Some(log))
                    }
                    Some(None) => {
                        tracing::warn!(volume = name, "promoted from a replica whose activity log is not known: every replica is marked out of sync and compared in full");
                        None
                    }
                }
            };
            let out = opened.out_of_sync;
            let size = local.size();
            let all = || {
                let mut all = DirtyMap::default();
                all.mark_all(size);
                all
            };
            let states: BTreeMap<_, _> = placement
                .replicas
                .iter()
                .map(|r| {
                    let state = match &unsettled {
                        _ if !r.in_sync || out.contains(&r.node) => ReplicaState::OutOfSync(all()),
                        Some(None) => ReplicaState::InSync,
                        Some(Some(log)) => ReplicaState::Unsettled(log.clone()),
                        // In sync for the control plane, not to be trusted here.
                        None => ReplicaState::Failing(all()),
                    };
                    (r.node, state)
                })
                .collect();
            let core = Primary::new(epoch, size, placement.min_in_sync, states);
            let volume =
                PrimaryVolume::new(name.to_string(), opened.instance, core, local, control.marks(), node.resync_mbps);
            volume.drive(Primary::start);
            volume.watch_lease();
            let key = super::auth::Key::load(&node.key_file)?;
            let (stop, stopped) = watch::channel(false);
            for r in &placement.replicas {
                let cfg = LinkConfig {
                    cluster: node.cluster.clone(),
                    me: node.node,
                    replica: r.node,
                    address: r.address,
                    key: key.clone(),
                    guard: guard.cloned(),
                };
                link::spawn(volume.clone(), cfg, stopped.clone());
            }
            let backend = Arc::new(ReplicatedBackend::new(volume.clone()));
            Ok((backend, Copy::Primary { volume, _links: stop }))
        }
        Role::Replica => {
            // The marks file says, once this node is promoted and restarts,
            // that it kept a replica here (see `promoted_then_restarted`).
            if let Err(e) = control.local().note_replica(&marks_file(image)) {
                tracing::warn!(volume = name, "cannot note that this node keeps a replica: {e}");
            }
            let volume = ReplicaVolume::new(
                name.to_string(),
                epoch,
                placement.primary,
                local.clone(),
                state_file,
                write_cache,
                settled,
            );
            Ok((Arc::new(NotPrimary(local)), Copy::Replica(volume)))
        }
    }
}

/// A replica's copy as its own unit sees it: no media access, since only
/// the primary serves the volume (the standby path refuses it first).
#[derive(Debug)]
struct NotPrimary(Arc<dyn BlockBackend>);

const NOT_PRIMARY: &str = "this node keeps a replica; the primary serves the volume";

#[async_trait]
impl BlockBackend for NotPrimary {
    fn size(&self) -> u64 {
        self.0.size()
    }
    async fn read(&self, _: u64, _: usize) -> Result<BytesMut, BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn write(&self, _: u64, _: Bytes, _: bool) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn flush(&self) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn unmap(&self, _: u64, _: u64) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn write_same(&self, _: u64, _: u64, _: Bytes, _: bool) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn replicate_state(&self, _: Option<Bytes>) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }
    async fn resize(&self, new_size: u64) -> Result<(), BackendError> {
        self.0.resize(new_size).await
    }
    fn serving(&self) -> Result<(), BackendError> {
        Err(BackendError::NotServing(NOT_PRIMARY))
    }

    async fn allocation(&self, offset: u64, len: u64, max_runs: usize) -> Result<Vec<Run>, BackendError> {
        self.0.allocation(offset, len, max_runs).await
    }
}
