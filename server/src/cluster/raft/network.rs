//! Calls from this node's Raft to its peers.
//!
//! Node-to-node traffic goes over the cluster address with mutual TLS under
//! the cluster's own CA (CLUSTER.md §1). That channel arrives with joining;
//! until then a node's cluster has itself as its only member, and openraft
//! has no peer to call. A call to a node that is not reachable answers
//! `Unreachable`, which makes openraft back off and try again later.

use std::future::Future;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, OptionalSend};

use super::{NodeId, Snapshot, SnapshotData, Vote, C};

/// Makes a client per peer.
#[derive(Clone, Default)]
pub struct Network;

/// A peer this node has no channel to.
pub struct Peer {
    target: NodeId,
}

impl Peer {
    fn unreachable(&self) -> Unreachable<C> {
        Unreachable::from_string(format!(
            "node {} cannot be reached: this node has no cluster channel yet",
            self.target
        ))
    }
}

impl RaftNetworkFactory<C> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        Peer { target }
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(&mut self, _rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
