//! A copy whose node is gone for good is made again on another node
//! (CLUSTER.md §2, "Resync and rebuild"). The leader looks every few
//! seconds for copies of replicated volumes whose node has been offline for
//! longer than the cluster's `rebuild_after` (`--rebuild-after`, 10 minutes
//! by default: a node that reboots comes back and resyncs only what it
//! missed). For one such copy a pass, it picks the online node, not in
//! maintenance and with a replication address, that holds no copy of the
//! volume and has the most room; that node judges the change first (its
//! caps, its disk, files in the way), then the cluster commits
//! [`Change::ReplaceCopy`]: the old copy is dropped, the new one starts out
//! of sync at a new epoch, and the volume's primary resyncs it (regions
//! whose checksums already match, the zeros of a new sparse image among
//! them, are not sent). Each rebuild is audited, with its cause.

use std::sync::Arc;
use std::time::Duration;

use portico_app::model::AuditResult;

use super::proposal::{Change, Proposal};
use super::{db_error, Storage};
use crate::service::audit::{write_audit, AuditRecord};

/// How often the leader looks for copies to rebuild.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// volume, the lost copy's node and its name, seconds offline.
type LostCopy = (String, i64, String, f64);

impl Storage {
    /// Rebuilds copies lost for longer than `after`, while this node leads.
    /// Ends with the storage.
    pub fn rebuild_lost_copies(self: &Arc<Self>, after: Duration) {
        let storage = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(storage) = storage.upgrade() else { return };
                if storage.cluster.status().role != "leader" {
                    continue;
                }
                if let Err(e) = storage.rebuild_one(after).await {
                    tracing::warn!(error = %e.message, "a lost copy could not be rebuilt; trying again later");
                }
            }
        });
    }

    /// Rebuilds one copy lost for longer than `after`, if there is one and
    /// a node to take it.
    async fn rebuild_one(&self, after: Duration) -> Result<(), portico_app::error::ApiError> {
        let lost: Vec<LostCopy> = sqlx::query_as(
            "SELECT v.name, c.node_id, n.name, \
                    (julianday('now') - julianday(n.last_heartbeat)) * 86400.0 \
             FROM volume_copies c JOIN volumes v ON v.id = c.volume_id JOIN nodes n ON n.id = c.node_id \
             WHERE n.state = 'offline' ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        for (volume, from, from_name, offline) in lost {
            if offline < after.as_secs_f64() {
                continue;
            }
            let except: Vec<i64> = self.holders(&volume).await?.into_iter().map(|n| n.id).collect();
            let Some(to) = self.roomiest_for_a_copy(&except).await? else {
                tracing::warn!(volume, node = from_name, "a copy is lost, and no other node can take it");
                continue;
            };
            let change = Change::ReplaceCopy { volume: volume.clone(), from, to: to.id };
            let proposal = Proposal::now(change);
            let note = match &to.address {
                Some(_) => self.dry_run_on(&to, &proposal).await?,
                None => self.dry_run_here(&proposal).await?,
            };
            let applied = match self.cluster.propose(proposal.clone()).await {
                Ok(Ok(applied)) => applied,
                Ok(Err(e)) | Err(e) => return Err(e),
            };
            let mut detail = format!("{from_name} offline for {offline:.0} s (rebuild after {} s): ", after.as_secs());
            detail.push_str(applied.detail.as_deref().unwrap_or("copy replaced"));
            if let Some(note) = note {
                detail.push_str(&format!("; {note}"));
            }
            tracing::info!(volume, %detail, "rebuilding a lost copy");
            let record = AuditRecord::system(
                proposal.change.action(),
                &proposal.change.object(),
                AuditResult::Success,
                Some(&detail),
            );
            write_audit(&self.pool, record).await;
            return Ok(());
        }
        Ok(())
    }
}
