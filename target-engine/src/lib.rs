//! Portico's data plane as a library.
//!
//! Layering (see `STYLE.md`): `iscsi` is the transport (RFC 7143), `scsi` the
//! device semantics (SPC-4, SBC-3), `backend` where blocks live. The iSCSI
//! layer turns PDUs into [`scsi::ScsiCommand`]s and writes the
//! [`scsi::ScsiResponse`]s back; the SCSI layer never touches a socket.

pub mod backend;
pub mod config;
pub mod engine;
pub mod iscsi;
pub mod portal;
pub mod scsi;

pub use config::EngineConfig;
pub use engine::{run_standalone, Engine, EngineError, SessionInfo, VolumeStats};
