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

fn key_of(name: &str) -> String {
    certs::key_fingerprint(name.as_bytes())
}

fn admit(token: &str, name: &str) -> Change {
    admit_with_key(token, name, &key_of(name))
}

fn admit_with_key(token: &str, name: &str, key: &str) -> Change {
    let (token_id, name, cluster_addr) = (token.into(), name.into(), "127.0.9.1:7100".into());
    Change::AdmitNode { token_id, name, cluster_addr, cert_key: key.into() }
}

/// A token admits one node, which gets the next Raft id and its key
/// pinned; a spent, an expired or an unknown token admits none, and a
/// taken name or key is refused. A removed node's key is revoked: it is
/// never admitted again.
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

    propose(&n, token_change("00000000000000ee", "h", "2999-01-01T00:00:00Z")).await.unwrap();
    let same_key = propose(&n, admit_with_key("00000000000000ee", "n4", &key_of("n2"))).await.unwrap_err();
    assert_eq!(same_key.status, 409, "{}", same_key.message);
    propose(&n, Change::RemoveNode { name: "n3".into() }).await.unwrap();
    let revoked: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT cert_key, raft_id, name FROM revoked_node_keys").fetch_all(&n.pool).await.unwrap();
    assert_eq!(revoked, vec![(key_of("n3"), 3, "n3".to_string())]);
    let back = propose(&n, admit_with_key("00000000000000ee", "n3", &key_of("n3"))).await.unwrap_err();
    assert_eq!(back.status, 403, "{}", back.message);
    assert!(back.message.contains("removed"), "{}", back.message);
    let bad = propose(&n, admit_with_key("00000000000000ee", "n4", "not-a-key")).await.unwrap_err();
    assert_eq!(bad.status, 422, "{}", bad.message);
    assert_eq!(propose(&n, admit("00000000000000ee", "n4")).await.unwrap().raft_id, Some(4));
}

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The first node of a cluster with a cluster channel, registered as its
/// storage would (its address and its key).
async fn start_first(name: &str) -> TestNode {
    let address = free_address();
    let dir = tempfile::tempdir().unwrap();
    let pool = crate::db::open(dir.path()).await.unwrap();
    let options = ClusterOptions { node_name: name.into(), cluster_addr: Some(address), ..Default::default() };
    let node = TestNode { cluster: Cluster::start(dir.path(), pool.clone(), &options).await.unwrap(), dir, pool };
    let mut me = register(name);
    if let Change::RegisterNode { member, .. } = &mut me {
        member.cluster_addr = Some(address.to_string());
        member.cert_key = node.cluster.key_fingerprint();
    }
    propose(&node, me).await.unwrap();
    node
}

/// A new node that joins through `through` with a token made there.
async fn join(through: &TestNode, name: &str) -> TestNode {
    let (address, fingerprint) = through.cluster.cluster_address().unwrap();
    let token = JoinToken::generate(&fingerprint);
    let change = Change::CreateJoinToken {
        id: token.id.clone(),
        secret_hash: token.secret_hash(),
        expires_at: "2999-01-01T00:00:00Z".into(),
        created_by: "admin".into(),
    };
    propose(through, change).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pool = crate::db::open(dir.path()).await.unwrap();
    let join = Some(JoinOptions { url: format!("https://{address}"), token });
    let options =
        ClusterOptions { node_name: name.into(), cluster_addr: Some(free_address()), join, ..Default::default() };
    TestNode { cluster: Cluster::start(dir.path(), pool.clone(), &options).await.unwrap(), dir, pool }
}

/// A client that shows the certificate and key kept in `dir` (as anyone
/// who took them from that node's disk would).
fn client_from_files(dir: &std::path::Path, raft_id: u64) -> Client {
    let identity = Identity::load(dir, raft_id, Arc::default()).unwrap();
    Client::new(identity.client_config().unwrap())
}

fn refused_as_stranger<T: std::fmt::Debug>(answer: Result<T, transport::CallError>) {
    match answer {
        Err(transport::CallError::Refused { status: 403, message, .. }) if message.contains("Only members") => {}
        other => panic!("expected a refusal of a non-member, got {other:?}"),
    }
}

fn refused_claim<T: std::fmt::Debug>(answer: Result<T, transport::CallError>) {
    match answer {
        Err(transport::CallError::Refused { status: 403, message, .. }) if message.contains("A member may") => {}
        other => panic!("expected a refusal of a claim, got {other:?}"),
    }
}

/// Issue 30, finding 1. A member may not speak for another node. Once a
/// node is removed, the certificate and key it kept pass nowhere: not to
/// propose, not to forward a command, not to ask for a certificate or for
/// Raft's messages; a server that shows them is refused too. A certificate
/// the CA's key signs for a key the cluster never pinned passes as no one,
/// whatever Raft id it names, and the signer will not sign one over the
/// channel. Only the signer holds the CA's key.
#[tokio::test]
async fn a_removed_node_and_a_key_the_cluster_never_pinned_are_refused() {
    let a = start_first("a").await;
    let b = join(&a, "b").await;
    let c = join(&a, "c").await;
    let a_addr = a.cluster.cluster_address().unwrap().0.to_string();
    let second = Duration::from_secs(5);
    for n in [&b, &c] {
        assert!(!n.dir.path().join("cluster/ca.key").exists(), "a joined node holds no CA key");
    }
    assert!(a.dir.path().join("cluster/ca.key").exists());

    // A member is served, for itself only.
    let b_client = b.cluster.client().unwrap();
    let status: ClusterStatus = b_client.call(&a_addr, "/cluster/status", &(), second).await.unwrap();
    assert_eq!(status.voters, vec![1, 2, 3]);
    let request = join::AddressRequest { raft_id: 1, address: "127.0.0.1:1".into() };
    refused_claim(b_client.call::<_, bool>(&a_addr, "/cluster/address", &request, second).await);
    refused_claim(b_client.call::<_, serde_json::Value>(&a_addr, "/raft/lease", &json!({"raft_id": 1}), second).await);
    let share = Proposal::now(Change::ShareAudit { origin: 1, node: "a".into(), records: vec![] });
    refused_claim(b_client.call::<_, ProposeAnswer>(&a_addr, "/cluster/propose", &share, second).await);
    let admit = Proposal::now(admit("00000000000000aa", "x"));
    refused_claim(b_client.call::<_, ProposeAnswer>(&a_addr, "/cluster/propose", &admit, second).await);
    let own = Proposal::now(Change::ShareAudit { origin: 2, node: "b".into(), records: vec![] });
    b_client.call::<_, ProposeAnswer>(&a_addr, "/cluster/propose", &own, second).await.unwrap();

    // c is removed, as an admin removes a node: its membership, then its row.
    a.cluster.remove_member(3).await.unwrap();
    propose(&a, Change::RemoveNode { name: "c".into() }).await.unwrap();
    c.cluster.shutdown().await;
    let kept = client_from_files(c.dir.path(), 3);
    let anything = json!({});
    // Proposing, forwarding a command, Raft's messages, a certificate, and
    // the two routes that carry secrets: a snapshot of the state (sealed
    // CHAP secrets, password hashes) and a join's answer (the cluster key,
    // which also needs a token).
    let routes = [
        "/cluster/propose",
        "/cluster/unit-command",
        "/cluster/status",
        "/raft/append",
        "/raft/snapshot",
        "/cluster/certificate",
    ];
    for path in routes {
        refused_as_stranger(kept.call::<_, serde_json::Value>(&a_addr, path, &anything, second).await);
    }
    let join = json!({"token_id": "00000000000000aa", "secret": "00", "node_name": "c", "cluster_addr": "127.0.0.1:1",
        "request": certs::request(&rcgen::KeyPair::generate().unwrap(), "c").unwrap()});
    match kept.call::<_, serde_json::Value>(&a_addr, "/cluster/join", &join, second).await {
        Err(transport::CallError::Refused { status: 403, .. }) => {}
        other => panic!("a removed node rejoined without a token: {other:?}"),
    }
    // The other member has applied the removal too.
    let b_addr = b.cluster.cluster_address().unwrap().0.to_string();
    let wait = b.cluster.raft.wait(Some(second));
    assert!(wait.applied_index_at_least(Some(a.cluster.status().applied_index), "b").await.is_ok());
    refused_as_stranger(kept.call::<_, serde_json::Value>(&b_addr, "/cluster/status", &anything, second).await);
    // A server that shows c's certificate: the members' client refuses it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap().to_string();
    let c_identity = Identity::load(c.dir.path(), 3, Arc::default()).unwrap();
    let router = axum::Router::new().route("/cluster/status", axum::routing::post(|| async { "{}" }));
    transport::serve(listener, c_identity.server_config().unwrap(), router, Arc::default(), Arc::new(|_| false));
    match a.cluster.client().unwrap().call::<_, serde_json::Value>(&fake, "/cluster/status", &(), second).await {
        Err(transport::CallError::Unreachable { reason, .. }) => assert!(reason.contains("removed"), "{reason}"),
        other => panic!("a removed node's certificate was taken: {other:?}"),
    }

    // The CA's key signs a certificate for a new key naming b's Raft id:
    // it passes as no one.
    let signer = certs::Signer::open(&a.dir.path().join("cluster")).unwrap().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let asked = certs::read_request(&certs::request(&key, "b").unwrap()).unwrap();
    let minted = tempfile::tempdir().unwrap();
    let files = minted.path().join("cluster");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::copy(a.dir.path().join("cluster/ca.pem"), files.join("ca.pem")).unwrap();
    std::fs::write(files.join("node.key"), key.serialize_pem()).unwrap();
    std::fs::write(files.join("node.pem"), signer.issue_for(&asked, 2).unwrap()).unwrap();
    let forged = client_from_files(minted.path(), 2);
    refused_as_stranger(forged.call::<_, serde_json::Value>(&a_addr, "/cluster/propose", &anything, second).await);
    // Nor will the signer sign that key for b over the channel.
    let body = signing::CertificateRequest { raft_id: 2, request: certs::request(&key, "b").unwrap() };
    match b_client.call::<_, String>(&a_addr, "/cluster/certificate", &body, Duration::from_secs(15)).await {
        Err(transport::CallError::Refused { status: 403, message, .. }) => {
            assert!(message.contains("not pinned"), "{message}")
        }
        other => panic!("the signer signed a key the cluster never pinned: {other:?}"),
    }
    // b renews its own certificate through the signer, and is served with it.
    let identity = b.cluster.shared.identity.clone().unwrap();
    let renewed = b.cluster.certificate_for(2, &identity.renewal_request("b").unwrap()).await.unwrap();
    identity.install_renewed(2, &renewed).unwrap();
    let fresh = Client::new(identity.client_config().unwrap());
    fresh.call::<_, ClusterStatus>(&a_addr, "/cluster/status", &(), second).await.unwrap();

    b.cluster.shutdown().await;
    a.cluster.shutdown().await;
}

/// Two members over the cluster channel: a node joins with a token and
/// becomes a voter (a membership change), a change proposed through it
/// goes to the leader and is applied on both before it answers, and
/// the joined node, back at another address, is reached there.
#[tokio::test]
async fn a_joined_node_forwards_changes_and_is_reached_at_a_new_address() {
    let a = start_first("a").await;
    let b = join(&a, "b").await;
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

/// Issue 30, finding 6: every route of the cluster channel that reads a
/// body refuses one over its cap (413), and takes one under it. (Routes
/// that take no body, `/cluster/status`, `/cluster/capacity`,
/// `/cluster/replication` and `/cluster/portal-view`, never read one; the
/// snapshot route's cap, 683 MiB, is left out: too much for a unit test.)
#[tokio::test]
async fn every_cluster_route_refuses_a_body_over_its_cap() {
    let a = start_first("a").await;
    let address = a.cluster.cluster_address().unwrap().0.to_string();
    let member = a.cluster.client().unwrap();
    let small = 16 << 10;
    let routes: &[(&str, usize)] = &[
        ("/cluster/add", small),
        ("/cluster/remove", small),
        ("/cluster/address", small),
        ("/cluster/certificate", small),
        ("/cluster/hand-over", small),
        ("/cluster/unit-reset", small),
        ("/cluster/propose", 1 << 20),
        ("/cluster/dry-run", 1 << 20),
        ("/cluster/unit-command", node_checks::UNIT_COMMAND_BODY),
        ("/raft/append", 64 << 20),
        ("/raft/vote", 64 << 20),
        ("/raft/pre-vote", 64 << 20),
        ("/raft/lease", 64 << 20),
        ("/raft/transfer-leader", 64 << 20),
    ];
    let second = Duration::from_secs(20);
    for (path, cap) in routes {
        // A JSON string one byte over the cap, quotes included.
        let over = "x".repeat(cap - 1);
        match member.call::<_, serde_json::Value>(&address, path, &over, second).await {
            Err(transport::CallError::Refused { status: 413, .. }) => {}
            other => panic!("{path}: a body over {cap} bytes was not refused with 413: {other:?}"),
        }
        if *cap > node_checks::UNIT_COMMAND_BODY {
            continue; // Raft's routes share one cap; one under it is sent to /raft/append below.
        }
        let under = "x".repeat(cap - 100);
        let answer = member.call::<_, serde_json::Value>(&address, path, &under, second).await;
        assert!(
            !matches!(answer, Err(transport::CallError::Refused { status: 413, .. })),
            "{path}: under its cap, refused"
        );
    }
    let under = "x".repeat((64 << 20) - 100);
    let answer = member.call::<_, serde_json::Value>(&address, "/raft/append", &under, second).await;
    assert!(
        !matches!(answer, Err(transport::CallError::Refused { status: 413, .. })),
        "/raft/append: under its cap, refused"
    );
    // The join, a stranger's only route, likewise.
    let (_, fingerprint) = a.cluster.cluster_address().unwrap();
    let stranger = Client::new(tls::pinned_client_config(&fingerprint).unwrap());
    match stranger.call::<_, serde_json::Value>(&address, "/cluster/join", &"x".repeat(small - 1), second).await {
        Err(transport::CallError::Refused { status: 413, .. }) => {}
        other => panic!("/cluster/join: a body over its cap was not refused with 413: {other:?}"),
    }
    a.cluster.shutdown().await;
}

/// Issue 30, finding 2: a replication stream runs over mutual TLS with the
/// nodes' certificates. The primary reaches the copy's node and no other;
/// the replica learns which node the primary is; a removed node's
/// certificate and key open no stream, whatever it claims.
#[tokio::test]
async fn a_replication_stream_is_between_members_and_the_nodes_they_say() {
    use target_engine::replication::guard::StreamGuard;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let a = start_first("a").await;
    let b = join(&a, "b").await;
    let c = join(&a, "c").await;
    let applied = a.cluster.status().applied_index;
    for n in [&b, &c] {
        let wait = n.cluster.raft.wait(Some(Duration::from_secs(5)));
        assert!(wait.applied_index_at_least(Some(applied), "caught up").await.is_ok());
    }
    let id = |name: &'static str| {
        let pool = a.pool.clone();
        async move {
            let (id,): (i64,) =
                sqlx::query_as("SELECT id FROM nodes WHERE name = ?").bind(name).fetch_one(&pool).await.unwrap();
            id as u32
        }
    };
    let (a_id, b_id, c_id) = (id("a").await, id("b").await, id("c").await);
    let replica = Arc::new(a.cluster.stream_guard().unwrap().unwrap());
    let primary = b.cluster.stream_guard().unwrap().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = {
        let replica = replica.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                let (tcp, _) = listener.accept().await.unwrap();
                outcomes.push(match replica.accept(tcp).await {
                    Ok((mut stream, peer)) => {
                        let mut hello = [0u8; 5];
                        match stream.read_exact(&mut hello).await {
                            Ok(_) => {
                                stream.write_all(b"world").await.unwrap();
                                stream.flush().await.unwrap();
                                Ok((peer, hello))
                            }
                            // The primary closed it: not the node it meant.
                            Err(e) => Err(format!("node {peer:?}: {e}")),
                        }
                    }
                    Err(e) => Err(e),
                });
            }
            outcomes
        })
    };
    // b reaches a as the copy's node, and the bytes go both ways.
    let mut stream = primary.connect(tokio::net::TcpStream::connect(address).await.unwrap(), a_id).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.flush().await.unwrap();
    let mut answer = [0u8; 5];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"world");
    // b meant to reach c's copy: a is not c, and b says so.
    let wrong = primary.connect(tokio::net::TcpStream::connect(address).await.unwrap(), c_id).await;
    assert!(wrong.err().unwrap().contains("not node"));

    // c is removed; its certificate and key, kept on its disk, open no stream.
    a.cluster.remove_member(3).await.unwrap();
    propose(&a, Change::RemoveNode { name: "c".into() }).await.unwrap();
    c.cluster.shutdown().await;
    let kept = Identity::load(c.dir.path(), 3, a.cluster.state_machine.roster()).unwrap();
    let removed = stream_guard::ClusterStreamGuard::new(&kept, Arc::new(roster::Roster::default())).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    // Its handshake may finish on its side; the replica then refuses it.
    if let Ok(mut stream) = removed.connect(tcp, a_id).await {
        let mut byte = [0u8; 1];
        assert!(stream.read(&mut byte).await.map(|n| n == 0).unwrap_or(true), "a removed node got an answer");
    }
    let outcomes = accepted.await.unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap(), &(Some(b_id), *b"hello"));
    assert!(outcomes[2].as_ref().is_err_and(|e| e.contains("not a member")), "{:?}", outcomes[2]);
    b.cluster.shutdown().await;
    a.cluster.shutdown().await;
}
