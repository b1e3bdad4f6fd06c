//! Issue 9, "Hardening", on the management side: each module holds the
//! tests of one item, run against a throw-away node; network cases go over
//! real HTTP on a loopback port.

#[path = "../common/mod.rs"]
mod common;

mod csrf;
mod degraded;
mod file_modes;
mod limits;
mod login;
mod tokens;
mod volume_files;
