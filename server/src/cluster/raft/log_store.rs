//! The Raft log and vote, in their own SQLite file (`raft.db`), apart from
//! the state they build: a log entry is written and synced before openraft
//! is told it is durable, and a vote before `save_vote` returns, so a node
//! that crashes never forgets a promise it made (Raft §5.2 and §5.4).
//!
//! Entries are stored as JSON, one row per index. `meta` keeps the vote, the
//! last committed and the last purged log id, and this node's Raft id.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::str::FromStr;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{io, Entry, LogId, NodeId, Vote, C};

/// The log of one node. Cloning shares the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    pool: SqlitePool,
}

impl LogStore {
    /// Opens (creating) `raft.db` in `data_dir`, private to the service's user.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("raft.db");
        crate::data_dir::touch_private(&path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .execute(&pool)
            .await?;
        Ok(LogStore { pool })
    }

    async fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, std::io::Error> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(io)?;
        row.map(|(v,)| serde_json::from_str(&v).map_err(io)).transpose()
    }

    async fn set_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), std::io::Error> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(serde_json::to_string(value).map_err(io)?)
        .execute(&self.pool)
        .await
        .map_err(io)?;
        Ok(())
    }

    /// Whether this node has never voted nor logged anything: a node that
    /// has not been part of a cluster yet.
    pub async fn is_empty(&self) -> anyhow::Result<bool> {
        let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM log").fetch_one(&self.pool).await?;
        let voted = self.get_meta::<Vote>("vote").await?.is_some();
        let purged = self.get_meta::<LogId>("last_purged").await?.is_some();
        Ok(entries == 0 && !voted && !purged)
    }

    /// This node's Raft id, once it has one.
    pub async fn node_id(&self) -> anyhow::Result<Option<NodeId>> {
        Ok(self.get_meta("node_id").await?)
    }

    pub async fn set_node_id(&self, id: NodeId) -> anyhow::Result<()> {
        Ok(self.set_meta("node_id", &id).await?)
    }
}

/// SQLite's rowid range for a Rust range of indexes.
fn bounds(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let start = match range.start_bound() {
        Bound::Included(v) => to_i64(*v),
        Bound::Excluded(v) => to_i64(v.saturating_add(1)),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(v) => to_i64(*v),
        Bound::Excluded(v) if *v == 0 => -1,
        Bound::Excluded(v) => to_i64(v - 1),
        Bound::Unbounded => i64::MAX,
    };
    (start, end)
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let (start, end) = bounds(&range);
        let rows: Vec<(String,)> = sqlx::query_as("SELECT entry FROM log WHERE idx >= ? AND idx <= ? ORDER BY idx")
            .bind(start)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(io)?;
        rows.into_iter().map(|(e,)| serde_json::from_str(&e).map_err(io)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        self.get_meta("vote").await
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, std::io::Error> {
        let last_purged: Option<LogId> = self.get_meta("last_purged").await?;
        let last: Option<(String,)> = sqlx::query_as("SELECT entry FROM log ORDER BY idx DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(io)?;
        let last = match last {
            Some((e,)) => Some(serde_json::from_str::<Entry>(&e).map_err(io)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        self.set_meta("vote", vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        self.set_meta("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        Ok(self.get_meta::<Option<LogId>>("committed").await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(i64, String)> = entries
            .into_iter()
            .map(|e| Ok((i64::try_from(e.log_id.index).map_err(io)?, serde_json::to_string(&e).map_err(io)?)))
            .collect::<Result<_, std::io::Error>>()?;
        let mut tx = self.pool.begin().await.map_err(io)?;
        for (idx, entry) in rows {
            sqlx::query("INSERT OR REPLACE INTO log (idx, entry) VALUES (?, ?)")
                .bind(idx)
                .bind(entry)
                .execute(&mut *tx)
                .await
                .map_err(io)?;
        }
        // synchronous = FULL: the commit returns once the WAL is synced.
        let result = tx.commit().await.map_err(io);
        callback.io_completed(result.as_ref().map(|_| ()).map_err(io));
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let keep = last_log_id.map(|l| i64::try_from(l.index).unwrap_or(i64::MAX)).unwrap_or(-1);
        sqlx::query("DELETE FROM log WHERE idx > ?").bind(keep).execute(&self.pool).await.map_err(io)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        // The purge point first: a crash between the two leaves entries that
        // are simply not read again.
        self.set_meta("last_purged", &log_id).await?;
        let upto = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM log WHERE idx <= ?").bind(upto).execute(&self.pool).await.map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_inclusive_rowid_bounds() {
        assert_eq!(bounds(&(3..7)), (3, 6));
        assert_eq!(bounds(&(3..=7)), (3, 7));
        assert_eq!(bounds(&(..)), (0, i64::MAX));
        assert_eq!(bounds(&(..0)), (0, -1));
        assert_eq!(bounds(&(5..)), (5, i64::MAX));
    }
}
