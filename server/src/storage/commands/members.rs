//! Joining the cluster: join tokens and the admission of a node.
//!
//! A token's secret is checked by the leader before it proposes the
//! admission ([`crate::cluster::join`]); applying the admission checks
//! what every node can check alike from the log: the token exists, is not
//! spent and had not expired at the time the proposal was decided. Of two
//! admissions with one token, the first in the log wins.

use portico_app::error::ApiError;

use super::{db, Effects, Tx};
use crate::storage::proposal::Decided;

/// Unspent, unexpired join tokens at most: enough for a rack of nodes.
pub const MAX_OPEN_TOKENS: i64 = 32;

pub(super) async fn create_token(
    tx: &mut Tx<'_>,
    d: &Decided,
    id: &str,
    secret_hash: &str,
    expires_at: &str,
    created_by: &str,
) -> Result<Effects, ApiError> {
    // Expired tokens that were never used are of no more use to anyone.
    sqlx::query("DELETE FROM join_tokens WHERE used_at IS NULL AND expires_at <= ?")
        .bind(&d.at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    let (open,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM join_tokens WHERE used_at IS NULL")
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if open >= MAX_OPEN_TOKENS {
        return Err(ApiError::conflict(format!(
            "{open} join tokens are waiting to be used, the most there may be. Use them, or wait until they expire."
        )));
    }
    sqlx::query("INSERT INTO join_tokens (id, secret_hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(secret_hash)
        .bind(&d.at)
        .bind(created_by)
        .bind(expires_at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(format!("expires {expires_at}")), ..Default::default() })
}

/// Revokes the unused join token `id`: it can no longer admit a node. A
/// spent token stays, as the record of the node that joined with it.
pub(super) async fn revoke_token(tx: &mut Tx<'_>, id: &str) -> Result<Effects, ApiError> {
    let done = sqlx::query("DELETE FROM join_tokens WHERE id = ? AND used_at IS NULL")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if done.rows_affected() == 0 {
        return Err(ApiError::new(404, format!("No unused join token has the id {id}.")));
    }
    Ok(Effects::default())
}

/// The join token `id` as stored: its secret's hash, when it expires and
/// whether it is spent.
pub struct StoredToken {
    pub secret_hash: String,
    pub expires_at: String,
    pub used: bool,
}

pub async fn find_token(conn: &mut sqlx::SqliteConnection, id: &str) -> sqlx::Result<Option<StoredToken>> {
    let row: Option<(String, String, Option<String>)> =
        sqlx::query_as("SELECT secret_hash, expires_at, used_at FROM join_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(secret_hash, expires_at, used_at)| StoredToken { secret_hash, expires_at, used: used_at.is_some() }))
}

/// The token is usable at `at` (RFC 3339 UTC, which compares as text).
pub fn usable(token: &StoredToken, at: &str) -> Result<(), ApiError> {
    if token.used {
        return Err(ApiError::new(403, "This join token has been used already; create a new one."));
    }
    if token.expires_at.as_str() <= at {
        return Err(ApiError::new(403, "This join token has expired; create a new one."));
    }
    Ok(())
}

pub(super) async fn admit(
    tx: &mut Tx<'_>,
    d: &Decided,
    token_id: &str,
    name: &str,
    cluster_addr: &str,
    cert_key: &str,
) -> Result<Effects, ApiError> {
    let token = find_token(tx, token_id).await.map_err(db)?;
    let token = token.ok_or_else(|| ApiError::new(403, "This join token is not known to the cluster."))?;
    usable(&token, &d.at)?;
    let taken: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM nodes WHERE name = ?").bind(name).fetch_optional(&mut **tx).await.map_err(db)?;
    if taken.is_some() {
        return Err(ApiError::conflict(format!(
            "A node named {name} is in the cluster already. Start the new node with another --node-name."
        )));
    }
    check_key_is_new(tx, cert_key).await?;
    sqlx::query("UPDATE join_tokens SET used_at = ?, used_by = ? WHERE id = ?")
        .bind(&d.at)
        .bind(name)
        .bind(token_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    let (raft_id,): (i64,) =
        sqlx::query_as("UPDATE counters SET value = value + 1 WHERE name = 'raft_node' RETURNING value")
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    // Offline until the node itself registers, once it has caught up.
    sqlx::query(
        "INSERT INTO nodes (name, state, last_heartbeat, raft_id, cluster_addr, cert_key) VALUES (?, 'offline', ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(&d.at)
    .bind(raft_id)
    .bind(cluster_addr)
    .bind(cert_key)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(Effects {
        detail: Some(format!("Raft node {raft_id} at {cluster_addr}")),
        raft_id: Some(raft_id as u64),
        ..Default::default()
    })
}

/// A key the cluster may pin for a node: a SHA-256 in hex, not pinned for
/// another node and not revoked (a removed node's key never comes back).
pub(super) async fn check_key_is_new(tx: &mut Tx<'_>, cert_key: &str) -> Result<(), ApiError> {
    if cert_key.len() != 64 || !cert_key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::invalid_field("cert_key", "The fingerprint of the node's key: 64 lowercase hex digits."));
    }
    let (pinned, revoked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM nodes WHERE cert_key = ?1), (SELECT COUNT(*) FROM revoked_node_keys WHERE cert_key = ?1)",
    )
    .bind(cert_key)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    if revoked > 0 {
        return Err(ApiError::new(
            403,
            "This key belonged to a node that was removed from the cluster; it cannot join again.",
        ));
    }
    if pinned > 0 {
        return Err(ApiError::conflict("This key is another node's already."));
    }
    Ok(())
}
