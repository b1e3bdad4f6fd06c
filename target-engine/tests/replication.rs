//! Synchronous replication between engines over real TCP (CLUSTER.md §2),
//! each engine on its own loopback address as a node of its own:
//!
//! * every write an initiator was told succeeded is on every in-sync copy;
//! * a replica that goes away is marked out of sync and writes carry on;
//!   when it comes back it gets only the regions it missed, then counts
//!   again;
//! * a primary whose replica applied a newer placement is fenced: its
//!   writes end with NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC
//!   ACCESS STATE TRANSITION (02h/04h/0Ah), never GOOD;
//! * a replica's own unit refuses media access the same way;
//! * a stream from a primary that does not hold the replication key is
//!   refused before anything else;
//! * a replica acknowledges only what it holds durably (a power cut of its
//!   disk loses no acknowledged write), and one whose disk fails is marked
//!   out of sync and resynced once the disk works again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use target_engine::backend::power_cut::PowerCutBackend;
use target_engine::backend::BlockBackend;
use target_engine::engine::LocalCopies;
use target_engine::testkit::initiator::*;
use target_engine::{Engine, EngineConfig, ReplicationStatus};

const VOLUME_BYTES: u64 = 8 << 20;
const PRIMARY_IQN: &str = "iqn.2026-11.test.portico:primary";
const REPLICA_IQN: &str = "iqn.2026-11.test.portico:replica";
const TEST_KEY: &[u8] = b"portico-test-replication-key";

struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("portico-repl-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("replication.key"), TEST_KEY).unwrap();
        Dir(d)
    }
    /// The replication key every node of the test shares.
    fn key(&self) -> PathBuf {
        self.0.join("replication.key")
    }
    fn image(&self, node: u32) -> PathBuf {
        self.0.join(format!("node{node}.img"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One node's configuration: its replication listener, the volume `r1`
/// placed at `epoch` with `primary`, and a target exporting it.
fn node_config(
    dir: &Dir,
    me: u32,
    listen: SocketAddr,
    epoch: u64,
    primary: u32,
    replicas: &[(u32, SocketAddr)],
    min_in_sync: usize,
) -> EngineConfig {
    let toml = node_config_toml(dir, me, listen, epoch, primary, replicas, min_in_sync);
    EngineConfig::from_toml(&toml).expect("a valid test configuration")
}

fn node_config_toml(
    dir: &Dir,
    me: u32,
    listen: SocketAddr,
    epoch: u64,
    primary: u32,
    replicas: &[(u32, SocketAddr)],
    min_in_sync: usize,
) -> String {
    let copies: Vec<String> = replicas.iter().map(|(n, a)| format!("{{ node = {n}, address = \"{a}\" }}")).collect();
    let iqn = if me == primary { PRIMARY_IQN } else { REPLICA_IQN };
    format!(
        r#"
[replication]
node = {me}
listen = "{listen}"
key_file = "{key}"

[[volume]]
name = "r1"
path = "{image}"
size = "8MiB"
replication = {{ epoch = {epoch}, primary = {primary}, min_in_sync = {min_in_sync}, replicas = [ {copies} ] }}

[[target]]
iqn = "{iqn}"
portals = ["127.0.{me}.1:0"]
luns = {{ 0 = "r1" }}
"#,
        image = dir.image(me).display(),
        key = dir.key().display(),
        copies = copies.join(", "),
    )
}

/// A replica node: its engine and the address it takes streams on.
async fn start_replica(config: EngineConfig) -> (Engine, SocketAddr) {
    let engine = Engine::new();
    engine.apply(config).await.expect("replica applied");
    let addr = engine.replication_address().await.expect("listening");
    (engine, addr)
}

async fn portal(engine: &Engine) -> SocketAddr {
    *engine.portals().await.values().next().expect("a portal")
}

async fn session(engine: &Engine, target: &str) -> Initiator {
    let mut i = Initiator::connect(portal(engine).await).await;
    let o = LoginOpts { initiator: INITIATOR, target: Some(target), ..Default::default() };
    i.login(&o).await.expect("login");
    i
}

/// 4 KiB of a pattern that names `lba` and `round`.
fn pattern(lba: u32, round: u8) -> Vec<u8> {
    (0..4096u32).map(|i| (i as u8) ^ (lba as u8).wrapping_mul(31) ^ round.wrapping_mul(7)).collect()
}

async fn write_4k(i: &mut Initiator, lba: u32, round: u8) -> CmdResult {
    i.command_ok(0, &write10(lba, 8), 0, &pattern(lba, round)).await
}

const SYNCHRONIZE_CACHE_10: [u8; 10] = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn sense(r: &CmdResult) -> (u8, u8, u8) {
    assert_eq!(r.status, 2, "CHECK CONDITION expected, got status {:#x}", r.status);
    (r.sense[2] & 0x0f, r.sense[12], r.sense[13])
}

fn same_images(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

fn status_of(all: &[ReplicationStatus]) -> &ReplicationStatus {
    all.iter().find(|s| s.volume == "r1").expect("r1 is replicated")
}

/// Waits (bounded) until the primary reports `replica` in `state`.
async fn wait_for_state(primary: &Engine, replica: u32, state: &str) -> ReplicationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = primary.replication().await;
        let s = status_of(&all).clone();
        if s.replicas.iter().any(|r| r.node == replica && r.state == state) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "replica {replica} never became {state}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_on_every_copy() {
    let dir = Dir::new("three");
    let placeholder: SocketAddr = "127.0.0.1:1".parse().unwrap();
    // Replicas first, on free ports; the primary then names their addresses.
    let (r2, a2) = start_replica(node_config(
        &dir,
        2,
        "127.0.2.1:0".parse().unwrap(),
        1,
        1,
        &[(2, placeholder), (3, placeholder)],
        3,
    ))
    .await;
    let (r3, a3) = start_replica(node_config(
        &dir,
        3,
        "127.0.3.1:0".parse().unwrap(),
        1,
        1,
        &[(2, placeholder), (3, placeholder)],
        3,
    ))
    .await;
    let primary = Engine::new();
    primary.apply(node_config(&dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2), (3, a3)], 3)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    wait_for_state(&primary, 3, "in-sync").await;

    let mut i = session(&primary, PRIMARY_IQN).await;
    // 64 writes of 4 KiB, none overlapping, scattered over the volume.
    for n in 0..64u32 {
        let lba = (n * 37 % 255) * 8;
        assert_eq!(write_4k(&mut i, lba, 1).await.status, 0, "write at {lba}");
    }
    // Read back through the primary.
    let back = i.command_ok(0, &read10(296, 8), 4096, &[]).await;
    assert!(back.data == pattern(296, 1), "read back through the primary");
    // SYNCHRONIZE CACHE is made durable on every replica before GOOD.
    let flushes = |all: Vec<ReplicationStatus>| status_of(&all).flushes;
    assert_eq!((flushes(r2.replication().await), flushes(r3.replication().await)), (0, 0));
    assert_eq!(i.command_ok(0, &SYNCHRONIZE_CACHE_10, 0, &[]).await.status, 0);
    assert_eq!((flushes(r2.replication().await), flushes(r3.replication().await)), (1, 1));

    // Every copy holds the same bytes once the initiator has its GOOD.
    assert!(same_images(&dir.image(1), &dir.image(2)), "node 2 differs from the primary");
    assert!(same_images(&dir.image(1), &dir.image(3)), "node 3 differs from the primary");

    let s = status_of(&primary.replication().await).clone();
    assert_eq!((s.role, s.epoch, s.suspended), ("primary", 1, false));
    assert!(s.replicas.iter().all(|r| r.state == "in-sync"), "{s:?}");
    assert_eq!(status_of(&r2.replication().await).role, "replica");

    // A replica's own unit does not serve the volume.
    let mut standby = session(&r2, REPLICA_IQN).await;
    let refused = standby.command_ok(0, &read10(0, 8), 4096, &[]).await;
    assert_eq!(sense(&refused), (0x2, 0x04, 0x0a), "read on a replica");

    primary.shutdown().await;
    r2.shutdown().await;
    r3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_comes_back_gets_only_what_it_missed() {
    let dir = Dir::new("resync");
    let placeholder: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let replica_config = |listen: SocketAddr| node_config(&dir, 2, listen, 1, 1, &[(2, placeholder)], 1);
    let (r2, a2) = start_replica(replica_config("127.0.2.1:0".parse().unwrap())).await;
    let primary = Engine::new();
    primary.apply(node_config(&dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2)], 1)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;

    let mut i = session(&primary, PRIMARY_IQN).await;
    // Fill the whole volume while both copies are in sync.
    for lba in (0..(VOLUME_BYTES / 512) as u32).step_by(8) {
        assert_eq!(write_4k(&mut i, lba, 1).await.status, 0);
    }
    assert!(same_images(&dir.image(1), &dir.image(2)));

    // The replica's node goes away: writes carry on without it.
    r2.shutdown().await;
    drop(r2);
    let missed: Vec<u32> = (0..16u32).map(|n| 1024 + n * 8).collect(); // 64 KiB at 512 KiB
    for &lba in &missed {
        let r = write_4k(&mut i, lba, 2).await;
        assert_eq!(r.status, 0, "a write while the replica is away");
    }
    let s = wait_for_state(&primary, 2, "out-of-sync").await;
    assert!(!s.suspended, "min_in_sync 1: the primary alone still takes writes");
    assert!(!same_images(&dir.image(1), &dir.image(2)), "the replica missed the writes");

    // It comes back on the same address: only the regions written while it
    // was away travel, then it counts as in sync again.
    let (r2, _) = start_replica(replica_config(a2)).await;
    let s = wait_for_state(&primary, 2, "in-sync").await;
    let copied: u64 = s.replicas.iter().map(|r| r.copied_bytes).sum();
    assert!(copied > 0, "something was copied: {s:?}");
    assert!(copied <= 2 * 64 * 1024, "only the dirty regions were copied, not {copied} bytes: {s:?}");
    assert_eq!(i.command_ok(0, &SYNCHRONIZE_CACHE_10, 0, &[]).await.status, 0);
    assert!(same_images(&dir.image(1), &dir.image(2)), "the resync made the copies equal");

    // And it takes part in writes again.
    assert_eq!(write_4k(&mut i, 8, 3).await.status, 0);
    assert!(same_images(&dir.image(1), &dir.image(2)));

    // A clean stop is noted beside the image, so that the next start trusts
    // the replicas (after a crash it resyncs them in full).
    let marks = dir.0.join("node1.img.placement.toml");
    assert!(std::fs::read_to_string(&marks).unwrap().contains("serving = true"));
    drop(i);
    primary.shutdown().await;
    drop(primary);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&marks).unwrap().contains("serving = false") {
        assert!(tokio::time::Instant::now() < deadline, "the primary's clean stop was not noted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r2.shutdown().await;
}

/// Node 2 a replica (listening on 127.0.2.1) and node 1 the primary at
/// epoch 1, both copies in sync and required (min_in_sync 2).
async fn two_nodes(dir: &Dir) -> (Engine, Engine) {
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let (r2, a2) = start_replica(node_config(dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], 2)).await;
    let primary = Engine::new();
    primary.apply(node_config(dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2)], 2)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    (r2, primary)
}

/// Where a replica's own configuration names the other copies: unused.
const PLACEHOLDER: &str = "127.0.0.1:1";

/// Node 1 primary at epoch 1, node 2 its replica; node 2 applies epoch 2
/// with `new_primary` while node 1 still runs epoch 1.
async fn fenced_after_a_move(test: &str, new_primary: u32) {
    let dir = Dir::new(test);
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let (r2, primary) = two_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    assert_eq!(write_4k(&mut i, 0, 1).await.status, 0);

    let others: Vec<(u32, SocketAddr)> =
        [1, 2, 3].into_iter().filter(|n| *n != new_primary).map(|n| (n, placeholder)).collect();
    r2.apply(node_config(&dir, 2, listen2, 2, new_primary, &others, 1)).await.unwrap();
    assert_eq!(status_of(&r2.replication().await).epoch, 2);

    // The old primary's next write is refused by node 2 and never GOOD.
    let r = write_4k(&mut i, 8, 2).await;
    assert_eq!(sense(&r), (0x2, 0x04, 0x0a), "a fenced primary's write");
    let again = i.command_ok(0, &read10(0, 8), 4096, &[]).await;
    assert_eq!(sense(&again), (0x2, 0x04, 0x0a), "a fenced primary's read");
    // Node 2 holds nothing of the refused write.
    let copy = std::fs::read(dir.image(2)).unwrap();
    assert!(copy[..4096] == pattern(0, 1)[..], "the accepted write is on the replica");
    assert!(copy[4096..8192].iter().all(|&b| b == 0), "the fenced write reached node 2");

    primary.shutdown().await;
    r2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_of_an_older_epoch_is_fenced_by_a_replica_that_stays() {
    fenced_after_a_move("fence-stays", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_of_an_older_epoch_is_fenced_by_the_replica_promoted() {
    fenced_after_a_move("fence-promoted", 2).await;
}

fn pr_out(service_action: u8, pr_type: u8) -> [u8; 10] {
    [0x5f, service_action, pr_type, 0, 0, 0, 0, 0, 24, 0]
}

fn pr_params(key: u64, service_action_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&service_action_key.to_be_bytes());
    p
}

const READ_RESERVATION: [u8; 10] = [0x5e, 0x01, 0, 0, 0, 0, 0, 0, 0x40, 0];

/// (key, type) of the reservation READ RESERVATION reports, if any.
fn reservation(r: &CmdResult) -> Option<(u64, u8)> {
    assert_eq!(r.status, 0, "READ RESERVATION");
    let len = u32::from_be_bytes(r.data[4..8].try_into().unwrap());
    (len >= 16).then(|| (u64::from_be_bytes(r.data[8..16].try_into().unwrap()), r.data[21] & 0x0f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_follow_the_volume_to_its_new_primary() {
    let dir = Dir::new("pr");
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let (r2, primary) = two_nodes(&dir).await;

    // REGISTER and RESERVE (Write Exclusive) without APTPL, through the primary.
    let mut i = session(&primary, PRIMARY_IQN).await;
    assert_eq!(i.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0, 0xfeed)).await.status, 0);
    assert_eq!(i.command_ok(0, &pr_out(0x01, 1), 0, &pr_params(0xfeed, 0)).await.status, 0);
    assert_eq!(reservation(&i.command_ok(0, &READ_RESERVATION, 0x40, &[]).await), Some((0xfeed, 1)));

    // Through the replica's own target: the same reservation is read, and a
    // change is refused as media access is there (the primary owns it).
    let mut k = session(&r2, REPLICA_IQN).await;
    let _ = k.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(reservation(&k.command_ok(0, &READ_RESERVATION, 0x40, &[]).await), Some((0xfeed, 1)));
    let refused = k.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0, 0xbad)).await;
    assert_eq!(sense(&refused), (0x2, 0x04, 0x0a), "PR OUT on a replica");
    assert_eq!(reservation(&k.command_ok(0, &READ_RESERVATION, 0x40, &[]).await), Some((0xfeed, 1)));
    drop(k);

    // The primary's node is gone; node 2 is promoted at epoch 2.
    primary.shutdown().await;
    drop(primary);
    r2.apply(node_config(&dir, 2, listen2, 2, 2, &[(1, placeholder)], 1)).await.unwrap();
    assert_eq!(status_of(&r2.replication().await).role, "primary");

    // Through the new primary's own target, the same reservation.
    let mut j = session(&r2, PRIMARY_IQN).await;
    let _ = j.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(reservation(&j.command_ok(0, &READ_RESERVATION, 0x40, &[]).await), Some((0xfeed, 1)));
    r2.shutdown().await;
}

/// A primary must prove it holds the cluster's replication key: a replica
/// answers a hello with its own proof (which only the right key verifies)
/// and refuses a wrong proof before it looks at the volume or the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_the_replication_key_is_refused() {
    use bytes::BytesMut;
    use target_engine::replication::auth::{self, Exchange, Key, Side};
    use target_engine::replication::core::ops::Epoch;
    use target_engine::replication::frame::{self, Frame, Refusal};
    use tokio::io::AsyncWriteExt;

    let dir = Dir::new("key");
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    // Plain TCP: the frames of the key exchange are seen as they travel.
    let mut config = node_config(&dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], 1);
    config.replication.as_mut().unwrap().transport = target_engine::replication::config::Transport::Plain;
    let (r2, a2) = start_replica(config).await;
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(a2).await.unwrap().into_split();
    let send = |f: Frame| {
        let mut out = BytesMut::new();
        frame::encode(&f, &mut out);
        out
    };
    let primary_nonce = [9u8; auth::NONCE];
    let hello = Frame::Hello {
        cluster: "portico".into(),
        volume: "r1".into(),
        epoch: Epoch(1),
        primary: 1,
        replica: 2,
        nonce: primary_nonce,
    };
    wr.write_all(&send(hello)).await.unwrap();
    let mut buf = BytesMut::new();
    let Frame::Challenge { nonce, proof } = frame::read(&mut rd, &mut buf, "replica").await.unwrap() else {
        panic!("the replica did not answer the hello with its challenge");
    };
    let exchange = Exchange {
        cluster: "portico",
        volume: "r1",
        epoch: 1,
        primary: 1,
        replica: 2,
        primary_nonce: &primary_nonce,
        replica_nonce: &nonce,
    };
    let (right, wrong) = (Key::new(TEST_KEY).unwrap(), Key::new(b"not-the-cluster-key-0000").unwrap());
    assert!(exchange.verify(&right, Side::Replica, &proof), "the replica proves it holds the key");
    assert!(!exchange.verify(&wrong, Side::Replica, &proof));

    wr.write_all(&send(Frame::Proof(exchange.proof(&wrong, Side::Primary)))).await.unwrap();
    let answer = frame::read(&mut rd, &mut buf, "replica").await.unwrap();
    assert_eq!(answer, Frame::Refused(Refusal::Unauthenticated));
    assert!(frame::read(&mut rd, &mut buf, "replica").await.is_err(), "the stream ends");
    let status = status_of(&r2.replication().await).clone();
    assert_eq!(status.epoch, 1, "nothing changed on the replica: {status:?}");
    r2.shutdown().await;
}

/// Issue 30, finding 3: connections that never finish their opening fill
/// only the openings of their own address (one more from there is closed at
/// once), a frame longer than an opening may be ends the connection, and a
/// hello from another address is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_fill_only_their_own_openings() {
    use bytes::{BufMut, BytesMut};
    use target_engine::replication::frame::{self, Frame};
    use target_engine::replication::server::OPENINGS_PER_ADDRESS;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = Dir::new("openings");
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let mut config = node_config(&dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], 1);
    config.replication.as_mut().unwrap().transport = target_engine::replication::config::Transport::Plain;
    let (r2, a2) = start_replica(config).await;
    let from = |ip: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket
    };
    let mut idle = Vec::new();
    for _ in 0..OPENINGS_PER_ADDRESS {
        idle.push(from("127.0.0.9").connect(a2).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut one_more = from("127.0.0.9").connect(a2).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), one_more.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "a connection beyond its address's openings was kept");

    // A frame header that announces a body longer than an opening may be.
    let mut long = from("127.0.0.10").connect(a2).await.unwrap();
    let mut header = BytesMut::new();
    header.put_slice(b"PR\x02\x01");
    header.put_u32(frame::MAX_OPENING_BODY as u32 + 1);
    header.put_u32(0);
    long.write_all(&header).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), long.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "a long opening frame was read");

    // Another address still gets its hello answered.
    let (mut rd, mut wr) = from("127.0.0.11").connect(a2).await.unwrap().into_split();
    let hello = Frame::Hello {
        cluster: "portico".into(),
        volume: "r1".into(),
        epoch: target_engine::replication::core::ops::Epoch(1),
        primary: 1,
        replica: 2,
        nonce: [7u8; 32],
    };
    let mut out = BytesMut::new();
    frame::encode(&hello, &mut out);
    wr.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let answer = frame::read(&mut rd, &mut buf, "replica").await.unwrap();
    assert!(matches!(answer, Frame::Challenge { .. }), "{answer:?}");
    drop(idle);
    r2.shutdown().await;
}

/// Nodes 2 and 3 replicas of node 1 at epoch 1 (min_in_sync 1): their
/// engines, their listening addresses, and the primary.
async fn three_nodes(dir: &Dir) -> ((Engine, SocketAddr), (Engine, SocketAddr), Engine) {
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let others = [(2, placeholder), (3, placeholder)];
    let (r2, a2) = start_replica(node_config(dir, 2, "127.0.2.1:0".parse().unwrap(), 1, 1, &others, 1)).await;
    let (r3, a3) = start_replica(node_config(dir, 3, "127.0.3.1:0".parse().unwrap(), 1, 1, &others, 1)).await;
    let primary = Engine::new();
    primary.apply(node_config(dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2), (3, a3)], 1)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    wait_for_state(&primary, 3, "in-sync").await;
    ((r2, a2), (r3, a3), primary)
}

/// Node 2 applies epoch 2 as the primary (node 3 its replica, node 1 gone),
/// then node 3 does: returns what node 2 says of node 3 once it is in sync.
async fn promote_node_2(dir: &Dir, r2: &Engine, (r3, a3): (&Engine, SocketAddr)) -> ReplicationStatus {
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    // The listeners as first configured: they stay as they are.
    let (l2, l3) = ("127.0.2.1:0".parse().unwrap(), "127.0.3.1:0".parse().unwrap());
    r3.apply(node_config(dir, 3, l3, 2, 2, &[(1, placeholder), (3, placeholder)], 1)).await.unwrap();
    r2.apply(node_config(dir, 2, l2, 2, 2, &[(1, placeholder), (3, a3)], 1)).await.unwrap();
    assert_eq!(status_of(&r2.replication().await).role, "primary");
    wait_for_state(r2, 3, "in-sync").await
}

/// The demotion hook: the primary admits nothing more (NOT READY,
/// transitioning), drains, and settles everything on its replicas, so that
/// the replica promoted next has nothing to reconcile: its replica is in
/// sync at the new epoch at once, with nothing copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_drains_and_hands_over_with_nothing_to_copy() {
    let dir = Dir::new("demote");
    let ((r2, _), (r3, a3), primary) = three_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    for n in 0..32u32 {
        assert_eq!(write_4k(&mut i, n * 64, 1).await.status, 0);
    }
    let demoted = primary.demote("r1", Duration::from_secs(5)).await.expect("node 1 is the primary");
    assert!(demoted.drained && demoted.settled, "{demoted:?}");
    assert_eq!(sense(&write_4k(&mut i, 8, 2).await), (0x2, 0x04, 0x0a), "a write after the demotion");
    assert_eq!(sense(&i.command_ok(0, &read10(0, 8), 4096, &[]).await), (0x2, 0x04, 0x0a), "a read after it");
    assert!(r2.demote("r1", Duration::from_secs(1)).await.is_err(), "a replica is not demoted");

    let s = promote_node_2(&dir, &r2, (&r3, a3)).await;
    let node3 = s.replicas.iter().find(|r| r.node == 3).unwrap();
    assert_eq!((node3.copied_bytes, node3.matched_bytes), (0, 0), "nothing to reconcile: {s:?}");
    assert!(same_images(&dir.image(2), &dir.image(3)));
    // Asked again once the move is done (as reopening it as a replica
    // does), the old primary answers how its demotion ended: it does not
    // try to settle again on replicas that follow the new primary by now.
    let again = primary.demote("r1", Duration::from_secs(5)).await.expect("still open as the primary here");
    assert!(again.drained && again.settled, "{again:?}");
    let mut j = session(&r2, PRIMARY_IQN).await;
    let _ = j.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(write_4k(&mut j, 8, 3).await.status, 0, "the new primary serves");
    assert!(same_images(&dir.image(2), &dir.image(3)));
    for e in [&primary, &r2, &r3] {
        e.shutdown().await;
    }
}

/// A CLEAR while a replica was away: the replica comes back with its old
/// registrations on disk, and the primary sends it the unit's state on
/// connecting, "none" included, so that promoted later it does not bring
/// back the cleared key and reservation (two owners of one disk for a
/// Windows failover cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_cleared_while_a_replica_was_away_stays_cleared_after_a_failover() {
    let dir = Dir::new("pr-clear-away");
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let others = [(2, placeholder), (3, placeholder)];
    let ((r2, _), (r3, a3), primary) = three_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    // REGISTER and RESERVE (Write Exclusive), without APTPL.
    assert_eq!(i.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0, 0xfeed)).await.status, 0, "REGISTER");
    assert_eq!(i.command_ok(0, &pr_out(0x01, 1), 0, &pr_params(0xfeed, 0)).await.status, 0, "RESERVE");

    // Node 3 goes away; the host clears everything through the primary.
    r3.shutdown().await;
    drop(r3);
    assert_eq!(write_4k(&mut i, 0, 1).await.status, 0, "writes go on without node 3");
    assert_eq!(i.command_ok(0, &pr_out(0x03, 0), 0, &pr_params(0xfeed, 0)).await.status, 0, "CLEAR");
    assert!(keys(&i.command_ok(0, &READ_KEYS, 0x10, &[]).await).is_empty());

    // Node 3 comes back on the same address and is resynced.
    let (r3, _) = start_replica(node_config(&dir, 3, a3, 1, 1, &others, 1)).await;
    wait_for_state(&primary, 3, "in-sync").await;

    // The primary's node is gone; node 3 is promoted at epoch 2.
    primary.shutdown().await;
    drop(primary);
    r2.shutdown().await;
    r3.apply(node_config(&dir, 3, a3, 2, 3, &[(1, placeholder), (2, placeholder)], 1)).await.unwrap();
    assert_eq!(status_of(&r3.replication().await).role, "primary");
    let mut j = session(&r3, PRIMARY_IQN).await;
    let _ = j.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert!(keys(&j.command_ok(0, &READ_KEYS, 0x10, &[]).await).is_empty(), "the cleared key came back");
    assert_eq!(reservation(&j.command_ok(0, &READ_RESERVATION, 0x40, &[]).await), None, "the reservation came back");
    r3.shutdown().await;
}

/// The primary lost, and the replica the cluster promotes restarts before
/// it opens the volume as the primary: its activity log was in its memory,
/// so it does not know where the copies may differ, and compares the
/// other copy in full (issue 29, finding 5; before, it counted it in sync
/// and compared nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_promoted_while_it_restarts_compares_the_copies_in_full() {
    let dir = Dir::new("promoted-restart");
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let ((r2, _), (r3, _), primary) = three_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    for n in 0..16u32 {
        assert_eq!(write_4k(&mut i, n * 64, 1).await.status, 0);
    }
    primary.shutdown().await;
    drop(primary);
    r2.shutdown().await;
    drop(r2);
    // Node 3 follows the new placement; node 2 starts with it: the primary.
    let (l2, l3) = ("127.0.2.1:0".parse().unwrap(), "127.0.3.1:0".parse().unwrap());
    r3.apply(node_config(&dir, 3, l3, 2, 2, &[(1, placeholder), (3, placeholder)], 1)).await.unwrap();
    let a3 = r3.replication_address().await.unwrap();
    let (r2, _) = start_replica(node_config(&dir, 2, l2, 2, 2, &[(1, placeholder), (3, a3)], 1)).await;
    assert_eq!(status_of(&r2.replication().await).role, "primary");
    let s = wait_for_state(&r2, 3, "in-sync").await;
    let node3 = s.replicas.iter().find(|r| r.node == 3).unwrap();
    assert!(node3.copied_bytes + node3.matched_bytes >= 8 << 20, "every region compared: {s:?}");
    assert!(same_images(&dir.image(2), &dir.image(3)));
    r2.shutdown().await;
    r3.shutdown().await;
}

/// A reservation change that cannot reach the other copies (the primary
/// learns on the way that it was fenced) fails, and is not on the old
/// primary's disk either: it kept only what was replicated, so reopened,
/// it does not bring back a change the host was told failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_change_that_could_not_be_replicated_is_not_kept_on_disk() {
    let dir = Dir::new("pr-not-replicated");
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let placeholder: SocketAddr = PLACEHOLDER.parse().unwrap();
    let (r2, primary) = two_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(i.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0, 0xfeed)).await.status, 0, "REGISTER");
    // Node 2 moves on to epoch 2; node 1 does not know yet.
    r2.apply(node_config(&dir, 2, listen2, 2, 2, &[(1, placeholder)], 1)).await.unwrap();
    let moved = i.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0xfeed, 0xbad)).await;
    assert_ne!(moved.status, 0, "a change the replica refused");
    let state = dir
        .image(1)
        .with_file_name(format!("{}.reservations.toml", dir.image(1).file_name().unwrap().to_string_lossy()));
    let saved = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(saved.contains(&format!("{:016x}", 0xfeedu64)), "the replicated registration is kept: {saved}");
    assert!(!saved.contains(&format!("{:016x}", 0xbadu64)), "a change that failed is on disk: {saved}");
    primary.shutdown().await;
    r2.shutdown().await;
}

/// A primary lost without a demotion: the replica promoted reconciles the
/// other by the activity logs (the regions of the last writes at most),
/// not by comparing the whole volume, and the two end equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_after_a_crash_reconciles_only_the_last_writes() {
    let dir = Dir::new("reconcile");
    let ((r2, _), (r3, a3), primary) = three_nodes(&dir).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    for n in 0..32u32 {
        assert_eq!(write_4k(&mut i, n * 64, 1).await.status, 0);
    }
    primary.shutdown().await;
    drop(primary);
    let s = promote_node_2(&dir, &r2, (&r3, a3)).await;
    let node3 = s.replicas.iter().find(|r| r.node == 3).unwrap();
    // The last write is never settled (nothing came after it): its 64 KiB
    // region at least is copied, and far less than the 8 MiB volume.
    assert!(node3.copied_bytes >= 65536 && node3.copied_bytes <= 4 * 65536, "{s:?}");
    assert_eq!(node3.matched_bytes, 0, "no region compared by checksums: {s:?}");
    assert!(same_images(&dir.image(2), &dir.image(3)));
    r2.shutdown().await;
    r3.shutdown().await;
}

/// Reservation commands sent to the engine that serves the volume, as
/// `portico serve` does over the cluster's member routes.
#[derive(Debug, Default)]
struct ToPrimary(std::sync::Mutex<Option<Engine>>);

#[async_trait::async_trait]
impl target_engine::scsi::forward::UnitForwarder for ToPrimary {
    async fn forward(
        &self,
        command: target_engine::scsi::forward::ForwardedCommand,
    ) -> Result<target_engine::scsi::forward::ForwardedOutcome, String> {
        let primary = self.0.lock().unwrap().clone().ok_or("the primary's node does not answer")?;
        Ok(primary.run_forwarded(command).await)
    }

    async fn reset_elsewhere(&self, volume: &str) {
        let primary = self.0.lock().unwrap().clone();
        if let Some(primary) = primary {
            assert!(primary.reset_unit_from_elsewhere(volume).await, "the primary has {volume}");
        }
    }
}

/// The keys READ KEYS reports.
fn keys(r: &CmdResult) -> Vec<u64> {
    assert_eq!(r.status, 0, "READ KEYS");
    let len = u32::from_be_bytes(r.data[4..8].try_into().unwrap()) as usize;
    r.data[8..8 + len].chunks(8).map(|k| u64::from_be_bytes(k.try_into().unwrap())).collect()
}

const READ_KEYS: [u8; 10] = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0];

/// PERSISTENT RESERVE OUT and IN through the replica's standby port run on
/// the primary, for the nexus they came on: the registration and the
/// reservation are the primary's (and conflict there with another
/// initiator's write), and both ports answer READ KEYS and READ
/// RESERVATION alike. With the primary gone, the standby port refuses them
/// as before (NOT READY, standby) instead of answering from stale state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_commands_through_a_standby_port_run_on_the_primary() {
    let dir = Dir::new("forward");
    let forwarder = std::sync::Arc::new(ToPrimary::default());
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let r2 = Engine::new();
    assert!(r2.set_unit_forwarder(forwarder.clone()));
    r2.apply(node_config(&dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], 2)).await.unwrap();
    let a2 = r2.replication_address().await.unwrap();
    let primary = Engine::new();
    primary.apply(node_config(&dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2)], 2)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    *forwarder.0.lock().unwrap() = Some(primary.clone());

    let mut standby = session(&r2, REPLICA_IQN).await;
    let _ = standby.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(standby.command_ok(0, &pr_out(0x00, 0), 0, &pr_params(0, 0xbeef)).await.status, 0, "REGISTER");
    assert_eq!(standby.command_ok(0, &pr_out(0x01, 1), 0, &pr_params(0xbeef, 0)).await.status, 0, "RESERVE");
    let mut i = session(&primary, PRIMARY_IQN).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    for (port, s) in [("primary", &mut i), ("standby", &mut standby)] {
        assert_eq!(keys(&s.command_ok(0, &READ_KEYS, 0x10, &[]).await), vec![0xbeef], "READ KEYS through the {port}");
        let r = s.command_ok(0, &READ_RESERVATION, 0x40, &[]).await;
        assert_eq!(reservation(&r), Some((0xbeef, 1)), "READ RESERVATION through the {port}");
    }
    // Write Exclusive, held through the standby port: another initiator's
    // write through the primary conflicts.
    let mut other = Initiator::connect(portal(&primary).await).await;
    let o =
        LoginOpts { initiator: "iqn.2026-11.test.portico:other-host", target: Some(PRIMARY_IQN), ..Default::default() };
    other.login(&o).await.expect("login");
    let _ = other.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(write_4k(&mut other, 0, 1).await.status, 0x18, "RESERVATION CONFLICT");
    // A bad service action key through the standby port: the primary's answer.
    let r = standby.command_ok(0, &pr_out(0x01, 1), 0, &pr_params(0xbad, 0)).await;
    assert_eq!(r.status, 0x18, "RESERVE with a key that is not registered");
    // A parameter list longer than a node forwards is refused here, before it
    // is sent (as naming more ports than a unit takes).
    let long = (128 << 10) + 24u32;
    let mut cdb = pr_out(0x00, 0);
    cdb[5..9].copy_from_slice(&long.to_be_bytes());
    let mut params = pr_params(0, 0xfeed);
    params.resize(long as usize, 0);
    let r = standby.command_ok(0, &cdb, 0, &params).await;
    assert_eq!(sense(&r), (0x5, 0x55, 0x04), "a parameter list over 128 KiB through the standby port");
    assert_eq!(keys(&i.command_ok(0, &READ_KEYS, 0x10, &[]).await), vec![0xbeef], "nothing changed");
    // The replica's own copy of the state followed (it is replicated).
    assert_eq!(r2.reservations().await[0].1, primary.reservations().await[0].1);

    primary.shutdown().await;
    *forwarder.0.lock().unwrap() = None;
    let r = standby.command_ok(0, &READ_KEYS, 0x10, &[]).await;
    assert_eq!(sense(&r), (0x2, 0x04, 0x0b), "no primary: the standby refusal");
    r2.shutdown().await;
}

/// Node 1 the primary and node 2 a replica whose copy is kept on a disk
/// that can fail and lose power (`Engine::replace_local_copies`).
async fn with_a_faulty_replica(dir: &Dir, min_in_sync: usize) -> (Engine, Engine, Arc<PowerCutBackend>) {
    let disk = Arc::new(PowerCutBackend::new(VOLUME_BYTES));
    let r2 = Engine::new();
    let kept = disk.clone();
    assert!(r2.replace_local_copies(LocalCopies(Arc::new(move |_, _| kept.clone() as Arc<dyn BlockBackend>))));
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    r2.apply(node_config(dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], min_in_sync)).await.unwrap();
    let a2 = r2.replication_address().await.expect("listening");
    let primary = Engine::new();
    primary.apply(node_config(dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2)], min_in_sync)).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    (primary, r2, disk)
}

/// A write is acknowledged only once the replica has it durably (the
/// volume writes through, and the initiator never flushes, as ESXi): a
/// power cut of the replica's disk right after loses none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_power_cut_loses_no_acknowledged_write() {
    let dir = Dir::new("power-cut");
    let (primary, r2, disk) = with_a_faulty_replica(&dir, 2).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    let lbas: Vec<u32> = (0..64u32).map(|n| (n * 37 % 255) * 8).collect();
    for &lba in &lbas {
        assert_eq!(write_4k(&mut i, lba, 1).await.status, 0, "write at {lba}");
    }
    let after = disk.power_cut();
    for &lba in &lbas {
        let at = lba as usize * 512;
        assert!(after[at..at + 4096] == pattern(lba, 1), "the write at LBA {lba} was lost in the replica's power cut");
    }
    drop(i);
    primary.shutdown().await;
    r2.shutdown().await;
}

/// A replica whose disk fails its writes is marked out of sync (the
/// writes go on, GOOD, without it), and once the disk works again it is
/// resynced to the primary's bytes and counts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_fails_is_marked_out_of_sync_and_resynced_once_it_works() {
    let dir = Dir::new("disk-errors");
    let (primary, r2, disk) = with_a_faulty_replica(&dir, 1).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    assert_eq!(write_4k(&mut i, 0, 1).await.status, 0);

    disk.fail_writes(true);
    for n in 0..16u32 {
        assert_eq!(write_4k(&mut i, 64 + n * 8, 2).await.status, 0, "a write while the replica's disk fails");
    }
    wait_for_state(&primary, 2, "out-of-sync").await;
    assert!(disk.durable_image()[64 * 512..65 * 512] != pattern(64, 2)[..512], "the failing disk took nothing");

    disk.fail_writes(false);
    wait_for_state(&primary, 2, "in-sync").await;
    assert_eq!(write_4k(&mut i, 8, 3).await.status, 0, "and it takes part in writes again");
    let primary_image = std::fs::read(dir.image(1)).unwrap();
    assert!(disk.durable_image() == primary_image, "the resync made the replica equal to the primary, durably");
    drop(i);
    primary.shutdown().await;
    r2.shutdown().await;
}

/// Node 1 the primary (port group 1) and node 2 its replica, whose port
/// (group 2) is active/non-optimized: each node knows the other's group,
/// and node 2 sends what its port takes to node 1 through `forwarder`.
async fn with_a_non_optimized_replica(dir: &Dir, forwarder: Arc<ToPrimary>) -> (Engine, Engine) {
    let groups = |toml: String, me: u32| {
        let (own, peer) = if me == 1 { (1, 2) } else { (2, 1) };
        let state = if me == 1 { "active-non-optimized" } else { "active-optimized" };
        toml.replace(
            "luns = { 0 = \"r1\" }",
            &format!(
                "tpg = {own}\nrelative_port = {own}\nluns = {{ 0 = \"r1\" }}\nalua = {{ 0 = \"{}\" }}",
                if me == 1 { "active-optimized" } else { "active-non-optimized" }
            ),
        )
        .replace(
            "size = \"8MiB\"",
            &format!(
                "size = \"8MiB\"\npeer_port_groups = [{{ tpg = {peer}, relative_port = {peer}, state = \"{state}\" }}]"
            ),
        )
    };
    let listen2: SocketAddr = "127.0.2.1:0".parse().unwrap();
    let r2 = Engine::new();
    assert!(r2.set_unit_forwarder(forwarder.clone()));
    let toml = node_config_toml(dir, 2, listen2, 1, 1, &[(2, PLACEHOLDER.parse().unwrap())], 2);
    r2.apply(EngineConfig::from_toml(&groups(toml, 2)).expect("node 2's configuration")).await.unwrap();
    let a2 = r2.replication_address().await.unwrap();
    let primary = Engine::new();
    let toml = node_config_toml(dir, 1, "127.0.1.1:0".parse().unwrap(), 1, 1, &[(2, a2)], 2);
    primary.apply(EngineConfig::from_toml(&groups(toml, 1)).expect("node 1's configuration")).await.unwrap();
    wait_for_state(&primary, 2, "in-sync").await;
    *forwarder.0.lock().unwrap() = Some(primary.clone());
    (primary, r2)
}

fn compare_and_write(lba: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&u64::from(lba).to_be_bytes());
    c[13] = 1;
    c
}

/// Through the replica's active/non-optimized port, reads, writes and
/// COMPARE AND WRITE run on the primary: what one port wrote the other
/// reads, a write through node 2 is on both images, a COMPARE AND WRITE
/// that does not match fails with MISCOMPARE as on the primary, and a
/// LOGICAL UNIT RESET through node 2's port is seen by the primary's
/// nexus. With the primary gone, the port refuses media access as a
/// standby port does, so the initiator uses another path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_non_optimized_port_serves_media_commands_through_the_primary() {
    let dir = Dir::new("non-optimized");
    let forwarder = Arc::new(ToPrimary::default());
    let (primary, r2) = with_a_non_optimized_replica(&dir, forwarder.clone()).await;
    let mut i = session(&primary, PRIMARY_IQN).await;
    let mut n = session(&r2, REPLICA_IQN).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    let _ = n.command_ok(0, &[0u8; 6], 0, &[]).await;
    assert_eq!(n.command_ok(0, &[0u8; 6], 0, &[]).await.status, 0, "TEST UNIT READY through node 2");

    assert_eq!(write_4k(&mut i, 0, 1).await.status, 0);
    let r = n.command_ok(0, &read10(0, 8), 4096, &[]).await;
    assert_eq!((r.status, r.data == pattern(0, 1)), (0, true), "node 2 reads what node 1 wrote");
    assert_eq!(write_4k(&mut n, 64, 2).await.status, 0, "a write through node 2");
    let r = i.command_ok(0, &read10(64, 8), 4096, &[]).await;
    assert_eq!((r.status, r.data == pattern(64, 2)), (0, true), "node 1 reads what node 2 wrote");
    assert!(same_images(&dir.image(1), &dir.image(2)), "the write through node 2 is on both copies");

    // COMPARE AND WRITE of block 128 (zeros) through node 2: 0 -> 1, then again (miscompare).
    let mut data = vec![0u8; 512];
    data.extend(std::iter::repeat_n(1u8, 512));
    assert_eq!(n.command_ok(0, &compare_and_write(128), 0, &data).await.status, 0, "COMPARE AND WRITE");
    let r = n.command_ok(0, &compare_and_write(128), 0, &data).await;
    assert_eq!(sense(&r), (0xe, 0x1d, 0x00), "MISCOMPARE, from the primary");
    let r = i.command_ok(0, &read10(128, 1), 512, &[]).await;
    assert_eq!(r.data, vec![1u8; 512], "the primary has the compared write");

    // libiscsi's MultipathIO.CompareAndWrite: block by block, each path in
    // turn moves it on by one, and the same request again miscompares.
    for lba in (256..320u32).step_by(8) {
        assert_eq!(write_4k(&mut n, lba, 3).await.status, 0);
    }
    let mut write_same = [0u8; 10];
    write_same[0] = 0x41;
    write_same[2..6].copy_from_slice(&256u32.to_be_bytes());
    write_same[7..9].copy_from_slice(&64u16.to_be_bytes());
    assert_eq!(i.command_ok(0, &write_same, 0, &[0u8; 512]).await.status, 0, "WRITE SAME");
    for lba in 256..320u32 {
        for (step, s) in [&mut i, &mut n].into_iter().enumerate() {
            let mut data = vec![step as u8; 512];
            data.extend(vec![step as u8 + 1; 512]);
            let r = s.command_ok(0, &compare_and_write(lba), 0, &data).await;
            assert_eq!(r.status, 0, "COMPARE AND WRITE {step} -> {} of block {lba}: {:?}", step + 1, r.sense);
            let r = s.command_ok(0, &compare_and_write(lba), 0, &data).await;
            assert_eq!(sense(&r), (0xe, 0x1d, 0x00), "the same again, block {lba}");
        }
    }

    // LOGICAL UNIT RESET through node 2: both nexuses hear of it.
    assert_eq!(n.tmf(5, 0, 0).await, 0, "LOGICAL UNIT RESET");
    for (port, s) in [("node 2", &mut n), ("node 1", &mut i)] {
        let r = s.command(0, &[0u8; 6], 0, &[], 0, 0).await;
        assert_eq!(sense(&r), (0x6, 0x29, 0x03), "BUS DEVICE RESET FUNCTION OCCURRED through {port}");
    }

    primary.shutdown().await;
    *forwarder.0.lock().unwrap() = None;
    let r = n.command_ok(0, &read10(0, 8), 4096, &[]).await;
    assert_eq!(sense(&r), (0x2, 0x04, 0x0b), "no primary: the standby refusal");
    r2.shutdown().await;
}
