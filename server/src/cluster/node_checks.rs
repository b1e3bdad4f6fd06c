//! What one member asks another about that node's own part (CLUSTER.md §0:
//! "checks that can fail on one node run on that node before the command
//! is proposed"):
//!
//! - `/cluster/capacity`: the space under its volumes, so that a new volume
//!   goes where there is most room (CLUSTER.md §1, volume placement);
//! - `/cluster/dry-run`: a proposal tried against its copy of the state and
//!   checked against what only it knows (its caps, its disks, files left
//!   over from a volume of the same name), then rolled back;
//! - `/cluster/replication`: how the volumes it is primary of stand with
//!   their replicas now (links, resync progress), for the Volumes page;
//! - `/cluster/unit-command`: a command that came through another node's
//!   port for a volume this node serves (a PERSISTENT RESERVE IN or OUT
//!   through a standby port; any command answered with the data through
//!   an active/non-optimized one), run here for the nexus it came on
//!   (`target_engine::scsi::forward`);
//! - `/cluster/unit-reset`: a LOGICAL UNIT RESET came through another
//!   node's port: this node's unit of the volume resets for its nexuses;
//! - `/cluster/portal-view`: what it sees of the other nodes' iSCSI
//!   portals, for the leader to tell a node cut off from the iSCSI network
//!   (`storage::portal_watch`);
//! - `/cluster/hand-over`: a planned switchover of a volume this node is
//!   the primary of: it demotes its copy, drains it, and commits the move
//!   itself, or serves again if the move is not committed
//!   (`storage::failover`).
//!
//! The storage layer answers them through [`NodeChecks`]; the routes serve
//! members only, and a node whose storage is not up yet answers 503.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use portico_app::error::ApiError;
use portico_app::model::StorageCapacity;

use super::transport::{CallError, FromMember};
use super::Cluster;
use crate::api::extract::{ApiFailure, ApiJson};
use crate::storage::portal_watch::PortalView;
use crate::storage::proposal::Proposal;
use target_engine::scsi::forward::{ForwardedCommand, ForwardedOutcome, MAX_FORWARDED_DATA};

/// How long a member has to say how much room it has.
const CAPACITY_DEADLINE: Duration = Duration::from_secs(2);
/// How long a member has to say how its replicated volumes stand.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(2);
/// How long a member has to say what it sees of the others' portals.
const PORTAL_VIEW_DEADLINE: Duration = Duration::from_secs(1);
/// How long a member has for a dry run.
const DRY_RUN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a member has to run a forwarded command (a write or a
/// reservation change waits for its replicas to keep it).
const UNIT_COMMAND_DEADLINE: Duration = Duration::from_secs(10);
/// A forwarded command's body: its Data-Out (at most 8 MiB) in base64, in JSON.
pub(super) const UNIT_COMMAND_BODY: usize = 12 << 20;
/// Forwarded commands one member may have in progress here at once; more
/// wait (their bodies unread) up to the command's deadline. With the
/// largest body, this times [`UNIT_COMMAND_BODY`] is what one member can
/// make this node hold.
pub(super) const UNIT_COMMANDS_PER_MEMBER: usize = 16;
/// How long a member has to reset its unit of a volume.
const UNIT_RESET_DEADLINE: Duration = Duration::from_secs(2);
/// How long a primary has to drain, hand over and commit a planned move
/// (5 s to drain, then the commit).
const HAND_OVER_DEADLINE: Duration = Duration::from_secs(20);

/// A planned switchover, as the node that was asked passes it to the
/// volume's primary.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HandOver {
    pub volume: String,
    /// The epoch the asking node saw: the move is for that placement only.
    pub epoch: u64,
    /// The node to take the primary.
    pub to: i64,
    /// Who asked for it.
    pub by: String,
    /// Why the primary moves.
    #[serde(default)]
    pub why: MoveWhy,
    /// How long initiators could not reach the primary before it was
    /// asked (its portals missed), for the timeline.
    #[serde(default)]
    pub held_before_ms: u64,
}

/// Why a primary is asked to hand over.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MoveWhy {
    /// An operator or an initiator asked for it.
    #[default]
    Planned,
    /// The controller returns the primary to the volume's preferred node.
    Failback,
    /// No other node reaches the iSCSI portals of the primary's node.
    PortalsDown,
}

/// This node's answers to the other members.
#[async_trait]
pub trait NodeChecks: Send + Sync {
    /// The space under this node's volumes.
    async fn capacity(&self) -> Result<StorageCapacity, ApiError>;
    /// Tries `proposal` here and rolls it back: the refusal, or the note
    /// for the audit (a thin volume's over-provisioning).
    async fn dry_run(&self, proposal: Proposal) -> Result<Option<String>, ApiError>;
    /// The volumes this node is the primary of, with their replicas now.
    async fn replication(&self) -> Vec<PrimaryReport>;
    /// Runs a command forwarded from another node's port.
    async fn unit_command(&self, command: ForwardedCommand) -> ForwardedOutcome;
    /// A LOGICAL UNIT RESET came through another node's port: resets this
    /// node's unit of `volume` for its nexuses. False if it has none.
    async fn unit_reset(&self, volume: &str) -> bool;
    /// Hands over a volume this node is the primary of (a planned
    /// switchover): the committed change's detail, or why not.
    async fn hand_over(&self, request: HandOver) -> Result<String, ApiError>;
    /// What this node sees of the other nodes' iSCSI portals.
    fn portal_views(&self) -> Vec<PortalView>;
    /// This node's own engine asks (not a member): SET TARGET PORT GROUPS
    /// came through one of its ports for port group `tpg` of `volume`.
    async fn activate_port_group(&self, volume: &str, tpg: u16, initiator: &str) -> Result<String, ApiError>;
}

/// A replicated volume as its primary's engine sees it now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrimaryReport {
    pub volume: String,
    pub epoch: u64,
    /// Writes wait for lack of copies in sync.
    pub suspended: bool,
    pub replicas: Vec<ReplicaReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaReport {
    /// The replica's node id.
    pub node: u32,
    pub state: String,
    pub copied_bytes: u64,
    pub left_bytes: u64,
    pub resync_rate: u64,
}

/// Where the routes find this node's storage once it is up.
pub(super) type Slot = Arc<OnceLock<Weak<dyn NodeChecks>>>;

fn checks(slot: &Slot) -> Result<Arc<dyn NodeChecks>, ApiError> {
    slot.get().and_then(Weak::upgrade).ok_or_else(|| ApiError::new(503, "This node's storage is not up yet."))
}

async fn capacity(State(slot): State<Slot>, _member: FromMember) -> Result<Json<StorageCapacity>, ApiFailure> {
    Ok(Json(checks(&slot)?.capacity().await?))
}

async fn dry_run(
    State(slot): State<Slot>,
    _member: FromMember,
    ApiJson(proposal): ApiJson<Proposal>,
) -> Result<Json<Result<Option<String>, ApiError>>, ApiFailure> {
    Ok(Json(checks(&slot)?.dry_run(proposal).await))
}

async fn replication(State(slot): State<Slot>, _member: FromMember) -> Result<Json<Vec<PrimaryReport>>, ApiFailure> {
    Ok(Json(checks(&slot)?.replication().await))
}

async fn portal_view(State(slot): State<Slot>, _member: FromMember) -> Result<Json<Vec<PortalView>>, ApiFailure> {
    Ok(Json(checks(&slot)?.portal_views()))
}

/// Places for forwarded commands, per member.
#[derive(Default)]
pub(super) struct Places {
    by_member: std::sync::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Semaphore>>>,
}

impl Places {
    /// A place for one more of `raft_id`'s commands, waiting up to `deadline`.
    pub(super) async fn take(
        &self,
        raft_id: u64,
        deadline: Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let places = {
            let mut by_member = self.by_member.lock().unwrap_or_else(|e| e.into_inner());
            by_member
                .entry(raft_id)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(UNIT_COMMANDS_PER_MEMBER)))
                .clone()
        };
        match tokio::time::timeout(deadline, places.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::new(
                503,
                format!("This member has {UNIT_COMMANDS_PER_MEMBER} forwarded commands in progress here already; try again."),
            )),
        }
    }
}

/// A member's place for one forwarded command, taken before its body is
/// read.
struct UnitCommandPlace(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for UnitCommandPlace {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let member = FromMember::from_request_parts(parts, state).await?;
        let places = parts.extensions.get::<Arc<Places>>().cloned().ok_or_else(ApiError::internal)?;
        Ok(UnitCommandPlace(places.take(member.raft_id(), UNIT_COMMAND_DEADLINE).await?))
    }
}

async fn unit_command(
    State(slot): State<Slot>,
    _place: UnitCommandPlace,
    ApiJson(command): ApiJson<ForwardedCommand>,
) -> Result<Json<ForwardedOutcome>, ApiFailure> {
    if command.data.len() > MAX_FORWARDED_DATA || command.cdb.len() > 16 {
        return Err(ApiError::new(413, "A forwarded command carries at most a 16-byte CDB and 8 MiB of data.").into());
    }
    Ok(Json(checks(&slot)?.unit_command(command).await))
}

/// Body of `/cluster/unit-reset`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UnitReset {
    pub volume: String,
}

async fn unit_reset(
    State(slot): State<Slot>,
    _member: FromMember,
    ApiJson(reset): ApiJson<UnitReset>,
) -> Result<Json<bool>, ApiFailure> {
    Ok(Json(checks(&slot)?.unit_reset(&reset.volume).await))
}

async fn hand_over(
    State(slot): State<Slot>,
    _member: FromMember,
    ApiJson(request): ApiJson<HandOver>,
) -> Result<Json<Result<String, ApiError>>, ApiFailure> {
    Ok(Json(checks(&slot)?.hand_over(request).await))
}

pub(super) fn routes(slot: Slot) -> Router {
    Router::new()
        .route("/cluster/capacity", post(capacity))
        .route("/cluster/replication", post(replication))
        .route("/cluster/hand-over", post(hand_over))
        .route("/cluster/portal-view", post(portal_view))
        .route("/cluster/unit-reset", post(unit_reset))
        .layer(DefaultBodyLimit::max(16 << 10))
        .merge(Router::new().route("/cluster/dry-run", post(dry_run)).layer(DefaultBodyLimit::max(1 << 20)))
        .merge(
            Router::new()
                .route("/cluster/unit-command", post(unit_command))
                .layer(DefaultBodyLimit::max(UNIT_COMMAND_BODY))
                .layer(axum::Extension(Arc::new(Places::default()))),
        )
        .with_state(slot)
}

fn unreachable(node: &str, e: CallError) -> ApiError {
    ApiError::new(503, format!("Node {node} could not be asked ({e}); nothing was changed. Try again."))
}

impl Cluster {
    /// This node's own storage, through the slot the member routes use.
    pub(crate) fn local_checks(&self) -> Result<Arc<dyn NodeChecks>, ApiError> {
        checks(&self.shared.node_checks)
    }

    /// Lets the other members ask this node's storage (once, at start).
    pub fn serve_node_checks(&self, checks: Weak<dyn NodeChecks>) {
        let _ = self.shared.node_checks.set(checks);
    }

    /// The space under the volumes of node `node`, at cluster address `address`.
    pub async fn ask_capacity(&self, node: &str, address: &str) -> Result<StorageCapacity, ApiError> {
        let client = self.client()?;
        client.call(address, "/cluster/capacity", &(), CAPACITY_DEADLINE).await.map_err(|e| unreachable(node, e))
    }

    /// How the volumes node `node` (at cluster address `address`) is the
    /// primary of stand with their replicas.
    pub async fn ask_replication(&self, node: &str, address: &str) -> Result<Vec<PrimaryReport>, ApiError> {
        let client = self.client()?;
        client.call(address, "/cluster/replication", &(), REPLICATION_DEADLINE).await.map_err(|e| {
            ApiError::new(503, format!("Node {node} could not be asked how its replicated volumes stand ({e})."))
        })
    }

    /// What node `node` (at cluster address `address`) sees of the other
    /// nodes' iSCSI portals.
    pub async fn ask_portal_view(&self, node: &str, address: &str) -> Result<Vec<PortalView>, ApiError> {
        let client = self.client()?;
        client.call(address, "/cluster/portal-view", &(), PORTAL_VIEW_DEADLINE).await.map_err(|e| unreachable(node, e))
    }

    /// Runs a forwarded command on node `node` (at cluster address
    /// `address`), which serves its volume.
    pub async fn ask_unit_command(
        &self,
        node: &str,
        address: &str,
        command: &ForwardedCommand,
    ) -> Result<ForwardedOutcome, ApiError> {
        let client = self.client()?;
        client.call(address, "/cluster/unit-command", command, UNIT_COMMAND_DEADLINE).await.map_err(|e| {
            ApiError::new(503, format!("Node {node} could not be asked to run a forwarded command ({e})."))
        })
    }

    /// Asks node `node` (at cluster address `address`) to reset its unit
    /// of `volume` for its nexuses (a LOGICAL UNIT RESET came here):
    /// whether it has one.
    pub async fn ask_unit_reset(&self, node: &str, address: &str, volume: &str) -> Result<bool, ApiError> {
        let client = self.client()?;
        let reset = UnitReset { volume: volume.to_string() };
        client.call(address, "/cluster/unit-reset", &reset, UNIT_RESET_DEADLINE).await.map_err(|e| {
            ApiError::new(503, format!("Node {node} could not be asked to reset its unit of {volume} ({e})."))
        })
    }

    /// Asks node `node` (at cluster address `address`), the primary of a
    /// volume, to hand it over: the committed change's detail. Fails with
    /// 503 when the node could not be asked.
    pub async fn ask_hand_over(&self, node: &str, address: &str, request: &HandOver) -> Result<String, ApiError> {
        let client = self.client()?;
        let answer: Result<String, ApiError> = client
            .call(address, "/cluster/hand-over", request, HAND_OVER_DEADLINE)
            .await
            .map_err(|e| ApiError::new(503, format!("Node {node} could not be asked to hand over ({e}).")))?;
        answer
    }

    /// A dry run of `proposal` on node `node`, at cluster address `address`.
    pub async fn ask_dry_run(
        &self,
        node: &str,
        address: &str,
        proposal: &Proposal,
    ) -> Result<Option<String>, ApiError> {
        let client = self.client()?;
        let answer: Result<Option<String>, ApiError> = client
            .call(address, "/cluster/dry-run", proposal, DRY_RUN_DEADLINE)
            .await
            .map_err(|e| unreachable(node, e))?;
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 30, finding 6: one member's forwarded commands fill its own
    /// places only; one more waits and is refused at its deadline, another
    /// member is served, and a place that ends is taken again.
    #[tokio::test]
    async fn a_members_forwarded_commands_fill_its_own_places_only() {
        let places = Places::default();
        let short = Duration::from_millis(50);
        let mut held = Vec::new();
        for _ in 0..UNIT_COMMANDS_PER_MEMBER {
            held.push(places.take(2, short).await.unwrap());
        }
        let refused = places.take(2, short).await.unwrap_err();
        assert_eq!(refused.status, 503, "{}", refused.message);
        let other = places.take(3, short).await.unwrap();
        drop(held.pop());
        let again = places.take(2, short).await.unwrap();
        drop((other, again, held));
    }
}
