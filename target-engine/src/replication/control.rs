//! What the replication of a volume asks of the control plane, as a trait
//! the node service implements on the cluster's replicated state
//! (CLUSTER.md §2): marking a replica out of or back in sync, each a
//! compare-and-set on the placement's epoch, and the primary's lease.
//!
//! [`LocalPlacement`] is the control plane of `portico engine` alone: the
//! administrator's file says who is primary at which epoch, and the marks
//! this node makes are kept in a small file next to the volume, so that a
//! primary that restarts does not count a replica in sync that is not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use super::core::ops::{Epoch, ReplicaId};

/// Why the control plane did not make a mark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The placement moved on (another epoch): the mark does not apply.
    #[error("the placement of {volume} is at {current} now")]
    Refused { volume: String, current: Epoch },
    /// It cannot be decided now (no majority, no leader); try again.
    #[error("the control plane cannot decide now: {0}")]
    Unavailable(String),
}

/// The control plane, as the replication of volumes sees it.
#[async_trait]
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// Records that `replica` of `volume` is out of sync, if the placement
    /// is still at `epoch`. Until this succeeds, nothing the replica did
    /// not acknowledge completes.
    async fn mark_out_of_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError>;

    /// Records that `replica` of `volume` is in sync again, if the
    /// placement is still at `epoch`.
    async fn mark_in_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError>;

    /// Whether this node may serve `volume` as its primary now.
    fn lease_valid(&self, volume: &str) -> bool;
}

/// The marks kept for one volume.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Marks {
    epoch: u64,
    #[serde(default)]
    out_of_sync: BTreeSet<ReplicaId>,
}

/// `portico engine`'s own control plane (see the module documentation).
#[derive(Debug, Default)]
pub struct LocalPlacement {
    volumes: Mutex<BTreeMap<String, (Epoch, PathBuf, Marks)>>,
}

impl LocalPlacement {
    /// Takes charge of `volume` at `epoch`, its marks kept in `file`;
    /// returns the replicas marked out of sync at that epoch.
    pub fn open(&self, volume: &str, epoch: Epoch, file: PathBuf) -> std::io::Result<BTreeSet<ReplicaId>> {
        let marks = match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str::<Marks>(&text).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Marks::default(),
            Err(e) => return Err(e),
        };
        // Marks of another epoch say nothing about this one.
        let marks = if marks.epoch == epoch.0 { marks } else { Marks { epoch: epoch.0, ..Marks::default() } };
        let out = marks.out_of_sync.clone();
        self.volumes.lock().unwrap_or_else(|e| e.into_inner()).insert(volume.to_string(), (epoch, file, marks));
        Ok(out)
    }

    fn mark(&self, volume: &str, epoch: Epoch, replica: ReplicaId, out: bool) -> Result<(), PlacementError> {
        let mut all = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        let Some((current, file, marks)) = all.get_mut(volume) else {
            return Err(PlacementError::Unavailable(format!("{volume} is not replicated here")));
        };
        if *current != epoch {
            return Err(PlacementError::Refused { volume: volume.to_string(), current: *current });
        }
        let changed = if out { marks.out_of_sync.insert(replica) } else { marks.out_of_sync.remove(&replica) };
        if changed {
            let text = toml::to_string(marks).map_err(|e| PlacementError::Unavailable(e.to_string()))?;
            crate::scsi::save_file(file, Some(&text)).map_err(|e| PlacementError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Placement for LocalPlacement {
    async fn mark_out_of_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.mark(volume, epoch, replica, true)
    }

    async fn mark_in_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.mark(volume, epoch, replica, false)
    }

    fn lease_valid(&self, _volume: &str) -> bool {
        // The administrator's file is the only authority: nobody else can
        // promote another primary behind this one's back.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_are_kept_per_epoch_across_a_restart() {
        let dir = std::env::temp_dir().join(format!("portico-placement-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vol.img.placement.toml");
        let p = LocalPlacement::default();
        assert!(p.open("vol", Epoch(3), file.clone()).unwrap().is_empty());
        p.mark_out_of_sync("vol", Epoch(3), 2).await.unwrap();
        assert_eq!(
            p.mark_out_of_sync("vol", Epoch(2), 3).await,
            Err(PlacementError::Refused { volume: "vol".into(), current: Epoch(3) })
        );
        let again = LocalPlacement::default();
        assert_eq!(again.open("vol", Epoch(3), file.clone()).unwrap(), BTreeSet::from([2]));
        again.mark_in_sync("vol", Epoch(3), 2).await.unwrap();
        assert!(LocalPlacement::default().open("vol", Epoch(3), file.clone()).unwrap().is_empty());
        // A new epoch starts with no marks.
        p.mark_out_of_sync("vol", Epoch(3), 2).await.unwrap();
        assert!(LocalPlacement::default().open("vol", Epoch(4), file).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
