//! Asymmetric access as an initiator reads it (SPC-4 §5.16): the target
//! port group a path's port belongs to, from the Device Identification VPD
//! page (§7.8.6, designator type 5h), and the state of every group, from
//! REPORT TARGET PORT GROUPS (§6.36). A multipathing host's ALUA
//! prioritizer puts the two together to rank its paths.

use std::time::Duration;

use bytes::Bytes;

use super::pipeline::Pipeline;

/// A target port group's asymmetric access state (SPC-4 Table 166).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessState {
    ActiveOptimized,
    ActiveNonOptimized,
    Standby,
    Unavailable,
    Offline,
    Transitioning,
    Reserved(u8),
}

impl AccessState {
    pub fn from_code(code: u8) -> AccessState {
        match code & 0x0f {
            0x0 => AccessState::ActiveOptimized,
            0x1 => AccessState::ActiveNonOptimized,
            0x2 => AccessState::Standby,
            0x3 => AccessState::Unavailable,
            0xe => AccessState::Offline,
            0xf => AccessState::Transitioning,
            other => AccessState::Reserved(other),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AccessState::ActiveOptimized => "active-optimized",
            AccessState::ActiveNonOptimized => "active-non-optimized",
            AccessState::Standby => "standby",
            AccessState::Unavailable => "unavailable",
            AccessState::Offline => "offline",
            AccessState::Transitioning => "transitioning",
            AccessState::Reserved(_) => "reserved",
        }
    }

    /// The priority Linux multipath-tools' `alua` prioritizer gives a path
    /// in this state (without the preferred bit): paths are grouped by it
    /// under `path_grouping_policy group_by_prio`, highest group first.
    pub fn priority(self) -> u8 {
        match self {
            AccessState::ActiveOptimized => 50,
            AccessState::ActiveNonOptimized => 10,
            AccessState::Standby => 1,
            _ => 0,
        }
    }
}

/// One descriptor of REPORT TARGET PORT GROUPS data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroup {
    pub id: u16,
    pub state: AccessState,
    /// The PREF bit.
    pub preferred: bool,
    /// Relative target port identifiers.
    pub ports: Vec<u16>,
}

/// REPORT TARGET PORT GROUPS, length-only format, room for 4 KiB.
pub const RTPG_CDB: [u8; 12] = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
/// INQUIRY for the Device Identification VPD page, room for 1 KiB.
pub const DEVICE_ID_CDB: [u8; 6] = [0x12, 0x01, 0x83, 0x04, 0x00, 0];

/// The groups of REPORT TARGET PORT GROUPS parameter data; None if the
/// data is shorter than its header.
pub fn port_groups(d: &[u8]) -> Option<Vec<PortGroup>> {
    let len = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?) as usize;
    let end = (4 + len).min(d.len());
    let mut groups = Vec::new();
    let mut p = 4;
    while p + 8 <= end {
        let count = usize::from(d[p + 7]);
        if p + 8 + 4 * count > end {
            // A descriptor cut short: not a group.
            break;
        }
        let ports = (0..count).map(|i| u16::from_be_bytes([d[p + 8 + 4 * i + 2], d[p + 8 + 4 * i + 3]])).collect();
        groups.push(PortGroup {
            id: u16::from_be_bytes([d[p + 2], d[p + 3]]),
            state: AccessState::from_code(d[p]),
            preferred: d[p] & 0x80 != 0,
            ports,
        });
        p += 8 + 4 * count;
    }
    Some(groups)
}

/// The target port group named in a Device Identification VPD page (a
/// designator of type 5h associated with the target port), if any.
pub fn own_port_group(page: &[u8]) -> Option<u16> {
    let len = usize::from(u16::from_be_bytes([*page.get(2)?, *page.get(3)?]));
    let end = (4 + len).min(page.len());
    let mut p = 4;
    while p + 4 <= end {
        let (association, kind, id_len) = ((page[p + 1] >> 4) & 0x3, page[p + 1] & 0x0f, usize::from(page[p + 3]));
        if association == 0b01 && kind == 0x5 && id_len >= 4 {
            let id = page.get(p + 4..p + 8)?;
            return Some(u16::from_be_bytes([id[2], id[3]]));
        }
        p += 4 + id_len;
    }
    None
}

/// What a path's logical unit says of its own port's access: the state of
/// the group the port belongs to, asked over `session` (a unit attention
/// is answered by asking again, up to three times), each question within
/// `timeout`. None if the target did not answer both questions GOOD in
/// time or did not name the group.
pub async fn path_state(session: &Pipeline, lun: u64, timeout: Duration) -> Option<AccessState> {
    let ask = async |cdb: &[u8], len: u32| {
        for _ in 0..3 {
            let r = tokio::time::timeout(timeout, session.command(lun, cdb, len, Bytes::new())).await.ok()??;
            if r.status == 0 {
                return Some(r.data);
            }
        }
        None
    };
    let own = own_port_group(&ask(&DEVICE_ID_CDB, 1024).await?)?;
    let groups = port_groups(&ask(&RTPG_CDB, 4096).await?)?;
    groups.into_iter().find(|g| g.id == own).map(|g| g.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_the_own_group_are_read_as_an_initiator_reads_them() {
        // Two groups: 3 active/optimized (preferred) with port 7, 4 standby with ports 8 and 9.
        let mut d = vec![0, 0, 0, 0];
        d.extend_from_slice(&[0x80, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 7]);
        d.extend_from_slice(&[0x02, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 9]);
        let len = (d.len() - 4) as u32;
        d[0..4].copy_from_slice(&len.to_be_bytes());
        let groups = port_groups(&d).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0],
            PortGroup { id: 3, state: AccessState::ActiveOptimized, preferred: true, ports: vec![7] }
        );
        assert_eq!(groups[1].state, AccessState::Standby);
        assert_eq!(groups[1].ports, vec![8, 9]);
        assert_eq!(groups[1].state.priority(), 1);
        assert_eq!(groups[0].state.priority(), 50);

        // A page with an NAA designator (LU), then a relative port (type 4), then the group (type 5).
        let mut page = vec![0, 0x83, 0, 0];
        page.extend_from_slice(&[0x01, 0x03, 0, 4, 1, 2, 3, 4]);
        page.extend_from_slice(&[0x51, 0x14, 0, 4, 0, 0, 0, 9]);
        page.extend_from_slice(&[0x01, 0x15, 0, 4, 0, 0, 0x01, 0x02]);
        let len = (page.len() - 4) as u16;
        page[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(own_port_group(&page), Some(0x0102));
        assert_eq!(own_port_group(&page[..12]), None, "a page cut short names no group");
    }

    #[test]
    fn truncated_data_is_no_answer_and_never_a_panic() {
        assert_eq!(port_groups(&[0, 0]), None);
        // A header that claims more than was sent: only whole descriptors count.
        assert_eq!(port_groups(&[0, 0, 0, 64, 0, 0, 0, 1, 0, 0, 0, 5]).unwrap().len(), 0);
        assert_eq!(own_port_group(&[0, 0x83, 0, 40, 0x01]), None);
    }
}
