//! Reservation commands that arrive through a port whose node does not
//! serve the volume: a standby port (SPC-4 §5.16.2.4.4 lets it take
//! PERSISTENT RESERVE IN and OUT), on a node that keeps a replica or no
//! copy at all. The persistent reservations are the logical unit's, and
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

/// The most parameter-list bytes forwarded: a SPEC_I_PT list of the most
/// initiator ports one command may name, with room to spare. A longer list
/// would be refused on the serving node as naming too many ports.
pub const MAX_FORWARDED_DATA: usize = 128 << 10;

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

/// A PERSISTENT RESERVE IN or OUT for the node that serves `volume`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardedCommand {
    pub volume: String,
    pub nexus: ForwardedNexus,
    pub cdb: Vec<u8>,
    /// The parameter list (PERSISTENT RESERVE OUT), at most
    /// [`MAX_FORWARDED_DATA`] bytes.
    pub data: Vec<u8>,
}

/// What a forwarded command came to on the serving node: its Data-In, or
/// why it failed there.
pub type ForwardedOutcome = Result<Vec<u8>, SenseReason>;

/// Sends reservation commands to the node that serves a volume; the node
/// service implements it over the cluster's member routes.
#[async_trait]
pub trait UnitForwarder: Send + Sync + std::fmt::Debug {
    /// The outcome on the serving node, or why it could not be asked.
    async fn forward(&self, command: ForwardedCommand) -> Result<ForwardedOutcome, String>;

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
