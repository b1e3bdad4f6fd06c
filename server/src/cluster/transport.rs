//! The cluster channel: HTTP/2 over mutual TLS on the cluster address,
//! JSON in both directions (CLUSTER.md §1).
//!
//! The server takes a member's certificate (issued by the cluster's CA) or
//! none; a request carries [`Peer`], which says which, and only the join
//! route serves a peer without one. Connections are capped, handshakes and
//! unauthenticated connections have deadlines, and request bodies have a
//! size limit, so a stranger who opens connections and never speaks cannot
//! crowd out the members.
//!
//! The client keeps one HTTP/2 connection per peer and reconnects when it
//! breaks; every call has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::certs::{read_peer_cert, PeerCert};
use super::roster::{Known, Roster};

/// TLS handshakes in progress at once.
const HANDSHAKES: usize = 64;
/// ... of them from one address.
const HANDSHAKES_PER_ADDRESS: usize = 8;
/// Handshakes kept for the addresses of the members, beside the others.
const MEMBER_HANDSHAKES: usize = 16;
/// Connections from members at once.
const MEMBER_CONNECTIONS: usize = 64;
/// Connections from peers without a certificate (nodes coming to join).
const STRANGER_CONNECTIONS: usize = 8;
/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer without a certificate gets this long for its whole connection.
const STRANGER_DEADLINE: Duration = Duration::from_secs(30);
/// The largest response body the client reads.
const MAX_RESPONSE: usize = 16 << 20;

/// Who sent a request: set on every request by the server.
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
    /// What the certificate the peer showed (one of the cluster's CA, in
    /// date) names; none for a peer without one.
    pub cert: Option<PeerCert>,
    roster: Arc<Roster>,
}

impl Peer {
    /// The member this peer is now, if it is one.
    pub fn member(&self) -> Option<Known> {
        self.cert.as_ref().and_then(|c| self.roster.member(c))
    }
}

/// A request from a member of the cluster, as the roster knows it *now*:
/// a handler that takes this refuses everyone else (403), a node coming to
/// join, a removed node and a certificate for a key the cluster never
/// pinned included. The handler checks what the request claims against
/// [`FromMember::raft_id`] and [`FromMember::name`].
#[derive(Clone, Debug)]
pub struct FromMember(pub Known);

impl FromMember {
    pub fn raft_id(&self) -> u64 {
        self.0.raft_id
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Refuses (403) a request that claims to come from another node.
    pub fn must_be(&self, raft_id: u64, what: &str) -> Result<(), portico_app::error::ApiError> {
        if raft_id == self.0.raft_id {
            Ok(())
        } else {
            tracing::warn!(
                caller = self.0.raft_id,
                claimed = raft_id,
                what,
                "a member spoke for another node: refused"
            );
            Err(portico_app::error::ApiError::new(403, format!("A member may only {what} for itself.")))
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FromMember {
    type Rejection = crate::api::ApiFailure;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<Peer>();
        match peer.and_then(Peer::member) {
            Some(known) => Ok(FromMember(known)),
            None => {
                if let Some(cert) = peer.and_then(|p| p.cert.as_ref()) {
                    tracing::warn!(raft_id = cert.raft_id, address = ?peer.map(|p| p.address), "a node that is not a member now asked the cluster channel: refused");
                }
                Err(portico_app::error::ApiError::new(403, "Only members of the cluster may ask this.").into())
            }
        }
    }
}

/// Tells whether an address is a member's (as the membership names them).
pub type MemberAddress = Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>;

/// Handshakes in progress per address.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<HashMap<std::net::IpAddr, usize>>);

struct AddressPlace(Arc<PerAddress>, std::net::IpAddr);

impl PerAddress {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressPlace> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressPlace(self.clone(), ip))
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut counts = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// Serves `router` on `listener` until the process ends.
///
/// Caps: handshakes in progress (each with a deadline; at most
/// [`HANDSHAKES_PER_ADDRESS`] from one address, and [`MEMBER_HANDSHAKES`]
/// more kept for the members' addresses), connections of members, and
/// connections of peers without a certificate (each with a deadline for
/// the whole connection). Strangers who open connections and never speak
/// fill only their own address's handshakes for a while, and never the
/// members'.
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    roster: Arc<Roster>,
    member_address: MemberAddress,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let member_handshakes = Arc::new(Semaphore::new(MEMBER_HANDSHAKES));
    let per_address = Arc::new(PerAddress::default());
    let members = Arc::new(Semaphore::new(MEMBER_CONNECTIONS));
    let strangers = Arc::new(Semaphore::new(STRANGER_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let (stream, address) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener: cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let reserved =
                || member_address(address.ip()).then(|| member_handshakes.clone().try_acquire_owned().ok()).flatten();
            let handshake = match per_address.take(address.ip()) {
                Some(place) => handshakes.clone().try_acquire_owned().ok().or_else(reserved).map(|h| (h, Some(place))),
                None => reserved().map(|h| (h, None)),
            };
            let Some(handshake) = handshake else {
                tracing::warn!(%address, "cluster listener: too many handshakes in progress, from there or at all; connection closed");
                continue;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            let (members, strangers, roster) = (members.clone(), strangers.clone(), roster.clone());
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                drop(handshake);
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%address, error = %e, "cluster TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let cert =
                    tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| read_peer_cert(c).ok());
                // A place among the members' for a certificate of one, as
                // the roster knows them now; anyone else is a stranger.
                let member = cert.as_ref().is_some_and(|c| roster.member(c).is_some());
                let place = if member { members } else { strangers };
                let Ok(_place) = place.try_acquire_owned() else {
                    tracing::warn!(%address, member, "cluster listener: connections at their cap; connection closed");
                    return;
                };
                let service = router.layer(axum::Extension(Peer { address, cert, roster }));
                let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                http.timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(5)))
                    .keep_alive_timeout(Duration::from_secs(10))
                    .max_concurrent_streams(256);
                let connection = http.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
                if member {
                    let _ = connection.await;
                } else {
                    let _ = tokio::time::timeout(STRANGER_DEADLINE, connection).await;
                }
            });
        }
    });
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection: the peer is down, or not there, or the network is.
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The peer answered with an error.
    #[error("{address} answered {status}: {message}")]
    Refused { address: String, status: u16, message: String },
    /// The answer came, but not in the form expected, or too late.
    #[error("{address}: {reason}")]
    Broken { address: String, reason: String },
}

/// The client side, one connection per peer.
pub struct Client {
    tls: Arc<rustls::ClientConfig>,
    connections: tokio::sync::Mutex<HashMap<String, SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Client { tls, connections: Default::default() }
    }

    async fn connect(&self, address: &str) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let unreachable = |reason: String| CallError::Unreachable { address: address.to_string(), reason };
        let socket: SocketAddr = address.parse().map_err(|_| unreachable("not an IP:PORT address".into()))?;
        let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(socket))
            .await
            .map_err(|_| unreachable("no answer to the connection".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(ServerName::IpAddress(socket.ip().into()), tcp))
                .await
                .map_err(|_| unreachable("the TLS handshake did not finish".into()))?
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(5)))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let (sender, connection) =
            builder.handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(format!("HTTP/2: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn sender(&self, address: &str) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let mut connections = self.connections.lock().await;
        if let Some(sender) = connections.get(address) {
            if !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        connections.remove(address);
        drop(connections);
        let sender = self.connect(address).await?;
        self.connections.lock().await.insert(address.to_string(), sender.clone());
        Ok(sender)
    }

    /// POSTs `body` as JSON to `path` on the peer at `address` (IP:PORT)
    /// and reads the JSON answer, all within `deadline`.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        address: &str,
        path: &str,
        body: &Q,
        deadline: Duration,
    ) -> Result<A, CallError> {
        let broken = |reason: String| CallError::Broken { address: address.to_string(), reason };
        let json = serde_json::to_vec(body).map_err(|e| broken(e.to_string()))?;
        let attempt = async {
            let mut sender = self.sender(address).await?;
            let request = hyper::Request::post(format!("https://{address}{path}"))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))
                .map_err(|e| broken(e.to_string()))?;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    self.connections.lock().await.remove(address);
                    return Err(CallError::Unreachable { address: address.to_string(), reason: e.to_string() });
                }
            };
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| broken(format!("the answer was cut short: {e}")))?
                .to_bytes();
            if !status.is_success() {
                let message = serde_json::from_slice::<portico_app::error::ApiError>(&bytes)
                    .map(|e| e.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned());
                return Err(CallError::Refused { address: address.to_string(), status: status.as_u16(), message });
            }
            serde_json::from_slice(&bytes).map_err(|e| broken(format!("the answer cannot be read: {e}")))
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(broken(format!("no answer within {} ms", deadline.as_millis()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use axum::{Extension, Json, Router};

    use super::*;
    use crate::cluster::tls::{self, Identity};

    /// Peers without a certificate that connect and sit there fill their
    /// own places only: one more is turned away, a member is served.
    #[tokio::test]
    async fn strangers_cannot_crowd_out_members() {
        let dir = tempfile::tempdir().unwrap();
        Identity::create_cluster(dir.path(), "t").unwrap();
        let roster = Arc::new(Roster::default());
        let identity = Identity::load(dir.path(), 1, roster.clone()).unwrap();
        roster.pin(1, &identity.key_fingerprint(), "n1");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let router = Router::new()
            .route("/who", post(|Extension(p): Extension<Peer>| async move { Json(p.member().is_some()) }))
            .route("/members-only", post(|_: FromMember| async { Json(true) }));
        serve(listener, identity.server_config().unwrap(), router.clone(), roster.clone(), Arc::new(|_| false));

        let pinned = tls::pinned_client_config(&identity.ca_fingerprint()).unwrap();
        // A peer without a certificate is told who it is, and refused what is for members.
        let joiner = Client::new(pinned.clone());
        let who = joiner.call::<_, bool>(&address, "/who", &(), Duration::from_secs(3)).await;
        assert!(matches!(who, Ok(false)), "{who:?}");
        let refused = joiner.call::<_, bool>(&address, "/members-only", &(), Duration::from_secs(3)).await;
        assert!(matches!(refused, Err(CallError::Refused { status: 403, .. })), "{refused:?}");
        drop(joiner);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut held = Vec::new();
        for _ in 0..STRANGER_CONNECTIONS {
            let tcp = TcpStream::connect(&address).await.unwrap();
            let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
            held.push(tokio_rustls::TlsConnector::from(pinned.clone()).connect(name, tcp).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stranger = Client::new(pinned);
        let refused = stranger.call::<_, bool>(&address, "/who", &(), Duration::from_secs(3)).await;
        assert!(refused.is_err(), "{refused:?}");
        let member = Client::new(identity.client_config().unwrap());
        let served = member.call::<_, bool>(&address, "/who", &(), Duration::from_secs(3)).await;
        assert!(matches!(served, Ok(true)), "{served:?}");
        let served = member.call::<_, bool>(&address, "/members-only", &(), Duration::from_secs(3)).await;
        assert!(matches!(served, Ok(true)), "{served:?}");
        drop(held);
    }

    /// Issue 30, finding 3: connections that never finish their handshake
    /// fill only their own address's places (one more from there is closed
    /// at once); when strangers from many addresses fill all the places, a
    /// member's address still gets in, on the places kept for members.
    #[tokio::test]
    async fn handshakes_from_one_address_fill_only_that_address() {
        let dir = tempfile::tempdir().unwrap();
        Identity::create_cluster(dir.path(), "t").unwrap();
        let roster = Arc::new(Roster::default());
        let identity = Identity::load(dir.path(), 1, roster.clone()).unwrap();
        roster.pin(1, &identity.key_fingerprint(), "n1");
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let router = Router::new().route("/who", post(|_: FromMember| async { Json(true) }));
        let member_ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        serve(listener, identity.server_config().unwrap(), router, roster, Arc::new(move |ip| ip == member_ip));

        let from = |ip: String| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap()
        };
        let closed_at_once = |mut s: TcpStream| async move {
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            matches!(tokio::time::timeout(Duration::from_secs(1), s.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
        };
        let mut held = Vec::new();
        for _ in 0..HANDSHAKES_PER_ADDRESS {
            held.push(from("127.0.0.9".into()).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(closed_at_once(from("127.0.0.9".into()).await).await, "one more from a full address was kept");
        // Strangers from many addresses take every other place.
        for n in 0..(HANDSHAKES / HANDSHAKES_PER_ADDRESS - 1) {
            for _ in 0..HANDSHAKES_PER_ADDRESS {
                held.push(from(format!("127.0.1.{}", n + 1)).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(closed_at_once(from("127.0.2.1".into()).await).await, "a stranger got a place beyond the cap");
        let member = Client::new(identity.client_config().unwrap());
        let served = member.call::<_, bool>(&address, "/who", &(), Duration::from_secs(3)).await;
        assert!(matches!(served, Ok(true)), "a member's address was kept out: {served:?}");
        drop(held);
    }
}
