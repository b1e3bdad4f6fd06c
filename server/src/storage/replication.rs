//! The server's side of replicated volumes (CLUSTER.md §2): the
//! replication key every node holds, and the control plane the engine's
//! primaries mark their replicas through.
//!
//! The replication key is derived from the cluster's key (made when the
//! cluster is created and handed to every node that joins, see
//! `cluster::join`) with HMAC-SHA-256 under its own label, so that every
//! node holds the same key without another secret to hand out, and the key
//! that seals CHAP secrets never leaves for the replication streams. It is
//! written to `<data dir>/replication.key`, mode 0600, where the engine
//! reads it.
//!
//! A mark is a [`Change::MarkCopy`] committed through the cluster: a
//! compare-and-set on the volume's epoch. The primary waits for it before
//! it completes a write without the replica (the engine holds the writes
//! until then), and a refusal (the volume moved on) stands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::SqlitePool;
use target_engine::replication::control::{Placement, PlacementError};
use target_engine::replication::core::ops::{Epoch, ReplicaId};

use portico_app::error::ApiError;
use portico_app::model::storage::{VolumeCopy, VolumeView};

use super::db_error;
use super::proposal::{Change, PromoteCause, Proposal};
use super::secret_box::SecretBox;
use crate::cluster::node_checks::{PrimaryReport, ReplicaReport};
use crate::cluster::Cluster;
use crate::service::audit::{write_audit, AuditRecord};
use portico_app::model::AuditResult;

/// What the replication key is derived under.
const KEY_LABEL: &[u8] = b"portico replication stream key v1";

/// Where the engine reads the replication key.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("replication.key")
}

/// The replication key for the cluster key `cluster_key`, as hex.
fn derive_key(cluster_key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(cluster_key).expect("HMAC takes a key of any length");
    mac.update(KEY_LABEL);
    hex::encode(mac.finalize().into_bytes())
}

/// Writes this node's replication key (see the module's documentation),
/// if it is not there as it should be.
pub fn install_key(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = key_file(data_dir);
    let key = derive_key(&SecretBox::key_bytes(data_dir)?);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(key.as_str()) {
        crate::data_dir::write_private(&path, &key)?;
    }
    crate::data_dir::private_file(&path)?;
    Ok(path)
}

/// The cluster's control plane, as the engine's primaries see it.
pub struct ClusterMarks {
    pub cluster: Cluster,
    pub pool: SqlitePool,
}

impl std::fmt::Debug for ClusterMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMarks").finish_non_exhaustive()
    }
}

impl ClusterMarks {
    /// The epoch `volume` is at as applied here (0: it is gone).
    async fn current_epoch(&self, volume: &str) -> Epoch {
        let current: Option<(i64,)> = sqlx::query_as("SELECT epoch FROM volumes WHERE name = ?")
            .bind(volume)
            .fetch_optional(&self.pool)
            .await
            .unwrap_or(None);
        Epoch(current.map_or(0, |(e,)| e as u64))
    }

    async fn mark(&self, volume: &str, epoch: Epoch, replica: ReplicaId, in_sync: bool) -> Result<(), PlacementError> {
        let change = Change::MarkCopy { volume: volume.to_string(), epoch: epoch.0, node_id: replica.into(), in_sync };
        let action = change.action();
        let object = change.object();
        let answer = self.cluster.propose(Proposal::now(change)).await;
        let result = match answer {
            Ok(Ok(applied)) => {
                let detail = applied.detail.as_deref();
                write_audit(&self.pool, AuditRecord::system(action, &object, AuditResult::Success, detail)).await;
                return Ok(());
            }
            // The volume moved on: another epoch, or it is gone.
            Ok(Err(e)) if e.status == 409 || e.status == 404 => {
                Err(PlacementError::Refused { volume: volume.to_string(), current: self.current_epoch(volume).await })
            }
            Ok(Err(e)) | Err(e) => Err(PlacementError::Unavailable(e.message)),
        };
        if let Err(e) = &result {
            let detail = format!("node {replica} at epoch {}: {e}", epoch.0);
            write_audit(&self.pool, AuditRecord::system(action, &object, AuditResult::Failure, Some(&detail))).await;
        }
        result
    }
}

#[async_trait]
impl Placement for ClusterMarks {
    async fn mark_out_of_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.mark(volume, epoch, replica, false).await
    }

    async fn mark_in_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.mark(volume, epoch, replica, true).await
    }

    /// This node's lease (`cluster::lease`): it has heard from a majority
    /// within the last 3 s.
    fn lease_valid(&self, _volume: &str) -> bool {
        self.cluster.lease_holds()
    }

    /// Fails the volume over to the best in-sync copy (as the failover
    /// controller chooses), with this node's copy out of sync: a
    /// [`PromoteCause::OwnCopyFailed`] move, a compare-and-set on `epoch`.
    async fn own_copy_failed(&self, volume: &str, epoch: Epoch) -> Result<(), PlacementError> {
        let unavailable = |e: ApiError| PlacementError::Unavailable(e.message);
        let node: (String,) =
            sqlx::query_as("SELECT n.name FROM volumes v JOIN nodes n ON n.id = v.node_id WHERE v.name = ?")
                .bind(volume)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| PlacementError::Unavailable(e.to_string()))?;
        let successors = super::failover::successors(&self.pool, volume).await.map_err(unavailable)?;
        let Some((to, to_name)) = successors.into_iter().next() else {
            return Err(PlacementError::Unavailable(format!("no copy of {volume} is in sync on an online node")));
        };
        tracing::error!(volume, to = to_name, "this node's copy failed a write: failing over");
        let cause = PromoteCause::OwnCopyFailed { node: node.0 };
        let proposal =
            Proposal::now(Change::Promote { volume: volume.to_string(), epoch: epoch.0, to, cause, held_ms: None });
        match self.cluster.propose(proposal.clone()).await {
            Ok(Ok(applied)) => {
                let detail = applied.detail.unwrap_or_default();
                let (action, object) = (proposal.change.action(), proposal.change.object());
                write_audit(&self.pool, AuditRecord::system(action, &object, AuditResult::Success, Some(&detail)))
                    .await;
                Ok(())
            }
            Ok(Err(e)) if e.status == 409 || e.status == 404 => {
                Err(PlacementError::Refused { volume: volume.to_string(), current: self.current_epoch(volume).await })
            }
            Ok(Err(e)) | Err(e) => Err(unavailable(e)),
        }
    }
}

impl super::Storage {
    /// The volumes this node's engine is the primary of, as it sees them now.
    pub(super) async fn primary_reports(&self) -> Vec<PrimaryReport> {
        self.engine
            .replication()
            .await
            .into_iter()
            .filter(|r| r.role == "primary")
            .map(|r| PrimaryReport {
                volume: r.volume,
                epoch: r.epoch,
                suspended: r.suspended,
                replicas: r
                    .replicas
                    .into_iter()
                    .map(|c| ReplicaReport {
                        node: c.node,
                        state: c.state,
                        copied_bytes: c.copied_bytes,
                        left_bytes: c.left_bytes,
                        resync_rate: c.resync_rate,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Adds to each replicated volume how its primary sees its copies now:
    /// this node's engine for its own, each other primary's node asked
    /// once (one that does not answer leaves the stored marks alone).
    pub(super) async fn add_replication_reports(&self, volumes: &mut [VolumeView]) -> Result<(), ApiError> {
        let primaries: BTreeSet<&str> =
            volumes.iter().filter(|v| !v.copies.is_empty()).map(|v| v.node.as_str()).collect();
        if primaries.is_empty() {
            return Ok(());
        }
        let nodes: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, cluster_addr FROM nodes").fetch_all(&self.pool).await.map_err(db_error)?;
        let asked = nodes.iter().filter(|(_, name, _)| primaries.contains(name.as_str())).map(|(id, name, address)| {
            let (id, name, address) = (*id, name.clone(), address.clone());
            async move {
                let reports = match (id == self.node_id, address) {
                    (true, _) => Ok(self.primary_reports().await),
                    (false, Some(address)) => self.cluster.ask_replication(&name, &address).await,
                    (false, None) => Err(ApiError::new(503, format!("{name} has no cluster address"))),
                };
                match reports {
                    Ok(reports) => Some((name, reports)),
                    Err(e) => {
                        tracing::debug!(node = %name, error = %e.message, "replication status not known");
                        None
                    }
                }
            }
        });
        let answers: BTreeMap<String, Vec<PrimaryReport>> =
            futures_util::future::join_all(asked).await.into_iter().flatten().collect();
        let names: BTreeMap<u32, &str> = nodes.iter().map(|(id, name, _)| (*id as u32, name.as_str())).collect();
        for v in volumes.iter_mut() {
            let Some(report) = answers.get(&v.node).and_then(|r| r.iter().find(|r| r.volume == v.name)) else {
                continue;
            };
            for r in &report.replicas {
                let Some(copy) = v.copies.iter_mut().find(|c| names.get(&r.node) == Some(&c.node.as_str())) else {
                    continue;
                };
                copy.link = Some(r.state.clone());
                copy.copied_bytes = r.copied_bytes;
                copy.left_bytes = r.left_bytes;
                copy.resync_rate = r.resync_rate;
            }
            v.state = volume_state(&v.copies, report.suspended).into();
        }
        Ok(())
    }
}

/// A replicated volume's state from its copies and its primary's word.
fn volume_state(copies: &[VolumeCopy], suspended: bool) -> &'static str {
    let link = |c: &VolumeCopy, s: &str| c.link.as_deref() == Some(s);
    if suspended {
        "suspended"
    } else if copies.iter().any(|c| link(c, "resyncing") || link(c, "catching-up") || link(c, "reconciling")) {
        "resyncing"
    } else if copies.iter().all(|c| c.in_sync && (c.link.is_none() || link(c, "in-sync"))) {
        "healthy"
    } else {
        "degraded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replication_key_is_the_clusters_own_and_not_its_cluster_key() {
        let a = derive_key(&[7; 32]);
        assert_eq!(a, derive_key(&[7; 32]), "every node derives the same key");
        assert_ne!(a, derive_key(&[8; 32]), "another cluster, another key");
        assert_eq!(a.len(), 64);
        assert!(!a.contains(&hex::encode([7u8; 32])));
        let dir = tempfile::tempdir().unwrap();
        let path = install_key(dir.path()).unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        assert_eq!(key, derive_key(&SecretBox::key_bytes(dir.path()).unwrap()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        target_engine::replication::auth::Key::load(&path).expect("the engine takes it");
    }
}
