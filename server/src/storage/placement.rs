//! Where a new volume goes (CLUSTER.md §1, "Volume placement"), and the
//! checks that run on the node a change concerns before it is proposed
//! (CLUSTER.md §0, "After commit, not before").
//!
//! A new volume goes on the node the request names, or else on the online
//! node, not in maintenance, with the most room: free space on its disk
//! less what its thin volumes may still claim. Each candidate measures
//! itself ([`Storage::capacity`] here, `/cluster/capacity` on another node);
//! one that does not answer within 2 s is passed over.
//!
//! A change that takes space on another node (a volume placed there, a
//! volume of its grown) is tried there first ([`NodeChecks::dry_run`]): its
//! caps, its disk and the files an earlier volume of that name left behind
//! are that node's to judge. Its refusal refuses the change.

use async_trait::async_trait;
use portico_app::error::ApiError;
use portico_app::model::storage::{Command, NewVolume};
use portico_app::model::StorageCapacity;

use super::proposal::{self, Change, Proposal};
use super::{commands, db_error, discard, volume_files, Storage};
use crate::cluster::node_checks::{NodeChecks, PrimaryReport};

/// A node that a change concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    pub id: i64,
    pub name: String,
    /// Its cluster address; `None` for this node.
    pub address: Option<String>,
}

/// What a node could still give new volumes: free space, less what its thin
/// volumes were promised and have not taken yet.
fn room(c: &StorageCapacity) -> u64 {
    c.free_bytes.saturating_sub(c.provisioned_bytes.saturating_sub(c.allocated_bytes))
}

/// The candidate with the most room; on a tie, the first by name.
fn roomiest(measured: Vec<(NodeRef, StorageCapacity)>) -> Option<NodeRef> {
    let mut best: Option<(NodeRef, u64)> = None;
    for (node, capacity) in measured {
        let r = room(&capacity);
        if best.as_ref().is_none_or(|(b, br)| r > *br || (r == *br && node.name < b.name)) {
            best = Some((node, r));
        }
    }
    best.map(|(n, _)| n)
}

impl Storage {
    fn node_ref(&self, id: i64, name: String, address: Option<String>) -> NodeRef {
        let address = if id == self.node_id { None } else { address };
        NodeRef { id, name, address }
    }

    /// The node named `name`, or a 422 on the `node` field.
    async fn named_node(&self, name: &str) -> Result<NodeRef, ApiError> {
        let row: Option<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, cluster_addr FROM nodes WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        let (id, name, address) =
            row.ok_or_else(|| ApiError::invalid_field("node", format!("No node of the cluster is named {name}.")))?;
        Ok(self.node_ref(id, name, address))
    }

    /// Online nodes (not in maintenance) but `except`, each with what it
    /// could still give; a node that does not answer is passed over.
    async fn measure_online(
        &self,
        except: &[i64],
        with_replication: bool,
    ) -> Result<Vec<(NodeRef, StorageCapacity)>, ApiError> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, name, cluster_addr FROM nodes WHERE state = 'online' \
             AND id NOT IN (SELECT value FROM json_each(?)) \
             AND (? = 0 OR replication_addr IS NOT NULL) ORDER BY name",
        )
        .bind(serde_json::to_string(except).unwrap_or_else(|_| "[]".into()))
        .bind(with_replication)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let asked = rows.into_iter().map(|(id, name, address)| {
            let node = self.node_ref(id, name, address);
            async move {
                let capacity = match &node.address {
                    None => self.capacity().await,
                    Some(address) => self.cluster.ask_capacity(&node.name, address).await,
                };
                match capacity {
                    Ok(c) => Some((node, c)),
                    Err(e) => {
                        tracing::warn!(node = %node.name, error = %e.message, "passed over for a new volume");
                        None
                    }
                }
            }
        });
        Ok(futures_util::future::join_all(asked).await.into_iter().flatten().collect())
    }

    /// Where new volume `v` goes (see the module's documentation).
    pub(super) async fn place_volume(&self, v: &NewVolume) -> Result<NodeRef, ApiError> {
        if let Some(name) = &v.node {
            return self.named_node(name).await;
        }
        let measured = self.measure_online(&[], v.replicas > 1).await?;
        // With no candidate (every node offline or in maintenance), the
        // volume is offered to this node, whose refusal says why.
        Ok(roomiest(measured).unwrap_or_else(|| self.node_ref(self.node_id, self.node_name.clone(), None)))
    }

    /// Where the copies a volume lacks go, to have `replicas` in all
    /// besides those on `holders` (its primary's node first): the online
    /// nodes with a replication address and the most room, one copy each.
    async fn place_copies(&self, replicas: u8, holders: &[NodeRef]) -> Result<Vec<NodeRef>, ApiError> {
        let wanted = usize::from(replicas).saturating_sub(holders.len());
        let (nodes,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM nodes").fetch_one(&self.pool).await.map_err(db_error)?;
        // Too many copies for the cluster (or for any volume): the command's
        // own checks say so.
        if wanted == 0 || replicas > 3 || i64::from(replicas) > nodes {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = holders.iter().map(|h| h.id).collect();
        let mut measured = self.measure_online(&ids, true).await?;
        measured.sort_by(|(a, ca), (b, cb)| room(cb).cmp(&room(ca)).then_with(|| a.name.cmp(&b.name)));
        if measured.len() < wanted {
            let holders: Vec<&str> = holders.iter().map(|h| h.name.as_str()).collect();
            return Err(ApiError::invalid_field(
                "replicas",
                format!(
                    "{replicas} copies need {wanted} online node(s) besides {} with a replication address and room; {} answered.",
                    holders.join(", "),
                    measured.len()
                ),
            ));
        }
        Ok(measured.into_iter().take(wanted).map(|(n, _)| n).collect())
    }

    /// The online node with a replication address and the most room, but
    /// those in `except`: where a lost copy is made again.
    pub(super) async fn roomiest_for_a_copy(&self, except: &[i64]) -> Result<Option<NodeRef>, ApiError> {
        Ok(roomiest(self.measure_online(except, true).await?))
    }

    /// `proposal` tried on this node, which it concerns.
    pub(super) async fn dry_run_here(&self, proposal: &Proposal) -> Result<Option<String>, ApiError> {
        NodeChecks::dry_run(self, proposal.clone()).await
    }

    /// The nodes that get a copy of a volume with `command`: a new
    /// volume's other copies (its primary on `primary`), or the copies a
    /// volume that gets more replicas lacks.
    pub(super) async fn place_new_copies(
        &self,
        command: &Command,
        primary: Option<&NodeRef>,
    ) -> Result<Vec<NodeRef>, ApiError> {
        match (command, primary) {
            (Command::CreateVolume(v), Some(primary)) => {
                self.place_copies(v.replicas, std::slice::from_ref(primary)).await
            }
            (Command::UpdateVolume { name, patch }, _) if patch.replicas.is_some() => {
                let holders = self.holders(name).await?;
                // An unknown volume: the command says so.
                if holders.is_empty() {
                    return Ok(Vec::new());
                }
                self.place_copies(patch.replicas.unwrap_or(1), &holders).await
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The nodes that hold a copy of volume `name`, its primary's first;
    /// none for an unknown volume.
    pub(super) async fn holders(&self, name: &str) -> Result<Vec<NodeRef>, ApiError> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT n.id, n.name, n.cluster_addr FROM volumes v JOIN nodes n ON n.id = v.node_id WHERE v.name = ?1 \
             UNION ALL SELECT n.id, n.name, n.cluster_addr FROM volume_copies c JOIN volumes v ON v.id = c.volume_id \
             JOIN nodes n ON n.id = c.node_id WHERE v.name = ?1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(id, name, address)| self.node_ref(id, name, address)).collect())
    }

    /// The nodes `proposal` takes space on (each copy of a new or grown
    /// volume), this one included; empty for a change that takes none.
    pub(super) async fn nodes_concerned(&self, proposal: &Proposal) -> Result<Vec<NodeRef>, ApiError> {
        let ids: Vec<i64> = match &proposal.change {
            Change::Storage(Command::CreateVolume(_)) => {
                proposal.decided.node_id.into_iter().chain(proposal.decided.copies.iter().copied()).collect()
            }
            // Grown: each copy's node; more copies: each new copy's node.
            Change::Storage(Command::UpdateVolume { name, patch }) => {
                let mut nodes = if patch.size.is_some() { self.holders(name).await? } else { Vec::new() };
                nodes.extend(self.nodes_by_id(&proposal.decided.copies).await?);
                return Ok(nodes);
            }
            _ => Vec::new(),
        };
        self.nodes_by_id(&ids).await
    }

    /// The nodes with these ids that are still members.
    async fn nodes_by_id(&self, ids: &[i64]) -> Result<Vec<NodeRef>, ApiError> {
        let mut nodes = Vec::new();
        for &id in ids {
            let row: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT name, cluster_addr FROM nodes WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
            if let Some((name, address)) = row {
                nodes.push(self.node_ref(id, name, address));
            }
        }
        Ok(nodes)
    }

    /// `proposal` tried on `node`, which it concerns.
    pub(super) async fn dry_run_on(&self, node: &NodeRef, proposal: &Proposal) -> Result<Option<String>, ApiError> {
        match &node.address {
            Some(address) => self.cluster.ask_dry_run(&node.name, address, proposal).await,
            None => Err(ApiError::new(
                503,
                format!("Node {} has no cluster address to be asked at; nothing was changed.", node.name),
            )),
        }
    }
}

#[async_trait]
impl NodeChecks for Storage {
    async fn capacity(&self) -> Result<StorageCapacity, ApiError> {
        Storage::capacity(self).await
    }

    async fn replication(&self) -> Vec<PrimaryReport> {
        self.primary_reports().await
    }

    async fn unit_command(
        &self,
        command: target_engine::scsi::forward::ForwardedCommand,
    ) -> target_engine::scsi::forward::ForwardedOutcome {
        self.engine.run_forwarded(command).await
    }

    async fn unit_reset(&self, volume: &str) -> bool {
        self.engine.reset_unit_from_elsewhere(volume).await
    }

    fn portal_views(&self) -> Vec<super::portal_watch::PortalView> {
        self.portals.views()
    }

    async fn hand_over(&self, request: crate::cluster::node_checks::HandOver) -> Result<String, ApiError> {
        self.hand_over_here(request).await
    }

    async fn activate_port_group(&self, volume: &str, tpg: u16, initiator: &str) -> Result<String, ApiError> {
        Storage::activate_port_group(self, volume, tpg, initiator).await
    }

    async fn dry_run(&self, proposal: Proposal) -> Result<Option<String>, ApiError> {
        let here = self.here();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        let tried = async {
            let effects = commands::apply(proposal.clone(), &mut tx).await?;
            let note = proposal::check_here(&proposal, &mut tx, &here).await?;
            if let Some((name, _)) = &effects.create_image {
                let leftovers = volume_files::existing_files(&self.data_dir, name);
                if !leftovers.is_empty() {
                    let e = volume_files::VolumeFileError::Leftovers { volume: name.clone(), files: leftovers };
                    return Err(super::file_error(e));
                }
            }
            Ok(note)
        }
        .await;
        discard(tx).await;
        tried
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeRef {
        NodeRef { id: 0, name: name.into(), address: None }
    }

    fn capacity(provisioned: u64, allocated: u64, free: u64) -> StorageCapacity {
        StorageCapacity {
            provisioned_bytes: provisioned,
            allocated_bytes: allocated,
            free_bytes: free,
            max_overprovision_percent: None,
        }
    }

    #[test]
    fn the_node_with_the_most_room_is_chosen() {
        // n1 has the most free space, but its thin volumes may claim 60 of it.
        let measured = vec![
            (node("n1"), capacity(100, 40, 100)),
            (node("n2"), capacity(0, 0, 50)),
            (node("n3"), capacity(10, 10, 45)),
        ];
        assert_eq!(roomiest(measured).unwrap().name, "n2");
        // A tie goes to the first by name; no candidate, no choice.
        let tie = vec![(node("n3"), capacity(0, 0, 7)), (node("n2"), capacity(0, 0, 7))];
        assert_eq!(roomiest(tie).unwrap().name, "n2");
        assert_eq!(roomiest(Vec::new()), None);
        // Promised more than the disk holds: no room, not an overflow.
        assert_eq!(room(&capacity(1 << 40, 0, 10)), 0);
    }
}
