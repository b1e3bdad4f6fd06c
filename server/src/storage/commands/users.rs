//! Dashboard users and API tokens, as the cluster applies their changes:
//! the same users and tokens on every node, so that one logs in on any.
//! The proposing node hashes passwords and tokens; only hashes travel.
//!
//! The last enabled administrator can be neither deleted, disabled nor
//! demoted; each of those checks is part of the one SQL statement that
//! makes the change, so two concurrent changes cannot both pass it.
//! Disabling a user or resetting a password ends the user's sessions on
//! every node and revokes the user's API tokens.

use portico_app::error::ApiError;

use super::{db, Effects, Tx};
use crate::storage::proposal::{Decided, UserChange};

/// True when the user `?` is not the last enabled admin (SQL fragment).
const NOT_LAST_ADMIN: &str = "NOT (role = 'admin' AND enabled = 1 AND \
     (SELECT COUNT(*) FROM users WHERE role = 'admin' AND enabled = 1) <= 1)";

pub const LAST_ADMIN: &str = "This is the last enabled administrator: add or enable another administrator first.";

/// Tokens one user may hold, so that a script in a loop cannot fill the disk.
pub const MAX_TOKENS_PER_USER: i64 = 100;

fn last_admin() -> ApiError {
    ApiError::conflict(LAST_ADMIN)
}

async fn user_id(tx: &mut Tx<'_>, username: &str) -> Result<i64, ApiError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    row.map(|r| r.0).ok_or_else(|| ApiError::not_found(format!("The user {username}")))
}

/// Ends the user's sessions (on this node, as on every node) and revokes
/// the user's API tokens.
async fn revoke_all(tx: &mut Tx<'_>, id: i64) -> Result<(), ApiError> {
    for table in ["sessions", "api_tokens"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?")).bind(id).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

pub(super) async fn apply(tx: &mut Tx<'_>, d: &Decided, change: UserChange) -> Result<Effects, ApiError> {
    match change {
        UserChange::Create { username, password_hash, role } => {
            let res = sqlx::query(
                "INSERT INTO users (username, password_hash, role, enabled, created_at, updated_at) \
                 VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&username)
            .bind(password_hash)
            .bind(&role)
            .bind(&d.at)
            .bind(&d.at)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            if res.rows_affected() == 0 {
                let mut e = ApiError::conflict(format!("A user named {username} already exists."));
                e.fields.insert("username".into(), "This name is taken.".into());
                return Err(e);
            }
            Ok(Effects { detail: Some(format!("role {role}")), ..Default::default() })
        }
        UserChange::SetRole { username, role } => {
            user_id(tx, &username).await?;
            let sql = if role == "admin" {
                "UPDATE users SET role = ?, updated_at = ? WHERE username = ?".to_string()
            } else {
                format!("UPDATE users SET role = ?, updated_at = ? WHERE username = ? AND {NOT_LAST_ADMIN}")
            };
            let res = sqlx::query(&sql).bind(&role).bind(&d.at).bind(&username).execute(&mut **tx).await.map_err(db)?;
            if res.rows_affected() == 0 {
                return Err(last_admin());
            }
            Ok(Effects::default())
        }
        UserChange::SetEnabled { username, enabled } => {
            let id = user_id(tx, &username).await?;
            let sql = if enabled {
                "UPDATE users SET enabled = 1, updated_at = ? WHERE username = ?".to_string()
            } else {
                format!("UPDATE users SET enabled = 0, updated_at = ? WHERE username = ? AND {NOT_LAST_ADMIN}")
            };
            let res = sqlx::query(&sql).bind(&d.at).bind(&username).execute(&mut **tx).await.map_err(db)?;
            if res.rows_affected() == 0 {
                return Err(last_admin());
            }
            if !enabled {
                revoke_all(tx, id).await?;
            }
            Ok(Effects::default())
        }
        UserChange::SetPassword { username, password_hash } => {
            let id = user_id(tx, &username).await?;
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
                .bind(password_hash)
                .bind(&d.at)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            revoke_all(tx, id).await?;
            Ok(Effects::default())
        }
        UserChange::Delete { username } => {
            user_id(tx, &username).await?;
            let res = sqlx::query(&format!("DELETE FROM users WHERE username = ? AND {NOT_LAST_ADMIN}"))
                .bind(&username)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            if res.rows_affected() == 0 {
                return Err(last_admin());
            }
            Ok(Effects::default())
        }
        UserChange::CreateToken { user_id, name, token_hash, expires_at, read_only } => {
            let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_tokens WHERE user_id = ?")
                .bind(user_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?;
            if held >= MAX_TOKENS_PER_USER {
                return Err(ApiError::conflict(format!("You hold {held} tokens already; revoke some first.")));
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at, read_only) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(user_id)
            .bind(&name)
            .bind(token_hash)
            .bind(&d.at)
            .bind(&expires_at)
            .bind(read_only)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
            let scope = if read_only { ", read-only" } else { "" };
            let until = expires_at.map(|e| format!(", expires {e}")).unwrap_or_default();
            Ok(Effects {
                detail: Some(format!("name {name}{scope}{until}")),
                created_id: Some(id),
                ..Default::default()
            })
        }
        UserChange::RevokeToken { id, owner } => {
            let res = sqlx::query("DELETE FROM api_tokens WHERE id = ? AND (? IS NULL OR user_id = ?)")
                .bind(id)
                .bind(owner)
                .bind(owner)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            if res.rows_affected() == 0 {
                return Err(ApiError::not_found(format!("The token {id}")));
            }
            Ok(Effects::default())
        }
    }
}
