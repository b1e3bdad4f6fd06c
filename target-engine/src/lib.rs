//! Portico's data plane as a library.
//!
//! Layering (see `STYLE.md`): `iscsi` is the transport (RFC 7143), `scsi` the
//! device semantics (SPC-4, SBC-3), `backend` where blocks live. The iSCSI
//! layer turns PDUs into [`scsi::ScsiCommand`]s and writes the
//! [`scsi::ScsiResponse`]s back; the SCSI layer never touches a socket.
//!
//! With the default `engine` feature off, only [`iscsi::name`] is built: the
//! iSCSI-name rule the dashboard shares with the engine.

#[cfg(feature = "engine")]
pub mod backend;
#[cfg(feature = "engine")]
pub mod config;
#[cfg(feature = "engine")]
pub mod engine;
pub mod iscsi;
#[cfg(feature = "engine")]
pub mod portal;
#[cfg(feature = "engine")]
pub mod replication;
#[cfg(feature = "engine")]
pub mod scsi;
#[cfg(feature = "test-util")]
pub mod testkit;

#[cfg(feature = "engine")]
pub use config::EngineConfig;
#[cfg(feature = "engine")]
pub use engine::{run_standalone, Engine, EngineError, ReplicaStatus, ReplicationStatus, SessionInfo, VolumeStats};
