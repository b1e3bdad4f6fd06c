//! Item 12: caps on volumes, groups, targets, LUNs per group and ACL rules,
//! on the request body, and on thin over-provisioning, each refused with a
//! message that names the setting.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::http::Call;
use crate::common::{node, node_with, TestNode};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn post(n: &TestNode, auth: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = n.send(Method::POST, path, Some(auth), Some(body)).await;
    (r.status, r.body)
}

fn refused_by(reply: &(StatusCode, Value), setting: &str) {
    assert_eq!(reply.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.1);
    assert!(reply.1.to_string().contains(setting), "names {setting}: {}", reply.1);
}

fn group(name: &str, with_target: bool) -> Value {
    let targets = if with_target {
        json!([{"node": "test-node", "portals": [format!("127.0.0.1:{}", free_port())]}])
    } else {
        json!([])
    };
    json!({"name": name, "targets": targets})
}

#[tokio::test]
async fn counts_are_capped_with_clear_422s() {
    let n = node_with(|o| {
        o.limits.max_volumes = 2;
        o.limits.max_target_groups = 2;
        o.limits.max_targets = 1;
        o.limits.max_luns_per_group = 1;
        o.limits.max_acl_rules_per_group = 1;
    })
    .await;
    let admin = n.admin().await;
    for v in ["v1", "v2"] {
        assert_eq!(
            post(&n, &admin, "/api/v1/volumes", json!({"name": v, "size": "1MiB"})).await.0,
            StatusCode::CREATED
        );
    }
    refused_by(&post(&n, &admin, "/api/v1/volumes", json!({"name": "v3", "size": "1MiB"})).await, "--max-volumes");

    assert_eq!(post(&n, &admin, "/api/v1/target-groups", group("g1", true)).await.0, StatusCode::CREATED);
    refused_by(&post(&n, &admin, "/api/v1/target-groups", group("g2", true)).await, "--max-targets");
    assert_eq!(n.send(Method::GET, "/api/v1/target-groups/g2", Some(&admin), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post(&n, &admin, "/api/v1/target-groups", group("g2", false)).await.0, StatusCode::CREATED);
    refused_by(&post(&n, &admin, "/api/v1/target-groups", group("g3", false)).await, "--max-target-groups");

    let luns = "/api/v1/target-groups/g1/luns";
    assert_eq!(post(&n, &admin, luns, json!({"volume": "v1"})).await.0, StatusCode::CREATED);
    refused_by(&post(&n, &admin, luns, json!({"volume": "v2"})).await, "--max-luns-per-group");

    let acl = "/api/v1/target-groups/g1/acl";
    let rule = |i: u32| json!({"initiator": format!("iqn.2026-01.com.example:host{i}")});
    assert_eq!(post(&n, &admin, acl, rule(1)).await.0, StatusCode::CREATED);
    refused_by(&post(&n, &admin, acl, rule(2)).await, "--max-acl-rules");
}

#[tokio::test]
async fn the_request_body_is_capped() {
    let n = node().await;
    let addr = n.serve().await;
    let admin = n.admin().await;
    let big = json!({"name": "big", "size": "1MiB", "padding": "x".repeat(100 * 1024)});
    for path in ["/api/v1/volumes", "/rpc/storage/volumes/create", "/api/v1/login"] {
        let r = Call::new(Method::POST, path).header("cookie", admin.clone()).json(big.clone()).send(addr).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {}", r.body);
        assert!(r.message().contains("64 KiB"), "{path}: {}", r.body);
    }
    // A body that does not say its length is cut off as it is read.
    let chunks = vec![Ok::<_, std::io::Error>(bytes::Bytes::from(big.to_string()))];
    let req = Request::post("/api/v1/volumes")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, &admin)
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let resp = n.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"status\":413"), "a JSON error");
    let r = n.send(Method::GET, "/api/v1/volumes/big", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Rounded up to a whole MiB.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20) << 20
}

async fn capacity(n: &TestNode, auth: &str) -> Value {
    let r = n.send(Method::GET, "/api/v1/overview", Some(auth), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.body["capacity"].clone()
}

fn backing(c: &Value) -> u64 {
    c["allocated_bytes"].as_u64().unwrap() + c["free_bytes"].as_u64().unwrap()
}

#[tokio::test]
async fn thin_overprovisioning_is_shown_and_a_ceiling_refuses_it() {
    let n = node().await;
    let admin = n.admin().await;
    let before = capacity(&n, &admin).await;
    assert_eq!(before["provisioned_bytes"], 0);
    assert!(before["free_bytes"].as_u64().unwrap() > 0, "{before}");
    let twice = mib(2 * backing(&before));
    let (s, v) = post(&n, &admin, "/api/v1/volumes", json!({"name": "huge", "size": twice})).await;
    assert_eq!(s, StatusCode::CREATED, "allowed without a ceiling: {v}");
    let after = capacity(&n, &admin).await;
    assert_eq!(after["provisioned_bytes"], twice);
    assert!(after["provisioned_bytes"].as_u64().unwrap() > backing(&after), "shown as over-provisioned: {after}");
    let audit = n.audit(&admin).await;
    let created = audit.iter().find(|e| e["action"] == "volume.create").unwrap();
    assert!(created["detail"].as_str().unwrap().contains("thin:"), "{created}");

    let n = node_with(|o| o.limits.max_overprovision = Some(1.0)).await;
    let admin = n.admin().await;
    let c = capacity(&n, &admin).await;
    assert_eq!(c["max_overprovision_percent"], 100);
    let (s, e) = post(&n, &admin, "/api/v1/volumes", json!({"name": "huge", "size": mib(2 * backing(&c))})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["fields"]["size"].as_str().unwrap().contains("--max-overprovision"), "{e}");
    assert!(!n.dir.path().join("volumes/huge.img").exists());
    let (s, _) = post(&n, &admin, "/api/v1/volumes", json!({"name": "small", "size": "1MiB"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let grow = json!({"size": mib(2 * backing(&c))});
    let r = n.send(Method::PATCH, "/api/v1/volumes/small", Some(&admin), Some(grow)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "growing counts too: {}", r.body);
}

/// Issue 30, finding 4: a refused request is audited with what it named,
/// however long; the record keeps at most 4096 bytes of each field, so
/// that the cluster takes it (a longer one was refused with its whole
/// batch, and every later record of the node waited behind it).
#[tokio::test]
async fn a_refusal_with_a_very_long_path_is_audited_with_its_fields_cut() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "watcher", "viewer").await;
    let name = "v".repeat(10_000);
    let r = n
        .send(
            Method::POST,
            &format!("/api/v1/volumes/{name}/primary"),
            Some(&viewer),
            Some(json!({"node": "test-node"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let audit = n.audit(&admin).await;
    let refused =
        audit.iter().find(|e| e["result"] == "denied" && e["user"] == "watcher").expect("the refusal is audited");
    let object = refused["object"].as_str().unwrap();
    assert!(object.len() <= 4096, "{} bytes", object.len());
    assert!(object.starts_with("volume/vvvv") && object.ends_with('…'), "{}", &object[..40]);
}
