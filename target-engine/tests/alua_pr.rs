//! Several targets exporting one volume over real TCP: ALUA states from the
//! configuration and from `Engine::set_alua_state` (SPC-4 §5.16), and
//! persistent reservations that survive an engine restart with APTPL
//! (SPC-4 §5.13.5).

use std::net::SocketAddr;

use target_engine::config::AluaState;
use target_engine::testkit::initiator::*;
use target_engine::{Engine, EngineConfig, EngineError};

const A: &str = "iqn.2026-11.test.portico:path-a";
const B: &str = "iqn.2026-11.test.portico:path-b";

fn two_paths(volume: &str, b_state: &str) -> String {
    format!(
        r#"
{volume}
[[target]]
iqn = "{A}"
portals = ["127.0.0.1:0"]
tpg = 1
luns = {{ 0 = "shared" }}
[[target]]
iqn = "{B}"
portals = ["127.0.0.1:0"]
tpg = 2
luns = {{ 0 = "shared" }}
alua = {{ 0 = "{b_state}" }}
"#
    )
}

const MEMORY_VOLUME: &str = "[[volume]]\nname = \"shared\"\nbackend = \"memory\"\nsize = \"8MiB\"";

async fn start(toml: &str) -> (Engine, SocketAddr) {
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    (engine, addr)
}

async fn login(addr: SocketAddr, target: &str, isid_tail: u8) -> Initiator {
    let mut i = Initiator::connect(addr).await;
    i.isid = [0x80, 0, 0, 0, 7, isid_tail];
    i.login(&LoginOpts { initiator: INITIATOR, target: Some(target), ..Default::default() }).await.expect("login");
    i
}

/// (sense key, ASC, ASCQ) of a CHECK CONDITION with fixed-format sense.
fn sense(r: &CmdResult) -> (u8, u8, u8) {
    assert_eq!(r.status, 2, "CHECK CONDITION expected");
    (r.sense[2] & 0x0f, r.sense[12], r.sense[13])
}

const TEST_UNIT_READY: [u8; 6] = [0; 6];

fn report_target_port_groups() -> [u8; 12] {
    [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]
}

/// (target port group, state, relative target ports) from REPORT TARGET PORT GROUPS data.
fn parse_groups(d: &[u8]) -> Vec<(u16, u8, Vec<u16>)> {
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut p = 4;
    while p + 8 <= 4 + len {
        let count = d[p + 7] as usize;
        let ports = (0..count).map(|i| u16::from_be_bytes([d[p + 8 + 4 * i + 2], d[p + 8 + 4 * i + 3]])).collect();
        out.push((u16::from_be_bytes([d[p + 2], d[p + 3]]), d[p] & 0x0f, ports));
        p += 8 + 4 * count;
    }
    out
}

#[tokio::test]
async fn each_target_port_group_has_its_own_state() {
    let (engine, addr) = start(&two_paths(MEMORY_VOLUME, "standby")).await;
    let mut a = login(addr, A, 1).await;
    let mut b = login(addr, B, 2).await;

    // Through A the unit is active/optimized; through B it is standby:
    // INQUIRY works, TEST UNIT READY and READ answer NOT READY, LOGICAL
    // UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE (04h/0Bh).
    assert_eq!(a.command_ok(0, &TEST_UNIT_READY, 0, &[]).await.status, 0);
    assert_eq!(a.command_ok(0, &read10(0, 1), 512, &[]).await.status, 0);
    assert_eq!(sense(&b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await), (0x2, 0x04, 0x0b));
    assert_eq!(sense(&b.command_ok(0, &read10(0, 1), 512, &[]).await), (0x2, 0x04, 0x0b));
    assert_eq!(b.command_ok(0, &[0x12, 0, 0, 0, 96, 0], 96, &[]).await.status, 0);

    // Both paths list both groups with their states and one port each.
    for i in [&mut a, &mut b] {
        let r = i.command_ok(0, &report_target_port_groups(), 4096, &[]).await;
        assert_eq!(r.status, 0);
        let groups = parse_groups(&r.data);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!((groups[0].0, groups[0].1), (1, 0x0));
        assert_eq!((groups[1].0, groups[1].1), (2, 0x2));
        assert_eq!(groups[0].2.len(), 1);
        assert_eq!(groups[1].2.len(), 1);
        assert_ne!(groups[0].2, groups[1].2, "each target is its own relative port");
    }

    // Failover through the engine API: B becomes active/optimized, A standby.
    engine.set_alua_state(B, 0, AluaState::ActiveOptimized).await.unwrap();
    let ua = b.command(0, &TEST_UNIT_READY, 0, &[], 0, 0).await;
    assert_eq!(sense(&ua), (0x6, 0x2a, 0x06), "ASYMMETRIC ACCESS STATE CHANGED");
    assert_eq!(b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await.status, 0);
    assert_eq!(b.command_ok(0, &write10(0, 1), 0, &[0x5a; 512]).await.status, 0);
    engine.set_alua_state(A, 0, AluaState::Standby).await.unwrap();
    let ua = a.command(0, &TEST_UNIT_READY, 0, &[], 0, 0).await;
    assert_eq!(sense(&ua), (0x6, 0x2a, 0x06));
    assert_eq!(sense(&a.command_ok(0, &read10(0, 1), 512, &[]).await), (0x2, 0x04, 0x0b));
    // The same data through the other path.
    let r = b.command_ok(0, &read10(0, 1), 512, &[]).await;
    assert_eq!(r.data, vec![0x5a; 512]);

    // UNAVAILABLE refuses even TEST UNIT READY with 04h/0Ch.
    engine.set_alua_state(A, 0, AluaState::Unavailable).await.unwrap();
    assert_eq!(sense(&a.command_ok(0, &TEST_UNIT_READY, 0, &[]).await), (0x2, 0x04, 0x0c));

    // The state is part of the configuration the engine reports.
    let config = engine.config().await;
    let b_config = config.targets.iter().find(|t| t.iqn == B).unwrap();
    assert_eq!(b_config.alua_state(0), AluaState::ActiveOptimized);

    assert!(matches!(
        engine.set_alua_state("iqn.2026-11.test.portico:nope", 0, AluaState::Standby).await,
        Err(EngineError::UnknownTarget(_))
    ));
    assert!(matches!(engine.set_alua_state(A, 7, AluaState::Standby).await, Err(EngineError::UnknownLun { .. })));
    engine.shutdown().await;
}

#[test]
fn one_group_cannot_have_two_states_for_a_volume() {
    let same_group = two_paths(MEMORY_VOLUME, "standby").replace("tpg = 2", "tpg = 1");
    let err = EngineConfig::from_toml(&same_group).unwrap_err();
    assert!(err.to_string().contains("two ALUA states"), "{err}");
    let unknown_lun = two_paths(MEMORY_VOLUME, "standby").replace("alua = { 0 =", "alua = { 3 =");
    assert!(EngineConfig::from_toml(&unknown_lun).unwrap_err().to_string().contains("LUN \"3\""));
    let bad_state = two_paths(MEMORY_VOLUME, "sleeping");
    assert!(EngineConfig::from_toml(&bad_state).is_err());
}

fn pr_out(service_action: u8, pr_type: u8) -> [u8; 10] {
    [0x5f, service_action, pr_type, 0, 0, 0, 0, 0, 24, 0]
}

fn pr_out_params(key: u64, sa_key: u64, aptpl: bool) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = u8::from(aptpl);
    p
}

fn pr_in(service_action: u8) -> [u8; 10] {
    [0x5e, service_action, 0, 0, 0, 0, 0, 0x10, 0, 0]
}

/// The keys READ KEYS lists.
async fn read_keys(i: &mut Initiator) -> Vec<u64> {
    let r = i.command_ok(0, &pr_in(0x00), 4096, &[]).await;
    assert_eq!(r.status, 0);
    let n = u32::from_be_bytes(r.data[4..8].try_into().unwrap()) as usize;
    r.data[8..8 + n].chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect()
}

fn file_volume(dir: &std::path::Path) -> String {
    format!(
        "[[volume]]\nname = \"shared\"\nbackend = \"file\"\npath = \"{}\"\nsize = \"8MiB\"",
        dir.join("shared.img").display()
    )
}

#[tokio::test]
async fn aptpl_reservations_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("portico-aptpl-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = two_paths(&file_volume(&dir), "active-optimized");

    let (engine, addr) = start(&config).await;
    let mut a = login(addr, A, 1).await;
    let mut b = login(addr, B, 2).await;
    // A registers with APTPL and takes a Write Exclusive reservation; B registers too.
    assert_eq!(a.command_ok(0, &pr_out(0x00, 0), 0, &pr_out_params(0, 0xabc, true)).await.status, 0);
    assert_eq!(b.command_ok(0, &pr_out(0x06, 0), 0, &pr_out_params(0, 0xdef, true)).await.status, 0);
    assert_eq!(a.command_ok(0, &pr_out(0x01, 1), 0, &pr_out_params(0xabc, 0, false)).await.status, 0);
    assert_eq!(b.command_ok(0, &write10(0, 1), 0, &[1; 512]).await.status, 0x18, "RESERVATION CONFLICT");
    drop((a, b));
    engine.shutdown().await;

    // A new engine process on the same files.
    let (engine, addr) = start(&config).await;
    let mut b = login(addr, B, 2).await;
    let mut keys = read_keys(&mut b).await;
    keys.sort_unstable();
    assert_eq!(keys, vec![0xabc, 0xdef]);
    let r = b.command_ok(0, &pr_in(0x01), 4096, &[]).await;
    assert_eq!(u64::from_be_bytes(r.data[8..16].try_into().unwrap()), 0xabc, "holder's key");
    assert_eq!(r.data[21] & 0x0f, 1, "Write Exclusive");
    assert_eq!(b.command_ok(0, &write10(0, 1), 0, &[1; 512]).await.status, 0x18, "still reserved");
    // The engine's snapshot, as the dashboard shows it.
    let status = engine.reservations().await;
    let (volume, status) = &status[0];
    assert_eq!(volume, "shared");
    assert!(status.persistent);
    assert_eq!(status.reservation, Some("write-exclusive"));
    let holders: Vec<(u64, bool, Option<u16>)> =
        status.registrations.iter().map(|r| (r.key, r.holder, r.relative_target_port)).collect();
    assert_eq!(holders, vec![(0xabc, true, Some(1)), (0xdef, false, Some(2))]);
    assert_eq!(status.registrations[0].initiator, INITIATOR);
    assert_eq!(status.registrations[0].isid.as_deref(), Some("800000000701"));
    // The holder comes back through its own path and still holds it.
    let mut a = login(addr, A, 1).await;
    assert_eq!(a.command_ok(0, &write10(0, 1), 0, &[1; 512]).await.status, 0);

    // Registering again without APTPL stops persisting: after the next
    // restart nothing is left.
    assert_eq!(a.command_ok(0, &pr_out(0x00, 0), 0, &pr_out_params(0xabc, 0xabc, false)).await.status, 0);
    drop((a, b));
    engine.shutdown().await;
    let (engine, addr) = start(&config).await;
    let mut b = login(addr, B, 2).await;
    assert_eq!(read_keys(&mut b).await, Vec::<u64>::new());
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_unit_without_reservations_does_not_offer_them() {
    let config = format!("{MEMORY_VOLUME}\nreservations = false\n{}", two_paths("", "standby"));
    let (engine, addr) = start(&config).await;
    let mut a = login(addr, A, 1).await;
    assert_eq!(sense(&a.command_ok(0, &pr_in(0x00), 4096, &[]).await), (0x5, 0x20, 0x00));
    assert_eq!(sense(&a.command_ok(0, &[0x16, 0, 0, 0, 0, 0], 0, &[]).await), (0x5, 0x20, 0x00));
    // REPORT SUPPORTED OPERATION CODES for PERSISTENT RESERVE IN: not supported (SUPPORT 001b).
    let r = a.command_ok(0, &[0xa3, 0x0c, 0x02, 0x5e, 0, 0, 0, 0, 1, 0, 0, 0], 256, &[]).await;
    assert_eq!(r.data[1] & 0x07, 0x01);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_state_set_by_an_initiator_outlives_unrelated_changes() {
    let (engine, addr) = start(&two_paths(MEMORY_VOLUME, "standby")).await;
    let mut a = login(addr, A, 1).await;
    let mut b = login(addr, B, 2).await;
    // SET TARGET PORT GROUPS through A: group 2 (B's) becomes active/optimized.
    let params = [0, 0, 0, 0, 0x00, 0, 0, 2];
    let set = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, params.len() as u8, 0, 0];
    assert_eq!(a.command_ok(0, &set, 0, &params).await.status, 0);
    assert_eq!(b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await.status, 0);

    // A change elsewhere in the configuration (a new volume) keeps it.
    let grown = two_paths(
        &format!("{MEMORY_VOLUME}\n[[volume]]\nname = \"other\"\nbackend = \"memory\"\nsize = \"1MiB\""),
        "standby",
    );
    engine.apply(EngineConfig::from_toml(&grown).unwrap()).await.unwrap();
    assert_eq!(b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await.status, 0);

    // A change of that state in the configuration applies.
    engine.apply(EngineConfig::from_toml(&grown.replace("\"standby\"", "\"unavailable\"")).unwrap()).await.unwrap();
    assert_eq!(sense(&b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await), (0x2, 0x04, 0x0c));
    engine.shutdown().await;
}

#[tokio::test]
async fn the_standalone_engine_reloads_its_file() {
    let dir = std::env::temp_dir().join(format!("portico-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = two_paths(MEMORY_VOLUME, "standby").replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let file = dir.join("engine.toml");
    std::fs::write(&file, &config).unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let path = file.clone();
    let engine = tokio::spawn(async move {
        target_engine::run_standalone(&path, async move { stopped.await.unwrap_or(()) }, reloads).await
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut tries = 0;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        tries += 1;
        assert!(tries < 100, "the engine never listened");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut b = login(addr, B, 2).await;
    assert_eq!(sense(&b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await), (0x2, 0x04, 0x0b));

    // A broken file is refused and the engine keeps serving as before.
    std::fs::write(&file, "this is not toml").unwrap();
    reload.send(()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(sense(&b.command_ok(0, &TEST_UNIT_READY, 0, &[]).await), (0x2, 0x04, 0x0b));

    // Fail over to B by editing the file.
    std::fs::write(&file, config.replace("\"standby\"", "\"active-optimized\"")).unwrap();
    reload.send(()).await.unwrap();
    let mut changed = false;
    for _ in 0..100 {
        let r = b.command(0, &TEST_UNIT_READY, 0, &[], 0, 0).await;
        if r.status == 0 {
            break;
        }
        changed |= sense(&r) == (0x6, 0x2a, 0x06);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(changed, "ASYMMETRIC ACCESS STATE CHANGED was reported");
    assert_eq!(b.command_ok(0, &read10(0, 1), 512, &[]).await.status, 0);
    stop.send(()).unwrap();
    engine.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One node's part of a volume exported by two nodes: this node's target
/// (`tpg`, relative port `tpg`) in `state`, the other node's group listed
/// as a peer; `backend` says whether the data is here (`memory`) or there
/// (`remote`).
fn node_part(iqn: &str, tpg: u16, state: &str, backend: &str, peer: u16, peer_state: &str) -> String {
    format!(
        r#"
[[volume]]
name = "shared"
backend = "{backend}"
size = "8MiB"
wwn = "600140500000000000000000000000aa"
serial = "SHARED0001"
peer_port_groups = [{{ tpg = {peer}, relative_port = {peer}, state = "{peer_state}" }}]
[[target]]
iqn = "{iqn}"
portals = ["127.0.0.1:0"]
tpg = {tpg}
relative_port = {tpg}
luns = {{ 0 = "shared" }}
alua = {{ 0 = "{state}" }}
"#
    )
}

fn stpg(tpg: u16, state: u8) -> ([u8; 12], Vec<u8>) {
    let mut params = vec![0u8; 8];
    params[4] = state;
    params[6..8].copy_from_slice(&tpg.to_be_bytes());
    ([0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], params)
}

#[tokio::test]
async fn a_volume_exported_by_two_nodes_reports_the_same_groups_through_both() {
    // Node 1 holds the data (group 1, active/optimized); node 2 exports the
    // volume from afar (group 2, standby).
    let (holder, addr_a) = start(&node_part(A, 1, "active-optimized", "memory", 2, "standby")).await;
    let (standby, addr_b) = start(&node_part(B, 2, "standby", "remote", 1, "active-optimized")).await;
    let mut a = login(addr_a, A, 1).await;
    let mut b = login(addr_b, B, 2).await;

    let rtpg_a = a.command_ok(0, &report_target_port_groups(), 4096, &[]).await;
    let rtpg_b = b.command_ok(0, &report_target_port_groups(), 4096, &[]).await;
    assert_eq!((rtpg_a.status, rtpg_b.status), (0, 0));
    assert_eq!(rtpg_a.data, rtpg_b.data, "the same answer through both nodes' ports");
    assert_eq!(parse_groups(&rtpg_a.data), vec![(1, 0x0, vec![1]), (2, 0x2, vec![2])]);
    // The same unit: same serial number through both.
    let serial = [0x12, 1, 0x80, 0, 64, 0];
    assert_eq!(a.command_ok(0, &serial, 64, &[]).await.data, b.command_ok(0, &serial, 64, &[]).await.data);

    // The standby port refuses media access, and what the holder's state
    // would answer, with 04h/0Bh; it answers what needs no data.
    assert_eq!(a.command_ok(0, &write10(0, 1), 0, &[0x33; 512]).await.status, 0);
    for cdb in [&TEST_UNIT_READY[..], &read10(0, 1)[..], &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]] {
        assert_eq!(sense(&b.command_ok(0, cdb, 512, &[]).await), (0x2, 0x04, 0x0b), "{cdb:02x?}");
    }
    assert_eq!(sense(&b.command_ok(0, &write10(0, 1), 0, &[0x44; 512]).await), (0x2, 0x04, 0x0b));
    assert_eq!(sense(&b.command_ok(0, &pr_in(0x00), 4096, &[]).await), (0x2, 0x04, 0x0b));
    let r = b.command_ok(0, &pr_out(0x00, 0), 0, &pr_out_params(0, 0xb, false)).await;
    assert_eq!(sense(&r), (0x2, 0x04, 0x0b));
    assert_eq!(b.command_ok(0, &[0x1a, 0, 0x3f, 0, 255, 0], 255, &[]).await.status, 0, "MODE SENSE");
    assert_eq!(read_keys(&mut a).await, Vec::<u64>::new(), "nothing registered on the holder");
    let r = a.command_ok(0, &read10(0, 1), 512, &[]).await;
    assert_eq!(r.data, vec![0x33; 512], "the refused write changed nothing");

    // SET TARGET PORT GROUPS: the standby node's group may not become
    // active, and neither node may set the other's group.
    let (cdb, params) = stpg(2, 0x0);
    assert_eq!(sense(&b.command_ok(0, &cdb, 0, &params).await), (0x5, 0x26, 0x00));
    let (cdb, params) = stpg(1, 0x2);
    assert_eq!(sense(&b.command_ok(0, &cdb, 0, &params).await), (0x5, 0x26, 0x00));
    let (cdb, params) = stpg(2, 0x0);
    assert_eq!(sense(&a.command_ok(0, &cdb, 0, &params).await), (0x5, 0x26, 0x00));
    let r = b.command_ok(0, &report_target_port_groups(), 4096, &[]).await;
    assert_eq!(parse_groups(&r.data), vec![(1, 0x0, vec![1]), (2, 0x2, vec![2])], "nothing changed");

    // The cluster moves the peer group's state: the nexus learns of it and
    // the report follows.
    holder
        .apply(EngineConfig::from_toml(&node_part(A, 1, "active-optimized", "memory", 2, "unavailable")).unwrap())
        .await
        .unwrap();
    let ua = a.command(0, &TEST_UNIT_READY, 0, &[], 0, 0).await;
    assert_eq!(sense(&ua), (0x6, 0x2a, 0x06), "ASYMMETRIC ACCESS STATE CHANGED");
    let r = a.command_ok(0, &report_target_port_groups(), 4096, &[]).await;
    assert_eq!(parse_groups(&r.data), vec![(1, 0x0, vec![1]), (2, 0x3, vec![2])]);
    holder.shutdown().await;
    standby.shutdown().await;
}

#[test]
fn a_remote_volume_is_never_exported_active_optimized() {
    let active = node_part(B, 2, "active-optimized", "remote", 1, "active-optimized");
    let err = EngineConfig::from_toml(&active).unwrap_err();
    assert!(
        err.to_string().contains(
            "exported active/non-optimized (its commands go to the node with the data), standby or unavailable"
        ),
        "{err}"
    );
    // Active/non-optimized: its commands go to the node that has the data.
    assert!(EngineConfig::from_toml(&node_part(B, 2, "active-non-optimized", "remote", 1, "active-optimized")).is_ok());
    let clash = node_part(A, 1, "active-optimized", "memory", 1, "standby");
    assert!(EngineConfig::from_toml(&clash).unwrap_err().to_string().contains("also target"));
    let twice = node_part(A, 1, "active-optimized", "memory", 2, "standby").replace(
        "state = \"standby\" }]",
        "state = \"standby\" }, { tpg = 2, relative_port = 3, state = \"standby\" }]",
    );
    assert!(EngineConfig::from_toml(&twice).unwrap_err().to_string().contains("listed twice"));
}
