//! The table of supported commands and their CDB usage data.
//!
//! One table serves two purposes: REPORT SUPPORTED OPERATION CODES
//! (SPC-4 §6.35) reports each entry's CDB USAGE DATA, and the decoder
//! ([`super::cdb`]) rejects any CDB bit the usage data does not allow with
//! INVALID FIELD IN CDB, so what we advertise and what we accept cannot drift
//! apart. Group numbers are accepted and ignored (SBC-3 §4.27: a device
//! without grouping functions treats every group alike); RDPROTECT,
//! WRPROTECT and VRPROTECT are not allowed since we have no protection
//! information; ANCHOR is not allowed (ANC_SUP=0); the control byte allows
//! nothing (no NACA, SAM-5 §5.2).

/// One supported operation code (and service action, where it has one).
#[derive(Debug)]
pub(crate) struct OpInfo {
    pub opcode: u8,
    pub service_action: Option<u16>,
    /// CDB USAGE DATA: byte 0 is the opcode, then a mask of allowed bits per
    /// byte; a service action appears as its own value (SPC-4 §6.35.3).
    pub usage: &'static [u8],
    /// Recommended command timeout in seconds (command timeouts descriptor).
    pub timeout_secs: u32,
}

impl OpInfo {
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

const X: u8 = 0xff;

macro_rules! op {
    ($op:expr, $sa:expr, $t:expr, [$($u:expr),* $(,)?]) => {
        OpInfo { opcode: $op, service_action: $sa, usage: &[$op, $($u),*], timeout_secs: $t }
    };
}

/// Sorted by opcode, then service action.
pub(crate) static SUPPORTED: &[OpInfo] = &[
    op!(0x00, None, 10, [0, 0, 0, 0, 0]),                         // TEST UNIT READY
    op!(0x03, None, 10, [0x01, 0, 0, X, 0]),                      // REQUEST SENSE
    op!(0x08, None, 60, [0x1f, X, X, X, 0]),                      // READ(6)
    op!(0x0a, None, 60, [0x1f, X, X, X, 0]),                      // WRITE(6)
    op!(0x12, None, 10, [0x01, X, X, X, 0]),                      // INQUIRY
    op!(0x15, None, 10, [0x11, 0, 0, X, 0]),                      // MODE SELECT(6)
    op!(0x16, None, 10, [0, 0, 0, 0, 0]),                         // RESERVE(6)
    op!(0x17, None, 10, [0, 0, 0, 0, 0]),                         // RELEASE(6)
    op!(0x1a, None, 10, [0x08, X, X, X, 0]),                      // MODE SENSE(6)
    op!(0x1b, None, 60, [0x01, 0, 0x0f, 0xf7, 0]),                // START STOP UNIT
    op!(0x25, None, 10, [0, X, X, X, X, 0, 0, 0x01, 0]),          // READ CAPACITY(10)
    op!(0x28, None, 60, [0x1a, X, X, X, X, 0x1f, X, X, 0]),       // READ(10)
    op!(0x2a, None, 60, [0x1a, X, X, X, X, 0x1f, X, X, 0]),       // WRITE(10)
    op!(0x2e, None, 60, [0x12, X, X, X, X, 0x1f, X, X, 0]),       // WRITE AND VERIFY(10)
    op!(0x2f, None, 60, [0x16, X, X, X, X, 0x1f, X, X, 0]),       // VERIFY(10)
    op!(0x34, None, 60, [0x02, X, X, X, X, 0x1f, X, X, 0]),       // PRE-FETCH(10)
    op!(0x35, None, 60, [0x06, X, X, X, X, 0x1f, X, X, 0]),       // SYNCHRONIZE CACHE(10)
    op!(0x37, None, 10, [0, 0x1f, 0, 0, 0, 0, X, X, 0]),          // READ DEFECT DATA(10)
    op!(0x41, None, 60, [0x08, X, X, X, X, 0x1f, X, X, 0]),       // WRITE SAME(10)
    op!(0x42, None, 60, [0, 0, 0, 0, 0, 0x1f, X, X, 0]),          // UNMAP
    op!(0x55, None, 10, [0x11, 0, 0, 0, 0, 0, X, X, 0]),          // MODE SELECT(10)
    op!(0x56, None, 10, [0, 0, 0, 0, 0, 0, X, X, 0]),             // RESERVE(10)
    op!(0x57, None, 10, [0, 0, 0, 0, 0, 0, X, X, 0]),             // RELEASE(10)
    op!(0x5a, None, 10, [0x18, X, X, 0, 0, 0, X, X, 0]),          // MODE SENSE(10)
    op!(0x5e, Some(0x00), 10, [0x00, 0, 0, 0, 0, 0, X, X, 0]),    // PERSISTENT RESERVE IN: READ KEYS
    op!(0x5e, Some(0x01), 10, [0x01, 0, 0, 0, 0, 0, X, X, 0]),    // READ RESERVATION
    op!(0x5e, Some(0x02), 10, [0x02, 0, 0, 0, 0, 0, X, X, 0]),    // REPORT CAPABILITIES
    op!(0x5e, Some(0x03), 10, [0x03, 0, 0, 0, 0, 0, X, X, 0]),    // READ FULL STATUS
    op!(0x5f, Some(0x00), 10, [0x00, 0x0f, 0, 0, X, X, X, X, 0]), // PERSISTENT RESERVE OUT: REGISTER
    op!(0x5f, Some(0x01), 10, [0x01, 0x0f, 0, 0, X, X, X, X, 0]), // RESERVE
    op!(0x5f, Some(0x02), 10, [0x02, 0x0f, 0, 0, X, X, X, X, 0]), // RELEASE
    op!(0x5f, Some(0x03), 10, [0x03, 0x0f, 0, 0, X, X, X, X, 0]), // CLEAR
    op!(0x5f, Some(0x04), 10, [0x04, 0x0f, 0, 0, X, X, X, X, 0]), // PREEMPT
    op!(0x5f, Some(0x05), 10, [0x05, 0x0f, 0, 0, X, X, X, X, 0]), // PREEMPT AND ABORT
    op!(0x5f, Some(0x06), 10, [0x06, 0x0f, 0, 0, X, X, X, X, 0]), // REGISTER AND IGNORE EXISTING KEY
    op!(0x5f, Some(0x07), 10, [0x07, 0x0f, 0, 0, X, X, X, X, 0]), // REGISTER AND MOVE
    op!(0x83, Some(0x00), 60, [0x00, 0, 0, 0, 0, 0, 0, 0, 0, X, X, X, X, 0, 0]), // EXTENDED COPY(LID1)
    op!(0x84, Some(0x00), 10, [0x00, X, 0, 0, 0, 0, 0, 0, 0, X, X, X, X, 0, 0]), // RECEIVE COPY RESULTS: COPY STATUS
    op!(0x84, Some(0x03), 10, [0x03, 0, 0, 0, 0, 0, 0, 0, 0, X, X, X, X, 0, 0]), // OPERATING PARAMETERS
    op!(0x88, None, 60, [0x1a, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // READ(16)
    op!(0x89, None, 60, [0x18, X, X, X, X, X, X, X, X, 0, 0, 0, X, 0x1f, 0]), // COMPARE AND WRITE
    op!(0x8a, None, 60, [0x1a, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // WRITE(16)
    op!(0x8b, None, 60, [0x1a, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // ORWRITE(16)
    op!(0x8e, None, 60, [0x12, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // WRITE AND VERIFY(16)
    op!(0x8f, None, 60, [0x16, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // VERIFY(16)
    op!(0x90, None, 60, [0x02, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // PRE-FETCH(16)
    op!(0x91, None, 60, [0x06, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // SYNCHRONIZE CACHE(16)
    op!(0x93, None, 60, [0x09, X, X, X, X, X, X, X, X, X, X, X, X, 0x1f, 0]), // WRITE SAME(16)
    op!(0x9c, None, 60, [0x18, X, X, X, X, X, X, X, X, 0, 0, X, X, 0x1f, 0]), // WRITE ATOMIC(16)
    op!(0x9e, Some(0x10), 10, [0x10, X, X, X, X, X, X, X, X, X, X, X, X, 0x01, 0]), // READ CAPACITY(16)
    op!(0x9e, Some(0x12), 10, [0x12, X, X, X, X, X, X, X, X, X, X, X, X, 0, 0]), // GET LBA STATUS
    op!(0xa0, None, 10, [0, X, 0, 0, 0, X, X, X, X, 0, 0]),       // REPORT LUNS
    op!(0xa3, Some(0x0a), 10, [0xea, 0, 0, 0, 0, X, X, X, X, 0, 0]), // REPORT TARGET PORT GROUPS
    op!(0xa3, Some(0x0c), 10, [0x0c, 0x87, X, X, X, X, X, X, X, 0, 0]), // REPORT SUPPORTED OPERATION CODES
    op!(0xa3, Some(0x0d), 10, [0x0d, 0x80, 0, 0, 0, X, X, X, X, 0, 0]), // REPORT SUPPORTED TMFS
    op!(0xa4, Some(0x0a), 10, [0x0a, 0, 0, 0, 0, X, X, X, X, 0, 0]), // SET TARGET PORT GROUPS
    op!(0xa8, None, 60, [0x1a, X, X, X, X, X, X, X, X, 0x1f, 0]), // READ(12)
    op!(0xaa, None, 60, [0x1a, X, X, X, X, X, X, X, X, 0x1f, 0]), // WRITE(12)
    op!(0xae, None, 60, [0x12, X, X, X, X, X, X, X, X, 0x1f, 0]), // WRITE AND VERIFY(12)
    op!(0xaf, None, 60, [0x16, X, X, X, X, X, X, X, X, 0x1f, 0]), // VERIFY(12)
    op!(0xb7, None, 10, [0x1f, 0, 0, 0, 0, X, X, X, X, 0, 0]),    // READ DEFECT DATA(12)
];

/// Opcodes whose command is selected by a service action in byte 1.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    matches!(opcode, 0x5e | 0x5f | 0x83 | 0x84 | 0x9e | 0xa3 | 0xa4)
}

pub(crate) fn lookup(opcode: u8, service_action: Option<u16>) -> Option<&'static OpInfo> {
    SUPPORTED.iter().find(|o| o.opcode == opcode && o.service_action == service_action)
}

/// The reservation commands (RESERVE/RELEASE(6) and (10), PERSISTENT RESERVE IN/OUT).
pub(crate) fn is_reservation(opcode: u8) -> bool {
    matches!(opcode, 0x16 | 0x17 | 0x56 | 0x57 | 0x5e | 0x5f)
}

/// Whether `op` is SET TARGET PORT GROUPS.
pub(crate) fn is_set_target_port_groups(op: &OpInfo) -> bool {
    op.opcode == 0xa4 && op.service_action == Some(0x0a)
}

pub(crate) fn is_known_opcode(opcode: u8) -> bool {
    SUPPORTED.iter().any(|o| o.opcode == opcode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lengths_match_groups() {
        for w in SUPPORTED.windows(2) {
            assert!((w[0].opcode, w[0].service_action) < (w[1].opcode, w[1].service_action));
        }
        for o in SUPPORTED {
            let expected = match o.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                _ => unreachable!(),
            };
            assert_eq!(o.cdb_len(), expected, "opcode {:#x}", o.opcode);
            assert_eq!(o.service_action.is_some(), has_service_actions(o.opcode));
        }
    }
}
