//! CHAP on discovery sessions, stored once for the whole cluster (the one
//! row of `iscsi_settings`): every node derives its engine's discovery CHAP
//! from the same row, so every portal of every node asks for the same
//! credentials. The engine applies a change live to new discovery sessions.

use portico_app::error::ApiError;
use portico_app::model::discovery::DiscoverySettings;
use portico_app::model::storage::{ChapMode, ChapSetting};
use sqlx::SqliteExecutor;

use super::commands::{db, resolve_chap, Effects, Tx};

/// The discovery settings as stored, with CHAP user names (never secrets).
pub async fn read<'e>(db: impl SqliteExecutor<'e>) -> sqlx::Result<DiscoverySettings> {
    let (mode, user, mutual_user): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT s.discovery_chap_mode, cu.name, mu.name FROM iscsi_settings s \
         LEFT JOIN chap_users cu ON cu.id = s.discovery_chap_user_id \
         LEFT JOIN chap_users mu ON mu.id = s.discovery_mutual_chap_user_id WHERE s.id = 1",
    )
    .fetch_one(db)
    .await?;
    Ok(DiscoverySettings {
        chap: ChapSetting { mode: ChapMode::parse(&mode).unwrap_or(ChapMode::None), user, mutual_user },
    })
}

pub(super) async fn set(tx: &mut Tx<'_>, settings: DiscoverySettings) -> Result<Effects, ApiError> {
    let chap = &settings.chap;
    let (user, mutual) = resolve_chap(tx, chap).await?;
    sqlx::query(
        "UPDATE iscsi_settings SET discovery_chap_mode = ?, discovery_chap_user_id = ?, discovery_mutual_chap_user_id = ? \
         WHERE id = 1",
    )
    .bind(chap.mode.as_str())
    .bind(user)
    .bind(mutual)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let detail = match (&chap.user, &chap.mutual_user) {
        (Some(u), Some(m)) if chap.mode == ChapMode::Mutual => format!("CHAP mutual as {u}, target answers as {m}"),
        (Some(u), _) if chap.mode != ChapMode::None => format!("CHAP {} as {u}", chap.mode.as_str()),
        _ => "CHAP none: discovery is open".to_string(),
    };
    Ok(Effects { detail: Some(detail), ..Default::default() })
}
