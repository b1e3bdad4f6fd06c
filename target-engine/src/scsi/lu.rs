//! A logical unit: its backend, counters and SCSI state (SAM-5 §4.5).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{LuSpec, LunMap, Nexus, NexusId, ScsiCommand, ScsiResponse, ScsiStatus};
use crate::backend::{BackendError, BlockBackend};

/// A snapshot of one unit's activity for the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LuCounters {
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commands: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    errors: AtomicU64,
}

/// One logical unit as exported through one or more targets.
#[derive(Debug)]
pub struct LogicalUnit {
    pub spec: LuSpec,
    pub(crate) backend: Arc<dyn BlockBackend>,
    counters: Counters,
}

impl LogicalUnit {
    pub fn new(spec: LuSpec, backend: Arc<dyn BlockBackend>) -> Arc<Self> {
        Arc::new(LogicalUnit { spec, backend, counters: Counters::default() })
    }

    pub fn backend(&self) -> &Arc<dyn BlockBackend> {
        &self.backend
    }

    /// Grows the unit to `new_bytes` and raises CAPACITY DATA HAS CHANGED.
    pub async fn resize(&self, new_bytes: u64) -> Result<(), BackendError> {
        self.backend.resize(new_bytes).await
    }

    pub fn counters(&self) -> LuCounters {
        LuCounters {
            commands: self.counters.commands.load(Ordering::Relaxed),
            bytes_read: self.counters.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.counters.bytes_written.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    /// LOGICAL UNIT RESET received on nexus `from`.
    pub fn reset(&self, _from: &NexusId) {}
}

pub(crate) async fn dispatch(_luns: &LunMap, _nexus: &Nexus, _cmd: ScsiCommand) -> ScsiResponse {
    let mut sense = vec![0u8; 18];
    sense[0] = 0x70;
    sense[2] = 0x05;
    sense[7] = 10;
    sense[12] = 0x20;
    ScsiResponse { status: ScsiStatus::CheckCondition, data_in: Bytes::new(), sense: Bytes::from(sense) }
}
