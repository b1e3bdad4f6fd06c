//! Persistent reservations (SPC-4 §5.13, §6.15, §6.16).
//!
//! Only PERSISTENT RESERVE IN is offered so far, and since PERSISTENT
//! RESERVE OUT is not (it answers INVALID COMMAND OPERATION CODE), no
//! reservation key can ever be registered: every report is truthfully empty.
//! The reservation state, PERSISTENT RESERVE OUT and the conflict check in
//! the unit's pre-execution hook belong here when they come.

use super::cdb::PrInAction;

/// PRGENERATION: no registration has ever changed.
const GENERATION: u32 = 0;

/// PERSISTENT RESERVE IN parameter data (before allocation-length cutting).
pub(crate) fn reserve_in(action: PrInAction) -> Vec<u8> {
    match action {
        PrInAction::ReadKeys | PrInAction::ReadReservation | PrInAction::ReadFullStatus => {
            // PRGENERATION, then ADDITIONAL LENGTH 0: no keys, no reservation.
            let mut d = GENERATION.to_be_bytes().to_vec();
            d.extend_from_slice(&0u32.to_be_bytes());
            d
        }
        PrInAction::ReportCapabilities => {
            // LENGTH 8; TMV set with an empty type mask: no reservation type is supported.
            vec![0x00, 0x08, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_empty() {
        assert_eq!(reserve_in(PrInAction::ReadKeys), vec![0; 8]);
        let caps = reserve_in(PrInAction::ReportCapabilities);
        assert_eq!(u16::from_be_bytes([caps[0], caps[1]]), 8);
        assert_eq!(&caps[4..6], &[0, 0]);
    }
}
