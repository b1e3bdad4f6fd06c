//! What one hostile peer can make the engine hold, over real TCP: every
//! bound of `iscsi::admission` is pushed against here, and the engine's
//! other sessions must carry on.
//!
//! The memory cases are in `memory.rs`, alone in their process.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use target_engine::iscsi::pdu::{op, Bhs, Pdu};
use target_engine::testkit::initiator::*;
use target_engine::testkit::{logged_in, start_engine};

const IQN: &str = "iqn.2026-11.test.portico:hard";

fn config(volume_extra: &str, target_extra: &str, top: &str) -> String {
    format!(
        r#"
{top}
[[volume]]
name = "a"
backend = "memory"
size = "16MiB"
{volume_extra}
[[target]]
iqn = "{IQN}"
portals = ["127.0.0.1:0"]
luns = {{ 0 = "a" }}
{target_extra}
"#
    )
}

/// Connections in the login phase are capped per address and overall; a
/// new one takes the place of the oldest that has sent nothing yet, so a
/// host that holds a few idle connections (or a flood of them from its
/// address) still logs in (issue 30, finding 5).
#[tokio::test]
async fn login_connections_are_capped_and_the_oldest_silent_one_makes_room() {
    let limits = "[limits]\nmax_login_connections = 3\nmax_login_connections_per_address = 2\n";
    let (_e, addr) = start_engine(&config("", "", limits)).await;
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let b: IpAddr = "127.0.0.2".parse().unwrap();
    let mut a1 = Initiator::connect_from(addr, a).await.unwrap();
    // Give the engine time to take each in before the next one arrives.
    assert!(!a1.closed_within(Duration::from_millis(200)).await);
    let mut a2 = Initiator::connect_from(addr, a).await.unwrap();
    assert!(!a2.closed_within(Duration::from_millis(200)).await);
    let mut a3 = Initiator::connect_from(addr, a).await.unwrap();
    assert!(a1.closed_within(Duration::from_secs(2)).await, "a third from one address closes the oldest silent one");
    assert!(!a3.closed_within(Duration::from_millis(200)).await);
    let mut b1 = Initiator::connect_from(addr, b).await.unwrap();
    assert!(!b1.closed_within(Duration::from_millis(200)).await, "another address gets in");
    // Three are logging in: the overall cap; the oldest silent one of all goes.
    let mut b2 = Initiator::connect_from(addr, b).await.unwrap();
    assert!(a2.closed_within(Duration::from_secs(2)).await);
    // The newest can still log in, and a login that completes gives its place back.
    b2.login(&LoginOpts::new(Some(IQN))).await.unwrap();
    a3.login(&LoginOpts::new(Some(IQN))).await.unwrap();
    assert!(!b1.closed_within(Duration::from_millis(100)).await, "nothing more was closed");
}

/// A clean login from an address that also holds a few hundred idle
/// connections gets in, every time; the idle ones only churn.
#[tokio::test]
async fn a_login_gets_in_beside_hundreds_of_idle_connections_from_its_address() {
    let (_e, addr) = start_engine(&config("", "", "")).await;
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(Initiator::connect_from(addr, a).await.unwrap());
    }
    for k in 0..3u8 {
        let mut i = Initiator::connect_from(addr, a).await.unwrap();
        i.isid[5] = 0x40 + k;
        i.login(&LoginOpts::new(Some(IQN))).await.expect("a login beside idle connections");
        idle.push(Initiator::connect_from(addr, a).await.unwrap());
    }
}

#[tokio::test]
async fn sessions_are_capped_and_refused_with_out_of_resources() {
    let (_e, addr) = start_engine(&config("", "", "[limits]\nmax_sessions = 2\n")).await;
    let _s1 = logged_in(addr, IQN, 1).await;
    let mut s2 = logged_in(addr, IQN, 2).await;
    let mut third = Initiator::connect(addr).await;
    third.isid[5] = 3;
    assert_eq!(third.login(&LoginOpts::new(Some(IQN))).await, Err((3, 2)));
    assert!(third.closed_within(Duration::from_secs(2)).await);
    assert_eq!(s2.logout().await.bhs.opcode(), op::LOGOUT_RESP);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = Initiator::connect(addr).await;
    again.isid[5] = 3;
    again.login(&LoginOpts::new(Some(IQN))).await.unwrap();
}

#[tokio::test]
async fn an_invalid_initiator_name_is_refused_before_anything_else() {
    let (e, addr) = start_engine(&config("", "", "")).await;
    for bad in ["iqn.2026-11.x:a b", "iqn.2026-11.x:a\nINFO forged", "host1", "iqn.2026-11.x:a,i,0x1"] {
        let mut i = Initiator::connect(addr).await;
        let o = LoginOpts { initiator: bad, target: Some(IQN), ..Default::default() };
        assert_eq!(i.login(&o).await, Err((2, 0)), "{bad:?}");
    }
    // The same name in capitals is the same initiator.
    let mut i = Initiator::connect(addr).await;
    let upper = INITIATOR.to_ascii_uppercase();
    i.login(&LoginOpts { initiator: &upper, target: Some(IQN), ..Default::default() }).await.unwrap();
    assert_eq!(e.sessions()[0].initiator, INITIATOR);
}

/// An immediate NOP-Out ping answered at once, for the MaxCmdSN it carries.
async fn announced_max(i: &mut Initiator) -> u32 {
    let mut p = i.nop(b"").await;
    while p.bhs.opcode() != op::NOP_IN {
        p = i.recv().await;
    }
    max_cmd_sn(&p)
}

#[tokio::test]
async fn commands_beyond_the_announced_max_cmd_sn_are_ignored() {
    // One read a second: the first reads stay in flight and shrink the window.
    let (_e, addr) = start_engine(&config("iops_limit = 1", "", "")).await;
    let mut i = logged_in(addr, IQN, 1).await;
    for k in 0..10u32 {
        let b = i.scsi_pdu(0, &read10(k, 1), true, false, 512);
        i.send(Pdu::new(b)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let max = announced_max(&mut i).await;
    let exp = i.cmd_sn;
    assert!(max < exp.wrapping_add(127), "in-flight commands shrink the window: exp {exp}, max {max}");
    // CmdSN max + 1 is inside the session's window but beyond what was announced.
    let mut beyond = i.scsi_pdu(0, &[0, 0, 0, 0, 0, 0], false, false, 0);
    beyond.set_u32(24, max.wrapping_add(1));
    let beyond_itt = beyond.itt();
    i.send(Pdu::new(beyond)).await;
    // Fill the gap up to it with TEST UNIT READYs, which complete at once.
    let mut itts = Vec::new();
    i.cmd_sn = exp;
    while i.cmd_sn != max.wrapping_add(1) {
        let b = i.scsi_pdu(0, &[0, 0, 0, 0, 0, 0], false, false, 0);
        itts.push(b.itt());
        i.send(Pdu::new(b)).await;
    }
    let mut answered = Vec::new();
    while let Some(p) = i.recv_timeout(Duration::from_secs(2)).await {
        if p.bhs.opcode() == op::SCSI_RESP {
            answered.push(p.bhs.itt());
        }
    }
    assert!(itts.iter().all(|t| answered.contains(t)), "every command within MaxCmdSN ran");
    assert!(!answered.contains(&beyond_itt), "the command beyond MaxCmdSN was ignored");
}

#[tokio::test]
async fn immediate_commands_beyond_the_window_are_rejected() {
    let (_e, addr) = start_engine(&config("iops_limit = 1", "", "")).await;
    let mut i = logged_in(addr, IQN, 1).await;
    for k in 0..140u32 {
        let mut b = i.scsi_pdu(0, &read10(k, 1), true, false, 512);
        b.set_immediate(true);
        i.cmd_sn = i.cmd_sn.wrapping_sub(1);
        i.send(Pdu::new(b)).await;
    }
    let (mut rejected, mut answered) = (0, 0);
    while let Some(p) = i.recv_timeout(Duration::from_secs(2)).await {
        match p.bhs.opcode() {
            op::REJECT => {
                assert_eq!(p.bhs.0[2], 0x06, "immediate command reject");
                rejected += 1;
            }
            op::SCSI_RESP | op::DATA_IN => answered += 1,
            _ => {}
        }
    }
    // One read a second completes: all others stay in flight, at most 128.
    assert!(rejected > 0 && 140 - rejected <= 128 + answered, "{rejected} rejected, {answered} answered of 140");
}

#[tokio::test]
async fn discovery_requests_are_rate_limited() {
    let (_e, addr) = start_engine(&config("", "", "")).await;
    let mut d = Initiator::connect(addr).await;
    d.login(&LoginOpts::new(None)).await.unwrap();
    let t0 = Instant::now();
    for _ in 0..40 {
        assert!(!d.send_targets().await.is_empty());
    }
    // 20 at once, then 10 a second: at least 2 s for 40 (a lower bound only).
    assert!(t0.elapsed() >= Duration::from_millis(1900), "40 requests in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solicited_data_out_that_never_comes_ends_the_connection() {
    let (e, addr) = start_engine(&config("", "", "")).await;
    let mut i = logged_in(addr, IQN, 1).await;
    let b = i.scsi_pdu(0, &write10(0, 128), false, true, 64 * 1024);
    i.send(Pdu::new(b)).await;
    let r2t = i.recv().await;
    assert_eq!(r2t.bhs.opcode(), op::R2T);
    // Keep the connection alive with pings of our own, but never send the data.
    let t0 = Instant::now();
    let mut closed = false;
    while t0.elapsed() < Duration::from_secs(45) {
        let mut b = Bhs::new(op::NOP_OUT);
        b.set_immediate(true);
        b.set_flags(0x80);
        b.set_itt(0xffff_ffff);
        b.set_u32(20, 0xffff_ffff);
        b.set_u32(24, i.cmd_sn);
        i.send(Pdu::new(b)).await;
        if i.closed_within(Duration::from_secs(2)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection stayed open");
    assert!(t0.elapsed() >= Duration::from_secs(25), "closed too early: {:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(e.sessions().is_empty());
}

#[tokio::test]
async fn an_acl_entry_with_its_own_chap_cannot_be_entered_with_the_group_secret() {
    const OTHER: &str = "iqn.2026-11.test.portico:other";
    let target_extra = format!(
        r#"chap = {{ mode = "one-way", user = "group", secret = "groupsecret12" }}
acl = [
  {{ initiator = "{INITIATOR}", luns = [0] }},
  {{ initiator = "{OTHER}", luns = [0], chap = {{ mode = "one-way", user = "other", secret = "othersecret12" }} }},
]"#
    );
    let (_e, addr) = start_engine(&config("", &target_extra, "")).await;
    let login = |initiator: &'static str, chap: (&'static str, &'static str)| async move {
        let mut i = Initiator::connect(addr).await;
        i.login(&LoginOpts { initiator, target: Some(IQN), chap: Some(chap), ..Default::default() }).await
    };
    assert_eq!(login(INITIATOR, ("group", "groupsecret12")).await, Ok(()));
    assert_eq!(login(OTHER, ("group", "groupsecret12")).await, Err((2, 1)), "the group's secret is not OTHER's");
    assert_eq!(login(OTHER, ("other", "othersecret12")).await, Ok(()));
    assert_eq!(login(INITIATOR, ("other", "othersecret12")).await, Err((2, 1)));
}
