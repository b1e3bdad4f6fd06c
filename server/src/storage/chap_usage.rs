//! What uses each CHAP user: target groups (their CHAP and mutual CHAP
//! users), discovery, and ACL rules with their own CHAP. One query answers
//! both the CHAP users' view and the refusal to delete a user in use.

use sqlx::SqliteExecutor;

/// (CHAP user id, what uses it): a group by name, `discovery`, or an ACL
/// rule as `GROUP/acl/INITIATOR`.
const USES: &str = "\
    SELECT chap_user_id AS id, name AS what FROM target_groups WHERE chap_user_id IS NOT NULL \
    UNION SELECT mutual_chap_user_id, name FROM target_groups WHERE mutual_chap_user_id IS NOT NULL \
    UNION SELECT discovery_chap_user_id, 'discovery' FROM iscsi_settings WHERE discovery_chap_user_id IS NOT NULL \
    UNION SELECT discovery_mutual_chap_user_id, 'discovery' FROM iscsi_settings WHERE discovery_mutual_chap_user_id IS NOT NULL \
    UNION SELECT a.chap_user_id, g.name || '/acl/' || a.initiator FROM acl_rules a JOIN target_groups g ON g.id = a.group_id \
          WHERE a.chap_user_id IS NOT NULL \
    UNION SELECT a.mutual_chap_user_id, g.name || '/acl/' || a.initiator FROM acl_rules a JOIN target_groups g ON g.id = a.group_id \
          WHERE a.mutual_chap_user_id IS NOT NULL";

/// Every use of every CHAP user, ordered by what uses it.
pub async fn all<'e>(db: impl SqliteExecutor<'e>) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(&format!("SELECT id, what FROM ({USES}) ORDER BY what")).fetch_all(db).await
}

/// What uses the CHAP user `id`.
pub async fn of<'e>(db: impl SqliteExecutor<'e>, id: i64) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as(&format!("SELECT what FROM ({USES}) WHERE id = ? ORDER BY what")).bind(id).fetch_all(db).await?;
    Ok(rows.into_iter().map(|(w,)| w).collect())
}
