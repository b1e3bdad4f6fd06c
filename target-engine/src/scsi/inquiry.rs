//! INQUIRY: standard data (SPC-4 §6.4.2) and the vital product data pages
//! we support (SPC-4 §7.8): Supported VPD Pages (00h), Unit Serial Number
//! (80h), Device Identification (83h), and SBC-3's Block Limits (B0h,
//! §6.5.3), Block Device Characteristics (B1h, §6.5.2) and Logical Block
//! Provisioning (B2h, §6.5.4).

use super::sense::{Field, SenseReason};
use super::thin::{MAX_COMPARE_AND_WRITE, MAX_UNMAP_BYTES, MAX_UNMAP_DESCRIPTORS, MAX_WRITE_SAME_BYTES};
use super::{LuSpec, NexusId};

/// Largest transfer we accept in one command, in bytes (B0h MAXIMUM TRANSFER LENGTH).
pub(crate) const MAX_TRANSFER_BYTES: u32 = 8 << 20;

const VENDOR: &[u8; 8] = b"PORTICO ";
const PRODUCT: &[u8; 16] = b"VIRTUAL-DISK    ";
const REVISION: &[u8; 4] = b"0001";

/// Version descriptors (SPC-4 table 146): SAM-5, iSCSI (no version), SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 4] = [0x00a0, 0x0960, 0x0460, 0x04c0];

const SUPPORTED_VPD: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Standard INQUIRY data for a logical unit that exists, as seen by a nexus
/// that may (`explicit_alua`) or may not send SET TARGET PORT GROUPS.
pub(crate) fn standard(explicit_alua: bool) -> Vec<u8> {
    let mut d = vec![0u8; 74];
    d[0] = 0x00; // peripheral qualifier 0, direct access block device
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
                 // TPGS (SPC-4 §5.16): 11b implicit and explicit ALUA, 01b implicit only;
                 // no protection information.
    d[5] = if explicit_alua { 0x30 } else { 0x10 };
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d[4] = (d.len() - 5) as u8;
    d
}

/// Standard INQUIRY data for a LUN with no logical unit behind it
/// (SPC-4 §6.4.2: peripheral qualifier 011b, device type 1Fh).
pub(crate) fn not_present() -> Vec<u8> {
    let mut d = standard(true);
    d[0] = 0x7f;
    d
}

fn vpd(page: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![0x00, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(body);
    d
}

/// One identification descriptor (SPC-4 §7.8.6.1).
fn designator(out: &mut Vec<u8>, protocol: Option<u8>, code_set: u8, assoc: u8, kind: u8, id: &[u8]) {
    let piv = protocol.map_or(0, |_| 0x80);
    out.push((protocol.unwrap_or(0) << 4) | code_set);
    out.push(piv | (assoc << 4) | kind);
    out.push(0);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
}

/// A SCSI name string: UTF-8, NUL-terminated, padded to a multiple of four.
fn name_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

const ISCSI: u8 = 0x5;

fn device_identification(spec: &LuSpec, nexus: &NexusId) -> Vec<u8> {
    let mut b = Vec::new();
    // The logical unit: NAA IEEE Registered Extended (binary, association 00b, type 3).
    designator(&mut b, None, 0x1, 0b00, 0x3, &spec.naa);
    // The target port: relative target port (type 4) and its SCSI name string (type 8).
    designator(
        &mut b,
        Some(ISCSI),
        0x1,
        0b01,
        0x4,
        &[0, 0, (nexus.relative_target_port >> 8) as u8, nexus.relative_target_port as u8],
    );
    let port = format!("{},t,0x{:04x}", nexus.target_name, nexus.tpgt);
    designator(&mut b, Some(ISCSI), 0x3, 0b01, 0x8, &name_string(&port));
    // The target port group (type 5), for ALUA.
    designator(
        &mut b,
        None,
        0x1,
        0b01,
        0x5,
        &[0, 0, (nexus.target_port_group >> 8) as u8, nexus.target_port_group as u8],
    );
    // The target device (association 10b): the target name.
    designator(&mut b, Some(ISCSI), 0x3, 0b10, 0x8, &name_string(&nexus.target_name));
    vpd(0x83, &b)
}

fn block_limits(block_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; 0x3c];
    let max_blocks = MAX_TRANSFER_BYTES / block_size;
    // Offsets below are of the page (4-byte header already accounted for).
    // OPTIMAL TRANSFER LENGTH GRANULARITY: a physical block (a page).
    let per_page = 1u16 << super::sbc::physical_block_exponent(block_size);
    b[2..4].copy_from_slice(&per_page.to_be_bytes());
    b[4..8].copy_from_slice(&max_blocks.to_be_bytes()); // MAXIMUM TRANSFER LENGTH
    b[8..12].copy_from_slice(&((1u32 << 20) / block_size).to_be_bytes()); // OPTIMAL TRANSFER LENGTH
    b[12..16].copy_from_slice(&max_blocks.to_be_bytes()); // MAXIMUM PREFETCH LENGTH
    b[1] = MAX_COMPARE_AND_WRITE;
    b[16..20].copy_from_slice(&((MAX_UNMAP_BYTES / u64::from(block_size)) as u32).to_be_bytes());
    b[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
    // OPTIMAL UNMAP GRANULARITY: a page, the unit holes are punched in.
    b[24..28].copy_from_slice(&(super::sbc::PAGE / block_size).max(1).to_be_bytes());
    b[28..32].copy_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID, alignment 0
    b[32..40].copy_from_slice(&(MAX_WRITE_SAME_BYTES / u64::from(block_size)).to_be_bytes());
    // MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4): any write we accept can be atomic;
    // no alignment, granularity or boundary constraints.
    b[40..44].copy_from_slice(&max_blocks.to_be_bytes());
    vpd(0xb0, &b)
}

fn block_characteristics() -> Vec<u8> {
    let mut b = vec![0u8; 0x3c];
    b[0..2].copy_from_slice(&1u16.to_be_bytes()); // non-rotating medium
    vpd(0xb1, &b)
}

fn logical_block_provisioning() -> Vec<u8> {
    // LBPU, LBPWS, LBPWS10 and LBPRZ; provisioning type 2 (thin).
    vpd(0xb2, &[0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0])
}

/// A VPD page, or INVALID FIELD IN CDB for one we do not have.
pub(crate) fn vpd_page(page: u8, spec: &LuSpec, nexus: &NexusId) -> Result<Vec<u8>, SenseReason> {
    Ok(match page {
        0x00 => vpd(0x00, &SUPPORTED_VPD),
        0x80 => vpd(0x80, spec.serial.as_bytes()),
        0x83 => device_identification(spec, nexus),
        0xb0 => block_limits(spec.block_size),
        0xb1 => block_characteristics(),
        0xb2 => logical_block_provisioning(),
        _ => return Err(SenseReason::InvalidFieldInCdb(Field::byte(2))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::testkit;

    #[test]
    fn standard_data_shape() {
        let d = standard(true);
        assert_eq!(d[5], 0x30);
        assert_eq!(standard(false)[5], 0x10);
        assert_eq!(d[4] as usize, d.len() - 5);
        assert_eq!(d[2], 6);
        assert_eq!(d[3] & 0x0f, 2);
        assert!(d[8..36].iter().all(|&c| (0x20..0x7f).contains(&c)));
        assert_eq!(&d[58..60], &[0x00, 0xa0]);
        assert_eq!(not_present()[0], 0x7f);
    }

    #[test]
    fn device_identification_designators() {
        let spec = testkit::spec(512, false);
        let id = testkit::nexus_id(1);
        let d = vpd_page(0x83, &spec, &id).unwrap();
        assert_eq!(u16::from_be_bytes([d[2], d[3]]) as usize, d.len() - 4);
        // First designator: NAA, 16 bytes.
        assert_eq!(&d[4..8], &[0x01, 0x03, 0x00, 0x10]);
        assert_eq!(&d[8..24], &spec.naa);
        // Relative target port.
        assert_eq!(&d[24..32], &[0x51, 0x94, 0, 4, 0, 0, 0, 1]);
        let text = String::from_utf8_lossy(&d);
        assert!(text.contains("iqn.2026-11.test:target,t,0x0001"));
        let mut kinds = Vec::new();
        let mut p = 4;
        while p < d.len() {
            kinds.push((d[p + 1] >> 4 & 3, d[p + 1] & 0x0f));
            p += 4 + d[p + 3] as usize;
        }
        assert_eq!(kinds, vec![(0, 3), (1, 4), (1, 8), (1, 5), (2, 8)]);
    }

    #[test]
    fn vpd_pages_are_sorted_and_each_answers() {
        let spec = testkit::spec(4096, false);
        let id = testkit::nexus_id(1);
        let d = vpd_page(0, &spec, &id).unwrap();
        let pages = &d[4..];
        assert!(pages.windows(2).all(|w| w[0] < w[1]));
        for &p in pages {
            let v = vpd_page(p, &spec, &id).unwrap();
            assert_eq!(v[1], p);
        }
        let bl = vpd_page(0xb0, &spec, &id).unwrap();
        assert_eq!(bl[3], 0x3c);
        assert_eq!(u32::from_be_bytes([bl[8], bl[9], bl[10], bl[11]]), (8 << 20) / 4096);
        assert!(vpd_page(0x86, &spec, &id).is_err());
    }
}
