//! Asymmetric access from a script (SPC-4 §5.16), over one iSCSI session of
//! the test initiator, as `sg_rtpg` and `dd` do through a kernel initiator
//! (there is none on these machines):
//!
//! ```text
//! aluatool --portal ADDR --target IQN [--lun 0] rtpg
//! aluatool --portal ADDR --target IQN [--lun 0] read
//! aluatool --portal ADDR --target IQN [--lun 0] stpg:TPG
//! aluatool --portal ADDR sendtargets
//! ```
//!
//! `rtpg` prints REPORT TARGET PORT GROUPS as one line, group by group:
//! `tpg 1 active-optimized preferred ports [1]; tpg 2 standby ports [2]`
//! ("preferred": the PREF bit). `read`
//! reads the first block and prints `GOOD, 512 bytes` or the CHECK
//! CONDITION's sense, `CHECK CONDITION, sense 2/04/0b`. `stpg:TPG` sends
//! SET TARGET PORT GROUPS asking for group TPG to be active/optimized, and
//! prints how it ended (`GOOD, 0 bytes` or the sense). Either way it exits
//! 0 once the target has answered; 1 if the login or the command failed
//! otherwise. `sendtargets` logs in for discovery (RFC 7143 Appendix C)
//! and prints every target with its addresses, sorted, as one line:
//! `iqn.a 10.0.0.1:3260,1 10.0.1.1:3260,1; iqn.b 10.0.0.2:3260,2`.

use std::net::SocketAddr;
use std::process::ExitCode;

use target_engine::testkit::alua::{port_groups, RTPG_CDB};
use target_engine::testkit::initiator::{read10, CmdResult, Initiator, LoginOpts, INITIATOR};

/// The groups of REPORT TARGET PORT GROUPS data, one line.
fn groups(d: &[u8]) -> Option<String> {
    let told: Vec<String> = port_groups(d)?
        .iter()
        .map(|g| {
            let preferred = if g.preferred { " preferred" } else { "" };
            let ports: Vec<String> = g.ports.iter().map(u16::to_string).collect();
            format!("tpg {} {}{preferred} ports [{}]", g.id, g.state.name(), ports.join(","))
        })
        .collect();
    Some(told.join("; "))
}

fn outcome(r: &CmdResult) -> String {
    if r.status == 0 {
        format!("GOOD, {} bytes", r.data.len())
    } else if r.sense.len() >= 14 {
        format!("CHECK CONDITION, sense {:x}/{:02x}/{:02x}", r.sense[2] & 0x0f, r.sense[12], r.sense[13])
    } else {
        format!("status {:#04x}", r.status)
    }
}

/// A discovery session's SendTargets=All answer, one sorted line.
async fn send_targets(portal: SocketAddr) -> ExitCode {
    let mut i = Initiator::connect(portal).await;
    if let Err(e) = i.login(&LoginOpts { initiator: INITIATOR, target: None, ..Default::default() }).await {
        println!("discovery login refused: {e:?}");
        return ExitCode::FAILURE;
    }
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in i.send_targets().await {
        match (key.as_str(), targets.last_mut()) {
            ("TargetName", _) => targets.push((value, Vec::new())),
            ("TargetAddress", Some((_, addresses))) => addresses.push(value),
            _ => {}
        }
    }
    for (_, addresses) in &mut targets {
        addresses.sort();
    }
    targets.sort();
    let told: Vec<String> = targets.iter().map(|(name, addresses)| format!("{name} {}", addresses.join(" "))).collect();
    println!("{}", told.join("; "));
    let _ = i.logout().await;
    ExitCode::SUCCESS
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut portal: Option<SocketAddr> = None;
    let mut target = None;
    let mut lun = 0u64;
    let mut action = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--portal" => portal = it.next().and_then(|p| p.parse().ok()),
            "--target" => target = it.next(),
            "--lun" => lun = it.next().and_then(|l| l.parse().ok()).unwrap_or(u64::MAX),
            _ => action = Some(a),
        }
    }
    if let (Some(portal), Some("sendtargets")) = (portal, action.as_deref()) {
        return send_targets(portal).await;
    }
    let (Some(portal), Some(target), Some(action), true) = (portal, target, action, lun <= 255) else {
        eprintln!("usage: aluatool --portal ADDR --target IQN [--lun N] rtpg | read | stpg:TPG");
        eprintln!("       aluatool --portal ADDR sendtargets");
        return ExitCode::from(2);
    };
    let mut i = Initiator::connect(portal).await;
    let o = LoginOpts { initiator: INITIATOR, target: Some(&target), ..Default::default() };
    if let Err(e) = i.login(&o).await {
        println!("login refused: {e:?}");
        return ExitCode::FAILURE;
    }
    let line = match action.as_str() {
        "rtpg" => {
            let r = i.command_ok(lun, &RTPG_CDB, 4096, &[]).await;
            match (r.status, groups(&r.data)) {
                (0, Some(line)) => line,
                _ => {
                    println!("rtpg: {}", outcome(&r));
                    return ExitCode::FAILURE;
                }
            }
        }
        "read" => outcome(&i.command_ok(lun, &read10(0, 1), 4096, &[]).await),
        stpg if stpg.starts_with("stpg:") => {
            let Ok(tpg) = stpg["stpg:".len()..].parse::<u16>() else {
                eprintln!("stpg:TPG takes a port group number");
                return ExitCode::from(2);
            };
            // One descriptor: ACTIVE/OPTIMIZED (0h) for the group.
            let mut list = vec![0u8; 4];
            list.extend_from_slice(&[0x00, 0]);
            list.extend_from_slice(&tpg.to_be_bytes());
            let cdb = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, list.len() as u8, 0, 0];
            outcome(&i.command_ok(lun, &cdb, 0, &list).await)
        }
        other => {
            eprintln!("unknown action {other:?}");
            return ExitCode::from(2);
        }
    };
    println!("{line}");
    let _ = i.logout().await;
    ExitCode::SUCCESS
}
