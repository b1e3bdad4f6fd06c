//! Raft's messages between members, over the cluster channel
//! ([`transport`](crate::cluster::transport)): each RPC is a POST of its
//! request as JSON to `/raft/…` on the peer's cluster address, answered
//! with openraft's own result. A snapshot (a copy of the state database)
//! travels whole, in one request.
//!
//! A peer that cannot be reached answers `Unreachable`, which makes
//! openraft back off before it tries again; a peer that answered with
//! something else than a result is a network error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::errors::{Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use portico_app::error::ApiError;
use serde::{Deserialize, Serialize};

use super::{NodeId, Raft, Snapshot, SnapshotData, SnapshotMeta, Vote, WatchReceiver as _, C};
use crate::api::extract::{ApiFailure, ApiJson};
use crate::cluster::lease::{answer_follower, Lease, LeaseAnswer, LeaseRequest};
use crate::cluster::transport::{CallError, Client, FromMember};

/// The largest snapshot a member accepts (a copy of the state database).
const MAX_SNAPSHOT: usize = 512 << 20;
/// The largest other Raft message (a batch of entries).
const MAX_MESSAGE: usize = 64 << 20;

/// Where each member is reached now, as the membership last named it.
///
/// openraft keeps a peer's client (and its replication stream) when only
/// the peer's address changes in the membership; each call looks the
/// address up here, so that a member back at a new address is reached
/// there at once. The cluster keeps it in step with the membership.
#[derive(Clone, Default)]
pub struct AddressBook(Arc<std::sync::RwLock<BTreeMap<NodeId, String>>>);

impl AddressBook {
    /// Takes the addresses of `nodes` (the membership's members).
    pub fn update<'a>(&self, nodes: impl Iterator<Item = (&'a NodeId, &'a BasicNode)>) {
        let book: BTreeMap<NodeId, String> = nodes.map(|(id, node)| (*id, node.addr.clone())).collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = book;
    }

    fn address(&self, id: NodeId) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(&id).filter(|a| !a.is_empty()).cloned()
    }
}

/// Makes a client per peer, all sharing the cluster channel.
#[derive(Clone)]
pub struct Network {
    client: Option<Arc<Client>>,
    book: AddressBook,
}

impl Network {
    /// A node without a cluster address has no channel: a one-node cluster.
    pub fn new(client: Option<Arc<Client>>, book: AddressBook) -> Self {
        Network { client, book }
    }
}

/// One peer, named by its Raft id and reached at its cluster address.
pub struct Peer {
    target: NodeId,
    /// Its address when the client was made; the book's is newer.
    address: String,
    book: AddressBook,
    client: Option<Arc<Client>>,
}

/// AppendEntries as it travels. It renews no lease: a follower's lease is
/// renewed only by a round trip it started (see [`crate::cluster::lease`]).
#[derive(Serialize, Deserialize)]
struct AppendRequest {
    rpc: AppendEntriesRequest<C>,
}

/// A snapshot as it travels.
#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: Vote,
    meta: SnapshotMeta,
    /// The database file, base64.
    data: String,
}

impl Peer {
    async fn call<Q: Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Q,
        deadline: Duration,
    ) -> Result<A, RPCError<C>> {
        let Some(client) = &self.client else {
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "node {} cannot be reached: this node has no cluster address",
                self.target
            ))));
        };
        let address = self.book.address(self.target).unwrap_or_else(|| self.address.clone());
        match client.call::<Q, Result<A, String>>(&address, path, body, deadline).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(fatal)) => Err(RPCError::Network(NetworkError::from_string(format!(
                "node {} cannot take Raft messages: {fatal}",
                self.target
            )))),
            Err(e @ CallError::Unreachable { .. }) => Err(RPCError::Unreachable(Unreachable::from_string(e))),
            Err(e) => Err(RPCError::Network(NetworkError::from_string(e))),
        }
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer { target, address: node.addr.clone(), book: self.book.clone(), client: self.client.clone() }
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call("/raft/append", &AppendRequest { rpc }, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("/raft/pre-vote", &rpc, option.hard_ttl()).await
    }

    /// The leader hands its leadership to this peer (a planned removal or
    /// maintenance of its node): the peer starts an election at once.
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call("/raft/transfer-leader", &req, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        use base64::Engine as _;
        let request = SnapshotRequest {
            vote,
            meta: snapshot.meta.clone(),
            data: base64::engine::general_purpose::STANDARD.encode(&snapshot.snapshot),
        };
        // A snapshot may take a while; it is bounded all the same.
        let deadline = Duration::from_secs(120);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = self.call("/raft/snapshot", &request, deadline) => answer.map_err(|e| match e {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                other => StreamingError::Network(NetworkError::from_string(other)),
            }),
        }
    }
}

/// A Raft call's answer as it travels: openraft's result, its fatal error
/// told as text.
type Answer<T> = Json<Result<T, String>>;

fn answer<T, E: std::fmt::Display>(result: Result<T, E>) -> Answer<T> {
    Json(result.map_err(|e| e.to_string()))
}

/// Refuses a Raft message that speaks for another node than the member
/// that sent it: entries and snapshots come from the leader they name,
/// votes from the candidate they name.
fn from_its_sender(member: &FromMember, vote: &Vote) -> Result<(), ApiError> {
    use openraft::vote::RaftLeaderId as _;
    member.must_be(*vote.leader_id().node_id(), "send Raft messages")
}

async fn append(
    State((raft, _)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(request): ApiJson<AppendRequest>,
) -> Result<Answer<AppendEntriesResponse<C>>, ApiFailure> {
    from_its_sender(&member, &request.rpc.vote)?;
    Ok(answer::<_, RaftError<C>>(raft.append_entries(request.rpc).await))
}

async fn vote(
    State((raft, _)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(rpc): ApiJson<VoteRequest<C>>,
) -> Result<Answer<VoteResponse<C>>, ApiFailure> {
    from_its_sender(&member, &rpc.vote)?;
    Ok(answer::<_, RaftError<C>>(raft.vote(rpc).await))
}

async fn pre_vote(
    State((raft, _)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(rpc): ApiJson<VoteRequest<C>>,
) -> Result<Answer<VoteResponse<C>>, ApiFailure> {
    from_its_sender(&member, &rpc.vote)?;
    Ok(answer::<_, RaftError<C>>(raft.pre_vote(rpc).await))
}

async fn transfer_leader(
    State((raft, _)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(request): ApiJson<TransferLeaderRequest<C>>,
) -> Result<Answer<TransferLeaderResponse<C>>, ApiFailure> {
    from_its_sender(&member, request.from_leader())?;
    Ok(answer::<_, Fatal<C>>(raft.handle_transfer_leader(request).await))
}

async fn snapshot(
    State((raft, _)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(request): ApiJson<SnapshotRequest>,
) -> Result<Answer<SnapshotResponse<C>>, ApiFailure> {
    from_its_sender(&member, &request.vote)?;
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(request.data.as_bytes())
        .map_err(|_| ApiError::new(400, "The snapshot's data is not base64."))?;
    let snapshot = Snapshot { meta: request.meta, snapshot: data };
    Ok(answer::<_, Fatal<C>>(raft.install_full_snapshot(request.vote, snapshot).await))
}

/// A follower asks the leader how lately it had both its quorum's
/// acknowledgement and this follower's (see `lease`).
async fn lease_for_follower(
    State((raft, lease)): State<(Raft, Arc<Lease>)>,
    member: FromMember,
    ApiJson(request): ApiJson<LeaseRequest>,
) -> Result<Json<Result<LeaseAnswer, String>>, ApiFailure> {
    member.must_be(request.raft_id, "renew a lease")?;
    use super::RaftInstant as _;
    let metrics = raft.metrics().borrow_watched().clone();
    let leader = metrics.current_leader == Some(metrics.id);
    // When the last AppendEntries it acknowledged was sent: the time the
    // offline verdict (`liveness`) counts from.
    let acked =
        metrics.heartbeat.as_ref().and_then(|h| h.get(&request.raft_id).cloned().flatten()).map(|t| t.elapsed());
    Ok(Json(answer_follower(&lease, leader, metrics.last_log_index.unwrap_or(0), acked)))
}

/// The routes that take Raft's messages.
pub fn routes(raft: Raft, lease: Arc<Lease>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/pre-vote", post(pre_vote))
        .route("/raft/lease", post(lease_for_follower))
        .route("/raft/transfer-leader", post(transfer_leader))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE))
        .merge(
            Router::new()
                .route("/raft/snapshot", post(snapshot))
                .layer(DefaultBodyLimit::max(MAX_SNAPSHOT / 3 * 4 + 4096)),
        )
        .with_state((raft, lease))
}
