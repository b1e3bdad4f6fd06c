//! Joining a node to the cluster (CLUSTER.md §1, "Bootstrap and join").
//!
//! 1. An admin creates a join token on any node. The token is
//!    `FINGERPRINT.ID.SECRET`: the SHA-256 of the cluster CA's certificate,
//!    the token's public id, and 32 random bytes. The cluster keeps only the
//!    secret's SHA-256; the token expires after an hour and serves once.
//! 2. `portico serve --join https://HOST:PORT --token T` connects to a
//!    member's cluster address, trusting it only if its certificate chain
//!    holds the CA with that fingerprint, and shows the token. The leader
//!    (the member forwards the request to it) checks the secret in constant
//!    time and commits the admission, which hands out the node's Raft id
//!    and spends the token, pinning the key of the certificate request the
//!    joining node sent (its private key never leaves it). The signer
//!    ([`super::certs`]) signs a certificate for that key and the new Raft
//!    id. The answer carries the CA's certificate (not its key), the node's
//!    certificate and the cluster key. A join whose answer was lost may be
//!    sent again with the same token, name and key: it gets the same Raft
//!    id.
//! 3. The new node starts its Raft under that id, serves the cluster
//!    channel with its certificate, and asks the leader, now as a member,
//!    to add it (a member that does not lead says where the leader is): the
//!    leader makes it a learner, waits until it has caught up, and makes it
//!    a voter while the cluster has fewer than [`VOTERS`], one membership
//!    change at a time.
//!
//! Routes that act for one node (`/cluster/add`, `/cluster/address`) are
//! answered by the leader only, and only for the node that asks: a member
//! forwarding them could speak for anyone.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use portico_app::error::ApiError;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::certs;
use super::raft::{BasicNode, ChangeMembers, WatchReceiver};
use super::roster::Seed;
use super::tls;
use super::transport::{Client, FromMember};
use super::Cluster;
use crate::api::extract::{ApiFailure, ApiJson};
use crate::storage::commands::members;
use crate::storage::proposal::{Change, Proposal};
use crate::storage::secret_box::SecretBox;

/// How long a join token is good for.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Voters the leader makes of joining nodes, at most; more join as learners.
pub const VOTERS: usize = 3;
/// How long the leader waits for a new learner to catch up.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A join token, taken apart.
#[derive(Clone)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken({}, <secret>)", self.id)
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl JoinToken {
    /// A new token for the cluster whose CA has `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> Self {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        JoinToken { ca_fingerprint: ca_fingerprint.to_string(), id: hex::encode(id), secret: hex::encode(secret) }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        match parts.as_slice() {
            [fp, id, secret] if is_hex(fp, 64) && is_hex(id, 16) && is_hex(secret, 64) => Ok(JoinToken {
                ca_fingerprint: fp.to_ascii_lowercase(),
                id: id.to_ascii_lowercase(),
                secret: secret.to_ascii_lowercase(),
            }),
            _ => anyhow::bail!(
                "this is not a join token: expected FINGERPRINT.ID.SECRET (64, 16 and 64 hex digits), as `POST /api/v1/cluster/join-tokens` gives it"
            ),
        }
    }

    /// The token as an admin hands it over.
    pub fn text(&self) -> String {
        format!("{}.{}.{}", self.ca_fingerprint, self.id, self.secret)
    }

    pub fn secret_hash(&self) -> String {
        secret_hash(&self.secret)
    }
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What a joining node shows.
#[derive(Serialize, Deserialize)]
struct JoinRequest {
    token_id: String,
    secret: String,
    node_name: String,
    cluster_addr: String,
    /// A certificate request (PEM) for the joining node's key.
    request: String,
}

/// What it gets: its Raft id and the cluster's credentials.
#[derive(Serialize, Deserialize)]
pub struct Admission {
    pub raft_id: u64,
    /// The CA's certificate (PEM).
    pub ca: String,
    /// The node's certificate (PEM), for the key of its request.
    pub certificate: String,
    /// Who the members are, until the new node's own state says so.
    pub roster: Seed,
    /// The cluster key that seals CHAP secrets, base64.
    cluster_key: String,
}

impl Admission {
    pub fn cluster_key(&self) -> anyhow::Result<Vec<u8>> {
        base64::engine::general_purpose::STANDARD.decode(&self.cluster_key).context("the cluster key is not base64")
    }
}

/// `https://IP:PORT` (or `IP:PORT`) as the address the channel dials.
pub fn peer_address(url: &str) -> anyhow::Result<String> {
    let rest = url.trim().trim_start_matches("https://").trim_end_matches('/');
    let address: SocketAddr = rest
        .parse()
        .with_context(|| format!("{url} is not https://IP:PORT, the cluster address of a member of the cluster"))?;
    Ok(address.to_string())
}

/// Step 2, on the joining node: shows the token to the member at `url`.
pub async fn request_admission(
    url: &str,
    token: &JoinToken,
    node_name: &str,
    cluster_addr: SocketAddr,
    certificate_request: &str,
) -> anyhow::Result<Admission> {
    let address = peer_address(url)?;
    let client = Client::new(tls::pinned_client_config(&token.ca_fingerprint)?);
    let request = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        node_name: node_name.to_string(),
        cluster_addr: cluster_addr.to_string(),
        request: certificate_request.to_string(),
    };
    let admission: Admission = client
        .call(&address, "/cluster/join", &request, Duration::from_secs(30))
        .await
        .with_context(|| format!("{address} did not admit this node"))?;
    Ok(admission)
}

/// Step 3, on the joining node: asks, as a member now, to be added, of the
/// leader (the member at `url` says where it is if it does not lead).
pub async fn request_membership(cluster: &Cluster, url: &str) -> anyhow::Result<AddAnswer> {
    let mut address = peer_address(url)?;
    let client = cluster.shared.client.as_ref().context("this node has no cluster channel")?;
    for _ in 0..5 {
        let answer: AddAnswer = client
            .call(&address, "/cluster/add", &AddRequest { raft_id: cluster.id }, CATCH_UP + Duration::from_secs(30))
            .await
            .with_context(|| format!("{address} did not add this node to the cluster"))?;
        match answer.leader {
            Some(leader) => {
                tracing::info!(%leader, "asking the cluster's leader to add this node");
                address = leader;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => return Ok(answer),
        }
    }
    anyhow::bail!("the cluster's leader kept moving while this node asked to be added; start it again to retry")
}

#[derive(Serialize, Deserialize)]
struct AddRequest {
    raft_id: u64,
}

#[derive(Serialize, Deserialize)]
pub struct AddAnswer {
    pub voter: bool,
    /// From a member that does not lead: the leader's address, to ask.
    #[serde(default)]
    pub leader: Option<String>,
}

/// A node's name: what `--node-name` may be.
fn check_node_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field("node_name", "1–63 letters, digits, '-', '_' or '.'."))
    }
}

async fn join(
    State(cluster): State<Cluster>,
    ApiJson(request): ApiJson<JoinRequest>,
) -> Result<Json<Admission>, ApiFailure> {
    check_node_name(&request.node_name)?;
    let address: SocketAddr = request
        .cluster_addr
        .parse()
        .map_err(|_| ApiError::invalid_field("cluster_addr", "Give the joining node's cluster address as IP:PORT."))?;
    if address.ip().is_unspecified() || address.port() == 0 {
        return Err(
            ApiError::invalid_field("cluster_addr", "The cluster address must be one other nodes can dial.").into()
        );
    }
    let certificate_request =
        certs::read_request(&request.request).map_err(|e| ApiError::invalid_field("request", e))?;
    if let Some(leader) = cluster.leader_address_if_not_me().await? {
        let client = cluster.client()?;
        let answer = client.call(&leader, "/cluster/join", &request, Duration::from_secs(25)).await;
        return answer.map(Json).map_err(|e| forwarded(e).into());
    }
    // The leader checks the secret; the log then records the admission.
    let mut conn = cluster.shared.pool.acquire().await.map_err(|_| ApiError::internal())?;
    let stored = members::find_token(&mut conn, &request.token_id).await.map_err(|_| ApiError::internal())?;
    let refused = || ApiError::new(403, "This join token is not known to the cluster.");
    let stored = stored.ok_or_else(refused)?;
    let matches: bool = secret_hash(&request.secret).as_bytes().ct_eq(stored.secret_hash.as_bytes()).into();
    if !matches {
        tracing::warn!(token = %request.token_id, node = %request.node_name, "a join was refused: wrong secret");
        return Err(refused().into());
    }
    // The same join again (its answer was lost): the same Raft id.
    let admitted: Option<(i64,)> = sqlx::query_as(
        "SELECT n.raft_id FROM nodes n JOIN join_tokens t ON t.used_by = n.name \
         WHERE t.id = ? AND n.name = ? AND n.cert_key = ? AND n.raft_id IS NOT NULL",
    )
    .bind(&request.token_id)
    .bind(&request.node_name)
    .bind(&certificate_request.key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|_| ApiError::internal())?;
    drop(conn);
    let raft_id = match admitted {
        Some((raft_id,)) => raft_id as u64,
        None => {
            members::usable(&stored, &crate::db::now())?;
            let proposal = Proposal::now(Change::AdmitNode {
                token_id: request.token_id.clone(),
                name: request.node_name.clone(),
                cluster_addr: address.to_string(),
                cert_key: certificate_request.key.clone(),
            });
            let applied = cluster.propose(proposal).await??;
            applied.raft_id.ok_or_else(ApiError::internal)?
        }
    };
    let certificate = cluster.certificate_for(raft_id, &request.request).await?;
    if let Err(e) = cluster.compact().await {
        // It then catches up from the log, which is as good if it holds everything.
        tracing::warn!(error = %e, "cannot build a snapshot for the joining node");
    }
    let identity = cluster.shared.identity.as_ref().ok_or_else(ApiError::internal)?;
    let key = SecretBox::key_bytes(&cluster.shared.data_dir).map_err(|e| {
        tracing::error!(error = %e, "the cluster key cannot be read");
        ApiError::internal()
    })?;
    tracing::info!(node = %request.node_name, raft_id, address = %address, "admitted a node to the cluster");
    let applied = *cluster.state_machine.applied().borrow();
    Ok(Json(Admission {
        raft_id,
        ca: identity.ca_pem().to_string(),
        certificate,
        roster: cluster.state_machine.roster().snapshot(applied),
        cluster_key: base64::engine::general_purpose::STANDARD.encode(key),
    }))
}

/// A forwarded request's failure, as this node passes it on.
fn forwarded(e: super::transport::CallError) -> ApiError {
    match e {
        super::transport::CallError::Refused { status, message, .. } => ApiError::new(status, message),
        other => ApiError::new(503, format!("The cluster's leader could not be asked: {other}")),
    }
}

async fn add(
    State(cluster): State<Cluster>,
    member: FromMember,
    ApiJson(request): ApiJson<AddRequest>,
) -> Result<Json<AddAnswer>, ApiFailure> {
    member.must_be(request.raft_id, "ask to be added")?;
    if let Some(leader) = cluster.leader_address_if_not_me().await? {
        return Ok(Json(AddAnswer { voter: false, leader: Some(leader) }));
    }
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, cluster_addr FROM nodes WHERE raft_id = ? AND cluster_addr IS NOT NULL")
            .bind(request.raft_id as i64)
            .fetch_optional(&cluster.shared.pool)
            .await
            .map_err(|_| ApiError::internal())?;
    let (name, address) = row.ok_or_else(|| ApiError::not_found(format!("Raft node {}", request.raft_id)))?;
    let _one_change_at_a_time = cluster.shared.membership_lock.lock().await;
    let raft = &cluster.raft;
    let metrics = raft.metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership().clone();
    if membership.get_node(&request.raft_id).is_none() {
        let added =
            tokio::time::timeout(CATCH_UP, raft.add_learner(request.raft_id, BasicNode::new(&address), true)).await;
        match added {
            Ok(Ok(_)) => tracing::info!(node = %name, raft_id = request.raft_id, "a new node caught up as a learner"),
            Ok(Err(e)) => {
                return Err(ApiError::new(503, format!("The node could not be added as a learner: {e}")).into())
            }
            Err(_) => {
                return Err(ApiError::new(503, "The new node did not catch up within 120 s; it stays a learner.").into())
            }
        }
    }
    let membership = raft.metrics().borrow_watched().membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    if voters.contains(&request.raft_id) {
        return Ok(Json(AddAnswer { voter: true, leader: None }));
    }
    if voters.len() >= VOTERS {
        return Ok(Json(AddAnswer { voter: false, leader: None }));
    }
    let promoted = raft.change_membership(ChangeMembers::AddVoterIds([request.raft_id].into()), false).await;
    match promoted {
        Ok(_) => {
            tracing::info!(node = %name, raft_id = request.raft_id, "the new node is a voter");
            Ok(Json(AddAnswer { voter: true, leader: None }))
        }
        Err(e) => Err(ApiError::new(503, format!("The node could not be made a voter: {e}")).into()),
    }
}

/// A member's new cluster address (see `Cluster::tell_members_own_address`).
#[derive(Serialize, Deserialize)]
pub(super) struct AddressRequest {
    pub raft_id: u64,
    pub address: String,
}

/// Records a member's new address, on the leader, told by the member
/// itself (a member that does not lead refuses with 421). Whether it
/// changed.
async fn address(
    State(cluster): State<Cluster>,
    member: FromMember,
    ApiJson(request): ApiJson<AddressRequest>,
) -> Result<Json<bool>, ApiFailure> {
    member.must_be(request.raft_id, "report an address")?;
    let parsed: std::net::SocketAddr = request
        .address
        .parse()
        .map_err(|_| ApiError::invalid_field("address", "Give the member's cluster address as IP:PORT."))?;
    if parsed.ip().is_unspecified() || parsed.port() == 0 {
        return Err(ApiError::invalid_field("address", "The cluster address must be one other nodes can dial.").into());
    }
    if cluster.leader_address_if_not_me().await?.is_some() {
        return Err(ApiError::new(super::NOT_LEADER, "This node does not lead; tell the leader.").into());
    }
    let changed = cluster.set_member_address(request.raft_id, &parsed.to_string()).await?;
    if changed {
        tracing::info!(raft_id = request.raft_id, address = %parsed, "a member is reached at a new address");
    }
    Ok(Json(changed))
}

#[derive(Serialize, Deserialize)]
pub(super) struct RemoveRequest {
    pub raft_id: u64,
}

async fn remove(
    State(cluster): State<Cluster>,
    _member: FromMember,
    ApiJson(request): ApiJson<RemoveRequest>,
) -> Result<Json<()>, ApiFailure> {
    Ok(Json(cluster.remove_member(request.raft_id).await?))
}

async fn status(State(cluster): State<Cluster>, _member: FromMember) -> Result<Json<super::ClusterStatus>, ApiFailure> {
    Ok(Json(cluster.status()))
}

/// What a member's forwarded proposal gets back.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProposeAnswer {
    pub index: u64,
    pub outcome: Option<Result<super::raft::AppliedChange, ApiError>>,
}

async fn propose(
    State(cluster): State<Cluster>,
    member: FromMember,
    ApiJson(proposal): ApiJson<Proposal>,
) -> Result<Json<ProposeAnswer>, ApiFailure> {
    super::claims::check(&cluster.shared.pool, &member, &proposal.change).await?;
    Ok(Json(cluster.commit_here(proposal).await?))
}

/// The cluster routes besides Raft's own.
pub fn routes(cluster: Cluster) -> Router {
    Router::new()
        .route("/cluster/join", post(join))
        .route("/cluster/add", post(add))
        .route("/cluster/remove", post(remove))
        .route("/cluster/address", post(address))
        .route("/cluster/status", post(status))
        .route("/cluster/certificate", post(super::signing::certificate))
        .layer(DefaultBodyLimit::max(16 << 10))
        .merge(Router::new().route("/cluster/propose", post(propose)).layer(DefaultBodyLimit::max(1 << 20)))
        .with_state(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_as_written_and_nothing_else_reads_as_one() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let back = JoinToken::parse(&t.text()).unwrap();
        assert_eq!((&back.ca_fingerprint, &back.id, &back.secret), (&t.ca_fingerprint, &t.id, &t.secret));
        assert_eq!(back.secret_hash(), secret_hash(&back.secret));
        for bad in ["", "a.b.c", &format!("{}.{}", "ab".repeat(32), "00".repeat(8)), &t.text().replace('.', ":")] {
            assert!(JoinToken::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{back:?}").contains(&back.secret));
    }

    #[test]
    fn a_member_address_is_ip_and_port() {
        assert_eq!(peer_address("https://127.0.1.1:7100").unwrap(), "127.0.1.1:7100");
        assert_eq!(peer_address("127.0.1.1:7100/").unwrap(), "127.0.1.1:7100");
        assert!(peer_address("https://node1:7100").is_err());
    }
}
