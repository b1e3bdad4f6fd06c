//! The cluster's membership as storage commands: removing a node, and the
//! join tokens that admit new ones (CLUSTER.md §1, "Bootstrap and join").

use portico_app::error::ApiError;
use portico_app::model::storage::{CreatedJoinToken, JoinTokenView};
use portico_app::model::{AuditResult, Role};
use portico_app::service::Caller;

use super::proposal::{self, Change};
use super::{commands, db_error, discard, Storage};

impl Storage {
    /// Removes a node that holds no volumes or targets from the cluster
    /// (admins only): its Raft membership ends, then its row goes. The node
    /// answering cannot remove itself; ask another.
    pub async fn remove_node(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        let (action, object) = ("node.remove", format!("node/{name}"));
        self.authorize(caller, Role::Admin, "remove nodes", action, &object).await?;
        let _one_at_a_time = self.apply_lock.lock().await;
        if name == self.node_name {
            let e = ApiError::conflict("A node cannot remove itself: ask another node of the cluster.");
            return self.failed(caller, action, &object, e).await;
        }
        let proposal = proposal::Proposal::now(Change::RemoveNode { name: name.to_string() });
        // What would refuse it (unknown, still holding something) refuses it
        // before the membership changes.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        let tried = commands::apply(proposal.clone(), &mut tx).await;
        discard(tx).await;
        if let Err(e) = tried {
            return self.failed(caller, action, &object, e).await;
        }
        let raft_id: Option<(Option<i64>,)> = sqlx::query_as("SELECT raft_id FROM nodes WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        if let Some((Some(raft_id),)) = raft_id {
            if let Err(e) = self.cluster.remove_member(raft_id as u64).await {
                return self.failed(caller, action, &object, e).await;
            }
        }
        match self.cluster.propose(proposal).await {
            Ok(Ok(applied)) => {
                self.audit(caller, action, &object, AuditResult::Success, applied.detail).await;
                Ok(())
            }
            Ok(Err(e)) | Err(e) => self.failed(caller, action, &object, e).await,
        }
    }

    /// Creates a join token (admins only). The token is shown in this
    /// answer only; the cluster keeps the hash of its secret.
    pub async fn create_join_token(&self, caller: &Caller) -> Result<CreatedJoinToken, ApiError> {
        let (action, object) = ("cluster.join_token.create", "cluster");
        self.authorize(caller, Role::Admin, "create join tokens", action, object).await?;
        let Some((address, fingerprint)) = self.cluster.cluster_address() else {
            let e = ApiError::conflict(
                "This node has no cluster address: start it with --cluster-addr IP:PORT so that new nodes can join through it.",
            );
            return self.failed(caller, action, object, e).await;
        };
        let token = crate::cluster::join::JoinToken::generate(&fingerprint);
        let now = time::OffsetDateTime::now_utc();
        let at = now.replace_nanosecond(0).unwrap_or(now);
        let expires_at = crate::db::rfc3339(at + crate::cluster::join::TOKEN_LIFETIME);
        let change = Change::CreateJoinToken {
            id: token.id.clone(),
            secret_hash: token.secret_hash(),
            expires_at: expires_at.clone(),
            created_by: caller.username.clone(),
        };
        let proposal = proposal::Proposal {
            change,
            decided: proposal::Decided { at: crate::db::rfc3339(at), ..Default::default() },
        };
        let object = format!("join-token/{}", token.id);
        match self.cluster.propose(proposal).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => return self.failed(caller, action, &object, e).await,
        }
        self.audit(caller, action, &object, AuditResult::Success, Some(format!("expires {expires_at}"))).await;
        Ok(CreatedJoinToken {
            command: format!("portico serve --node-name NAME --cluster-addr IP:PORT --join https://{address}"),
            token: token.text(),
            expires_at,
        })
    }

    /// The join tokens that may still admit a node (admins only), oldest
    /// first. Their secrets are not kept, so never shown.
    pub async fn join_tokens(&self, caller: &Caller) -> Result<Vec<JoinTokenView>, ApiError> {
        caller.require(Role::Admin, "see join tokens")?;
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, created_at, created_by, expires_at FROM join_tokens \
             WHERE used_at IS NULL AND expires_at > ? ORDER BY created_at, id",
        )
        .bind(crate::db::now())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, created_at, created_by, expires_at)| JoinTokenView { id, created_at, created_by, expires_at })
            .collect())
    }

    /// Revokes an unused join token (admins only): it admits no node.
    pub async fn revoke_join_token(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        let action = "cluster.join_token.revoke";
        // Only a token's id is named in the log and the audit, never other text.
        let well_formed = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        let object = if well_formed { format!("join-token/{id}") } else { "join-token/?".into() };
        self.authorize(caller, Role::Admin, "revoke join tokens", action, &object).await?;
        if !well_formed {
            let e = ApiError::new(404, "A join token's id is 16 hex digits: the middle part of the token.");
            return self.failed(caller, action, &object, e).await;
        }
        match self.cluster.propose(proposal::Proposal::now(Change::RevokeJoinToken { id: id.to_string() })).await {
            Ok(Ok(_)) => {
                self.audit(caller, action, &object, AuditResult::Success, None).await;
                Ok(())
            }
            Ok(Err(e)) | Err(e) => self.failed(caller, action, &object, e).await,
        }
    }
}
