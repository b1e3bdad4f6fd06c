//! Decoding a CDB, once, into a typed [`Cdb`] (SPC-4 §4.2, SBC-3 §5).
//!
//! Every bit the command's CDB USAGE DATA (the `opcodes` table) does not allow
//! is rejected with INVALID FIELD IN CDB pointing at that bit; after decoding
//! no command looks at raw CDB bytes again.

use super::opcodes::{self, OpInfo};
use super::sense::{Field, SenseReason};

/// A range of logical blocks named by a CDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub lba: u64,
    pub blocks: u32,
    /// Byte offset of the TRANSFER LENGTH field, for error pointers.
    pub len_field: u16,
}

/// What VERIFY compares (SBC-3 §5.27, BYTCHK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteCheck {
    /// Medium verification only; no Data-Out.
    None,
    /// Data-Out holds every block to compare.
    Each,
    /// Data-Out holds one block, compared with every block in the range.
    OneBlock,
}

/// MODE SENSE page control (SPC-4 §6.11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
    Saved,
}

/// A decoded CDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cdb {
    TestUnitReady,
    RequestSense {
        descriptor: bool,
        alloc_len: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc_len: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: PageControl,
        page: u8,
        subpage: u8,
        alloc_len: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
    },
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        no_flush: bool,
        loej: bool,
        start: bool,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc_len: u32,
    },
    Read {
        ext: Extent,
        fua: bool,
    },
    Write {
        ext: Extent,
        fua: bool,
    },
    WriteAndVerify {
        ext: Extent,
        bytchk: bool,
    },
    Verify {
        ext: Extent,
        bytchk: ByteCheck,
    },
    SynchronizeCache {
        ext: Extent,
    },
    PreFetch {
        ext: Extent,
        immed: bool,
    },
    ReportLuns {
        select: u8,
        alloc_len: u32,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        service_action: u16,
        alloc_len: u32,
    },
    ReportSupportedTmfs {
        repd: bool,
        alloc_len: u32,
    },
    /// EXTENDED COPY(LID1) (SPC-4 §6.4).
    ExtendedCopy {
        param_len: u32,
    },
    /// RECEIVE COPY RESULTS (SPC-4 §6.18): COPY STATUS of `list_id`, or
    /// the OPERATING PARAMETERS.
    ReceiveCopyResults {
        operating_parameters: bool,
        list_id: u8,
        alloc_len: u32,
    },
    /// RESERVE(6)/(10) and RELEASE(6)/(10): SPC-2 reservations (SPC-2 §7.16-7.17, §7.21-7.22).
    Reserve,
    Release,
    PersistentReserveOut {
        action: PrOutAction,
        /// The TYPE field (SPC-4 table 171); checked by the action that uses it.
        pr_type: u8,
        param_len: u32,
    },
    PersistentReserveIn {
        action: PrInAction,
        alloc_len: u32,
    },
    /// WRITE SAME(10/16); a zero length means "to the last logical block";
    /// with NDOB (16 only) there is no Data-Out and the block is all zeros.
    WriteSame {
        ext: Extent,
        unmap: bool,
        ndob: bool,
    },
    Unmap {
        param_len: u32,
    },
    CompareAndWrite {
        ext: Extent,
        fua: bool,
    },
    /// WRITE ATOMIC(16) (SBC-4 §5.48): a write no other command sees half done.
    WriteAtomic {
        ext: Extent,
        fua: bool,
    },
    /// READ DEFECT DATA(10/12) (SBC-3 §5.12, §5.13).
    ReadDefectData {
        ten: bool,
        list_format: u8,
        alloc_len: u32,
    },
    /// ORWRITE(16): OR Data-Out into the blocks, atomically (SBC-3 §5.14).
    OrWrite {
        ext: Extent,
        fua: bool,
    },
    GetLbaStatus {
        lba: u64,
        alloc_len: u32,
    },
    /// REPORT TARGET PORT GROUPS (SPC-4 §6.27); `extended` asks for the
    /// extended header parameter data format (PARAMETER DATA FORMAT 001b).
    ReportTargetPortGroups {
        extended: bool,
        alloc_len: u32,
    },
    /// SET TARGET PORT GROUPS (SPC-4 §6.38).
    SetTargetPortGroups {
        param_len: u32,
    },
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 §6.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrOutAction {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnore,
    /// REGISTER AND MOVE (07h): its own parameter list (SPC-4 §6.16.4).
    RegisterAndMove,
}

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrInAction {
    ReadKeys,
    ReadReservation,
    ReportCapabilities,
    ReadFullStatus,
}

/// How a command treats pending unit attentions (SAM-5 §5.14, SPC-4 §4.5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UaPolicy {
    /// Report (and clear) the oldest pending unit attention instead of running.
    Report,
    /// INQUIRY: neither report nor clear.
    Ignore,
    /// REPORT LUNS: clear REPORTED LUNS DATA HAS CHANGED only.
    ClearLunsChanged,
    /// REQUEST SENSE: return the unit attention as sense data.
    AsSenseData,
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// The policy for a CDB, known from its operation code alone so that it
/// holds even when the rest of the CDB is invalid.
pub fn ua_policy(raw: &[u8]) -> UaPolicy {
    match raw.first() {
        Some(0x12) => UaPolicy::Ignore,
        Some(0xa0) => UaPolicy::ClearLunsChanged,
        Some(0x03) => UaPolicy::AsSenseData,
        _ => UaPolicy::Report,
    }
}

fn info_for(raw: &[u8]) -> Result<&'static OpInfo, SenseReason> {
    let opcode = *raw.first().ok_or(SenseReason::InvalidOpcode)?;
    if opcodes::has_service_actions(opcode) {
        let sa = raw.get(1).map(|b| u16::from(b & 0x1f));
        return opcodes::lookup(opcode, sa).ok_or(SenseReason::InvalidFieldInCdb(Field::bit(1, 4)));
    }
    if !opcodes::is_known_opcode(opcode) {
        return Err(SenseReason::InvalidOpcode);
    }
    opcodes::lookup(opcode, None).ok_or(SenseReason::InvalidOpcode)
}

/// Rejects any bit the usage data does not allow, pointing at its highest bit.
fn check_usage(info: &OpInfo, raw: &[u8]) -> Result<(), SenseReason> {
    for (i, (&byte, &mask)) in raw.iter().zip(info.usage).enumerate().skip(1) {
        let bad = byte & !mask;
        if bad != 0 {
            let bit = 7 - bad.leading_zeros() as u8;
            return Err(SenseReason::InvalidFieldInCdb(Field::bit(i as u16, bit)));
        }
    }
    Ok(())
}

impl Cdb {
    /// Decodes `raw` (which may carry trailing padding beyond the command's length).
    pub fn decode(raw: &[u8]) -> Result<Cdb, SenseReason> {
        let info = info_for(raw)?;
        if raw.len() < info.cdb_len() {
            return Err(SenseReason::InvalidFieldInCdb(Field::byte(raw.len() as u16)));
        }
        let c = &raw[..info.cdb_len()];
        check_usage(info, c)?;
        let b = |i: usize, mask: u8| c[i] & mask != 0;
        let cdb = match c[0] {
            0x00 => Cdb::TestUnitReady,
            // RESERVE/RELEASE(10) without third-party reservations (their
            // 3RDPTY and LONGID bits are not in the usage mask) are the (6) ones.
            0x16 | 0x56 => Cdb::Reserve,
            0x17 | 0x57 => Cdb::Release,
            0x03 => Cdb::RequestSense { descriptor: b(1, 0x01), alloc_len: u32::from(c[4]) },
            0x12 => {
                let (evpd, page) = (b(1, 0x01), c[2]);
                if !evpd && page != 0 {
                    return Err(SenseReason::InvalidFieldInCdb(Field::byte(2)));
                }
                Cdb::Inquiry { evpd, page, alloc_len: be(&c[3..5]) as u32 }
            }
            0x1a | 0x5a => {
                let ten = c[0] == 0x5a;
                let pc = match c[2] >> 6 {
                    0 => PageControl::Current,
                    1 => PageControl::Changeable,
                    2 => PageControl::Default,
                    _ => PageControl::Saved,
                };
                let alloc_len = if ten { be(&c[7..9]) } else { u64::from(c[4]) } as u32;
                Cdb::ModeSense {
                    ten,
                    dbd: b(1, 0x08),
                    llbaa: ten && b(1, 0x10),
                    pc,
                    page: c[2] & 0x3f,
                    subpage: c[3],
                    alloc_len,
                }
            }
            0x15 | 0x55 => {
                let ten = c[0] == 0x55;
                let param_len = if ten { be(&c[7..9]) } else { u64::from(c[4]) } as u32;
                Cdb::ModeSelect { ten, pf: b(1, 0x10), sp: b(1, 0x01), param_len }
            }
            0x1b => Cdb::StartStopUnit {
                immed: b(1, 0x01),
                power_condition: c[4] >> 4,
                no_flush: b(4, 0x04),
                loej: b(4, 0x02),
                start: b(4, 0x01),
            },
            0x25 => {
                if !b(8, 0x01) && be(&c[2..6]) != 0 {
                    // SBC-3 §5.16: with PMI zero the LOGICAL BLOCK ADDRESS must be zero.
                    return Err(SenseReason::InvalidFieldInCdb(Field::byte(2)));
                }
                Cdb::ReadCapacity10
            }
            0x9e if c[1] & 0x1f == 0x12 => Cdb::GetLbaStatus { lba: be(&c[2..10]), alloc_len: be(&c[10..14]) as u32 },
            0x9e => Cdb::ReadCapacity16 { alloc_len: be(&c[10..14]) as u32 },
            0x89 => {
                let ext = Extent { lba: be(&c[2..10]), blocks: u32::from(c[13]), len_field: 13 };
                Cdb::CompareAndWrite { ext, fua: b(1, 0x08) }
            }
            0x42 => Cdb::Unmap { param_len: be(&c[7..9]) as u32 },
            0x9c => {
                let ext = Extent { lba: be(&c[2..10]), blocks: be(&c[12..14]) as u32, len_field: 12 };
                Cdb::WriteAtomic { ext, fua: b(1, 0x08) }
            }
            0x37 => Cdb::ReadDefectData { ten: true, list_format: c[2] & 0x07, alloc_len: be(&c[7..9]) as u32 },
            0xb7 => Cdb::ReadDefectData { ten: false, list_format: c[1] & 0x07, alloc_len: be(&c[6..10]) as u32 },
            0x08 | 0x0a => {
                let lba = be(&c[1..4]) & 0x1f_ffff;
                // SBC-3 §5.10: a TRANSFER LENGTH of zero in READ(6)/WRITE(6) means 256 blocks.
                let blocks = if c[4] == 0 { 256 } else { u32::from(c[4]) };
                let ext = Extent { lba, blocks, len_field: 4 };
                if c[0] == 0x08 {
                    Cdb::Read { ext, fua: false }
                } else {
                    Cdb::Write { ext, fua: false }
                }
            }
            op => {
                let ext = extent(c);
                match op {
                    0x28 | 0xa8 | 0x88 => Cdb::Read { ext, fua: b(1, 0x08) },
                    0x2a | 0xaa | 0x8a => Cdb::Write { ext, fua: b(1, 0x08) },
                    0x2e | 0xae | 0x8e => Cdb::WriteAndVerify { ext, bytchk: b(1, 0x02) },
                    0x2f | 0xaf | 0x8f => {
                        let bytchk = match (c[1] >> 1) & 0x03 {
                            0 => ByteCheck::None,
                            1 => ByteCheck::Each,
                            3 => ByteCheck::OneBlock,
                            _ => return Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 2))),
                        };
                        Cdb::Verify { ext, bytchk }
                    }
                    0x5e => {
                        let action = match c[1] & 0x1f {
                            0 => PrInAction::ReadKeys,
                            1 => PrInAction::ReadReservation,
                            2 => PrInAction::ReportCapabilities,
                            _ => PrInAction::ReadFullStatus,
                        };
                        Cdb::PersistentReserveIn { action, alloc_len: be(&c[7..9]) as u32 }
                    }
                    0x8b => Cdb::OrWrite { ext, fua: b(1, 0x08) },
                    0x41 | 0x93 => Cdb::WriteSame { ext, unmap: b(1, 0x08), ndob: op == 0x93 && b(1, 0x01) },
                    0x5f => {
                        let action = match c[1] & 0x1f {
                            0 => PrOutAction::Register,
                            1 => PrOutAction::Reserve,
                            2 => PrOutAction::Release,
                            3 => PrOutAction::Clear,
                            4 => PrOutAction::Preempt,
                            5 => PrOutAction::PreemptAndAbort,
                            6 => PrOutAction::RegisterAndIgnore,
                            7 => PrOutAction::RegisterAndMove,
                            _ => return Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 4))),
                        };
                        Cdb::PersistentReserveOut { action, pr_type: c[2] & 0x0f, param_len: be(&c[5..9]) as u32 }
                    }
                    0x83 => Cdb::ExtendedCopy { param_len: be(&c[10..14]) as u32 },
                    0x84 => Cdb::ReceiveCopyResults {
                        operating_parameters: c[1] & 0x1f == 0x03,
                        list_id: c[2],
                        alloc_len: be(&c[10..14]) as u32,
                    },
                    0x34 | 0x90 => Cdb::PreFetch { ext, immed: b(1, 0x02) },
                    0x35 | 0x91 => Cdb::SynchronizeCache { ext },
                    0xa0 => Cdb::ReportLuns { select: c[2], alloc_len: be(&c[6..10]) as u32 },
                    0xa3 if c[1] & 0x1f == 0x0c => {
                        let options = c[2] & 0x07;
                        if options > 3 {
                            return Err(SenseReason::InvalidFieldInCdb(Field::bit(2, 2)));
                        }
                        Cdb::ReportSupportedOpcodes {
                            rctd: b(2, 0x80),
                            options,
                            opcode: c[3],
                            service_action: be(&c[4..6]) as u16,
                            alloc_len: be(&c[6..10]) as u32,
                        }
                    }
                    0xa3 if c[1] & 0x1f == 0x0a => {
                        let extended = match c[1] >> 5 {
                            0 => false,
                            1 => true,
                            _ => return Err(SenseReason::InvalidFieldInCdb(Field::bit(1, 7))),
                        };
                        Cdb::ReportTargetPortGroups { extended, alloc_len: be(&c[6..10]) as u32 }
                    }
                    0xa4 => Cdb::SetTargetPortGroups { param_len: be(&c[6..10]) as u32 },
                    0xa3 => Cdb::ReportSupportedTmfs { repd: b(2, 0x80), alloc_len: be(&c[6..10]) as u32 },
                    _ => return Err(SenseReason::InvalidOpcode),
                }
            }
        };
        Ok(cdb)
    }

    /// Bytes of Data-Out this command asks for, given the unit's block size.
    pub fn data_out_len(&self, block_size: u32) -> u64 {
        let bs = u64::from(block_size);
        match self {
            Cdb::Write { ext, .. }
            | Cdb::WriteAndVerify { ext, .. }
            | Cdb::OrWrite { ext, .. }
            | Cdb::WriteAtomic { ext, .. } => u64::from(ext.blocks) * bs,
            Cdb::Verify { ext, bytchk: ByteCheck::Each } => u64::from(ext.blocks) * bs,
            Cdb::Verify { ext, bytchk: ByteCheck::OneBlock } if ext.blocks > 0 => bs,
            Cdb::ModeSelect { param_len, .. }
            | Cdb::Unmap { param_len }
            | Cdb::PersistentReserveOut { param_len, .. }
            | Cdb::ExtendedCopy { param_len }
            | Cdb::SetTargetPortGroups { param_len } => u64::from(*param_len),
            Cdb::WriteSame { ndob: false, .. } => bs,
            Cdb::CompareAndWrite { ext, .. } => 2 * u64::from(ext.blocks) * bs,
            _ => 0,
        }
    }

    /// Bytes of the medium this command reads into its Data-In, given the
    /// unit's block size (0 for commands that do not read the medium).
    pub fn media_data_in_len(&self, block_size: u32) -> u64 {
        match self {
            Cdb::Read { ext, .. } => u64::from(ext.blocks) * u64::from(block_size),
            _ => 0,
        }
    }

    /// Whether a Data-Out size other than [`Cdb::data_out_len`] is an error
    /// the unit must see, rather than a residual the transport reports.
    pub fn data_out_exact(&self) -> bool {
        matches!(self, Cdb::CompareAndWrite { .. } | Cdb::WriteSame { .. })
    }

    /// Whether the command belongs to the reservation feature (persistent
    /// and SPC-2 reservations), which a unit may be configured without.
    pub fn is_reservation_command(&self) -> bool {
        self.is_persistent_reservation_command() || matches!(self, Cdb::Reserve | Cdb::Release)
    }

    /// PERSISTENT RESERVE IN or OUT (SPC-4 §6.15, §6.16).
    pub fn is_persistent_reservation_command(&self) -> bool {
        matches!(self, Cdb::PersistentReserveIn { .. } | Cdb::PersistentReserveOut { .. })
    }

    /// Whether the command changes the medium (refused on write-protected units).
    pub fn writes_medium(&self) -> bool {
        matches!(
            self,
            Cdb::Write { .. }
                | Cdb::WriteAndVerify { .. }
                | Cdb::WriteSame { .. }
                | Cdb::Unmap { .. }
                | Cdb::CompareAndWrite { .. }
                | Cdb::OrWrite { .. }
                | Cdb::WriteAtomic { .. }
                | Cdb::ExtendedCopy { .. }
        )
    }
}

/// LBA and TRANSFER LENGTH of a 10-, 12- or 16-byte block command (SBC-3 §4.2.2).
fn extent(c: &[u8]) -> Extent {
    match c.len() {
        10 => Extent { lba: be(&c[2..6]), blocks: be(&c[7..9]) as u32, len_field: 7 },
        12 => Extent { lba: be(&c[2..6]), blocks: be(&c[6..10]) as u32, len_field: 6 },
        _ => Extent { lba: be(&c[2..10]), blocks: be(&c[10..14]) as u32, len_field: 10 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cdb(bytes: &[u8]) -> Result<Cdb, SenseReason> {
        let mut v = bytes.to_vec();
        v.resize(16, 0);
        Cdb::decode(&v)
    }

    #[test]
    fn read6_zero_length_is_256_blocks() {
        let c = cdb(&[0x08, 0x01, 0x02, 0x03, 0x00, 0x00]).unwrap();
        assert_eq!(c, Cdb::Read { ext: Extent { lba: 0x10203, blocks: 256, len_field: 4 }, fua: false });
    }

    #[test]
    fn read10_12_16_fields() {
        let c = cdb(&[0x28, 0x08, 0, 0, 0x12, 0x34, 0x03, 0, 0x10, 0]).unwrap();
        assert_eq!(c, Cdb::Read { ext: Extent { lba: 0x1234, blocks: 16, len_field: 7 }, fua: true });
        let c = cdb(&[0xaa, 0x10, 0, 0, 0, 9, 0, 0, 1, 0, 0, 0]).unwrap();
        assert_eq!(c, Cdb::Write { ext: Extent { lba: 9, blocks: 256, len_field: 6 }, fua: false });
        let c = cdb(&[0x88, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]).unwrap();
        assert_eq!(c, Cdb::Read { ext: Extent { lba: 1 << 32, blocks: 2, len_field: 10 }, fua: false });
    }

    #[test]
    fn rdprotect_is_rejected_with_bit_pointer() {
        let e = cdb(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err();
        assert_eq!(e, SenseReason::InvalidFieldInCdb(Field::bit(1, 5)));
    }

    #[test]
    fn group_number_and_fua_nv_are_accepted() {
        assert!(cdb(&[0x34, 0x02, 0, 0, 0, 0, 0x03, 0, 1, 0]).is_ok());
        assert!(cdb(&[0x2a, 0x1a, 0, 0, 0, 0, 0, 0, 1, 0]).is_ok());
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        assert_eq!(cdb(&[0xc0]).unwrap_err(), SenseReason::InvalidOpcode);
        assert_eq!(cdb(&[0x9e, 0x13]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(1, 4)));
        assert_eq!(cdb(&[0x5e, 0x04]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(1, 4)));
        assert_eq!(
            cdb(&[0x5e, 0x02, 0, 0, 0, 0, 0, 0, 8, 0]).unwrap(),
            Cdb::PersistentReserveIn { action: PrInAction::ReportCapabilities, alloc_len: 8 }
        );
        assert_eq!(Cdb::decode(&[]).unwrap_err(), SenseReason::InvalidOpcode);
    }

    #[test]
    fn inquiry_page_without_evpd_is_invalid() {
        assert_eq!(cdb(&[0x12, 0, 0x80, 1, 0, 0]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::byte(2)));
        assert_eq!(cdb(&[0x12, 1, 0x80, 1, 0, 0]).unwrap(), Cdb::Inquiry { evpd: true, page: 0x80, alloc_len: 256 });
    }

    #[test]
    fn verify_bytchk_values() {
        let ok = |b1| cdb(&[0x2f, b1, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(matches!(ok(0x02).unwrap(), Cdb::Verify { bytchk: ByteCheck::Each, .. }));
        assert!(matches!(ok(0x06).unwrap(), Cdb::Verify { bytchk: ByteCheck::OneBlock, .. }));
        assert_eq!(ok(0x04).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(1, 2)));
    }

    #[test]
    fn thin_provisioning_commands() {
        let ws = cdb(&[0x41, 0x08, 0, 0, 0, 5, 0, 0, 0, 0]).unwrap();
        assert_eq!(ws, Cdb::WriteSame { ext: Extent { lba: 5, blocks: 0, len_field: 7 }, unmap: true, ndob: false });
        let ndob = cdb(&[0x93, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
        assert_eq!(ndob.data_out_len(512), 0);
        assert!(cdb(&[0x41, 0x09]).is_err());
        assert_eq!(ws.data_out_len(512), 512);
        // ANCHOR is not supported.
        assert_eq!(cdb(&[0x41, 0x18]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(1, 4)));
        assert_eq!(cdb(&[0x42, 0x01]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(1, 0)));
        let caw = cdb(&[0x89, 0x08, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0]).unwrap();
        assert_eq!(caw, Cdb::CompareAndWrite { ext: Extent { lba: 9, blocks: 2, len_field: 13 }, fua: true });
        assert_eq!(caw.data_out_len(4096), 4 * 4096);
        let gls = cdb(&[0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 24, 0, 0]).unwrap();
        assert_eq!(gls, Cdb::GetLbaStatus { lba: 1, alloc_len: 24 });
    }

    #[test]
    fn write_atomic_and_defect_data() {
        let wa = cdb(&[0x9c, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0]).unwrap();
        assert_eq!(wa, Cdb::WriteAtomic { ext: Extent { lba: 7, blocks: 3, len_field: 12 }, fua: true });
        // ATOMIC BOUNDARY must be zero: we report no boundary support.
        assert!(cdb(&[0x9c, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, 0, 3, 0, 0]).is_err());
        let rd = cdb(&[0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 32, 0]).unwrap();
        assert_eq!(rd, Cdb::ReadDefectData { ten: true, list_format: 5, alloc_len: 32 });
    }

    #[test]
    fn naca_in_control_byte_is_rejected() {
        assert_eq!(cdb(&[0x00, 0, 0, 0, 0, 0x04]).unwrap_err(), SenseReason::InvalidFieldInCdb(Field::bit(5, 2)));
    }

    #[test]
    fn short_cdb_is_rejected() {
        assert!(Cdb::decode(&[0x28, 0, 0]).is_err());
    }

    #[test]
    fn data_out_lengths() {
        let w = cdb(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 3, 0]).unwrap();
        assert_eq!(w.data_out_len(512), 1536);
        let v = cdb(&[0x2f, 0x06, 0, 0, 0, 0, 0, 0, 3, 0]).unwrap();
        assert_eq!(v.data_out_len(4096), 4096);
        let m = cdb(&[0x55, 0x10, 0, 0, 0, 0, 0, 0, 24, 0]).unwrap();
        assert_eq!(m.data_out_len(512), 24);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Cdb::decode(&bytes);
            let _ = ua_policy(&bytes);
        }

        #[test]
        fn decode_supported_opcodes_never_panics(op in proptest::sample::select(
            opcodes::SUPPORTED.iter().map(|o| o.opcode).collect::<Vec<_>>()),
            rest in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut v = vec![op];
            v.extend(rest);
            let _ = Cdb::decode(&v);
        }
    }
}
