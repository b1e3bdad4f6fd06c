//! Commands that arrive through this node's ports for a volume another
//! node serves (`target_engine::scsi::forward`: reservation commands
//! through a standby port, every command answered with the data through
//! an active/non-optimized one): sent to that node's `/cluster/unit-command`
//! member route, where its engine runs them for the I_T nexus they came
//! on, and answered with its outcome. The volume's primary is the one the
//! cluster's state names; a node that does not answer within the route's
//! deadline leaves the command refused as a standby port refuses it.
//!
//! A LOGICAL UNIT RESET through any port of this node is passed to every
//! other node that exports the volume (`/cluster/unit-reset`), all at once,
//! each within its route's deadline.

use async_trait::async_trait;
use sqlx::SqlitePool;
use target_engine::scsi::forward::{ForwardedCommand, ForwardedOutcome, UnitForwarder};
use target_engine::scsi::sense::{Field, SenseReason};

use crate::cluster::Cluster;

pub struct ClusterForwarder {
    pub cluster: Cluster,
    pub pool: SqlitePool,
    /// This node's id.
    pub node_id: i64,
}

impl std::fmt::Debug for ClusterForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterForwarder").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

#[async_trait]
impl UnitForwarder for ClusterForwarder {
    async fn forward(&self, command: ForwardedCommand) -> Result<ForwardedOutcome, String> {
        let primary: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT n.id, n.name, n.cluster_addr FROM volumes v JOIN nodes n ON n.id = v.node_id WHERE v.name = ?",
        )
        .bind(&command.volume)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        let (id, name, address) =
            primary.ok_or_else(|| format!("volume {} is not in the cluster's state", command.volume))?;
        if id == self.node_id {
            return Err(format!("this node is the primary of {} but its engine does not serve it yet", command.volume));
        }
        let address = address.ok_or_else(|| format!("node {name} has no cluster address"))?;
        self.cluster.ask_unit_command(&name, &address, &command).await.map_err(|e| e.message)
    }

    async fn reset_elsewhere(&self, volume: &str) {
        let nodes: Vec<(String, Option<String>)> = match sqlx::query_as(
            "SELECT DISTINCT n.name, n.cluster_addr FROM volumes v JOIN luns l ON l.volume_id = v.id \
             JOIN targets t ON t.group_id = l.group_id JOIN nodes n ON n.id = t.node_id \
             WHERE v.name = ? AND n.id <> ?",
        )
        .bind(volume)
        .bind(self.node_id)
        .fetch_all(&self.pool)
        .await
        {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(volume, "cannot tell the other nodes of a LOGICAL UNIT RESET: {e}");
                return;
            }
        };
        let asks = nodes.into_iter().filter_map(|(name, address)| {
            let address = address?;
            let cluster = self.cluster.clone();
            Some(async move {
                if let Err(e) = cluster.ask_unit_reset(&name, &address, volume).await {
                    tracing::warn!(volume, node = %name, "LOGICAL UNIT RESET not passed on: {}", e.message);
                }
            })
        });
        futures_util::future::join_all(asks).await;
    }

    /// The move is refused as an invalid parameter when the cluster says
    /// no (the group's node keeps no copy in sync, or is not online); it
    /// failed when it could not be decided (no quorum, the primary could not
    /// be asked).
    async fn activate_port_group(&self, volume: &str, tpg: u16, initiator: &str) -> Result<(), SenseReason> {
        let checks = self.cluster.local_checks().map_err(|_| SenseReason::SetTargetPortGroupsFailed)?;
        match checks.activate_port_group(volume, tpg, initiator).await {
            Ok(_) => Ok(()),
            // Refused for what it asks (not for how often: 429).
            Err(e) if (400..500).contains(&e.status) && e.status != 429 => {
                tracing::info!(volume, tpg, initiator, reason = %e.message, "SET TARGET PORT GROUPS refused");
                Err(SenseReason::InvalidFieldInParameterList(Field::byte(6)))
            }
            Err(e) => {
                tracing::warn!(volume, tpg, initiator, reason = %e.message, "SET TARGET PORT GROUPS failed");
                Err(SenseReason::SetTargetPortGroupsFailed)
            }
        }
    }
}
