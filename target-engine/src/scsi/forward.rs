//! Commands that arrive through a port whose node does not serve the
//! volume, on a node that keeps a replica or no copy at all, and run on the
//! node that does:
//!
//! - through a standby port, the reservation commands (SPC-4 §5.16.2.4.4
//!   lets it take PERSISTENT RESERVE IN and OUT);
//! - through an active/non-optimized port (a target group whose other
//!   paths are set so, SPC-4 §5.16.2.4.3), every command whose answer lives
//!   with the data: reads, writes, COMPARE AND WRITE, TEST UNIT READY, MODE
//!   SELECT and the rest. The port is non-optimized because each command
//!   crosses the cluster's network once more; it is served all the same,
//!   and a write is GOOD only once the serving node (which replicates it)
//!   has answered GOOD.
//!
//! A LOGICAL UNIT RESET through any port resets the unit on every node that
//! exports it ([`UnitForwarder::reset_elsewhere`]): every I_T nexus, on
//! every node, gets BUS DEVICE RESET FUNCTION OCCURRED (SAM-5 §6.3.3), and
//! the task management response waits for the other nodes (a bounded wait).
//!
//! The persistent reservations are the logical unit's, and
//! only the node that serves the volume holds them as they are now
//! (CLUSTER.md §2: the primary owns them and replicates them in its stream),
//! so the command is sent there and runs for the I_T nexus it came on:
//! the initiator port, and this node's target port, whose relative target
//! port identifier and port group are numbered alike on every node. A
//! registration made through a standby port is therefore the same one on
//! every node after the primary moves, and READ KEYS and READ RESERVATION
//! answer the same through every port.
//!
//! The unit attentions a forwarded command raises for other nexuses are
//! raised on the serving node's unit; a nexus on another node's standby
//! port does not see them there (it sees the reservation state, which is
//! what the initiator acts on). Unit attentions pending for the sending
//! nexus are reported here before anything is forwarded, as for any
//! command.
//!
//! When the serving node cannot be reached, the command ends as the
//! standby port refused it before: NOT READY, LOGICAL UNIT NOT ACCESSIBLE,
//! TARGET PORT IN STANDBY STATE, and the initiator uses another path.

use async_trait::async_trait;

use super::sense::SenseReason;
use super::NexusId;

/// The most parameter-list bytes a reservation command forwards: a
/// SPEC_I_PT list of the most initiator ports one command may name, with
/// room to spare. A longer list would be refused on the serving node as
/// naming too many ports.
pub const MAX_FORWARDED_PARAMETERS: usize = 128 << 10;

/// The most Data-Out bytes any forwarded command carries: the Block Limits
/// page's MAXIMUM TRANSFER LENGTH (a COMPARE AND WRITE of the most blocks
/// it takes, compare and write data together, is far less).
pub const MAX_FORWARDED_DATA: usize = super::inquiry::MAX_TRANSFER_BYTES as usize;

/// The I_T nexus a forwarded command came on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardedNexus {
    pub initiator_name: String,
    pub isid: [u8; 6],
    pub target_name: String,
    pub tpgt: u16,
    pub relative_target_port: u16,
    pub target_port_group: u16,
}

impl From<&NexusId> for ForwardedNexus {
    fn from(id: &NexusId) -> Self {
        ForwardedNexus {
            initiator_name: id.initiator_name.to_string(),
            isid: id.isid,
            target_name: id.target_name.to_string(),
            tpgt: id.tpgt,
            relative_target_port: id.relative_target_port,
            target_port_group: id.target_port_group,
        }
    }
}

impl From<&ForwardedNexus> for NexusId {
    fn from(n: &ForwardedNexus) -> Self {
        NexusId {
            initiator_name: n.initiator_name.as_str().into(),
            isid: n.isid,
            target_name: n.target_name.as_str().into(),
            tpgt: n.tpgt,
            relative_target_port: n.relative_target_port,
            target_port_group: n.target_port_group,
        }
    }
}

/// A command for the node that serves `volume`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardedCommand {
    pub volume: String,
    pub nexus: ForwardedNexus,
    pub cdb: Vec<u8>,
    /// The Data-Out, at most [`MAX_FORWARDED_DATA`] bytes (base64 on the wire).
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A forwarded command that ended well: its status (GOOD, or CONDITION MET
/// for PRE-FETCH) and its Data-In (base64 on the wire).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardedReply {
    pub status: u8,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// What a forwarded command came to on the serving node: its reply, or why
/// it failed there.
pub type ForwardedOutcome = Result<ForwardedReply, SenseReason>;

/// Bytes as one base64 string, not as a JSON array of numbers (four times
/// the size).
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Sends commands to the node that serves a volume; the node service
/// implements it over the cluster's member routes.
#[async_trait]
pub trait UnitForwarder: Send + Sync + std::fmt::Debug {
    /// The outcome on the serving node, or why it could not be asked.
    async fn forward(&self, command: ForwardedCommand) -> Result<ForwardedOutcome, String>;

    /// A LOGICAL UNIT RESET came through a port of this node, and was done
    /// here: does it on every other node that exports `volume`, so that
    /// their nexuses get the unit attention too. Returns once each has
    /// answered or its bounded wait ran out (a node that cannot be reached
    /// is not serving sessions that would miss it). Without a cluster,
    /// there is nobody to tell.
    async fn reset_elsewhere(&self, volume: &str) {
        let _ = volume;
    }

    /// SET TARGET PORT GROUPS asked, through a port of this node, for port
    /// group `tpg` (this node's or another's) to be the active/optimized
    /// one of `volume`: the cluster moves the volume's primary to that
    /// group's node, and this returns once the move is committed, or with
    /// the reason it is refused (a group whose node keeps no copy in sync,
    /// or is not online, is an INVALID FIELD IN PARAMETER LIST). Without a
    /// cluster, no group is another node's to activate.
    async fn activate_port_group(&self, volume: &str, tpg: u16, initiator: &str) -> Result<(), SenseReason> {
        let _ = (volume, tpg, initiator);
        Err(SenseReason::InvalidFieldInParameterList(super::sense::Field::byte(6)))
    }
}
