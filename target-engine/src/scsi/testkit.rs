//! Fakes for tests: a ready-made logical unit on a memory backend, nexus
//! identities and a one-call command runner.

use std::sync::Arc;

use bytes::Bytes;

use super::{execute, LogicalUnit, LuSpec, LunMap, Nexus, NexusId, ScsiCommand, ScsiResponse, TaskAttr};
use crate::backend::memory::MemoryBackend;
use crate::backend::BlockBackend;

/// A unit description with a fixed identity.
pub fn spec(block_size: u32, read_only: bool) -> LuSpec {
    LuSpec {
        name: "vol-test".into(),
        naa: [0x60, 0x01, 0x40, 0x5f, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0],
        serial: "PORTICO0001".into(),
        block_size,
        read_only,
        reservations: true,
        remote: false,
    }
}

/// The identity of test initiator `n` on target port 1.
pub fn nexus_id(n: u8) -> NexusId {
    NexusId {
        initiator_name: Arc::from(format!("iqn.2026-11.test:init{n}")),
        isid: [0x80, 0, 0, 0, 0, n],
        target_name: Arc::from("iqn.2026-11.test:target"),
        tpgt: 1,
        relative_target_port: 1,
        target_port_group: 1,
    }
}

/// A unit of `blocks` blocks on a memory backend, mapped at LUN 0.
pub fn lun_map(block_size: u32, blocks: u64, read_only: bool) -> (LunMap, Arc<LogicalUnit>) {
    let backend = Arc::new(MemoryBackend::new(blocks * u64::from(block_size)));
    let lu = LogicalUnit::new(spec(block_size, read_only), backend);
    let mut map = LunMap::new();
    map.insert(0, Arc::clone(&lu));
    (map, lu)
}

/// A writable unit on `backend`, mapped at LUN 0.
pub fn unit_on(backend: Arc<dyn BlockBackend>, block_size: u32) -> (LunMap, Arc<LogicalUnit>) {
    let lu = LogicalUnit::new(spec(block_size, false), backend);
    let mut map = LunMap::new();
    map.insert(0, Arc::clone(&lu));
    (map, lu)
}

/// Runs `cdb` with `data_out` against LUN `lun`.
pub async fn run(luns: &LunMap, nexus: &Nexus, lun: u64, cdb: &[u8], data_out: &[u8]) -> ScsiResponse {
    let mut c = cdb.to_vec();
    if c.len() < 16 {
        c.resize(16, 0);
    }
    let cmd = ScsiCommand {
        lun,
        cdb: Bytes::from(c),
        attr: TaskAttr::Simple,
        data_out: Bytes::copy_from_slice(data_out),
        expected_in_len: u32::MAX,
    };
    execute(luns, nexus, cmd).await
}

/// A nexus that has already consumed its POWER ON unit attention on LUN 0.
pub async fn ready_nexus(luns: &LunMap, n: u8) -> Nexus {
    let nexus = Nexus::new(nexus_id(n));
    let _ = run(luns, &nexus, 0, &[0x00], &[]).await;
    nexus
}

/// Runs `cdb` against LUN `lun` and returns the reply or the reason it failed.
#[cfg(test)]
pub(crate) async fn outcome(
    luns: &LunMap,
    nexus: &Nexus,
    lun: u64,
    cdb: &[u8],
    data_out: &[u8],
) -> Result<super::lu::Reply, super::SenseReason> {
    let mut c = cdb.to_vec();
    c.resize(c.len().max(16), 0);
    let cmd = ScsiCommand {
        lun,
        cdb: Bytes::from(c),
        attr: TaskAttr::Simple,
        data_out: Bytes::copy_from_slice(data_out),
        expected_in_len: u32::MAX,
    };
    super::lu::outcome(luns, nexus, &cmd).await
}
