//! Floods a running target the way an attacker would and prints what it
//! cost the target: its resident memory before, at the worst moment during
//! and after each flood, and how long a well-behaved login then takes.
//!
//! ```text
//! cargo run --release --features test-util --example flood -- \
//!     --portal 127.0.0.1:3260 --pid PID --target IQN [--seconds 20] [SCENARIO...]
//! ```
//!
//! Scenarios (all by default):
//! * `nop-discovery`: a discovery session sends NOP-Outs of 256 KiB and
//!   never reads the NOP-Ins (the case that once took a node to 5 GiB);
//! * `nop-session`: the same on a normal session;
//! * `logins`: 2,000 connections that open and never say anything;
//! * `reads`: 8 sessions each ask for 128 READs of 8 MiB with an Expected
//!   Data Transfer Length of one byte, and never read;
//! * `writes`: 8 sessions each start 2 WRITEs of 64 MiB and send half the data.
//!
//! `scripts/flood.sh` starts a node and runs this against it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use target_engine::iscsi::pdu::{self, op, Pdu};
use target_engine::testkit::initiator::{read10, write10, Initiator, LoginOpts, INITIATOR};
use target_engine::testkit::resident_kib;

struct Args {
    portal: SocketAddr,
    pid: u32,
    target: String,
    seconds: u64,
    scenarios: Vec<String>,
}

fn args() -> Args {
    let mut a = std::env::args().skip(1);
    let (mut portal, mut pid, mut target, mut seconds, mut scenarios) = (None, None, None, 20, Vec::new());
    while let Some(k) = a.next() {
        match k.as_str() {
            "--portal" => portal = a.next().and_then(|v| v.parse().ok()),
            "--pid" => pid = a.next().and_then(|v| v.parse().ok()),
            "--target" => target = a.next(),
            "--seconds" => seconds = a.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            s => scenarios.push(s.to_string()),
        }
    }
    if scenarios.is_empty() {
        scenarios = ["nop-discovery", "nop-session", "logins", "reads", "writes"].map(String::from).to_vec();
    }
    let usage = "usage: flood --portal ADDR --pid PID --target IQN [--seconds N] [SCENARIO...]";
    Args { portal: portal.expect(usage), pid: pid.expect(usage), target: target.expect(usage), seconds, scenarios }
}

fn mib(pid: u32) -> f64 {
    resident_kib(pid).unwrap_or(0) as f64 / 1024.0
}

/// Samples the target's memory every 100 ms until `until`; returns the peak.
async fn watch(pid: u32, until: Instant) -> f64 {
    let mut peak: f64 = 0.0;
    while Instant::now() < until {
        peak = peak.max(mib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

/// Time for a clean discovery login and SendTargets from another host (a
/// source address the floods do not use), or why it failed.
async fn clean_login(portal: SocketAddr) -> Result<Duration, String> {
    let t0 = Instant::now();
    let attempt = tokio::spawn(async move {
        let mut i = Initiator::connect_from(portal, "127.0.0.2".parse().unwrap()).await.map_err(|e| e.to_string())?;
        i.isid[5] = 0x77;
        i.login(&LoginOpts { initiator: INITIATOR, target: None, ..Default::default() })
            .await
            .map_err(|e| format!("login refused {e:?}"))?;
        if i.send_targets().await.is_empty() {
            return Err("empty SendTargets".to_string());
        }
        Ok(())
    });
    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Err(_) => return Err("no answer in 30 s".to_string()),
        Ok(Err(_)) => return Err("the connection was closed".to_string()),
        Ok(Ok(r)) => r?,
    }
    Ok(t0.elapsed())
}

async fn login(a: &Args, isid: u8, target: Option<&str>) -> Initiator {
    let mut i = Initiator::connect(a.portal).await;
    i.isid[4] = 0x66;
    i.isid[5] = isid;
    i.login(&LoginOpts { initiator: INITIATOR, target, ..Default::default() }).await.expect("flood login");
    i
}

/// Runs one flood; returns the connections to close afterwards.
async fn flood(a: &Args, scenario: &str) -> Vec<Initiator> {
    let until = Instant::now() + Duration::from_secs(a.seconds);
    match scenario {
        "nop-discovery" | "nop-session" => {
            let target = (scenario == "nop-session").then_some(a.target.as_str());
            let mut i = login(a, 1, target).await;
            i.tx_framing.max_data = 256 * 1024;
            let payload = Bytes::from(vec![0x5a; 256 * 1024]);
            let mut sent = 0u64;
            while Instant::now() < until {
                let bytes = pdu::encode(i.nop_out_pdu(payload.clone()), &i.tx_framing);
                match tokio::time::timeout(Duration::from_millis(200), i.send_raw(&bytes)).await {
                    Ok(Ok(())) => sent += 1,
                    Ok(Err(_)) => break,
                    Err(_) => {}
                }
            }
            println!("  {scenario}: the target took {sent} NOP-Outs of 256 KiB");
            vec![i]
        }
        "logins" => {
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..2000 {
                match tokio::net::TcpStream::connect(a.portal).await {
                    Ok(s) => held.push(s),
                    Err(_) => refused += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut open = 0;
            for s in &held {
                let mut one = [0u8; 1];
                if let Err(e) = s.try_read(&mut one) {
                    if e.kind() == std::io::ErrorKind::WouldBlock {
                        open += 1;
                    }
                }
            }
            println!("  logins: 2000 silent connections, {open} still open, {refused} refused at connect");
            match clean_login(a.portal).await {
                Ok(t) => println!("  logins: a clean login while they are held: {:.0} ms", t.as_secs_f64() * 1000.0),
                Err(e) => println!("  logins: a clean login while they are held FAILED: {e}"),
            }
            tokio::time::sleep_until(until.into()).await;
            drop(held);
            Vec::new()
        }
        "reads" => {
            let mut sessions = Vec::new();
            for s in 0..8 {
                let mut i = login(a, 10 + s, Some(&a.target)).await;
                for _ in 0..128 {
                    let b = i.scsi_pdu(0, &read10(0, 16384), true, false, 1);
                    i.send(Pdu::new(b)).await;
                }
                sessions.push(i);
            }
            tokio::time::sleep_until(until.into()).await;
            sessions
        }
        "writes" => {
            let mut sessions = Vec::new();
            let chunk = vec![0xab; 64 * 1024];
            for s in 0..8 {
                let mut i = Initiator::connect(a.portal).await;
                i.isid[4] = 0x66;
                i.isid[5] = 30 + s;
                let keys = vec![("MaxBurstLength", "1048576"), ("MaxOutstandingR2T", "16")];
                let o = LoginOpts { initiator: INITIATOR, target: Some(&a.target), keys, ..Default::default() };
                i.login(&o).await.expect("flood login");
                i.tx_framing.max_data = 64 * 1024;
                for k in 0..2u32 {
                    let b = i.scsi_pdu(0, &write10(k * 131_072, 0xffff), false, true, 64 << 20);
                    let itt = b.itt();
                    i.send(Pdu::new(b)).await;
                    // Answer every R2T but the last 64 KiB of the data solicited.
                    let mut r2ts = Vec::new();
                    while let Some(p) = i.recv_timeout(Duration::from_millis(300)).await {
                        if p.bhs.opcode() == op::R2T && p.bhs.itt() == itt {
                            r2ts.push((p.bhs.u32_at(20), p.bhs.u32_at(40), p.bhs.u32_at(44)));
                        }
                    }
                    let n = r2ts.len();
                    for (j, (ttt, offset, len)) in r2ts.into_iter().enumerate() {
                        let len = if j + 1 == n { len - 64 * 1024 } else { len };
                        let mut o = 0;
                        while o < len {
                            let last = o + 64 * 1024 >= len && j + 1 < n;
                            i.data_out(itt, ttt, o / (64 * 1024), offset + o, &chunk, last).await;
                            o += 64 * 1024;
                        }
                    }
                }
                sessions.push(i);
            }
            tokio::time::sleep_until(until.into()).await;
            sessions
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    println!("flood against {} (pid {}), {} s per scenario", a.portal, a.pid, a.seconds);
    for scenario in &a.scenarios {
        let before = mib(a.pid);
        let end = Instant::now() + Duration::from_secs(a.seconds) + Duration::from_millis(300);
        let (peak, conns) = tokio::join!(watch(a.pid, end), flood(&a, scenario));
        drop(conns);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = mib(a.pid);
        let login = match clean_login(a.portal).await {
            Ok(t) => format!("{:.0} ms", t.as_secs_f64() * 1000.0),
            Err(e) => format!("FAILED ({e})"),
        };
        println!(
            "{scenario:>14}: RSS before {before:.1} MiB, peak during {peak:.1} MiB, after {after:.1} MiB; clean login afterwards {login}"
        );
    }
}
