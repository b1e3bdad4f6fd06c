//! Item 13: a node starts even when part of its configuration cannot. A
//! portal address that cannot be opened, a missing image, an unreadable
//! reservation file each leave out only that piece; the node serves the
//! rest and says what it left out, and why, in the API. A restart with an
//! administrator password that fails the policy does not stop a node that
//! has users.

use std::process::Command as Process;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{node, TestNode, ADMIN_PASSWORD};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn post(n: &TestNode, auth: &str, path: &str, body: Value) -> Value {
    let r = n.send(Method::POST, path, Some(auth), Some(body)).await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.body
}

/// A group `name` with one target on `port` and `volumes` as LUNs 0, 1, …
async fn group(n: &TestNode, auth: &str, name: &str, port: u16, volumes: &[&str]) -> String {
    for v in volumes {
        post(n, auth, "/api/v1/volumes", json!({"name": v, "size": "1MiB"})).await;
    }
    let g = post(
        n,
        auth,
        "/api/v1/target-groups",
        json!({"name": name, "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}]}),
    )
    .await;
    for (lun, v) in volumes.iter().enumerate() {
        post(n, auth, &format!("/api/v1/target-groups/{name}/luns"), json!({"volume": v, "lun": lun})).await;
    }
    g["targets"][0]["iqn"].as_str().unwrap().to_string()
}

async fn engine_state(n: &TestNode, auth: &str) -> Value {
    let r = n.send(Method::GET, "/api/v1/overview", Some(auth), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body["engine"].clone()
}

fn problem<'a>(engine: &'a Value, object: &str) -> Option<&'a str> {
    engine["problems"].as_array()?.iter().find(|p| p["object"] == object).and_then(|p| p["reason"].as_str())
}

/// The LUNs `iscsi-ls` lists behind a portal and target.
async fn luns(port: u16, iqn: &str) -> String {
    let url = format!("iscsi://127.0.0.1:{port}/{iqn}");
    let out = tokio::task::spawn_blocking(move || Process::new("iscsi-ls").args(["-s", &url]).output())
        .await
        .unwrap()
        .expect("iscsi-ls (Debian package libiscsi-bin)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_portal_that_cannot_be_opened_leaves_the_rest_serving() {
    let n = node().await;
    let admin = n.admin().await;
    let (busy_port, ok_port) = (free_port(), free_port());
    let lost = group(&n, &admin, "lost", busy_port, &["a"]).await;
    let kept = group(&n, &admin, "kept", ok_port, &["b"]).await;

    // Another program takes the address while the node is down.
    let mut squatter = None;
    let n = n.restart_with(|_| squatter = Some(std::net::TcpListener::bind(("127.0.0.1", busy_port)).unwrap())).await;
    let admin = n.admin().await;
    let engine = engine_state(&n, &admin).await;
    assert_eq!(engine["state"], "degraded", "{engine}");
    let reason = problem(&engine, &format!("portal/127.0.0.1:{busy_port}")).expect("the portal is named");
    assert!(reason.contains("cannot listen"), "{reason}");
    assert!(problem(&engine, &format!("target/{lost}")).is_some(), "{engine}");
    assert!(luns(ok_port, &kept).await.contains("Lun:0"), "the other group is served");
    // The node reports it to the cluster: the node list shows it too.
    let portal = format!("portal/127.0.0.1:{busy_port}");
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed =
            n.send(Method::GET, "/api/v1/nodes/test-node", Some(&admin), None).await.body["engine_problems"].clone();
        if listed.as_array().is_some_and(|a| a.iter().any(|p| p["object"] == portal.as_str())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed.as_array().is_some_and(|a| a.iter().any(|p| p["object"] == portal.as_str())), "{listed}");

    // A change that breaks something new is still refused.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = n
        .send(
            Method::POST,
            "/api/v1/target-groups",
            Some(&admin),
            Some(json!({"name": "new", "targets": [{"node": "test-node",
                "portals": [taken.local_addr().unwrap().to_string()]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // Once the address is free, the next change brings the portal back.
    drop(squatter);
    post(&n, &admin, "/api/v1/volumes", json!({"name": "c", "size": "1MiB"})).await;
    let engine = engine_state(&n, &admin).await;
    assert_eq!(engine["state"], "running", "{engine}");
    assert!(luns(busy_port, &lost).await.contains("Lun:0"));
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed =
            n.send(Method::GET, "/api/v1/nodes/test-node", Some(&admin), None).await.body["engine_problems"].clone();
        if listed == serde_json::json!([]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed, serde_json::json!([]), "the node reports its engine whole again");
}

#[tokio::test]
async fn a_missing_image_or_unreadable_reservations_leave_out_only_that_volume() {
    let n = node().await;
    let admin = n.admin().await;
    let port = free_port();
    let iqn = group(&n, &admin, "g", port, &["fine", "gone", "garbled"]).await;
    let volumes = n.dir.path().join("volumes");
    std::fs::remove_file(volumes.join("gone.img")).unwrap();
    std::fs::write(volumes.join("garbled.img.reservations.toml"), "this is [[ not toml").unwrap();

    let n = n.restart().await;
    let admin = n.admin().await;
    let engine = engine_state(&n, &admin).await;
    assert_eq!(engine["state"], "degraded");
    assert!(problem(&engine, "volume/gone").unwrap().contains("missing"), "{engine}");
    assert!(problem(&engine, "volume/garbled").unwrap().contains("reservations"), "{engine}");
    assert!(problem(&engine, "volume/fine").is_none());
    assert!(!volumes.join("gone.img").exists(), "no empty image stands in for the lost one");
    let state = |v: &'static str| {
        let n = &n;
        let admin = admin.clone();
        async move { n.send(Method::GET, &format!("/api/v1/volumes/{v}"), Some(&admin), None).await.body["state"].clone() }
    };
    assert_eq!(state("gone").await, "offline");
    assert_eq!(state("garbled").await, "offline");
    assert_eq!(state("fine").await, "healthy");
    let listed = luns(port, &iqn).await;
    assert!(listed.contains("Lun:0") && !listed.contains("Lun:1") && !listed.contains("Lun:2"), "{listed}");

    // The lost volume can be detached and deleted; then it is no problem any more.
    assert_eq!(
        n.send(Method::DELETE, "/api/v1/target-groups/g/luns/1", Some(&admin), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(n.send(Method::DELETE, "/api/v1/volumes/gone", Some(&admin), None).await.status, StatusCode::NO_CONTENT);
    let engine = engine_state(&n, &admin).await;
    assert!(problem(&engine, "volume/gone").is_none(), "{engine}");
    assert!(problem(&engine, "volume/garbled").is_some(), "still out: {engine}");
}

#[tokio::test]
async fn an_admin_password_that_fails_the_policy_does_not_stop_a_node_with_users() {
    let n = node().await;
    let n = n.restart_with(|o| o.admin_password = "short".into()).await;
    assert_eq!(n.first_admin, Ok(false), "the node has users: the variable is not used");
    assert_eq!(n.login("admin", ADMIN_PASSWORD).await.status, StatusCode::OK);

    let fresh = crate::common::node_with(|o| o.admin_password = "short".into()).await;
    let e = fresh.first_admin.unwrap_err();
    assert_eq!(e.status, 422, "without users the password must pass the policy: {e:?}");
}
