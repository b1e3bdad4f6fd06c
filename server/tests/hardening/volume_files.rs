//! Item 10: a volume is its image, its reservation file and the engine's
//! temporary file; the image is created exclusively, and a delete removes
//! them all or fails visibly.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::{node, TestNode};

async fn create(n: &TestNode, auth: &str, name: &str) -> (StatusCode, serde_json::Value) {
    let r = n.send(Method::POST, "/api/v1/volumes", Some(auth), Some(json!({"name": name, "size": "1MiB"}))).await;
    (r.status, r.body)
}

fn volumes(n: &TestNode) -> std::path::PathBuf {
    n.dir.path().join("volumes")
}

#[tokio::test]
async fn deleting_a_volume_removes_its_image_reservations_and_temporary_file() {
    let n = node().await;
    let admin = n.admin().await;
    assert_eq!(create(&n, &admin, "v1").await.0, StatusCode::CREATED);
    // What the engine leaves next to the image once an initiator registered
    // with APTPL, and a temporary file a crash left behind.
    let dir = volumes(&n);
    std::fs::write(dir.join("v1.img.reservations.toml"), "aptpl = true\n").unwrap();
    std::fs::write(dir.join("v1.img.reservations.toml.tmp"), "aptpl = true\n").unwrap();

    let r = n.send(Method::DELETE, "/api/v1/volumes/v1", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for f in ["v1.img", "v1.img.reservations.toml", "v1.img.reservations.toml.tmp"] {
        assert!(!dir.join(f).exists(), "{f} survived the delete");
    }
    // A new volume of that name starts empty.
    assert_eq!(create(&n, &admin, "v1").await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn an_old_image_or_reservation_file_is_never_adopted() {
    let n = node().await;
    let admin = n.admin().await;
    let dir = volumes(&n);
    std::fs::write(dir.join("old.img"), b"someone else's data").unwrap();
    let (s, e) = create(&n, &admin, "old").await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["message"].as_str().unwrap().contains("old.img"), "{e}");
    assert!(e["fields"]["name"].is_string(), "{e}");
    assert_eq!(std::fs::read(dir.join("old.img")).unwrap(), b"someone else's data", "left untouched");
    let r = n.send(Method::GET, "/api/v1/volumes/old", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the refused volume was rolled back");

    std::fs::write(dir.join("regs.img.reservations.toml"), "aptpl = true\n").unwrap();
    let (s, e) = create(&n, &admin, "regs").await;
    assert_eq!(s, StatusCode::CONFLICT, "a leftover reservation file blocks the name too: {e}");
    assert!(!dir.join("regs.img").exists());

    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "volume.create" && e["result"] == "failure"));
}

#[tokio::test]
async fn a_delete_that_cannot_remove_the_image_fails_and_keeps_the_volume() {
    let n = node().await;
    let admin = n.admin().await;
    let (s, e) = create(&n, &admin, "stuck").await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // A directory where the image was cannot be removed as a file, even by root.
    let image = volumes(&n).join("stuck.img");
    std::fs::rename(&image, volumes(&n).join("moved-away")).unwrap();
    std::fs::create_dir(&image).unwrap();
    std::fs::write(image.join("inside"), "x").unwrap();

    let r = n.send(Method::DELETE, "/api/v1/volumes/stuck", Some(&admin), None).await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    assert!(r.body["message"].as_str().unwrap().contains("stuck.img"), "{}", r.body);
    let r = n.send(Method::GET, "/api/v1/volumes/stuck", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "the volume is still there");
    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "volume.delete" && e["result"] == "failure"));
}

#[tokio::test]
async fn a_delete_that_leaves_a_file_behind_says_so() {
    let n = node().await;
    let admin = n.admin().await;
    assert_eq!(create(&n, &admin, "half").await.0, StatusCode::CREATED);
    let regs = volumes(&n).join("half.img.reservations.toml");
    std::fs::create_dir(&regs).unwrap();
    std::fs::write(regs.join("inside"), "x").unwrap();
    let r = n.send(Method::DELETE, "/api/v1/volumes/half", Some(&admin), None).await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    assert!(r.body["message"].as_str().unwrap().contains("half.img.reservations.toml"), "{}", r.body);
    // The leftover keeps the name from being reused until it is gone.
    assert_eq!(create(&n, &admin, "half").await.0, StatusCode::CONFLICT);
}
