//! Test tools that drive the engine from outside, as initiators do
//! (feature `test-util`; never in a release build of the node).
//!
//! * [`initiator`]: a PDU-level iSCSI initiator over real TCP.
//! * [`pipeline`]: one of its sessions with many commands in flight.
//! * [`history`]: what a workload wrote when, and the verdict on its reads.
//! * [`alua`]: a path's asymmetric access state, as a host's ALUA
//!   prioritizer reads it.
//! * [`path_groups`]: a multipathing host's path groups by priority.
//! * [`rng`]: a seeded generator for workloads.

pub mod alua;
pub mod history;
pub mod initiator;
pub mod path_groups;
pub mod pipeline;
pub mod rng;

use std::net::SocketAddr;

use crate::{Engine, EngineConfig};

/// An engine running the configuration `toml`, and the address its first
/// portal is bound to (configure `127.0.0.1:0` for a free port).
pub async fn start_engine(toml: &str) -> (Engine, SocketAddr) {
    let engine = Engine::new();
    engine.apply(EngineConfig::from_toml(toml).expect("a valid test configuration")).await.expect("applied");
    let addr = *engine.portals().await.values().next().expect("a portal");
    (engine, addr)
}

/// A session of the test initiator with `isid[5] = isid` logged in to `target`.
pub async fn logged_in(addr: SocketAddr, target: &str, isid: u8) -> initiator::Initiator {
    let mut i = initiator::Initiator::connect(addr).await;
    i.isid[5] = isid;
    let o = initiator::LoginOpts { initiator: initiator::INITIATOR, target: Some(target), ..Default::default() };
    i.login(&o).await.expect("login");
    i
}

/// The resident set of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
