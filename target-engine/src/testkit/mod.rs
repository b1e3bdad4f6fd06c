//! Test tools that drive the engine from outside, as initiators do
//! (feature `test-util`; never in a release build of the node).
//!
//! * [`initiator`]: a PDU-level iSCSI initiator over real TCP.

pub mod initiator;

/// The resident set of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
