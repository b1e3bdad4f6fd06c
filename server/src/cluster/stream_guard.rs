//! Replication streams between nodes over mutual TLS 1.3, with the nodes'
//! certificates (issue 30, finding 2; CLUSTER.md §1).
//!
//! The engine hands each replication connection to [`ClusterStreamGuard`]
//! (`target_engine::replication::guard`). Both ends show their node
//! certificates ([`super::certs`]); each end takes the other only if its
//! certificate is of a member *now* (the roster: pinned key, not revoked)
//! and then says which node that is, by the node's id in the placement
//! (`nodes.id`). The primary goes on only with the node of the copy it
//! dialled; the replica only with the primary the hello names, which its
//! engine checks against the placement it has applied. So a removed node,
//! or anyone holding only the old replication key, opens no stream, and
//! nothing on the replication network can read, rewrite or forge what a
//! stream carries: TLS encrypts and authenticates every record.
//!
//! The connection has its own ALPN protocol, so a replication stream and
//! the cluster channel's HTTP/2 are never taken for each other.

use std::sync::Arc;

use async_trait::async_trait;
use rustls::pki_types::ServerName;
use target_engine::replication::core::ops::ReplicaId;
use target_engine::replication::guard::{Guarded, StreamGuard};
use tokio::net::TcpStream;

use super::certs::read_peer_cert;
use super::roster::Roster;
use super::tls::Identity;

/// The ALPN protocol of a replication stream.
pub const ALPN: &[u8] = b"portico-replication/1";

/// Replication streams inside mutual TLS with the nodes' certificates.
pub struct ClusterStreamGuard {
    connector: tokio_rustls::TlsConnector,
    acceptor: tokio_rustls::TlsAcceptor,
    roster: Arc<Roster>,
}

impl std::fmt::Debug for ClusterStreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterStreamGuard")
    }
}

impl ClusterStreamGuard {
    pub fn new(identity: &Identity, roster: Arc<Roster>) -> anyhow::Result<Self> {
        Ok(ClusterStreamGuard {
            connector: tokio_rustls::TlsConnector::from(identity.replication_client_config()?),
            acceptor: tokio_rustls::TlsAcceptor::from(identity.replication_server_config()?),
            roster,
        })
    }

    /// The placement id of the member whose certificate is `certs`.
    fn member(&self, certs: Option<&[rustls::pki_types::CertificateDer<'static>]>) -> Result<ReplicaId, String> {
        let cert = certs.and_then(|c| c.first()).ok_or("the other end showed no certificate")?;
        let named = read_peer_cert(cert)?;
        let known = self
            .roster
            .member(&named)
            .ok_or_else(|| format!("Raft node {} is not a member of the cluster now", named.raft_id))?;
        known.node_id.map(|id| id as ReplicaId).ok_or_else(|| format!("node {} has no place yet", known.name))
    }
}

#[async_trait]
impl StreamGuard for ClusterStreamGuard {
    async fn connect(&self, tcp: TcpStream, replica: ReplicaId) -> Result<Guarded, String> {
        let address = tcp.peer_addr().map_err(|e| e.to_string())?;
        let tls = self
            .connector
            .connect(ServerName::IpAddress(address.ip().into()), tcp)
            .await
            .map_err(|e| format!("TLS with {address}: {e}"))?;
        let node = self.member(tls.get_ref().1.peer_certificates())?;
        if node != replica {
            tracing::warn!(%address, expected = replica, found = node, "a replication stream reached another node than the copy's: closed");
            return Err(format!("{address} is node {node}, not node {replica} that keeps the copy"));
        }
        Ok(Box::new(tls))
    }

    async fn accept(&self, tcp: TcpStream) -> Result<(Guarded, Option<ReplicaId>), String> {
        let address = tcp.peer_addr().map_err(|e| e.to_string())?;
        let tls = self.acceptor.accept(tcp).await.map_err(|e| format!("TLS with {address}: {e}"))?;
        let node = self.member(tls.get_ref().1.peer_certificates()).map_err(|e| {
            tracing::warn!(%address, "a replication stream from a node that is not a member: {e}");
            e
        })?;
        Ok((Box::new(tls), Some(node)))
    }
}
