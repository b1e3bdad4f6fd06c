//! The control plane: the cluster's state is a replicated log of
//! [`Proposal`]s, agreed on with Raft (openraft, behind [`raft`]) and applied
//! by every node to its state database (CLUSTER.md §1).
//!
//! The first `portico serve` in a data directory creates a one-node cluster:
//! this node, Raft id 1, the only voter. Every change the API or the
//! dashboard makes is proposed here and answered once it is committed and
//! applied.

pub mod raft;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico_app::error::ApiError;
use serde::Serialize;
use sqlx::SqlitePool;

use crate::storage::proposal::Proposal;
use raft::log_store::LogStore;
use raft::state_machine::StateMachine;
use raft::{AppliedChange, BasicNode, Config, NodeId, Raft, ServerState, WatchReceiver};

/// How long a change waits for the cluster to commit it.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// This node's part in the cluster.
#[derive(Clone)]
pub struct Cluster {
    raft: Raft,
    id: NodeId,
    state_machine: StateMachine,
}

/// Where this node stands in the cluster, for the API and the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied_index: u64,
    pub voters: Vec<NodeId>,
}

fn raft_config() -> anyhow::Result<Arc<Config>> {
    // Heartbeats every 250 ms, elections after 1–2 s: well inside the 4 s
    // in which CLUSTER.md §1 calls a silent node offline.
    let config = Config {
        cluster_name: "portico".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

impl Cluster {
    /// Opens this node's log and state, and the first time, creates a
    /// one-node cluster. Returns once this node can commit changes.
    pub async fn start(data_dir: &Path, pool: SqlitePool) -> anyhow::Result<Self> {
        let log = LogStore::open(data_dir).await?;
        let id = match log.node_id().await? {
            Some(id) => id,
            None => {
                log.set_node_id(1).await?;
                1
            }
        };
        let new = log.is_empty().await?;
        let state_machine = StateMachine::open(pool, data_dir).await?;
        let raft = Raft::new(id, raft_config()?, raft::network::Network, log, state_machine.clone()).await?;
        let cluster = Cluster { raft, id, state_machine };
        if new {
            cluster.raft.initialize(BTreeMap::from([(id, BasicNode::default())])).await?;
            tracing::info!(node_id = id, "created a one-node cluster");
        }
        let ready = cluster
            .raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.current_leader.is_some() && m.last_applied.is_some(), "a leader")
            .await;
        if let Err(e) = ready {
            anyhow::bail!("the cluster has no leader: {e}");
        }
        Ok(cluster)
    }

    /// Commits `proposal` and waits until this node has applied it. The
    /// outer error is the cluster's (no leader, no quorum); the inner one is
    /// the change's own refusal, the same on every node.
    pub async fn propose(&self, proposal: Proposal) -> Result<Result<AppliedChange, ApiError>, ApiError> {
        let written = tokio::time::timeout(COMMIT_WAIT, self.raft.client_write(proposal)).await;
        let response = match written {
            Err(_) => {
                return Err(ApiError::new(
                    503,
                    "The cluster did not commit the change within 5 s: no leader or no quorum. Try again.",
                ))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a change was not committed");
                let message = match e.forward_to_leader() {
                    Some(_) => "This node is not the cluster's leader; try again when a leader is elected.".to_string(),
                    None => format!("The cluster could not commit the change: {e}"),
                };
                return Err(ApiError::new(503, message));
            }
            Ok(Ok(response)) => response,
        };
        let index = response.log_id.index;
        let mut applied = self.state_machine.applied();
        let caught_up = tokio::time::timeout(COMMIT_WAIT, applied.wait_for(|a| *a >= index)).await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(ApiError::new(503, "The change was committed but this node has not applied it yet."));
        }
        match response.data.outcome {
            Some(outcome) => Ok(outcome),
            None => Err(ApiError::internal()),
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterStatus {
            node_id: self.id,
            role: role.to_string(),
            leader: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            voters: m.membership_config.membership().voter_ids().collect(),
        }
    }

    /// Stops this node's Raft (the process is ending).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{storage::RaftStateMachine, RaftSnapshotBuilder};
    use portico_app::model::storage::Command;
    use serde_json::json;

    use super::*;
    use crate::storage::proposal::{self, Change, Here};
    use crate::storage::quotas::Limits;
    use crate::storage::replicated;
    use crate::storage::secret_box::SecretBox;

    struct TestNode {
        dir: tempfile::TempDir,
        pool: SqlitePool,
        cluster: Cluster,
    }

    async fn start(dir: tempfile::TempDir) -> TestNode {
        let pool = crate::db::open(dir.path()).await.unwrap();
        let cluster = Cluster::start(dir.path(), pool.clone()).await.unwrap();
        TestNode { dir, pool, cluster }
    }

    async fn propose(n: &TestNode, change: Change) -> Result<AppliedChange, ApiError> {
        let secrets = SecretBox::open_or_create(n.dir.path()).unwrap();
        let limits = Limits::default();
        let here = Here { node_id: 1, secrets: &secrets, limits: &limits, data_dir: n.dir.path() };
        n.cluster.propose(proposal::decide(change, &here).unwrap()).await.expect("committed")
    }

    fn command(value: serde_json::Value) -> Change {
        Change::Storage(serde_json::from_value::<Command>(value).unwrap())
    }

    fn register(name: &str) -> Change {
        Change::RegisterNode { name: name.into(), interfaces: [("lo".to_string(), vec!["127.0.0.1".into()])].into() }
    }

    async fn dump(pool: &SqlitePool) -> String {
        replicated::dump(&mut pool.acquire().await.unwrap()).await.unwrap()
    }

    /// A new node is a one-node cluster that leads itself; a change comes
    /// back with its outcome once applied, a refusal too, and both take
    /// their place in the log.
    #[tokio::test]
    async fn a_new_node_leads_its_own_cluster_and_applies_what_it_commits() {
        let n = start(tempfile::tempdir().unwrap()).await;
        let status = n.cluster.status();
        assert_eq!((status.role.as_str(), status.leader, status.voters.clone()), ("leader", Some(1), vec![1]));
        let before = status.applied_index;
        propose(&n, register("n1")).await.unwrap();
        let created = propose(&n, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await;
        assert!(created.unwrap().detail.unwrap().contains("1048576 bytes"));
        let again = propose(&n, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await;
        assert_eq!(again.unwrap_err().status, 409);
        assert_eq!(n.cluster.status().applied_index, before + 3, "a refusal has its place in the log too");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM volumes").fetch_one(&n.pool).await.unwrap();
        assert_eq!(count, 1);
    }

    /// After a restart the node is the same cluster: the same id and term
    /// line, the state as applied, and it goes on committing.
    #[tokio::test]
    async fn a_restarted_node_keeps_its_log_and_state() {
        let n = start(tempfile::tempdir().unwrap()).await;
        propose(&n, register("n1")).await.unwrap();
        propose(&n, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await.unwrap();
        let (applied, rows) = (n.cluster.status().applied_index, dump(&n.pool).await);
        n.cluster.shutdown().await;
        n.pool.close().await;
        let n = start(n.dir).await;
        let status = n.cluster.status();
        assert_eq!(status.voters, vec![1]);
        assert!(status.applied_index >= applied, "{} < {applied}", status.applied_index);
        assert_eq!(dump(&n.pool).await, rows);
        propose(&n, command(json!({"command": "create_volume", "name": "v2", "size": "1MiB"}))).await.unwrap();
    }

    /// A snapshot built on one node and installed on another gives the
    /// second node the same rows and the same place in the log.
    #[tokio::test]
    async fn a_snapshot_installed_elsewhere_gives_the_same_state() {
        let a = start(tempfile::tempdir().unwrap()).await;
        propose(&a, register("n1")).await.unwrap();
        propose(&a, command(json!({"command": "create_chap_user", "name": "u1", "secret": "twelve-chars"})))
            .await
            .unwrap();
        propose(&a, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await.unwrap();
        let mut builder = a.cluster.state_machine.clone();
        let snapshot = builder.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(a.cluster.status().applied_index));

        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let mut other = raft::state_machine::StateMachine::open(pool.clone(), dir.path()).await.unwrap();
        // Something the snapshot replaces.
        sqlx::query("INSERT INTO nodes (name, state, last_heartbeat) VALUES ('stale', 'online', '')")
            .execute(&pool)
            .await
            .unwrap();
        other.install_snapshot(&snapshot.meta, snapshot.snapshot.clone()).await.unwrap();
        assert_eq!(dump(&pool).await, dump(&a.pool).await);
        let (applied, membership) = other.applied_state().await.unwrap();
        assert_eq!(applied, snapshot.meta.last_log_id);
        assert_eq!(membership, snapshot.meta.last_membership);
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|f| !f
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("snapshot-")));
    }
}
