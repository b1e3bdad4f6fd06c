//! The control plane in one process: one node, a restart, a snapshot
//! installed elsewhere, join tokens, and two members over the cluster
//! channel.

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
    let cluster = Cluster::start(dir.path(), pool.clone(), &ClusterOptions::default()).await.unwrap();
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
    Change::RegisterNode {
        name: name.into(),
        interfaces: [("lo".to_string(), vec!["127.0.0.1".into()])].into(),
        member: proposal::Membership { raft_id: Some(1), ..Default::default() },
    }
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
    propose(&a, command(json!({"command": "create_chap_user", "name": "u1", "secret": "twelve-chars"}))).await.unwrap();
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

fn token_change(id: &str, secret_hash: &str, expires_at: &str) -> Change {
    Change::CreateJoinToken {
        id: id.into(),
        secret_hash: secret_hash.into(),
        expires_at: expires_at.into(),
        created_by: "admin".into(),
    }
}

fn admit(token: &str, name: &str) -> Change {
    Change::AdmitNode { token_id: token.into(), name: name.into(), cluster_addr: "127.0.9.1:7100".into() }
}

/// A token admits one node, which gets the next Raft id; a spent, an
/// expired or an unknown token admits none, and a taken name is refused.
#[tokio::test]
async fn a_join_token_admits_one_node_once() {
    let n = start(tempfile::tempdir().unwrap()).await;
    propose(&n, register("n1")).await.unwrap();
    propose(&n, token_change("00000000000000aa", "h", "2999-01-01T00:00:00Z")).await.unwrap();
    propose(&n, token_change("00000000000000cc", "h", "2999-01-01T00:00:00Z")).await.unwrap();
    // Made last: a new token clears the expired ones.
    propose(&n, token_change("00000000000000bb", "h", "2000-01-01T00:00:00Z")).await.unwrap();
    let admitted = propose(&n, admit("00000000000000aa", "n2")).await.unwrap();
    assert_eq!(admitted.raft_id, Some(2));
    let again = propose(&n, admit("00000000000000aa", "n3")).await.unwrap_err();
    assert!(again.message.contains("used already"), "{}", again.message);
    let expired = propose(&n, admit("00000000000000bb", "n3")).await.unwrap_err();
    assert!(expired.message.contains("expired"), "{}", expired.message);
    let unknown = propose(&n, admit("00000000000000dd", "n3")).await.unwrap_err();
    assert_eq!(unknown.status, 403);
    let taken = propose(&n, admit("00000000000000cc", "n2")).await.unwrap_err();
    assert_eq!(taken.status, 409);
    // The refused admissions spent nothing: the last token still admits, as node 3.
    assert_eq!(propose(&n, admit("00000000000000cc", "n3")).await.unwrap().raft_id, Some(3));
    let rows: Vec<(String, Option<i64>, String)> =
        sqlx::query_as("SELECT name, raft_id, state FROM nodes ORDER BY name").fetch_all(&n.pool).await.unwrap();
    let want = |name: &str, id: i64, state: &str| (name.to_string(), Some(id), state.to_string());
    assert_eq!(rows, vec![want("n1", 1, "online"), want("n2", 2, "offline"), want("n3", 3, "offline")]);
}

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Two members over the cluster channel: a node joins with a token and
/// becomes a voter (a membership change), a change proposed through it
/// goes to the leader and is applied on both before it answers, and
/// the joined node, back at another address, is reached there.
#[tokio::test]
async fn a_joined_node_forwards_changes_and_is_reached_at_a_new_address() {
    let (a_addr, b_addr) = (free_address(), free_address());
    let a_dir = tempfile::tempdir().unwrap();
    let a_pool = crate::db::open(a_dir.path()).await.unwrap();
    let options =
        ClusterOptions { node_name: "a".into(), cluster_addr: Some(a_addr), join: None, ..Default::default() };
    let a = TestNode {
        cluster: Cluster::start(a_dir.path(), a_pool.clone(), &options).await.unwrap(),
        dir: a_dir,
        pool: a_pool,
    };
    let mut me = register("a");
    if let Change::RegisterNode { member, .. } = &mut me {
        member.cluster_addr = Some(a_addr.to_string());
    }
    propose(&a, me).await.unwrap();
    let (_, fingerprint) = a.cluster.cluster_address().unwrap();
    let token = JoinToken::generate(&fingerprint);
    let change = Change::CreateJoinToken {
        id: token.id.clone(),
        secret_hash: token.secret_hash(),
        expires_at: "2999-01-01T00:00:00Z".into(),
        created_by: "admin".into(),
    };
    propose(&a, change).await.unwrap();

    let b_dir = tempfile::tempdir().unwrap();
    let b_pool = crate::db::open(b_dir.path()).await.unwrap();
    let join = Some(JoinOptions { url: format!("https://{a_addr}"), token });
    let options = ClusterOptions { node_name: "b".into(), cluster_addr: Some(b_addr), join, ..Default::default() };
    let b = TestNode {
        cluster: Cluster::start(b_dir.path(), b_pool.clone(), &options).await.unwrap(),
        dir: b_dir,
        pool: b_pool,
    };
    let status = a.cluster.status();
    assert_eq!((status.role.as_str(), status.voters), ("leader", vec![1, 2]));
    assert_eq!((b.cluster.status().role.as_str(), b.cluster.status().leader), ("follower", Some(1)));

    // Proposed on the follower: the leader commits it, and the follower
    // answers once it has applied it itself.
    let created = propose(&b, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await;
    assert!(created.unwrap().detail.unwrap().contains("1048576 bytes"));
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM volumes").fetch_one(&b.pool).await.unwrap();
    assert_eq!(count, 1, "the follower reads its own write");
    let refused = propose(&b, command(json!({"command": "create_volume", "name": "v1", "size": "1MiB"}))).await;
    assert_eq!(refused.unwrap_err().status, 409, "a refusal comes back through the follower too");

    // The follower restarts at another address: it tells the leader,
    // which reaches it there.
    b.cluster.shutdown().await;
    b.pool.close().await;
    let moved = free_address();
    let b_pool = crate::db::open(b.dir.path()).await.unwrap();
    let options = ClusterOptions { node_name: "b".into(), cluster_addr: Some(moved), join: None, ..Default::default() };
    let b = TestNode {
        cluster: Cluster::start(b.dir.path(), b_pool.clone(), &options).await.unwrap(),
        dir: b.dir,
        pool: b_pool,
    };
    let reached = a
        .cluster
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.membership_config.membership().get_node(&2).is_some_and(|n| n.addr == moved.to_string()),
            "b's new address",
        )
        .await;
    assert!(reached.is_ok(), "the leader did not take b's new address");
    propose(&a, command(json!({"command": "create_volume", "name": "v2", "size": "1MiB"}))).await.unwrap();
    let applied = b
        .cluster
        .raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(a.cluster.status().applied_index), "b catches up")
        .await;
    assert!(applied.is_ok(), "b, at its new address, did not get the leader's entries");

    // The leader hands its leadership over (a planned removal or
    // maintenance of its node): b leads (a healthy leader of two would
    // otherwise lead for ever), and back.
    assert!(a.cluster.step_down().await, "the leadership moved");
    assert_eq!(b.cluster.status().role, "leader");
    assert!(b.cluster.step_down().await && a.cluster.status().role == "leader", "and back");
    b.cluster.shutdown().await;
    a.cluster.shutdown().await;
}
