//! Certificates signed over the cluster channel (see [`super::certs`]): for
//! a node the cluster has just admitted (the leader asks during the join)
//! and for a member whose certificate runs out (the member asks itself).
//!
//! The signer signs a certificate for Raft node N only for the key the
//! cluster pinned for N, as this node has applied it (it waits a few
//! seconds for an admission still on its way). Whoever asks gains nothing
//! else: the certificate is of use only with the private key, which never
//! left node N. So any member may ask, and the answer is the same.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use portico_app::error::ApiError;
use serde::{Deserialize, Serialize};

use super::certs::{self, SIGNER};
use super::transport::FromMember;
use super::Cluster;
use crate::api::extract::{ApiFailure, ApiJson};

/// How long the signer waits to apply the pin of a key it is asked to sign.
const PIN_WAIT: Duration = Duration::from_secs(5);
/// How often a node looks at how long its certificate has left.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// Body of `/cluster/certificate`.
#[derive(Serialize, Deserialize)]
pub(super) struct CertificateRequest {
    pub raft_id: u64,
    /// A certificate request (PEM) signed by the node's key.
    pub request: String,
}

pub(super) async fn certificate(
    State(cluster): State<Cluster>,
    member: FromMember,
    ApiJson(asked): ApiJson<CertificateRequest>,
) -> Result<Json<String>, ApiFailure> {
    tracing::debug!(by = member.raft_id(), raft_id = asked.raft_id, "asked for a node certificate");
    Ok(Json(cluster.sign_here(asked.raft_id, &asked.request).await?))
}

impl Cluster {
    /// A certificate (PEM) for Raft node `raft_id` and the key of
    /// `request`: signed here on the signer, else asked of it.
    pub(super) async fn certificate_for(&self, raft_id: u64, request: &str) -> Result<String, ApiError> {
        let identity =
            self.shared.identity.as_ref().ok_or_else(|| ApiError::new(503, "This node has no cluster channel."))?;
        if identity.signer().is_some() {
            return self.sign_here(raft_id, request).await;
        }
        let signer = self.member_address(SIGNER).ok_or_else(|| {
            ApiError::new(503, "The node that signs the cluster's certificates (Raft node 1) is not a member.")
        })?;
        let body = CertificateRequest { raft_id, request: request.to_string() };
        self.client()?.call(&signer, "/cluster/certificate", &body, Duration::from_secs(15)).await.map_err(
            |e| match e {
                super::transport::CallError::Refused { status, message, .. } => ApiError::new(status, message),
                other => ApiError::new(
                    503,
                    format!("The node that signs the cluster's certificates (Raft node 1) could not be asked: {other}"),
                ),
            },
        )
    }

    async fn sign_here(&self, raft_id: u64, request: &str) -> Result<String, ApiError> {
        let identity =
            self.shared.identity.as_ref().ok_or_else(|| ApiError::new(503, "This node has no cluster channel."))?;
        let signer = identity.signer().ok_or_else(|| {
            ApiError::new(421, "This node does not sign the cluster's certificates; Raft node 1 does.")
        })?;
        let request = certs::read_request(request).map_err(|e| ApiError::invalid_field("request", e))?;
        self.wait_for_pin(raft_id, &request.key).await?;
        signer.issue_for(&request, raft_id).map_err(|e| {
            tracing::error!(error = %e, raft_id, "cannot sign a node certificate");
            ApiError::internal()
        })
    }

    /// Waits until this node has applied the pin of `key` for `raft_id`.
    async fn wait_for_pin(&self, raft_id: u64, key: &str) -> Result<(), ApiError> {
        let roster = self.state_machine.roster();
        let mut applied = self.state_machine.applied();
        let deadline = tokio::time::Instant::now() + PIN_WAIT;
        loop {
            if roster.pinned(raft_id).as_deref() == Some(key) {
                return Ok(());
            }
            if !matches!(tokio::time::timeout_at(deadline, applied.changed()).await, Ok(Ok(()))) {
                tracing::warn!(raft_id, "asked to sign a key the cluster has not pinned for that node: refused");
                return Err(ApiError::new(
                    403,
                    format!("The cluster has not pinned this key for Raft node {raft_id}."),
                ));
            }
        }
    }

    /// Asks for a fresh certificate if this one has less than
    /// `certs::RENEW_WITHIN` left, and shows it from then on.
    async fn renew_if_due(&self) -> anyhow::Result<bool> {
        let Some(identity) = self.shared.identity.clone() else { return Ok(false) };
        let left = identity.not_after() - time::OffsetDateTime::now_utc();
        if left > certs::RENEW_WITHIN {
            return Ok(false);
        }
        let request = identity.renewal_request(&self.shared.node_name)?;
        let issued = self.certificate_for(self.id, &request).await.map_err(|e| anyhow::anyhow!(e.message))?;
        identity.install_renewed(self.id, &issued)?;
        tracing::info!(until = %identity.not_after(), "renewed this node's cluster certificate");
        Ok(true)
    }
}

/// Renews this node's certificate when it is due, checked a minute after
/// start and hourly from then on.
pub(super) fn spawn_renewal(cluster: Cluster) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        loop {
            if let Err(e) = cluster.renew_if_due().await {
                let left = cluster.shared.identity.as_ref().map(|i| i.not_after() - time::OffsetDateTime::now_utc());
                tracing::warn!(error = %e, left = ?left, "this node's cluster certificate is due for renewal and could not be renewed; trying again in an hour");
            }
            tokio::time::sleep(RENEWAL_CHECK).await;
        }
    });
}
