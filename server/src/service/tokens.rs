//! API tokens: each acts as its owner, with the owner's role, or as a
//! viewer if it was made read-only. A token may expire. Anyone may hold
//! tokens (a viewer's token can only read); admins see and revoke everyone's.
//!
//! Only a login session mints tokens: a token that leaked cannot make more
//! tokens that outlive its revocation. Resetting the owner's password or
//! disabling the owner revokes them all (see `users.rs`).

use portico_app::error::ApiError;
use portico_app::model::*;
use portico_app::service::{AuthMethod, Caller};

use super::{db_error, AuditRecord, Node};
use crate::secrets::{self, API_TOKEN_PREFIX};

use crate::storage::proposal::UserChange;

impl Node {
    pub(crate) async fn create_token_impl(&self, caller: &Caller, new: NewToken) -> Result<CreatedToken, ApiError> {
        caller.require(Role::Viewer, "create API tokens")?;
        if caller.auth == AuthMethod::Token {
            self.record(
                AuditRecord::by(caller, "token.create", "token/-", AuditResult::Denied)
                    .detail("refused: an API token cannot create tokens"),
            )
            .await;
            return Err(ApiError::new(
                403,
                "An API token cannot create tokens: log in with your password (the dashboard or POST /api/v1/login).",
            ));
        }
        check_token_name(&new.name).map_err(|m| ApiError::invalid_field("name", m))?;
        let expires_at = match new.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_TOKEN_DAYS).contains(&days) => {
                let at = time::OffsetDateTime::now_utc() + time::Duration::days(days.into());
                Some(crate::db::rfc3339(at))
            }
            Some(_) => {
                let m =
                    format!("Give 1 to {MAX_TOKEN_DAYS} days, or leave it out for a token that lasts until revoked.");
                return Err(ApiError::invalid_field("expires_in_days", m));
            }
        };
        let name = new.name.trim().to_string();
        let token = secrets::random_token(API_TOKEN_PREFIX);
        let change = UserChange::CreateToken {
            user_id: caller.user_id,
            name: name.clone(),
            token_hash: secrets::sha256_hex(&token),
            expires_at: expires_at.clone(),
            read_only: new.read_only,
        };
        let applied = self.change_users(change).await?;
        let id = applied.created_id.ok_or_else(ApiError::internal)?;
        let detail = applied.detail.unwrap_or_else(|| format!("name {name}"));
        self.record(
            AuditRecord::by(caller, "token.create", format!("token/{id}"), AuditResult::Success).detail(detail),
        )
        .await;
        Ok(CreatedToken { id, name, token, expires_at, read_only: new.read_only })
    }

    pub(crate) async fn list_tokens_impl(&self, caller: &Caller) -> Result<Vec<TokenView>, ApiError> {
        caller.require(Role::Viewer, "list API tokens")?;
        let all = caller.role == Role::Admin;
        type Row = (i64, String, String, String, Option<String>, Option<String>, bool);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT t.id, t.name, u.username, t.created_at, w.last_used_at, t.expires_at, t.read_only \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             LEFT JOIN token_uses w ON w.token_id = t.id WHERE ? OR t.user_id = ? ORDER BY t.id",
        )
        .bind(all)
        .bind(caller.user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, owner, created_at, last_used_at, expires_at, read_only)| TokenView {
                id,
                name,
                owner,
                created_at,
                last_used_at,
                expires_at,
                read_only,
            })
            .collect())
    }

    pub(crate) async fn revoke_token_impl(&self, caller: &Caller, id: i64) -> Result<(), ApiError> {
        let object = format!("token/{id}");
        let all = caller.role == Role::Admin;
        let owner = if all { None } else { Some(caller.user_id) };
        self.change_users(UserChange::RevokeToken { id, owner }).await?;
        self.record(AuditRecord::by(caller, "token.revoke", object, AuditResult::Success)).await;
        Ok(())
    }
}
