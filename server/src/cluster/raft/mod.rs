//! openraft behind one door: the only files that name it are this module's.
//! Its log and vote live in `raft.db` ([`log_store`]); what it applies lands
//! in the state database, with the last applied entry in the same
//! transaction ([`state_machine`]).

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::fmt;

use portico_app::error::ApiError;
use serde::{Deserialize, Serialize};

use crate::storage::proposal::Proposal;

/// One entry of the log: a proposal, its action named for the log's readers.
impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.change.action(), self.change.object())
    }
}

/// What applying one entry gave, on every node alike.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// `None` for entries that are not proposals (blank, membership).
    pub outcome: Option<Result<AppliedChange, ApiError>>,
}

/// The part of a change's effects that the proposing node acts on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppliedChange {
    pub detail: Option<String>,
    /// A deleted volume whose files go once the engine has let go of it.
    pub remove_volume: Option<String>,
    /// The Raft id a node was admitted with.
    pub raft_id: Option<u64>,
    /// The id of a new row (an API token).
    #[serde(default)]
    pub created_id: Option<i64>,
}

openraft::declare_raft_types!(
    /// The cluster's Raft: proposals in, their outcomes out.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type C = TypeConfig;
pub type NodeId = u64;
pub type LogId = openraft::type_config::alias::LogIdOf<C>;
pub type Entry = openraft::type_config::alias::EntryOf<C>;
pub type Vote = openraft::type_config::alias::VoteOf<C>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<C>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<C>;
/// A snapshot is a copy of the state database's file.
pub type SnapshotData = Vec<u8>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<C, SnapshotData>;
pub type Raft = openraft::Raft<C, state_machine::StateMachine>;
pub use openraft::ChangeMembers;
/// Raft's clock, for the heartbeat times in its metrics.
pub use openraft::Instant as RaftInstant;
pub use openraft::{BasicNode, Config, ServerState};
pub type ClientWriteError = openraft::errors::RaftError<C, openraft::errors::ClientWriteError<C>>;
pub type Metrics = openraft::RaftMetrics<C>;
pub use openraft::async_runtime::WatchReceiver;

/// An I/O error for openraft from anything that says what went wrong.
fn io(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
