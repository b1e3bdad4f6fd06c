//! Who may open a replication stream when the engine runs inside a node of
//! a cluster (CLUSTER.md §1: node-to-node traffic is mutually
//! authenticated).
//!
//! On its own (`portico engine`), the engine runs each stream over TLS
//! keyed by the replication key ([`super::keyed_tls`]), or, with
//! `transport = "plain"`, proves the key at the start of each stream and
//! sends the rest in the clear ([`super::auth`]). A cluster node injects a
//! [`StreamGuard`] instead (`Engine::set_stream_guard`): every stream then
//! runs inside what the guard makes of the TCP connection (mutual TLS with
//! the nodes' certificates, in `portico serve`), and the guard says which
//! node the other end proved to be. The primary goes on only if that is
//! the node of the copy it meant to reach; the replica only if it is the
//! primary the hello names, which must be the primary of the placement
//! this node has applied (epoch fencing, as before). The key exchange is
//! left out: the guard's proof is stronger.

use std::fmt::Debug;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::core::ops::ReplicaId;

/// A byte stream replication can run on.
pub trait ReplicationStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ReplicationStream for T {}

/// A stream the guard has vouched for.
pub type Guarded = Box<dyn ReplicationStream>;

/// Makes replication streams of TCP connections, and says who is at the
/// other end.
#[async_trait]
pub trait StreamGuard: Send + Sync + Debug {
    /// The primary's side: `tcp` is connected to where copy `replica` is
    /// kept. The stream, once the other end proved to be that node.
    async fn connect(&self, tcp: TcpStream, replica: ReplicaId) -> Result<Guarded, String>;

    /// The replica's side: the stream, and the node the other end proved
    /// to be (none: it proved it holds the cluster's replication key, as
    /// any node of the cluster does, and the hello says which it is).
    async fn accept(&self, tcp: TcpStream) -> Result<(Guarded, Option<ReplicaId>), String>;
}
