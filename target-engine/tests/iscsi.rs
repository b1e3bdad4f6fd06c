//! End-to-end tests of the engine over real TCP on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use target_engine::iscsi::pdu::{op, Bhs};
use target_engine::testkit::initiator::*;
use target_engine::{Engine, EngineConfig};

const IQN: &str = "iqn.2026-11.test.portico:t1";

fn base_config(extra_target: &str) -> String {
    format!(
        r#"
[[volume]]
name = "a"
backend = "memory"
size = "16MiB"
[[volume]]
name = "b"
backend = "memory"
size = "8MiB"
[[target]]
iqn = "{IQN}"
portals = ["127.0.0.1:0"]
luns = {{ 0 = "a", 1 = "b" }}
{extra_target}
"#
    )
}

async fn start(toml: &str) -> (Engine, SocketAddr) {
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(toml).unwrap()).await.unwrap();
    let addr = *engine.portals().await.values().next().unwrap();
    (engine, addr)
}

fn opts(target: Option<&str>) -> LoginOpts<'_> {
    LoginOpts { initiator: INITIATOR, target, ..Default::default() }
}

async fn session(addr: SocketAddr, keys: Vec<(&str, &str)>) -> Initiator {
    let mut i = Initiator::connect(addr).await;
    let mut o = opts(Some(IQN));
    o.keys = keys;
    i.login(&o).await.expect("login");
    i
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn login_negotiates_and_rw_through_r2t() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(
        addr,
        vec![("ImmediateData", "No"), ("InitialR2T", "Yes"), ("MaxBurstLength", "8192"), ("MaxOutstandingR2T", "4")],
    )
    .await;
    assert_eq!(i.key("MaxBurstLength").as_deref(), Some("8192"));
    assert_eq!(i.key("MaxOutstandingR2T").as_deref(), Some("4"));
    assert_eq!(i.key("ImmediateData").as_deref(), Some("No"));
    let data = pattern(64 * 1024, 3);
    let r = i.command_ok(0, &write10(10, 128), 0, &data).await;
    assert_eq!(r.status, 0);
    let r = i.command_ok(0, &read10(10, 128), 64 * 1024, &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.data, data);
    assert_eq!(i.logout().await.bhs.opcode(), op::LOGOUT_RESP);
}

#[tokio::test]
async fn immediate_and_unsolicited_data() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i =
        session(addr, vec![("ImmediateData", "Yes"), ("InitialR2T", "No"), ("FirstBurstLength", "16384")]).await;
    assert_eq!(i.key("InitialR2T").as_deref(), Some("No"));
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await; // clear the power-on unit attention
    let data = pattern(40 * 1024, 9);
    // 4 KiB immediate, rest of the first burst unsolicited, then R2Ts.
    let r = i.command(0, &write10(100, 80), 0, &data, 4096, 16384).await;
    assert_eq!(r.status, 0);
    let r = i.command_ok(0, &read10(100, 80), 40 * 1024, &[]).await;
    assert_eq!(r.data, data);
}

#[tokio::test]
async fn digests_and_residuals() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C")]).await;
    assert_eq!(i.key("HeaderDigest").as_deref(), Some("CRC32C"));
    assert_eq!(i.key("DataDigest").as_deref(), Some("CRC32C"));
    let data = pattern(4096, 1);
    assert_eq!(i.command_ok(0, &write10(0, 8), 0, &data).await.status, 0);
    // Ask for more than the command transfers: underflow.
    let r = i.command_ok(0, &read10(0, 8), 8192, &[]).await;
    assert_eq!(r.data, data);
    assert_eq!(r.flags & 0x02, 0x02);
    assert_eq!(r.residual, 4096);
    // Ask for less: overflow, truncated.
    let r = i.command_ok(0, &read10(0, 8), 1000, &[]).await;
    assert_eq!(r.data.len(), 1000);
    assert_eq!(r.flags & 0x04, 0x04);
    assert_eq!(r.residual, 3096);
}

#[tokio::test]
async fn chap_one_way_and_mutual() {
    let chap = r#"chap = { mode = "mutual", user = "alice", secret = "alicesecret1", target_user = "tgt", target_secret = "targetsecret9" }"#;
    let (_e, addr) = start(&base_config(chap)).await;
    // No credentials: refused with authentication failure.
    let mut i = Initiator::connect(addr).await;
    assert_eq!(i.login(&opts(Some(IQN))).await, Err((2, 1)));
    // Wrong secret.
    let mut i = Initiator::connect(addr).await;
    let o =
        LoginOpts { chap: Some(("alice", "wrongsecret0")), mutual: Some(("tgt", "targetsecret9")), ..opts(Some(IQN)) };
    assert_eq!(i.login(&o).await, Err((2, 1)));
    // One-way only against a mutual target: refused.
    let mut i = Initiator::connect(addr).await;
    let o = LoginOpts { chap: Some(("alice", "alicesecret1")), ..opts(Some(IQN)) };
    assert_eq!(i.login(&o).await, Err((2, 1)));
    // Reflected challenge: refused.
    let mut i = Initiator::connect(addr).await;
    let o = LoginOpts {
        chap: Some(("alice", "alicesecret1")),
        mutual: Some(("tgt", "targetsecret9")),
        reflect: true,
        ..opts(Some(IQN))
    };
    assert_eq!(i.login(&o).await, Err((2, 1)));
    // Right secrets, and the target proves its own.
    let mut i = Initiator::connect(addr).await;
    let o =
        LoginOpts { chap: Some(("alice", "alicesecret1")), mutual: Some(("tgt", "targetsecret9")), ..opts(Some(IQN)) };
    i.login(&o).await.unwrap();
    assert_eq!(i.command_ok(0, &[0u8; 6], 0, &[]).await.status, 0);
}

#[tokio::test]
async fn acl_masks_luns_and_refuses_strangers() {
    let acl = format!(r#"acl = [ {{ initiator = "{INITIATOR}", luns = [1] }} ]"#);
    let (_e, addr) = start(&base_config(&acl)).await;
    let mut i = session(addr, vec![]).await;
    let r = i.command_ok(0, &report_luns(), 4096, &[]).await;
    assert_eq!(parse_report_luns(&r.data), vec![1]);
    let mut s = Initiator::connect(addr).await;
    let o = LoginOpts { initiator: "iqn.2026-11.test.portico:stranger", target: Some(IQN), ..Default::default() };
    assert_eq!(s.login(&o).await, Err((2, 2)));
    // Discovery hides the target from the stranger.
    let mut d = Initiator::connect(addr).await;
    d.login(&LoginOpts { initiator: "iqn.2026-11.test.portico:stranger", ..Default::default() }).await.unwrap();
    assert!(d.send_targets().await.is_empty());
}

#[tokio::test]
async fn discovery_lists_targets_and_portals() {
    let extra = r#"
[[target]]
iqn = "iqn.2026-11.test.portico:t2"
portals = ["127.0.0.1:0"]
tpg = 7
luns = { 0 = "b" }
"#;
    let (_e, addr) = start(&base_config(extra)).await;
    let mut d = Initiator::connect(addr).await;
    d.login(&opts(None)).await.unwrap();
    let kv = d.send_targets().await;
    let want = vec![
        ("TargetName".to_string(), IQN.to_string()),
        ("TargetAddress".to_string(), format!("{addr},1")),
        ("TargetName".to_string(), "iqn.2026-11.test.portico:t2".to_string()),
        ("TargetAddress".to_string(), format!("{addr},7")),
    ];
    assert_eq!(kv, want);
    // Unknown target name: not found.
    let mut i = Initiator::connect(addr).await;
    assert_eq!(i.login(&opts(Some("iqn.2026-11.test.portico:nope"))).await, Err((2, 3)));
}

#[tokio::test]
async fn task_management_and_nop() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![("ImmediateData", "No"), ("InitialR2T", "Yes")]).await;
    // A write waiting for Data-Out is a task that can be aborted.
    let b = i.scsi_pdu(0, &write10(0, 8), false, true, 4096);
    let itt = b.itt();
    i.send(target_engine::iscsi::pdu::Pdu::new(b)).await;
    assert_eq!(i.recv().await.bhs.opcode(), op::R2T);
    assert_eq!(i.tmf(1, 0, itt).await, 0, "ABORT TASK: function complete");
    assert_eq!(i.tmf(1, 0, 0xdead).await, 1, "ABORT TASK: task does not exist");
    assert_eq!(i.tmf(2, 0, 0).await, 0, "ABORT TASK SET");
    assert_eq!(i.tmf(4, 0, 0).await, 0, "CLEAR TASK SET");
    assert_eq!(i.tmf(5, 0, 0).await, 0, "LOGICAL UNIT RESET");
    assert_eq!(i.tmf(5, 9, 0).await, 2, "LUN RESET of a missing LUN");
    assert_eq!(i.tmf(6, 0, 0).await, 0, "TARGET WARM RESET");
    let p = i.nop(b"ping").await;
    assert_eq!(p.bhs.opcode(), op::NOP_IN);
    assert_eq!(&p.data[..], b"ping");
    // The session still works after all that.
    let r = i.command_ok(0, &read10(0, 1), 512, &[]).await;
    assert_eq!(r.status, 0);
}

#[tokio::test]
async fn cmdsn_outside_window_is_ignored() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![]).await;
    let mut b = i.scsi_pdu(0, &[0u8; 6], false, false, 0);
    b.set_u32(24, i.cmd_sn.wrapping_add(1000));
    i.cmd_sn -= 1;
    i.send(target_engine::iscsi::pdu::Pdu::new(b)).await;
    assert!(i.recv_timeout(Duration::from_millis(300)).await.is_none());
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
}

#[tokio::test]
async fn malformed_pdu_storm_leaves_others_running() {
    let (e, addr) = start(&base_config("")).await;
    let mut good = session(addr, vec![]).await;
    let data = pattern(8192, 5);
    assert_eq!(good.command_ok(0, &write10(0, 16), 0, &data).await.status, 0);
    let mut storm = Vec::new();
    for k in 0..40u32 {
        storm.push(tokio::spawn(async move {
            let mut s = Initiator::connect(addr).await;
            s.isid = [0x80, 0, 0, 1, 0, k as u8]; // distinct sessions, no reinstatement
            let mut junk = vec![0u8; 300];
            for (j, b) in junk.iter_mut().enumerate() {
                *b = (j as u32 * 7919 + k * 104729) as u8;
            }
            match k % 4 {
                0 => {}
                1 => {
                    // Huge data segment length in an otherwise plausible header.
                    junk[0] = 0x01;
                    junk[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
                }
                2 => {
                    // Logged in, then nonsense opcodes and garbage.
                    let _ = s.login(&LoginOpts { initiator: INITIATOR, target: Some(IQN), ..Default::default() }).await;
                    let mut b = Bhs::new(0x1f);
                    b.set_itt(1);
                    junk[..48].copy_from_slice(&b.0);
                }
                _ => junk[0] = 0x03,
            }
            let _ = s.send_raw(&junk).await;
            let _ = s.recv_timeout(Duration::from_millis(200)).await;
        }));
    }
    for t in storm {
        t.await.unwrap();
    }
    let r = good.command_ok(0, &read10(0, 16), 8192, &[]).await;
    assert_eq!(r.data, data);
    assert!(e.sessions().iter().any(|s| s.tsih == good.tsih));
}

#[tokio::test]
async fn apply_reconciles_live() {
    let (e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![]).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    let r = i.command_ok(0, &report_luns(), 4096, &[]).await;
    assert_eq!(parse_report_luns(&r.data), vec![0, 1]);
    let sessions = e.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].initiator, INITIATOR);
    assert_eq!(sessions[0].target, IQN);

    // Invalid config: refused, nothing changes.
    let bad = base_config("").replace("1 = \"b\"", "1 = \"zzz\"");
    assert!(EngineConfig::from_toml(&bad).is_err());

    // A port that is taken: the apply is refused and the old portal keeps serving.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = base_config("").replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    assert!(e.apply(EngineConfig::from_toml(&clash).unwrap()).await.is_err());
    let mut probe = Initiator::connect(addr).await;
    probe.isid = [0x80, 0, 0, 9, 9, 9];
    probe.login(&opts(Some(IQN))).await.unwrap();
    drop(probe);

    // Drop LUN 1, grow volume a, and move the portal to 0.0.0.0 on the same
    // port (the old listener must close before the new one binds).
    let port = addr.port();
    let new = base_config("")
        .replace(", 1 = \"b\"", "")
        .replace("16MiB", "32MiB")
        .replace("127.0.0.1:0", &format!("0.0.0.0:{port}"));
    e.apply(EngineConfig::from_toml(&new).unwrap()).await.unwrap();
    // The session is still there and sees a unit attention, then one LUN.
    let r = i.command(0, &[0u8; 6], 0, &[], 0, 0).await;
    assert_eq!(r.status, 2, "unit attention after the change");
    assert_eq!(r.sense[2] & 0xf, 6);
    let r = i.command_ok(0, &report_luns(), 4096, &[]).await;
    assert_eq!(parse_report_luns(&r.data), vec![0]);
    let stats = e.volume_stats().await;
    assert_eq!(stats.iter().find(|s| s.volume == "a").unwrap().size, 32 << 20);
    assert!(stats.iter().find(|s| s.volume == "a").unwrap().counters.commands > 0);

    // Reinstatement: same ISID logs in again, the old session is closed.
    let mut again = Initiator::connect(addr).await;
    again.login(&opts(Some(IQN))).await.unwrap();
    assert!(i.recv_timeout(Duration::from_secs(2)).await.is_none(), "old session closed");
    assert_eq!(e.sessions().len(), 1);
    e.shutdown().await;
}

#[tokio::test]
async fn idle_connection_is_pinged_then_dropped() {
    let (e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![]).await;
    // Silence: the target pings with a NOP-In that wants an answer.
    let p = i.recv_timeout(Duration::from_secs(8)).await.expect("NOP-In ping");
    assert_eq!(p.bhs.opcode(), op::NOP_IN);
    assert_ne!(p.bhs.u32_at(20), 0xffff_ffff);
    // No answer: the connection is dropped and the session disappears.
    assert!(i.recv_timeout(Duration::from_secs(20)).await.is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(e.sessions().is_empty());
}

#[test]
fn engine_is_cheap_to_share() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Engine>();
}

#[tokio::test]
async fn ordered_task_runs_after_earlier_and_before_later_tasks() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![("ImmediateData", "Yes"), ("InitialR2T", "Yes")]).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    // Pipelined: SIMPLE write A, ORDERED write B, SIMPLE read; the read sees B.
    let mut itts = Vec::new();
    for (k, attr) in [(0xaau8, 1u8), (0xbb, 2)] {
        let mut b = i.scsi_pdu(0, &write10(7, 1), false, true, 512);
        b.set_flags((b.flags() & !7) | attr);
        itts.push(b.itt());
        i.send(target_engine::iscsi::pdu::Pdu::with_data(b, bytes::Bytes::from(vec![k; 512]))).await;
    }
    let b = i.scsi_pdu(0, &read10(7, 1), true, false, 512);
    let read_itt = b.itt();
    i.send(target_engine::iscsi::pdu::Pdu::new(b)).await;
    let mut got = None;
    let mut statuses = 0;
    while got.is_none() || statuses < 2 {
        let p = i.recv().await;
        if p.bhs.itt() == read_itt && p.bhs.opcode() == op::DATA_IN {
            got = Some(p.data.to_vec());
        } else if p.bhs.opcode() == op::SCSI_RESP {
            assert_eq!(p.bhs.0[3], 0);
            statuses += 1;
        }
    }
    assert_eq!(got.unwrap(), vec![0xbb; 512]);
}

#[tokio::test]
async fn target_cold_reset_is_refused_unless_allowed() {
    let (e, addr) = start(&base_config("")).await;
    let mut a = session(addr, vec![]).await;
    let mut b = Initiator::connect(addr).await;
    b.isid = [0x80, 0, 0, 0, 0, 2];
    b.login(&opts(Some(IQN))).await.unwrap();
    // Function authorization failed (RFC 7143 §11.6.1): both sessions carry on.
    assert_eq!(a.tmf(7, 0, 0).await, 6);
    assert_eq!(b.nop(&[]).await.bhs.opcode(), op::NOP_IN);
    assert_eq!(e.sessions().len(), 2);
}

#[tokio::test]
async fn target_cold_reset_closes_every_session_of_the_target() {
    let (e, addr) = start(&base_config("privileges = { target_cold_reset = true }")).await;
    let mut a = session(addr, vec![]).await;
    let mut b = Initiator::connect(addr).await;
    b.isid = [0x80, 0, 0, 0, 0, 2];
    b.login(&opts(Some(IQN))).await.unwrap();
    assert_eq!(e.sessions().len(), 2);
    assert_eq!(a.tmf(7, 0, 0).await, 0);
    assert!(a.recv_timeout(Duration::from_secs(2)).await.is_none());
    assert!(b.recv_timeout(Duration::from_secs(2)).await.is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(e.sessions().is_empty());
}

#[tokio::test]
async fn snack_and_unknown_opcodes_are_rejected_and_session_continues() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![]).await;
    for (opcode, reason) in [(op::SNACK, 0x04u8), (0x1c, 0x05)] {
        let mut b = Bhs::new(opcode);
        b.set_flags(0x80);
        b.set_itt(0x77);
        i.send(target_engine::iscsi::pdu::Pdu::new(b)).await;
        let p = i.recv().await;
        assert_eq!(p.bhs.opcode(), op::REJECT);
        assert_eq!(p.bhs.0[2], reason);
        assert_eq!(&p.data[..48], &b.0[..], "the rejected header comes back");
    }
    assert_eq!(i.command_ok(0, &read10(0, 1), 512, &[]).await.status, 0);
}

#[tokio::test]
async fn window_is_at_least_64_and_reopens() {
    let (_e, addr) = start(&base_config("")).await;
    let mut i = session(addr, vec![]).await;
    let _ = i.command_ok(0, &[0u8; 6], 0, &[]).await;
    // Pipeline 100 reads without waiting, then collect every status.
    let mut last_max = 0;
    let first_sn = i.cmd_sn;
    for k in 0..100u32 {
        let b = i.scsi_pdu(0, &read10(k, 1), true, false, 512);
        i.send(target_engine::iscsi::pdu::Pdu::new(b)).await;
    }
    let mut done = 0;
    while done < 100 {
        let p = i.recv().await;
        if p.bhs.opcode() == op::DATA_IN && p.bhs.flags() & 1 != 0 {
            done += 1;
            last_max = p.bhs.u32_at(32);
        }
    }
    assert!(last_max.wrapping_sub(first_sn) >= 100 + 63, "window after the burst: {}", last_max.wrapping_sub(first_sn));
}

#[tokio::test]
async fn target_warm_reset_aborts_tasks_of_other_sessions() {
    let (_e, addr) = start(&base_config("")).await;
    let mut a = session(addr, vec![]).await;
    let mut b = Initiator::connect(addr).await;
    b.isid = [0x80, 0, 0, 0, 0, 3];
    let o = LoginOpts { keys: vec![("ImmediateData", "No"), ("InitialR2T", "Yes")], ..opts(Some(IQN)) };
    b.login(&o).await.unwrap();
    let _ = b.command_ok(0, &[0u8; 6], 0, &[]).await;
    let cmd = b.scsi_pdu(0, &write10(0, 1), false, true, 512);
    let itt = cmd.itt();
    b.send(target_engine::iscsi::pdu::Pdu::new(cmd)).await;
    let r2t = b.recv().await;
    assert_eq!(r2t.bhs.opcode(), op::R2T);
    assert_eq!(a.tmf(6, 0, 0).await, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.data_out(itt, r2t.bhs.u32_at(20), 0, 0, &[1u8; 512], true).await;
    assert!(b.recv_timeout(Duration::from_millis(300)).await.is_none(), "aborted task gets no status");
    // Session B carries on (after the reset's unit attention).
    assert_eq!(b.command_ok(0, &read10(0, 1), 512, &[]).await.status, 0);
}

#[tokio::test]
async fn random_well_framed_pdus_do_not_hurt_the_engine() {
    let (e, addr) = start(&base_config("")).await;
    let mut good = session(addr, vec![]).await;
    let _ = good.command_ok(0, &[0u8; 6], 0, &[]).await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..8u8 {
        let mut s = Initiator::connect(addr).await;
        s.isid = [0x80, 0, 0, 2, 0, round];
        s.login(&opts(Some(IQN))).await.unwrap();
        let mut sent = 0;
        for _ in 0..200 {
            let mut b = Bhs::default();
            for k in 0..6 {
                b.0[k * 8..k * 8 + 8].copy_from_slice(&rnd().to_be_bytes());
            }
            b.0[0] = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x41, 0x42][(rnd() % 9) as usize];
            b.0[4] = 0;
            if b.0[0] & 0x3f == 0x02 {
                // Target resets legitimately end or abort other sessions' work.
                b.0[1] = 0x80 | (1 + (rnd() % 5) as u8);
            }
            let len = (rnd() % 2048) as usize;
            let data = vec![0x5a; len];
            let p = target_engine::iscsi::pdu::Pdu::with_data(b, bytes::Bytes::from(data));
            let bytes = target_engine::iscsi::pdu::encode(p, &s.tx_framing);
            if s.send_raw(&bytes).await.is_err() {
                break;
            }
            sent += 1;
        }
        assert!(sent > 0);
        let _ = s.recv_timeout(Duration::from_millis(50)).await;
    }
    let data = pattern(4096, 77);
    assert_eq!(good.command_ok(0, &write10(50, 8), 0, &data).await.status, 0);
    assert_eq!(good.command_ok(0, &read10(50, 8), 4096, &[]).await.data, data);
    assert!(e.sessions().iter().any(|s| s.tsih == good.tsih));
}

#[tokio::test]
async fn session_settings_reach_new_sessions_and_leave_old_ones_alone() {
    let (e, addr) = start(&base_config("")).await;
    let offer = vec![("MaxBurstLength", "16776192"), ("FirstBurstLength", "16776192"), ("InitialR2T", "No")];
    let mut old = session(addr, offer.clone()).await;
    assert_eq!(old.key("MaxBurstLength").as_deref(), Some("1048576"));
    let tuned = base_config(
        "session = { max_burst_length = 65536, first_burst_length = 16384, initial_r2t = true, nop_in_interval = 1 }",
    );
    e.apply(EngineConfig::from_toml(&tuned).unwrap()).await.unwrap();
    let mut new = Initiator::connect(addr).await;
    new.isid[5] = 9;
    let mut o = opts(Some(IQN));
    o.keys = offer;
    new.login(&o).await.unwrap();
    assert_eq!(new.key("MaxBurstLength").as_deref(), Some("65536"));
    assert_eq!(new.key("FirstBurstLength").as_deref(), Some("16384"));
    assert_eq!(new.key("InitialR2T").as_deref(), Some("Yes"));
    // The old session keeps what it negotiated and carries on.
    assert_eq!(old.nop(b"ok").await.bhs.opcode(), op::NOP_IN);
    assert_eq!(old.command_ok(0, &read10(0, 8), 4096, &[]).await.status, 0);
    // The new session is pinged after a second of silence.
    let ping = new.recv_timeout(Duration::from_secs(4)).await.expect("a NOP-In ping");
    assert_eq!(ping.bhs.opcode(), op::NOP_IN);
    assert_eq!(e.sessions().len(), 2);
}

#[tokio::test]
async fn a_digest_policy_is_enforced_at_login() {
    let (_e, addr) = start(&base_config(r#"session = { header_digest = "crc32c", data_digest = "none" }"#)).await;
    let mut plain = Initiator::connect(addr).await;
    assert_eq!(plain.login(&opts(Some(IQN))).await, Err((2, 0)), "CRC32C header digests are required");
    let mut crc = Initiator::connect(addr).await;
    let mut o = opts(Some(IQN));
    o.keys = vec![("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C,None")];
    crc.login(&o).await.unwrap();
    assert_eq!(crc.key("HeaderDigest").as_deref(), Some("CRC32C"));
    assert_eq!(crc.key("DataDigest").as_deref(), Some("None"));
    assert_eq!(crc.nop(b"x").await.bhs.opcode(), op::NOP_IN);
    // Out-of-range settings are refused as a whole, naming the setting.
    let err = EngineConfig::from_toml(&base_config("session = { max_recv_data_segment_length = 100 }")).unwrap_err();
    assert!(err.to_string().contains("max_recv_data_segment_length"), "{err}");
}
