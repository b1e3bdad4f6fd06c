//! The one SCSI error type and its one mapping to sense data.
//!
//! Every command returns `Result<_, SenseReason>`; [`SenseReason::code`] is
//! the only place that knows sense keys and additional sense codes
//! (SPC-4 §4.5.6, table 28 and Annex D). [`SenseReason::encode`] builds fixed
//! (SPC-4 §4.5.3) or descriptor (SPC-4 §4.5.2) format sense data, chosen by
//! the D_SENSE bit of the Control mode page (SPC-4 §7.5.8).

use bytes::Bytes;

/// Sense keys (SPC-4 §4.5.6, table 27).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    CopyAborted = 0xa,
    AbortedCommand = 0xb,
    Miscompare = 0xe,
}

/// A unit attention condition (SAM-5 §5.14, SPC-4 §4.5.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum UnitAttention {
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).
    PowerOnReset,
    /// BUS DEVICE RESET FUNCTION OCCURRED (29h/03h): a LOGICAL UNIT RESET.
    BusDeviceReset,
    /// MODE PARAMETERS CHANGED (2Ah/01h).
    ModeParametersChanged,
    /// CAPACITY DATA HAS CHANGED (2Ah/09h).
    CapacityChanged,
    /// REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh).
    ReportedLunsChanged,
    /// RESERVATIONS PREEMPTED (2Ah/03h).
    ReservationsPreempted,
    /// RESERVATIONS RELEASED (2Ah/04h).
    ReservationsReleased,
    /// REGISTRATIONS PREEMPTED (2Ah/05h).
    RegistrationsPreempted,
    /// ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h).
    AsymmetricAccessStateChanged,
}

/// Where a bad field is: byte offset and, when known, the highest bad bit
/// (the SENSE KEY SPECIFIC field pointer, SPC-4 §4.5.2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    pub byte: u16,
    pub bit: Option<u8>,
}

impl Field {
    pub const fn byte(byte: u16) -> Self {
        Field { byte, bit: None }
    }
    pub const fn bit(byte: u16, bit: u8) -> Self {
        Field { byte, bit: Some(bit) }
    }
}

/// Why a command ended in CHECK CONDITION (or, for [`SenseReason::NoSense`],
/// what REQUEST SENSE reports when nothing is pending). It travels between
/// nodes as the outcome of a forwarded command (`super::forward`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SenseReason {
    #[error("no sense")]
    NoSense,
    #[error("invalid command operation code")]
    InvalidOpcode,
    #[error("invalid field in CDB at {0:?}")]
    InvalidFieldInCdb(Field),
    #[error("invalid field in parameter list at {0:?}")]
    InvalidFieldInParameterList(Field),
    #[error("parameter list length error")]
    ParameterListLength,
    #[error("logical block address out of range")]
    LbaOutOfRange,
    #[error("logical unit not supported")]
    LunNotSupported,
    #[error("write protected")]
    WriteProtected,
    #[error("miscompare during verify at offset {offset}")]
    Miscompare { offset: u64 },
    #[error("unit attention: {0:?}")]
    UnitAttention(UnitAttention),
    #[error("unrecovered read error")]
    ReadError,
    #[error("write error")]
    WriteError,
    #[error("internal target failure")]
    InternalFailure,
    #[error("invalid release of persistent reservation")]
    InvalidRelease,
    #[error("too many target descriptors")]
    TooManyTargetDescriptors,
    #[error("too many segment descriptors")]
    TooManySegmentDescriptors,
    #[error("unsupported target descriptor type code")]
    UnsupportedTargetDescriptor,
    #[error("unsupported segment descriptor type code")]
    UnsupportedSegmentDescriptor,
    #[error("copy aborted: copy target device not reachable")]
    CopyTargetNotReachable,
    #[error("copy aborted")]
    CopyAborted,
    /// NOT READY: the target port group is in standby (SPC-4 §5.16.2.4.4).
    #[error("logical unit not accessible, target port in standby state")]
    AluaStandby,
    /// NOT READY: the target port group is unavailable (SPC-4 §5.16.2.4.5).
    #[error("logical unit not accessible, target port in unavailable state")]
    AluaUnavailable,
    /// NOT READY: the target port group is transitioning (SPC-4 §5.16.2.4.6).
    #[error("logical unit not accessible, asymmetric access state transition")]
    AluaTransitioning,
    /// PERSISTENT RESERVE OUT could not record a registration: the unit is
    /// at its cap, or saving the state (APTPL) failed (SPC-4 §5.13.7).
    #[error("insufficient registration resources")]
    InsufficientRegistrationResources,
    /// Not sense at all: RESERVATION CONFLICT status (SPC-4 §5.13.1).
    #[error("reservation conflict")]
    ReservationConflict,
    /// SET TARGET PORT GROUPS could not be carried out (SPC-4 §6.38.1:
    /// HARDWARE ERROR, SET TARGET PORT GROUPS COMMAND FAILED), here because
    /// the cluster could not commit the move; the states are unchanged.
    #[error("set target port groups command failed")]
    SetTargetPortGroupsFailed,
}

/// Sense key, ASC and ASCQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenseCode {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
}

impl SenseReason {
    /// The one mapping from reason to sense key / ASC / ASCQ.
    pub fn code(&self) -> SenseCode {
        use SenseKey::{
            CopyAborted, DataProtect, HardwareError, IllegalRequest, MediumError, Miscompare, NoSense, NotReady,
            UnitAttention as Ua,
        };
        let (key, asc, ascq) = match self {
            SenseReason::NoSense => (NoSense, 0x00, 0x00),
            SenseReason::InvalidOpcode => (IllegalRequest, 0x20, 0x00),
            SenseReason::InvalidFieldInCdb(_) => (IllegalRequest, 0x24, 0x00),
            SenseReason::InvalidFieldInParameterList(_) => (IllegalRequest, 0x26, 0x00),
            SenseReason::ParameterListLength => (IllegalRequest, 0x1a, 0x00),
            SenseReason::LbaOutOfRange => (IllegalRequest, 0x21, 0x00),
            SenseReason::LunNotSupported => (IllegalRequest, 0x25, 0x00),
            SenseReason::WriteProtected => (DataProtect, 0x27, 0x00),
            SenseReason::Miscompare { .. } => (Miscompare, 0x1d, 0x00),
            SenseReason::UnitAttention(ua) => match ua {
                self::UnitAttention::PowerOnReset => (Ua, 0x29, 0x00),
                self::UnitAttention::BusDeviceReset => (Ua, 0x29, 0x03),
                self::UnitAttention::ModeParametersChanged => (Ua, 0x2a, 0x01),
                self::UnitAttention::CapacityChanged => (Ua, 0x2a, 0x09),
                self::UnitAttention::ReportedLunsChanged => (Ua, 0x3f, 0x0e),
                self::UnitAttention::ReservationsPreempted => (Ua, 0x2a, 0x03),
                self::UnitAttention::ReservationsReleased => (Ua, 0x2a, 0x04),
                self::UnitAttention::RegistrationsPreempted => (Ua, 0x2a, 0x05),
                self::UnitAttention::AsymmetricAccessStateChanged => (Ua, 0x2a, 0x06),
            },
            SenseReason::ReadError => (MediumError, 0x11, 0x00),
            SenseReason::WriteError => (MediumError, 0x0c, 0x00),
            SenseReason::InternalFailure => (HardwareError, 0x44, 0x00),
            SenseReason::InvalidRelease => (IllegalRequest, 0x26, 0x04),
            SenseReason::TooManyTargetDescriptors => (IllegalRequest, 0x26, 0x06),
            SenseReason::UnsupportedTargetDescriptor => (IllegalRequest, 0x26, 0x07),
            SenseReason::TooManySegmentDescriptors => (IllegalRequest, 0x26, 0x08),
            SenseReason::UnsupportedSegmentDescriptor => (IllegalRequest, 0x26, 0x09),
            SenseReason::CopyTargetNotReachable => (CopyAborted, 0x0d, 0x02),
            SenseReason::CopyAborted => (CopyAborted, 0x00, 0x00),
            SenseReason::AluaStandby => (NotReady, 0x04, 0x0b),
            SenseReason::AluaUnavailable => (NotReady, 0x04, 0x0c),
            SenseReason::AluaTransitioning => (NotReady, 0x04, 0x0a),
            SenseReason::InsufficientRegistrationResources => (IllegalRequest, 0x55, 0x04),
            SenseReason::ReservationConflict => (NoSense, 0x00, 0x00),
            SenseReason::SetTargetPortGroupsFailed => (HardwareError, 0x67, 0x0a),
        };
        SenseCode { key, asc, ascq }
    }

    /// The status a command failing for this reason ends with; only
    /// CHECK CONDITION carries the sense data from [`SenseReason::encode`].
    pub fn status(&self) -> super::ScsiStatus {
        match self {
            SenseReason::ReservationConflict => super::ScsiStatus::ReservationConflict,
            _ => super::ScsiStatus::CheckCondition,
        }
    }

    /// The INFORMATION field, where the reason has one.
    fn information(&self) -> Option<u64> {
        match self {
            SenseReason::Miscompare { offset } => Some(*offset),
            _ => None,
        }
    }

    /// The SENSE KEY SPECIFIC bytes (SKSV set), where the reason has them.
    fn sense_key_specific(&self) -> Option<[u8; 3]> {
        let (field, cd) = match self {
            SenseReason::InvalidFieldInCdb(f) => (f, 0x40),
            SenseReason::InvalidFieldInParameterList(f) => (f, 0x00),
            _ => return None,
        };
        let bit = field.bit.map_or(0, |b| 0x08 | (b & 0x07));
        let [hi, lo] = field.byte.to_be_bytes();
        Some([0x80 | cd | bit, hi, lo])
    }

    /// Sense data in descriptor format when `descriptor`, else fixed format.
    pub fn encode(&self, descriptor: bool) -> Bytes {
        let SenseCode { key, asc, ascq } = self.code();
        let info = self.information();
        let sks = self.sense_key_specific();
        if descriptor {
            let mut s = vec![0x72, key as u8, asc, ascq, 0, 0, 0, 0];
            if let Some(info) = info {
                s.extend_from_slice(&[0x00, 0x0a, 0x80, 0x00]);
                s.extend_from_slice(&info.to_be_bytes());
            }
            if let Some(sks) = sks {
                s.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
                s.extend_from_slice(&sks);
                s.push(0);
            }
            s[7] = (s.len() - 8) as u8;
            Bytes::from(s)
        } else {
            let mut s = vec![0u8; 18];
            s[0] = 0x70;
            s[2] = key as u8;
            if let Some(info) = info {
                // Fixed format holds 32 bits; larger values cannot be valid.
                if let Ok(v) = u32::try_from(info) {
                    s[0] |= 0x80;
                    s[3..7].copy_from_slice(&v.to_be_bytes());
                }
            }
            s[7] = 10;
            s[12] = asc;
            s[13] = ascq;
            if let Some(sks) = sks {
                s[15..18].copy_from_slice(&sks);
            }
            Bytes::from(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_invalid_field_has_bit_pointer() {
        let s = SenseReason::InvalidFieldInCdb(Field::bit(1, 5)).encode(false);
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!((s[12], s[13]), (0x24, 0x00));
        assert_eq!(&s[15..18], &[0x80 | 0x40 | 0x08 | 5, 0, 1]);
    }

    #[test]
    fn descriptor_format_carries_information_and_pointer() {
        let s = SenseReason::Miscompare { offset: 0x1234 }.encode(true);
        assert_eq!(&s[..4], &[0x72, 0x0e, 0x1d, 0x00]);
        assert_eq!(s[7] as usize, s.len() - 8);
        assert_eq!(&s[8..12], &[0x00, 0x0a, 0x80, 0x00]);
        assert_eq!(&s[12..20], &0x1234u64.to_be_bytes());
        let f = SenseReason::InvalidFieldInParameterList(Field::byte(300)).encode(true);
        assert_eq!(&f[8..15], &[0x02, 0x06, 0, 0, 0x80, 0x01, 0x2c]);
    }

    #[test]
    fn fixed_miscompare_sets_valid_and_information() {
        let s = SenseReason::Miscompare { offset: 513 }.encode(false);
        assert_eq!(s[0], 0xf0);
        assert_eq!(&s[3..7], &513u32.to_be_bytes());
    }

    #[test]
    fn unit_attention_codes() {
        let c = SenseReason::UnitAttention(UnitAttention::CapacityChanged).code();
        assert_eq!((c.key, c.asc, c.ascq), (SenseKey::UnitAttention, 0x2a, 0x09));
        let c = SenseReason::UnitAttention(UnitAttention::ReportedLunsChanged).code();
        assert_eq!((c.asc, c.ascq), (0x3f, 0x0e));
    }
}
