//! Which nodes are up (CLUSTER.md §1, "Liveness"), decided by the leader
//! from Raft's own heartbeats: a node whose last acknowledgement is older
//! than [`OFFLINE_AFTER`] is offline; it is online again once it has
//! answered without a gap for [`ONLINE_AFTER`]. Only these transitions are
//! proposed, so a steady cluster adds nothing to the log.
//!
//! A node coming to lead waits [`OFFLINE_AFTER`] before it judges anyone:
//! until its first heartbeats are answered, it knows nothing of them.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::raft::{RaftInstant as _, WatchReceiver};
use super::Cluster;
use crate::storage::proposal::{Change, Proposal};

pub const OFFLINE_AFTER: Duration = Duration::from_secs(4);
pub const ONLINE_AFTER: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(500);

/// What the leader remembers between ticks.
#[derive(Default)]
struct Watch {
    /// Since when this node leads (None: it does not).
    leading_since: Option<Instant>,
    /// Since when each node has answered without a gap.
    answering_since: HashMap<u64, Instant>,
}

/// Runs the check on this node for as long as the cluster runs; it acts
/// only while this node leads.
pub fn spawn(cluster: Cluster) {
    tokio::spawn(async move {
        let mut watch = Watch::default();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            if matches!(cluster.raft.metrics().borrow_watched().state, super::raft::ServerState::Shutdown) {
                return;
            }
            if let Err(e) = check(&cluster, &mut watch).await {
                tracing::debug!(error = %e, "liveness check");
            }
        }
    });
}

async fn check(cluster: &Cluster, watch: &mut Watch) -> anyhow::Result<()> {
    let metrics = cluster.raft.metrics().borrow_watched().clone();
    if metrics.current_leader != Some(cluster.id) {
        *watch = Watch::default();
        return Ok(());
    }
    let now = Instant::now();
    let leading_since = *watch.leading_since.get_or_insert(now);
    let heartbeats = metrics.heartbeat.clone().unwrap_or_default();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, state, raft_id FROM nodes WHERE raft_id IS NOT NULL")
            .fetch_all(&cluster.shared.pool)
            .await?;
    for (name, state, raft_id) in rows {
        let raft_id = raft_id as u64;
        let answering = if raft_id == cluster.id {
            true
        } else if metrics.membership_config.membership().get_node(&raft_id).is_none() {
            // Admitted but not yet added, or removed: not for this check.
            continue;
        } else {
            let last = heartbeats.get(&raft_id).cloned().flatten();
            last.is_some_and(|t| t.elapsed() < OFFLINE_AFTER)
        };
        let since = if answering {
            Some(*watch.answering_since.entry(raft_id).or_insert(now))
        } else {
            watch.answering_since.remove(&raft_id);
            None
        };
        let online = match (state.as_str(), since) {
            ("online", None) if now.duration_since(leading_since) >= OFFLINE_AFTER => false,
            ("offline", Some(since)) if raft_id == cluster.id || now.duration_since(since) >= ONLINE_AFTER => true,
            _ => continue,
        };
        tracing::info!(node = %name, raft_id, online, "node state changes");
        let proposal = Proposal::now(Change::SetNodeState { name, online });
        cluster.commit_here(proposal).await.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    Ok(())
}
