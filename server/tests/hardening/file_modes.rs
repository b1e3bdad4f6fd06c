//! Item 11: the data directory and `volumes/` are 0700; images, the
//! database and its WAL and shared-memory files are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::http::{Method, StatusCode};
use serde_json::json;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_directory_and_what_it_holds_are_private() {
    let dir = tempfile::tempdir().unwrap();
    // As an older version or a lax umask left it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = crate::common::node_in_dir(dir).await;
    let admin = n.admin().await;
    let r = n.send(Method::POST, "/api/v1/volumes", Some(&admin), Some(json!({"name": "p", "size": "1MiB"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let data = n.dir.path();
    assert_eq!(mode(data), 0o700, "data directory");
    assert_eq!(mode(&data.join("volumes")), 0o700, "volumes/");
    assert_eq!(mode(&data.join("volumes/p.img")), 0o600, "image");
    for f in ["portico.db", "portico.db-wal", "portico.db-shm", "secret.key"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }

    // Files an older version made readable by others are fixed at start.
    let loose = std::fs::Permissions::from_mode(0o644);
    for f in ["volumes/p.img", "portico.db", "portico.db-wal"] {
        std::fs::set_permissions(data.join(f), loose.clone()).unwrap();
    }
    std::fs::set_permissions(data.join("volumes"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = n.restart().await;
    let data = n.dir.path();
    assert_eq!(mode(&data.join("volumes")), 0o700, "volumes/ after a restart");
    for f in ["volumes/p.img", "portico.db", "portico.db-wal"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f} after a restart");
    }
}
