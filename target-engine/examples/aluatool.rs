//! Asymmetric access from a script (SPC-4 §5.16), over one iSCSI session of
//! the test initiator, as `sg_rtpg` and `dd` do through a kernel initiator
//! (there is none on these machines):
//!
//! ```text
//! aluatool --portal ADDR --target IQN [--lun 0] rtpg
//! aluatool --portal ADDR --target IQN [--lun 0] read
//! aluatool --portal ADDR --target IQN [--lun 0] stpg:TPG
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
//! otherwise.

use std::net::SocketAddr;
use std::process::ExitCode;

use target_engine::testkit::initiator::{read10, CmdResult, Initiator, LoginOpts, INITIATOR};

fn state_name(code: u8) -> &'static str {
    match code & 0x0f {
        0x0 => "active-optimized",
        0x1 => "active-non-optimized",
        0x2 => "standby",
        0x3 => "unavailable",
        0xe => "offline",
        0xf => "transitioning",
        _ => "reserved",
    }
}

/// The groups of REPORT TARGET PORT GROUPS data, one line.
fn groups(d: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?) as usize;
    let end = (4 + len).min(d.len());
    let mut out = Vec::new();
    let mut p = 4;
    while p + 8 <= end {
        let count = d[p + 7] as usize;
        let ports: Vec<String> = (0..count)
            .filter_map(|i| d.get(p + 8 + 4 * i + 2..p + 8 + 4 * i + 4))
            .map(|b| u16::from_be_bytes([b[0], b[1]]).to_string())
            .collect();
        let tpg = u16::from_be_bytes([d[p + 2], d[p + 3]]);
        let preferred = if d[p] & 0x80 != 0 { " preferred" } else { "" };
        out.push(format!("tpg {tpg} {}{preferred} ports [{}]", state_name(d[p]), ports.join(",")));
        p += 8 + 4 * count;
    }
    Some(out.join("; "))
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
    let (Some(portal), Some(target), Some(action), true) = (portal, target, action, lun <= 255) else {
        eprintln!("usage: aluatool --portal ADDR --target IQN [--lun N] rtpg | read | stpg:TPG");
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
            let r = i.command_ok(lun, &[0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096, &[]).await;
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
