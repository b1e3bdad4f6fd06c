//! What the replication of a volume asks of the control plane, as a trait
//! the node service implements on the cluster's replicated state
//! (CLUSTER.md §2): marking a replica out of or back in sync, each a
//! compare-and-set on the placement's epoch, and the primary's lease.
//!
//! [`LocalPlacement`] is the control plane of `portico engine` alone: the
//! administrator's file says who is primary at which epoch, and the marks
//! this node makes are kept in a small file next to the volume, so that a
//! primary that restarts does not count a replica in sync that is not. The
//! file also says whether the primary is serving: one that finds it still
//! serving at its start did not stop cleanly, and writes it had in flight
//! may be on some copies and not others (its own activity log was in its
//! memory), so every replica is marked out of sync and compared in full.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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

    /// The primary of `volume` at `epoch` here stopped serving because its
    /// own copy failed an operation that in-sync copies may have done: move
    /// the primary to an in-sync copy, with this copy out of sync. `Ok`
    /// once the move is committed, `Refused` if the placement moved on
    /// anyway, `Unavailable` to be asked again. Without a control plane
    /// that can move it, the volume stays without a primary until its
    /// administrator moves it.
    async fn own_copy_failed(&self, volume: &str, epoch: Epoch) -> Result<(), PlacementError>;

    /// The primary of `volume` at `epoch` that opened as `instance` (see
    /// [`Opened::instance`]) stopped with nothing in flight.
    fn closed_cleanly(&self, _volume: &str, _epoch: Epoch, _instance: u64) {}
}

/// The marks kept for one volume.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Marks {
    epoch: u64,
    #[serde(default)]
    out_of_sync: BTreeSet<ReplicaId>,
    /// Set while a primary serves the volume.
    #[serde(default)]
    serving: bool,
    /// Which opening of the primary serves: only that one may say it
    /// stopped cleanly (a primary reopened at the same epoch must not have
    /// its marker cleared by the instance it replaced).
    #[serde(default)]
    instance: u64,
}

/// What a primary finds when it takes charge of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Replicas marked out of sync at this epoch.
    pub out_of_sync: BTreeSet<ReplicaId>,
    /// The previous primary here did not stop cleanly.
    pub unclean: bool,
    /// This opening's own number: the marker is this instance's to clear.
    pub instance: u64,
    /// The epoch this node last opened the volume at as its primary, if the
    /// marks file was there (0: it only ever kept a replica here).
    pub previous: Option<u64>,
}

/// A number no earlier opening of a volume on this node had: the clock's
/// nanoseconds, made to grow within the process.
fn new_instance() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// `portico engine`'s own control plane (see the module documentation).
#[derive(Debug, Default)]
pub struct LocalPlacement {
    volumes: Mutex<BTreeMap<String, (Epoch, PathBuf, Marks)>>,
}

impl LocalPlacement {
    /// Takes charge of `volume` at `epoch` as its primary, its marks kept in
    /// `file` (marked serving from now on).
    pub fn open(&self, volume: &str, epoch: Epoch, file: PathBuf) -> std::io::Result<Opened> {
        let (marks, previous) = match std::fs::read_to_string(&file) {
            Ok(text) => {
                let marks = toml::from_str::<Marks>(&text).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))
                })?;
                let previous = marks.epoch;
                (marks, Some(previous))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Marks::default(), None),
            Err(e) => return Err(e),
        };
        // A primary of any epoch that was still serving left writes in flight.
        let unclean = marks.serving;
        // Marks of another epoch say nothing about this one.
        let mut marks = if marks.epoch == epoch.0 { marks } else { Marks { epoch: epoch.0, ..Marks::default() } };
        let out_of_sync = marks.out_of_sync.clone();
        let instance = new_instance();
        marks.serving = true;
        marks.instance = instance;
        save(&file, &marks)?;
        self.volumes.lock().unwrap_or_else(|e| e.into_inner()).insert(volume.to_string(), (epoch, file, marks));
        Ok(Opened { out_of_sync, unclean, instance, previous })
    }

    /// This node keeps a replica of the volume whose marks are kept at
    /// `file`: the file is made if it is not there (never opened here as
    /// the primary), and left as it is if it is.
    pub fn note_replica(&self, file: &std::path::Path) -> std::io::Result<()> {
        match std::fs::metadata(file) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => save(file, &Marks::default()),
            Err(e) => Err(e),
        }
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
            save(file, marks).map_err(|e| PlacementError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

fn save(file: &std::path::Path, marks: &Marks) -> std::io::Result<()> {
    let text = toml::to_string(marks).map_err(std::io::Error::other)?;
    crate::scsi::save_file(file, Some(&text))
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

    /// Only the administrator's file names another primary.
    async fn own_copy_failed(&self, volume: &str, _epoch: Epoch) -> Result<(), PlacementError> {
        Err(PlacementError::Unavailable(format!(
            "nothing here can move the primary of {volume}: name another primary in the configuration"
        )))
    }

    fn closed_cleanly(&self, volume: &str, epoch: Epoch, instance: u64) {
        let mut all = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        let mine = |(current, _, marks): &&mut (Epoch, PathBuf, Marks)| *current == epoch && marks.instance == instance;
        if let Some((_, file, marks)) = all.get_mut(volume).filter(mine) {
            marks.serving = false;
            if let Err(e) = save(file, marks) {
                tracing::warn!(volume, "cannot note a clean stop (the next start resyncs in full): {e}");
            }
        }
    }
}

/// The control plane the engine's primaries mark replicas with: this
/// node's own marks, under the cluster's once the server sets it.
#[derive(Debug, Default)]
pub struct ControlPlane {
    local: Arc<LocalPlacement>,
    above: std::sync::OnceLock<Arc<dyn Placement>>,
}

impl ControlPlane {
    pub fn local(&self) -> &Arc<LocalPlacement> {
        &self.local
    }

    /// Puts the cluster's control plane over this node's marks (once,
    /// before any volume opens); false if one was set already.
    pub fn set_above(&self, above: Arc<dyn Placement>) -> bool {
        self.above.set(above).is_ok()
    }

    /// This node's copy, a replica that the cluster counts in sync under
    /// another primary (so resynced from it since this node last served
    /// the volume): the marks kept at `file` no longer say that writes of
    /// this node's time as the primary may be on this copy only, and this
    /// node, promoted again, reconciles by the activity logs instead of
    /// comparing every copy in full. Only under the cluster's control plane,
    /// whose in-sync mark is the new primary's own after a resync; an
    /// administrator's placement file says nothing of the kind.
    pub fn in_sync_as_replica(&self, volume: &str, file: &std::path::Path) {
        if self.above.get().is_none() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(file) else { return };
        let Ok(mut marks) = toml::from_str::<Marks>(&text) else { return };
        if !marks.serving {
            return;
        }
        marks.serving = false;
        match save(file, &marks) {
            Ok(()) => tracing::info!(
                volume,
                "this copy is in sync under another primary: its own unclean stop as the primary no longer counts"
            ),
            Err(e) => tracing::warn!(volume, "cannot note that this copy is in sync under another primary: {e}"),
        }
    }

    /// What a primary opened now marks its replicas through.
    pub fn marks(&self) -> Arc<dyn Placement> {
        match self.above.get() {
            Some(above) => Arc::new(Upstream::new(above.clone(), self.local.clone())),
            None => self.local.clone(),
        }
    }
}

/// The control plane of `portico serve` over this node's own marks: each
/// mark is made in the cluster's state first (whose refusal stands), then
/// kept beside the volume as [`LocalPlacement`] keeps it; the lease is the
/// cluster's to give.
#[derive(Debug)]
pub struct Upstream {
    above: Arc<dyn Placement>,
    local: Arc<LocalPlacement>,
}

impl Upstream {
    pub fn new(above: Arc<dyn Placement>, local: Arc<LocalPlacement>) -> Self {
        Upstream { above, local }
    }
}

#[async_trait]
impl Placement for Upstream {
    async fn mark_out_of_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.above.mark_out_of_sync(volume, epoch, replica).await?;
        self.local.mark(volume, epoch, replica, true)
    }

    async fn mark_in_sync(&self, volume: &str, epoch: Epoch, replica: ReplicaId) -> Result<(), PlacementError> {
        self.above.mark_in_sync(volume, epoch, replica).await?;
        self.local.mark(volume, epoch, replica, false)
    }

    fn lease_valid(&self, volume: &str) -> bool {
        self.above.lease_valid(volume)
    }

    async fn own_copy_failed(&self, volume: &str, epoch: Epoch) -> Result<(), PlacementError> {
        self.above.own_copy_failed(volume, epoch).await
    }

    fn closed_cleanly(&self, volume: &str, epoch: Epoch, instance: u64) {
        self.local.closed_cleanly(volume, epoch, instance);
        self.above.closed_cleanly(volume, epoch, instance);
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
        let first = p.open("vol", Epoch(3), file.clone()).unwrap();
        assert_eq!((first.out_of_sync, first.unclean), (BTreeSet::new(), false));
        p.mark_out_of_sync("vol", Epoch(3), 2).await.unwrap();
        assert_eq!(
            p.mark_out_of_sync("vol", Epoch(2), 3).await,
            Err(PlacementError::Refused { volume: "vol".into(), current: Epoch(3) })
        );
        // p never stopped cleanly: the next primary knows.
        let again = LocalPlacement::default();
        let opened = again.open("vol", Epoch(3), file.clone()).unwrap();
        assert_eq!((opened.out_of_sync, opened.unclean), (BTreeSet::from([2]), true));
        again.mark_in_sync("vol", Epoch(3), 2).await.unwrap();
        again.closed_cleanly("vol", Epoch(3), opened.instance);
        let clean = LocalPlacement::default().open("vol", Epoch(3), file.clone()).unwrap();
        assert_eq!((clean.out_of_sync, clean.unclean), (BTreeSet::new(), false));
        // A new epoch starts with no marks.
        p.mark_out_of_sync("vol", Epoch(3), 2).await.unwrap();
        assert!(LocalPlacement::default().open("vol", Epoch(4), file).unwrap().out_of_sync.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A primary reopened at the same epoch: the instance it replaced
    /// stops cleanly afterwards (its `Drop`), and must not clear the marker
    /// of the one serving now, whose crash would then go unnoticed.
    #[test]
    fn only_the_serving_instance_clears_the_crash_marker() {
        let dir = std::env::temp_dir().join(format!("portico-instance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vol.img.placement.toml");
        let p = LocalPlacement::default();
        let old = p.open("vol", Epoch(5), file.clone()).unwrap();
        let new = p.open("vol", Epoch(5), file.clone()).unwrap();
        assert_ne!(old.instance, new.instance);
        p.closed_cleanly("vol", Epoch(5), old.instance);
        // The new instance crashes: the next opening knows.
        assert!(LocalPlacement::default().open("vol", Epoch(5), file.clone()).unwrap().unclean);
        let p = LocalPlacement::default();
        let last = p.open("vol", Epoch(5), file.clone()).unwrap();
        p.closed_cleanly("vol", Epoch(5), last.instance);
        assert!(!LocalPlacement::default().open("vol", Epoch(5), file).unwrap().unclean);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What a primary's opening learns of the node's past: nothing (a new
    /// volume), that it only kept a replica here, or the epoch it last
    /// served at.
    #[test]
    fn an_opening_tells_the_epoch_this_node_last_served_at() {
        let dir = std::env::temp_dir().join(format!("portico-previous-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vol.img.placement.toml");
        let p = LocalPlacement::default();
        p.note_replica(&file).unwrap();
        assert_eq!(p.open("vol", Epoch(4), file.clone()).unwrap().previous, Some(0), "a replica here before");
        p.note_replica(&file).unwrap();
        assert_eq!(p.open("vol", Epoch(4), file.clone()).unwrap().previous, Some(4), "the primary at 4 before");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(p.open("vol", Epoch(1), file).unwrap().previous, None, "new here");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A node that stopped uncleanly as the primary, later resynced as a
    /// replica of another primary and counted in sync by the cluster, is
    /// no longer unclean; without the cluster's word it stays so.
    #[test]
    fn a_replica_in_sync_under_the_cluster_forgets_its_unclean_stop() {
        let dir = std::env::temp_dir().join(format!("portico-replica-marks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vol.img.placement.toml");
        LocalPlacement::default().open("vol", Epoch(1), file.clone()).unwrap();
        let alone = ControlPlane::default();
        alone.in_sync_as_replica("vol", &file);
        assert!(LocalPlacement::default().open("vol", Epoch(1), file.clone()).unwrap().unclean, "no cluster: kept");
        let clustered = ControlPlane::default();
        assert!(clustered.set_above(Arc::new(Cluster(Epoch(2)))));
        clustered.in_sync_as_replica("vol", &file);
        assert!(!LocalPlacement::default().open("vol", Epoch(3), file.clone()).unwrap().unclean);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A control plane that refuses every mark past a given epoch.
    #[derive(Debug)]
    struct Cluster(Epoch);

    #[async_trait]
    impl Placement for Cluster {
        async fn mark_out_of_sync(&self, volume: &str, epoch: Epoch, _: ReplicaId) -> Result<(), PlacementError> {
            match epoch == self.0 {
                true => Ok(()),
                false => Err(PlacementError::Refused { volume: volume.into(), current: self.0 }),
            }
        }
        async fn mark_in_sync(&self, volume: &str, epoch: Epoch, r: ReplicaId) -> Result<(), PlacementError> {
            self.mark_out_of_sync(volume, epoch, r).await
        }
        fn lease_valid(&self, _: &str) -> bool {
            false
        }
        async fn own_copy_failed(&self, volume: &str, _: Epoch) -> Result<(), PlacementError> {
            Err(PlacementError::Refused { volume: volume.into(), current: self.0 })
        }
    }

    #[tokio::test]
    async fn a_mark_the_cluster_refuses_is_not_kept_here() {
        let dir = std::env::temp_dir().join(format!("portico-upstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vol.img.placement.toml");
        let local = Arc::new(LocalPlacement::default());
        local.open("vol", Epoch(3), file.clone()).unwrap();
        let moved_on = Upstream::new(Arc::new(Cluster(Epoch(4))), local.clone());
        assert!(matches!(moved_on.mark_out_of_sync("vol", Epoch(3), 2).await, Err(PlacementError::Refused { .. })));
        assert!(!moved_on.lease_valid("vol"), "the lease is the cluster's");
        let same = Upstream::new(Arc::new(Cluster(Epoch(3))), local.clone());
        same.mark_out_of_sync("vol", Epoch(3), 3).await.unwrap();
        let reopened = LocalPlacement::default().open("vol", Epoch(3), file).unwrap();
        assert_eq!(reopened.out_of_sync, BTreeSet::from([3]), "only the mark the cluster made is kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
