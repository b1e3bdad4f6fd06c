//! The state machine is the state database. Each committed entry is applied
//! in one transaction that also records it as the last applied entry (with
//! the membership), so the two never disagree after a crash (CLUSTER.md
//! §1). A proposal that is refused (a name already taken) is refused alike
//! on every node: its rows are rolled back to a savepoint, its place in the
//! log is still recorded, and the refusal is its outcome.
//!
//! A node that cannot apply an entry for a reason of its own (the disk, the
//! database) does not make that an outcome, which would set it apart from
//! the others: it tries again a few times (a busy database passes), then
//! openraft gets an I/O error and stops this node's Raft.
//!
//! A snapshot is a consistent copy of the state database (`VACUUM INTO`),
//! built on its own connection beside the apply path. Installing one copies
//! its replicated tables over ours in one transaction.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::watch;

use super::{io, Applied, AppliedChange, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, C};
use crate::cluster::roster::Roster;
use crate::storage::proposal::Change;
use crate::storage::{commands, replicated};

/// The state database as openraft's state machine. Cloning shares it.
#[derive(Clone)]
pub struct StateMachine {
    pool: SqlitePool,
    data_dir: PathBuf,
    current: Arc<Mutex<Option<(SnapshotMeta, SnapshotData)>>>,
    applied: Arc<watch::Sender<u64>>,
    /// The members' keys and the revoked ones, as applied here.
    roster: Arc<Roster>,
}

/// How often an entry this node could not apply (its database busy, say)
/// is tried again before this node's Raft stops, and the pause before
/// each try (growing: 100 ms, 200 ms, ...).
const APPLY_ATTEMPTS: u32 = 5;
const APPLY_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

impl StateMachine {
    /// Applies one entry in one transaction, which takes the database's
    /// write lock at once (`BEGIN IMMEDIATE`): a transaction that read first
    /// and wrote later could find another connection's write in its way
    /// and fail without waiting. Its outcome, or this node's own failure.
    async fn apply_one(
        &self,
        entry: &super::Entry,
    ) -> Result<Option<Result<AppliedChange, portico_app::error::ApiError>>, std::io::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(io)?;
        let (_, mut membership) = read_applied(&mut tx).await?;
        let outcome = match &entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m.clone());
                None
            }
            EntryPayload::Normal(proposal) => {
                let mut savepoint = tx.begin().await.map_err(io)?;
                match commands::apply(proposal.clone(), &mut savepoint).await {
                    Ok(effects) => {
                        for (volume, node) in &effects.dropped_copies {
                            sqlx::query("INSERT OR IGNORE INTO dropped_copies (volume, node_id) VALUES (?, ?)")
                                .bind(volume)
                                .bind(node)
                                .execute(&mut *savepoint)
                                .await
                                .map_err(io)?;
                        }
                        savepoint.commit().await.map_err(io)?;
                        Some(Ok(AppliedChange {
                            detail: effects.detail,
                            remove_volume: effects.remove_volume,
                            raft_id: effects.raft_id,
                            created_id: effects.created_id,
                        }))
                    }
                    Err(e) if e.status >= 500 => {
                        return Err(io(format!("entry {} cannot be applied here: {}", entry.log_id, e.message)))
                    }
                    Err(e) => {
                        savepoint.rollback().await.map_err(io)?;
                        Some(Err(e))
                    }
                }
            }
        };
        write_applied(&mut tx, Some(entry.log_id), &membership).await?;
        tx.commit().await.map_err(io)?;
        Ok(outcome)
    }

    pub async fn open(pool: SqlitePool, data_dir: &Path) -> anyhow::Result<Self> {
        let (log_id, _) = read_applied(&mut *pool.acquire().await?).await?;
        let (applied, _) = watch::channel(log_id.map(|l| l.index).unwrap_or(0));
        let roster = Arc::new(Roster::default());
        roster.reload(&mut *pool.acquire().await?, log_id.map(|l| l.index).unwrap_or(0)).await?;
        Ok(StateMachine {
            pool,
            data_dir: data_dir.to_path_buf(),
            current: Default::default(),
            applied: Arc::new(applied),
            roster,
        })
    }

    /// Who is a member, as applied here.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster.clone()
    }

    async fn reload_roster(&self, applied: u64) -> Result<(), std::io::Error> {
        self.roster.reload(&mut *self.pool.acquire().await.map_err(io)?, applied).await.map_err(io)
    }

    /// The index of the last applied entry, as it moves.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// The last applied entry and membership, as stored with the state.
async fn read_applied(conn: &mut SqliteConnection) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
    let row: Option<(Option<String>, String)> =
        sqlx::query_as("SELECT log_id, membership FROM raft_applied WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(io)?;
    match row {
        None => Ok((None, StoredMembership::default())),
        Some((log_id, membership)) => Ok((
            log_id.map(|l| serde_json::from_str(&l)).transpose().map_err(io)?,
            serde_json::from_str(&membership).map_err(io)?,
        )),
    }
}

async fn write_applied(
    conn: &mut SqliteConnection,
    log_id: Option<LogId>,
    membership: &StoredMembership,
) -> Result<(), std::io::Error> {
    let log_id = log_id.map(|l| serde_json::to_string(&l)).transpose().map_err(io)?;
    sqlx::query(
        "INSERT INTO raft_applied (id, log_id, membership) VALUES (1, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET log_id = excluded.log_id, membership = excluded.membership",
    )
    .bind(log_id)
    .bind(serde_json::to_string(membership).map_err(io)?)
    .execute(&mut *conn)
    .await
    .map_err(io)?;
    Ok(())
}

/// A file in the data directory for a snapshot on its way in or out.
fn scratch_file(data_dir: &Path, what: &str) -> PathBuf {
    data_dir.join(format!("snapshot-{what}-{}.db", std::process::id()))
}

async fn open_file(path: &Path) -> Result<SqliteConnection, std::io::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://").map_err(io)?.filename(path);
    SqliteConnection::connect_with(&options).await.map_err(io)
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let path = scratch_file(&self.data_dir, "out");
        let _ = std::fs::remove_file(&path);
        crate::data_dir::touch_private(&path).map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        sqlx::query("VACUUM INTO ?").bind(path.to_string_lossy().to_string()).execute(&self.pool).await.map_err(io)?;
        let result = async {
            let mut copy = open_file(&path).await?;
            let (last_log_id, last_membership) = read_applied(&mut copy).await?;
            copy.close().await.map_err(io)?;
            let bytes = tokio::fs::read(&path).await?;
            Ok::<_, std::io::Error>((SnapshotMeta { last_log_id, last_membership }, bytes))
        }
        .await;
        let _ = std::fs::remove_file(&path);
        let (meta, bytes) = result?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "cluster state snapshot built");
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: bytes })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        read_applied(&mut *self.pool.acquire().await.map_err(io)?).await
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, std::io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let mut attempt = 0;
            let outcome = loop {
                match self.apply_one(&entry).await {
                    Ok(outcome) => break outcome,
                    Err(e) if attempt < APPLY_ATTEMPTS => {
                        attempt += 1;
                        tracing::warn!(log_id = %entry.log_id, error = %e, attempt, "an entry could not be applied; trying again");
                        tokio::time::sleep(APPLY_RETRY_PAUSE * attempt).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let members_changed = matches!(
                &entry.payload,
                EntryPayload::Normal(p) if matches!(p.change, Change::AdmitNode { .. } | Change::RegisterNode { .. } | Change::RemoveNode { .. })
            );
            if members_changed || self.roster.seeded() {
                self.reload_roster(entry.log_id.index).await?;
            }
            self.applied.send_replace(entry.log_id.index);
            if let Some(responder) = responder {
                responder.send(Applied { outcome });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), std::io::Error> {
        let path = scratch_file(&self.data_dir, "in");
        crate::data_dir::touch_private(&path).map_err(io)?;
        tokio::fs::write(&path, &snapshot).await?;
        let result = async {
            let mut conn = self.pool.acquire().await.map_err(io)?;
            sqlx::query("ATTACH DATABASE ? AS snapshot")
                .bind(path.to_string_lossy().to_string())
                .execute(&mut *conn)
                .await
                .map_err(io)?;
            let copied = async {
                let mut tx = conn.begin().await.map_err(io)?;
                for table in replicated::TABLES.iter().rev() {
                    sqlx::query(&format!("DELETE FROM main.\"{table}\"")).execute(&mut *tx).await.map_err(io)?;
                }
                for table in replicated::TABLES {
                    sqlx::query(&format!("INSERT INTO main.\"{table}\" SELECT * FROM snapshot.\"{table}\""))
                        .execute(&mut *tx)
                        .await
                        .map_err(io)?;
                }
                write_applied(&mut tx, meta.last_log_id, &meta.last_membership).await?;
                tx.commit().await.map_err(io)
            }
            .await;
            let detached = sqlx::query("DETACH DATABASE snapshot").execute(&mut *conn).await.map_err(io);
            copied.and(detached.map(|_| ()))
        }
        .await;
        let _ = std::fs::remove_file(&path);
        result?;
        tracing::info!(last_log_id = ?meta.last_log_id, "cluster state snapshot installed");
        self.reload_roster(meta.last_log_id.map(|l| l.index).unwrap_or(0)).await?;
        self.applied.send_replace(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(current.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
