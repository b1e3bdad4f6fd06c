//! Primary commands (SPC-4 §6): TEST UNIT READY (§6.47), INQUIRY (§6.6),
//! REQUEST SENSE (§6.39), REPORT LUNS (§6.33), MODE SENSE/SELECT
//! (§6.9–6.14), REPORT SUPPORTED OPERATION CODES (§6.35), REPORT SUPPORTED
//! TASK MANAGEMENT FUNCTIONS (§6.36), PERSISTENT RESERVE IN/OUT (§6.15,
//! §6.16, see [`super::pr`]), RESERVE(6)/RELEASE(6) (SPC-2 §7.21, §7.17),
//! EXTENDED COPY and RECEIVE COPY RESULTS (§6.4, §6.18, see [`super::xcopy`]),
//! REPORT/SET TARGET PORT GROUPS (§6.27, §6.38, see [`super::alua`]) and
//! SBC-3's START STOP UNIT (§5.25).

use bytes::Bytes;

use super::cdb::{Cdb, UaPolicy};
use super::lu::{LogicalUnit, Reply};
use super::mode::{self, UnitShape};
use super::opcodes::{self, OpInfo};
use super::sense::{Field, SenseReason};
use super::{cdb, inquiry, sbc};
use super::{LunMap, Nexus, ScsiCommand, ScsiStatus};

pub(crate) async fn execute(
    lu: &LogicalUnit,
    luns: &LunMap,
    nexus: &Nexus,
    cdb: Cdb,
    data_out: &Bytes,
) -> Result<Reply, SenseReason> {
    match cdb {
        Cdb::TestUnitReady => Ok(Reply::good()),
        Cdb::Inquiry { evpd: false, alloc_len, .. } => {
            Ok(Reply::data(inquiry::standard(nexus.privileges().set_target_port_groups), alloc_len))
        }
        Cdb::Inquiry { evpd: true, page, alloc_len } => {
            Ok(Reply::data(inquiry::vpd_page(page, &lu.spec, &nexus.id)?, alloc_len))
        }
        Cdb::RequestSense { descriptor, alloc_len } => {
            let reason = lu.take_unit_attention(nexus).map_or(SenseReason::NoSense, SenseReason::UnitAttention);
            Ok(Reply::data(reason.encode(descriptor).to_vec(), alloc_len))
        }
        Cdb::ReportLuns { select, alloc_len } => report_luns(luns, select, alloc_len),
        Cdb::ModeSense { ten, dbd, llbaa, pc, page, subpage, alloc_len } => {
            let data = mode::sense(&lu.mode(), &shape(lu, nexus), ten, dbd, llbaa, pc, page, subpage)?;
            Ok(Reply::data(data, alloc_len))
        }
        Cdb::ModeSelect { ten, param_len, .. } => {
            let data = &data_out[..data_out.len().min(param_len as usize)];
            lu.mode_select(nexus, &shape(lu, nexus), ten, data).await?;
            Ok(Reply::good())
        }
        Cdb::StartStopUnit { power_condition, no_flush, loej, start, .. } => {
            if power_condition != 0 {
                return Err(SenseReason::InvalidFieldInCdb(Field::bit(4, 7)));
            }
            if loej {
                // The medium is not removable (RMB=0).
                return Err(SenseReason::InvalidFieldInCdb(Field::bit(4, 1)));
            }
            if !start && !no_flush {
                sbc::flush(lu).await?;
            }
            // Power conditions are not modelled: the unit stays active.
            Ok(Reply::good())
        }
        Cdb::ReportSupportedOpcodes { rctd, options, opcode, service_action, alloc_len } => {
            let explicit_alua = nexus.privileges().set_target_port_groups;
            let offered = |op: &OpInfo| {
                (lu.spec.reservations || !opcodes::is_reservation(op.opcode))
                    && (explicit_alua || !opcodes::is_set_target_port_groups(op))
            };
            Ok(Reply::data(supported_opcodes(rctd, options, opcode, service_action, offered)?, alloc_len))
        }
        Cdb::ReportSupportedTmfs { repd, alloc_len } => {
            // ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET.
            let mut d = vec![0xda, 0x00, 0x00, 0x00];
            if repd {
                d[3] = 0x0c;
                d.resize(16, 0);
            }
            Ok(Reply::data(d, alloc_len))
        }
        Cdb::PersistentReserveIn { action, alloc_len } => Ok(Reply::data(lu.state().pr.reserve_in(action), alloc_len)),
        Cdb::ExtendedCopy { param_len } => super::xcopy::extended_copy(lu, luns, &nexus.id, param_len, data_out).await,
        Cdb::ReceiveCopyResults { operating_parameters, list_id, alloc_len } => {
            super::xcopy::receive_copy_results(lu, &nexus.id, operating_parameters, list_id, alloc_len)
        }
        Cdb::Reserve | Cdb::Release => {
            lu.spc2_reservation(nexus, matches!(cdb, Cdb::Reserve)).await?;
            Ok(Reply::good())
        }
        Cdb::PersistentReserveOut { action, pr_type, param_len } => {
            lu.persistent_reserve_out(nexus, action, pr_type, param_len, data_out).await?;
            Ok(Reply::good())
        }
        Cdb::ReportTargetPortGroups { extended, alloc_len } => {
            let transitioning = lu.backend().transitioning();
            Ok(Reply::data(lu.state().alua.report(extended, transitioning), alloc_len))
        }
        Cdb::SetTargetPortGroups { param_len } => {
            let data = &data_out[..data_out.len().min(param_len as usize)];
            // In a cluster the states are the cluster's: the group asked to
            // be active takes the volume's primary (CLUSTER.md §3).
            if let Some(forwarder) = lu.cluster_forwarder() {
                let wanted = {
                    let st = lu.state();
                    st.alua.has_peers().then(|| st.alua.requested_active(data)).transpose()?
                };
                if let Some(requested) = wanted {
                    if let Some(tpg) = requested {
                        forwarder.activate_port_group(&lu.spec.name, tpg, &nexus.id.initiator_name).await?;
                    }
                    return Ok(Reply::good());
                }
            }
            let mut guard = lu.state();
            let st = &mut *guard;
            if st.alua.set_from_parameters(data, !lu.spec.remote)? {
                // SPC-4 §5.16.2.6: every other nexus learns of the explicit transition.
                st.ua.raise_others(&nexus.id, super::sense::UnitAttention::AsymmetricAccessStateChanged);
            }
            Ok(Reply::good())
        }
        other => unreachable!("{other:?} is a block command"),
    }
}

fn shape(lu: &LogicalUnit, nexus: &Nexus) -> UnitShape {
    UnitShape {
        blocks: lu.blocks(),
        block_size: lu.spec.block_size,
        write_protected: lu.spec.read_only,
        swp_changeable: nexus.privileges().software_write_protect,
        write_cache: lu.write_cache().0,
    }
}

/// Commands addressed to a LUN with no unit behind it (SPC-4 §6.6.2, §6.39, SAM-5 §5.9.6).
pub(crate) fn without_unit(luns: &LunMap, nexus: &Nexus, cmd: &ScsiCommand) -> Result<Reply, SenseReason> {
    let policy = cdb::ua_policy(&cmd.cdb);
    if policy == UaPolicy::ClearLunsChanged {
        nexus.lock().luns_changed = false;
    }
    match Cdb::decode(&cmd.cdb) {
        Ok(Cdb::Inquiry { evpd: false, alloc_len, .. }) => Ok(Reply::data(inquiry::not_present(), alloc_len)),
        Ok(Cdb::ReportLuns { select, alloc_len }) => report_luns(luns, select, alloc_len),
        Ok(Cdb::RequestSense { descriptor, alloc_len }) => {
            Ok(Reply::data(SenseReason::LunNotSupported.encode(descriptor).to_vec(), alloc_len))
        }
        _ => Err(SenseReason::LunNotSupported),
    }
}

/// The 8-byte LUN field for `lun` (SAM-5 §4.7): peripheral device addressing
/// below 256, flat space addressing below 16384.
pub(crate) fn encode_lun(lun: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else if lun < 0x4000 {
        b[0] = 0x40 | (lun >> 8) as u8;
        b[1] = lun as u8;
    } else {
        b = lun.to_be_bytes();
    }
    b
}

fn report_luns(luns: &LunMap, select: u8, alloc_len: u32) -> Result<Reply, SenseReason> {
    if alloc_len < 16 {
        return Err(SenseReason::InvalidFieldInCdb(Field::byte(6)));
    }
    let list: Vec<u64> = match select {
        0x00 | 0x02 => luns.keys().copied().collect(),
        // No well-known logical units.
        0x01 => Vec::new(),
        _ => return Err(SenseReason::InvalidFieldInCdb(Field::byte(2))),
    };
    let mut d = Vec::with_capacity(8 + 8 * list.len());
    d.extend_from_slice(&((8 * list.len()) as u32).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    for lun in list {
        d.extend_from_slice(&encode_lun(lun));
    }
    Ok(Reply::data(d, alloc_len))
}

fn timeouts(out: &mut Vec<u8>, op: &OpInfo) {
    out.extend_from_slice(&[0x00, 0x0a, 0x00, 0x00]);
    out.extend_from_slice(&op.timeout_secs.to_be_bytes());
    out.extend_from_slice(&op.timeout_secs.to_be_bytes());
}

/// REPORT SUPPORTED OPERATION CODES data for the operations `offered` lets through.
fn supported_opcodes(
    rctd: bool,
    options: u8,
    opcode: u8,
    sa: u16,
    offered: impl Fn(&OpInfo) -> bool,
) -> Result<Vec<u8>, SenseReason> {
    if options == 0 {
        let mut d = vec![0u8; 4];
        for op in opcodes::SUPPORTED.iter().filter(|op| offered(op)) {
            d.push(op.opcode);
            d.push(0);
            d.extend_from_slice(&op.service_action.unwrap_or(0).to_be_bytes());
            d.push(0);
            d.push(if rctd { 0x02 } else { 0 } | u8::from(op.service_action.is_some()));
            d.extend_from_slice(&(op.cdb_len() as u16).to_be_bytes());
            if rctd {
                timeouts(&mut d, op);
            }
        }
        let n = (d.len() - 4) as u32;
        d[..4].copy_from_slice(&n.to_be_bytes());
        return Ok(d);
    }
    let with_sa = opcodes::has_service_actions(opcode);
    let found = match options {
        1 if with_sa => return Err(SenseReason::InvalidFieldInCdb(Field::byte(3))),
        1 => opcodes::lookup(opcode, None),
        2 if !with_sa => return Err(SenseReason::InvalidFieldInCdb(Field::byte(4))),
        _ => opcodes::lookup(opcode, with_sa.then_some(sa)),
    };
    let ctdp = if rctd { 0x80 } else { 0 };
    let Some(op) = found.filter(|op| offered(op)) else {
        // SUPPORT 001b: not supported.
        return Ok(vec![0, ctdp | 0x01, 0, 0]);
    };
    let mut d = vec![0, ctdp | 0x03];
    d.extend_from_slice(&(op.cdb_len() as u16).to_be_bytes());
    d.extend_from_slice(op.usage);
    if rctd {
        timeouts(&mut d, op);
    }
    Ok(d)
}

pub(crate) fn condition_met() -> Reply {
    Reply { status: ScsiStatus::ConditionMet, data: Bytes::new() }
}
