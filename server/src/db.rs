//! The node's SQLite database: opening, migrations, time stamps.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Opens (creating if needed) `portico.db` in `data_dir` and migrates it.
/// The directory is made 0700 and the database with its WAL and shared
/// memory files 0600.
pub async fn open(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    crate::data_dir::private_dir(data_dir)?;
    let path = data_dir.join("portico.db");
    // SQLite gives the -wal and -shm files the database file's mode, so the
    // database is created 0600 before SQLite first opens it.
    crate::data_dir::touch_private(&path)?;
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    // Files an older version left readable by others.
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        crate::data_dir::private_file(Path::new(&file))?;
    }
    Ok(pool)
}

/// Now, as RFC 3339 UTC text (how every time is stored).
pub fn now() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
