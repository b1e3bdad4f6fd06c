//! The block storage API: every rule of PRODUCT.md the service enforces, each
//! role, and what an initiator sees afterwards (libiscsi's `iscsi-ls`,
//! installed by the README's test command).

mod common;

use std::process::Command as Process;

use axum::http::{Method, StatusCode};
use common::storage::{free_port, get, operator, post};
use common::{node, TestNode};
use serde_json::{json, Value};

fn iscsi_ls(url: &str) -> (bool, String) {
    let out = Process::new("iscsi-ls")
        .args(["-s", url])
        .output()
        .expect("iscsi-ls (Debian package libiscsi-bin) is needed; ./scripts/test.sh installs it");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("Lun:0"), text)
}

#[tokio::test]
async fn viewers_read_and_operators_change() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let op = n.create_user(&admin, "opal", "operator").await;
    for path in ["/api/v1/volumes", "/api/v1/target-groups", "/api/v1/chap-users", "/api/v1/nodes"] {
        assert_eq!(get(&n, &viewer, path).await.0, StatusCode::OK, "{path}");
        assert_eq!(n.send(Method::GET, path, None, None).await.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (s, _) = post(&n, &viewer, "/api/v1/volumes", json!({"name": "v1", "size": "1GiB"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = post(&n, &viewer, "/api/v1/chap-users", json!({"name": "u", "secret": "abcdefghijkl"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = post(&n, &op, "/api/v1/volumes", json!({"name": "v1", "size": "1GiB"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, _) = post(&n, &admin, "/api/v1/volumes", json!({"name": "v2", "size": 4096})).await;
    assert_eq!(s, StatusCode::CREATED, "admins may do everything");
    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "volume.create" && e["result"] == "denied" && e["user"] == "vic"));
    assert!(audit.iter().any(|e| e["action"] == "volume.create" && e["result"] == "success" && e["user"] == "opal"));
}

#[tokio::test]
async fn volumes_are_validated_grow_online_and_never_shrink() {
    let n = node().await;
    let op = operator(&n).await;
    let (s, v) = post(&n, &op, "/api/v1/volumes", json!({"name": "db", "size": "1GiB", "block_size": 4096})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["size"], 1u64 << 30);
    assert_eq!(v["block_size"], 4096);
    assert_eq!(v["wwn"].as_str().unwrap().len(), 32);
    let file = n.dir.path().join("volumes/db.img");
    let meta = std::fs::metadata(&file).expect("the engine created the volume's file");
    assert_eq!(meta.len(), 1 << 30);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "the file is sparse");

    let (s, e) = post(&n, &op, "/api/v1/volumes", json!({"name": "db", "size": "1GiB"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, e) =
        post(&n, &op, "/api/v1/volumes", json!({"name": "Bad Name", "size": "lots", "block_size": 1000})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for f in ["name", "size", "block_size"] {
        assert!(e["fields"][f].is_string(), "{f}: {e}");
    }
    let (s, e) = post(&n, &op, "/api/v1/volumes", json!({"name": "r2", "size": "1GiB", "replicas": 2})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["fields"]["replicas"].as_str().unwrap().contains("the cluster has 1"), "{e}");

    let r = n.send(Method::PATCH, "/api/v1/volumes/db", Some(&op), Some(json!({"size": "512MiB"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "shrinking is refused");
    let r =
        n.send(Method::PATCH, "/api/v1/volumes/db", Some(&op), Some(json!({"size": "2GiB", "iops_limit": 5000}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["size"], 2u64 << 30);
    assert_eq!(r.body["iops_limit"], 5000);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 2 << 30, "grown online");

    let r = n.send(Method::DELETE, "/api/v1/volumes/db", Some(&op), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!file.exists(), "a deleted volume's file is removed");
    assert_eq!(get(&n, &op, "/api/v1/volumes/db").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chap_secrets_are_validated_sealed_and_never_returned() {
    let n = node().await;
    let op = operator(&n).await;
    let (s, e) = post(&n, &op, "/api/v1/chap-users", json!({"name": "alice", "secret": "short"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["fields"]["secret"].is_string());
    let (s, e) = post(&n, &op, "/api/v1/chap-users", json!({"name": "alice", "secret": "seventeen-chars!!"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, body) = post(
        &n,
        &op,
        "/api/v1/chap-users",
        json!({"name": "alice", "secret": "alicesecret1", "description": "ESXi hosts"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!body.to_string().contains("alicesecret1"));
    let (_, list) = get(&n, &op, "/api/v1/chap-users").await;
    assert!(!list.to_string().contains("alicesecret1"));
    let r =
        n.send(Method::PATCH, "/api/v1/chap-users/alice", Some(&op), Some(json!({"secret": "newsecret1234"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.to_string().contains("newsecret1234"));

    // At rest: sealed, not in clear, in the database file; the key file is private.
    let db = std::fs::read(n.dir.path().join("portico.db")).unwrap();
    let wal = std::fs::read(n.dir.path().join("portico.db-wal")).unwrap_or_default();
    for secret in [b"alicesecret1".as_slice(), b"newsecret1234".as_slice()] {
        assert!(!db.windows(secret.len()).any(|w| w == secret));
        assert!(!wal.windows(secret.len()).any(|w| w == secret));
    }
    let audit = n.audit(&op).await;
    assert!(audit.iter().all(|e| !e.to_string().contains("secret1")), "secrets never reach the audit log");
}

#[tokio::test]
async fn target_groups_enforce_the_product_rules() {
    let n = node().await;
    let op = operator(&n).await;
    let port = free_port();
    let portal = format!("127.0.0.1:{port}");
    for v in ["a", "b"] {
        assert_eq!(post(&n, &op, "/api/v1/volumes", json!({"name": v, "size": "64MiB"})).await.0, StatusCode::CREATED);
    }
    // A portal must be on an iSCSI interface of the node.
    let (s, e) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g1", "targets": [{"node": "test-node", "portals": ["192.0.2.7:3260"]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["fields"]["targets[0].portals"].as_str().unwrap().contains("iSCSI"), "{e}");
    let (s, e) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g1", "targets": [{"node": "nowhere", "portals": [portal]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    let (s, g) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g1", "targets": [{"node": "test-node", "portals": [portal]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let iqn = g["targets"][0]["iqn"].as_str().unwrap().to_string();
    assert_eq!(iqn, "iqn.2026-11.local.portico:g1.test-node");
    assert_eq!(g["state"], "running");

    // One target of a group per node.
    let (s, _) =
        post(&n, &op, "/api/v1/target-groups/g1/targets", json!({"node": "test-node", "portals": [portal]})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // LUN ids are unique in a group; a volume is in one group only.
    assert_eq!(
        post(&n, &op, "/api/v1/target-groups/g1/luns", json!({"volume": "a", "lun": 0})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&n, &op, "/api/v1/target-groups/g1/luns", json!({"volume": "b", "lun": 0})).await.0,
        StatusCode::CONFLICT
    );
    let (s, l) = post(&n, &op, "/api/v1/target-groups/g1/luns", json!({"volume": "b"})).await;
    assert_eq!((s, l["lun"].clone()), (StatusCode::CREATED, json!(1)), "the next free id is chosen");
    let (s, g2) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g2", "targets": [{"node": "test-node", "portals": [portal]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "groups may share nodes and portals: {g2}");
    assert_eq!(post(&n, &op, "/api/v1/target-groups/g2/luns", json!({"volume": "a"})).await.0, StatusCode::CONFLICT);

    // Attached volumes cannot be deleted; groups with LUNs only with force.
    assert_eq!(n.send(Method::DELETE, "/api/v1/volumes/a", Some(&op), None).await.status, StatusCode::CONFLICT);
    assert_eq!(n.send(Method::DELETE, "/api/v1/target-groups/g1", Some(&op), None).await.status, StatusCode::CONFLICT);
    // The target holding the Active/Optimized path is kept unless forced.
    let path = format!("/api/v1/target-groups/g1/targets/{iqn}");
    assert_eq!(n.send(Method::DELETE, &path, Some(&op), None).await.status, StatusCode::CONFLICT);
    assert_eq!(
        n.send(Method::DELETE, &format!("{path}?force=true"), Some(&op), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        n.send(Method::DELETE, "/api/v1/target-groups/g1/luns/1", Some(&op), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        n.send(Method::DELETE, "/api/v1/target-groups/g1?force=true", Some(&op), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(n.send(Method::DELETE, "/api/v1/volumes/a", Some(&op), None).await.status, StatusCode::NO_CONTENT);

    // CHAP users in use cannot be deleted; ACL initiators must be iSCSI names.
    post(&n, &op, "/api/v1/chap-users", json!({"name": "bob", "secret": "bobsecret123"})).await;
    let r = n
        .send(
            Method::PATCH,
            "/api/v1/target-groups/g2",
            Some(&op),
            Some(json!({"chap": {"mode": "one-way", "user": "bob"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(n.send(Method::DELETE, "/api/v1/chap-users/bob", Some(&op), None).await.status, StatusCode::CONFLICT);
    let r = n
        .send(
            Method::PATCH,
            "/api/v1/target-groups/g2",
            Some(&op),
            Some(json!({"chap": {"mode": "mutual", "user": "bob"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "mutual needs a second user");
    let (s, _) = post(&n, &op, "/api/v1/target-groups/g2/acl", json!({"initiator": "not-an-iqn"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = post(
        &n,
        &op,
        "/api/v1/target-groups/g2/acl",
        json!({"initiator": "iqn.1994-05.com.redhat:host1", "luns": [9]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "LUN 9 is not attached");
    // One name rule with the engine: capitals are the same name, stored in
    // lower case and applied (they used to pass here and fail in the engine).
    let (s, body) =
        post(&n, &op, "/api/v1/target-groups/g2/acl", json!({"initiator": "IQN.1994-05.COM.RedHat:Host2"})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, g) = get(&n, &op, "/api/v1/target-groups/g2").await;
    let names: Vec<&str> = g["acl"].as_array().unwrap().iter().map(|r| r["initiator"].as_str().unwrap()).collect();
    assert!(names.contains(&"iqn.1994-05.com.redhat:host2"), "{names:?}");
    let r = n.send(Method::DELETE, "/api/v1/target-groups/g2/acl/IQN.1994-05.com.redhat:HOST2", Some(&op), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// What the group page refreshes every few seconds: the path state of each
/// LUN through each target, as the group's own view has it.
#[tokio::test]
async fn a_viewer_reads_the_path_states_of_a_group() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let op = n.create_user(&admin, "opal", "operator").await;
    let portal = format!("127.0.0.1:{}", free_port());
    assert_eq!(post(&n, &op, "/api/v1/volumes", json!({"name": "v", "size": "64MiB"})).await.0, StatusCode::CREATED);
    let (s, g) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": [portal]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let iqn = g["targets"][0]["iqn"].clone();

    let (s, paths) = get(&n, &viewer, "/api/v1/target-groups/g/paths").await;
    assert_eq!(s, StatusCode::OK, "{paths}");
    assert_eq!(paths, json!([{"iqn": iqn, "paths": []}]), "no LUN yet, no path");

    let (s, l) = post(&n, &op, "/api/v1/target-groups/g/luns", json!({"volume": "v", "lun": 0})).await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let (s, paths) = get(&n, &viewer, "/api/v1/target-groups/g/paths").await;
    assert_eq!(s, StatusCode::OK, "{paths}");
    // One node holds the volume's primary: its target is the Active/Optimized path.
    assert_eq!(paths, json!([{"iqn": iqn, "paths": [{"lun": 0, "state": "active-optimized"}]}]));
    let (_, g) = get(&n, &viewer, "/api/v1/target-groups/g").await;
    assert_eq!(paths[0]["paths"], g["targets"][0]["paths"], "the group's own view says the same");

    // The state of the other paths: Standby unless set; operators change it.
    assert_eq!(g["other_paths"], "standby");
    let patch = |body| n.send(Method::PATCH, "/api/v1/target-groups/g", Some(&op), Some(body));
    let r =
        n.send(Method::PATCH, "/api/v1/target-groups/g", Some(&viewer), Some(json!({"other_paths": "standby"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a viewer changes nothing");
    assert_eq!(patch(json!({"other_paths": "sometimes"})).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = patch(json!({"other_paths": "active-non-optimized"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, g) = get(&n, &viewer, "/api/v1/target-groups/g").await;
    assert_eq!(g["other_paths"], "active-non-optimized");
    // One node: its target holds the primary, whatever the other paths are.
    let (_, paths) = get(&n, &viewer, "/api/v1/target-groups/g/paths").await;
    assert_eq!(paths[0]["paths"], json!([{"lun": 0, "state": "active-optimized"}]));

    assert_eq!(post(&n, &op, "/api/v1/target-groups", json!({"name": "bare"})).await.0, StatusCode::CREATED);
    assert_eq!(get(&n, &viewer, "/api/v1/target-groups/bare/paths").await, (StatusCode::OK, json!([])));
    assert_eq!(get(&n, &viewer, "/api/v1/target-groups/nowhere/paths").await.0, StatusCode::NOT_FOUND);
    let anonymous = n.send(Method::GET, "/api/v1/target-groups/g/paths", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_group_built_through_the_api_serves_its_lun_with_chap_and_acl() {
    let n = node().await;
    let op = operator(&n).await;
    let port = free_port();
    post(&n, &op, "/api/v1/chap-users", json!({"name": "alice", "secret": "alicesecret1"})).await;
    post(&n, &op, "/api/v1/volumes", json!({"name": "vol1", "size": "1GiB"})).await;
    let (s, g) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "esx", "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}], "chap": {"mode": "one-way", "user": "alice"}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let iqn = g["targets"][0]["iqn"].as_str().unwrap().to_string();
    post(&n, &op, "/api/v1/target-groups/esx/luns", json!({"volume": "vol1", "lun": 0})).await;

    let with = format!("iscsi://alice%alicesecret1@127.0.0.1:{port}/{iqn}/0");
    let without = format!("iscsi://127.0.0.1:{port}/{iqn}/0");
    let wrong = format!("iscsi://alice%wrongsecret1@127.0.0.1:{port}/{iqn}/0");
    let ok =
        tokio::task::spawn_blocking(move || (iscsi_ls(&with), iscsi_ls(&without), iscsi_ls(&wrong))).await.unwrap();
    assert!(ok.0 .0, "with the secret the LUN is listed: {}", ok.0 .1);
    assert!(!ok.1 .0, "without the secret the login is refused: {}", ok.1 .1);
    assert!(!ok.2 .0, "a wrong secret is refused: {}", ok.2 .1);

    // ACL on, initiator not listed: refused; listed: served.
    let r = n
        .send(
            Method::PATCH,
            "/api/v1/target-groups/esx",
            Some(&op),
            Some(json!({"acl_enabled": true, "chap": {"mode": "none"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let url = format!("iscsi://127.0.0.1:{port}/{iqn}/0");
    let u = url.clone();
    let (listed, text) = tokio::task::spawn_blocking(move || iscsi_ls(&u)).await.unwrap();
    assert!(!listed, "an initiator outside the ACL cannot log in: {text}");
    let (s, _) = post(
        &n,
        &op,
        "/api/v1/target-groups/esx/acl",
        json!({"initiator": "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-ls", "alias": "test"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (listed, text) = tokio::task::spawn_blocking(move || iscsi_ls(&url)).await.unwrap();
    assert!(listed, "an allowed initiator sees its LUN: {text}");

    // Stopping the group closes its portal.
    let r = n.send(Method::POST, "/api/v1/target-groups/esx/stop", Some(&op), None).await;
    assert_eq!(r.body["state"], "stopped");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "no target listens once stopped");
    let r = n.send(Method::POST, "/api/v1/target-groups/esx/start", Some(&op), None).await;
    assert_eq!(r.body["state"], "running");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[tokio::test]
async fn a_portal_the_engine_cannot_open_rolls_the_change_back() {
    let n = node().await;
    let op = operator(&n).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (s, e) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["message"].as_str().unwrap().contains("engine refused"), "{e}");
    assert_eq!(get(&n, &op, "/api/v1/target-groups/g").await.0, StatusCode::NOT_FOUND, "rolled back");
}

#[tokio::test]
async fn nodes_list_their_interfaces_and_traffic_types() {
    let n = node().await;
    let op = operator(&n).await;
    let (s, nodes) = get(&n, &op, "/api/v1/nodes").await;
    assert_eq!(s, StatusCode::OK);
    let me = &nodes[0];
    assert_eq!(me["name"], "test-node");
    assert_eq!(me["is_local"], true);
    let lo = me["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "lo").expect("loopback is registered");
    assert!(lo["addresses"].to_string().contains("127.0.0.1"));
    let r = n
        .send(
            Method::PATCH,
            "/api/v1/nodes/test-node",
            Some(&op),
            Some(json!({"interfaces": [{"name": "lo", "traffic_types": ["management"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (s, e) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": ["127.0.0.1:3260"]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "lo no longer carries iSCSI: {e}");
    let r = n
        .send(
            Method::PATCH,
            "/api/v1/nodes/test-node",
            Some(&op),
            Some(json!({"interfaces": [{"name": "lo", "traffic_types": ["teleport"]}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn after_a_restart_the_stored_configuration_comes_back() {
    let n = node().await;
    let op = operator(&n).await;
    let port = free_port();
    post(&n, &op, "/api/v1/volumes", json!({"name": "keep", "size": "64MiB"})).await;
    let (s, g) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    post(&n, &op, "/api/v1/target-groups/g/luns", json!({"volume": "keep", "lun": 3})).await;
    let before = get(&n, &op, "/api/v1/target-groups/g").await.1;
    // The volume lives on this node, so its path through this node's target is the optimized one.
    assert_eq!(before["targets"][0]["paths"], json!([{"lun": 3, "state": "active-optimized"}]));
    let engine = n.engine.config().await;
    assert_eq!(engine.targets[0].alua_state(3), target_engine::config::AluaState::ActiveOptimized);

    let n = n.restart().await;
    let op = n.session("opal", "opal-password").await;
    let after = get(&n, &op, "/api/v1/target-groups/g").await.1;
    assert_eq!(before, after, "the configuration survives");
    let iqn = after["targets"][0]["iqn"].as_str().unwrap().to_string();
    let url = format!("iscsi://127.0.0.1:{port}/{iqn}/3");
    let out =
        tokio::task::spawn_blocking(move || Process::new("iscsi-ls").args(["-s", &url]).output().expect("iscsi-ls"))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Lun:3"), "the target is back after the restart: {text}");
}

/// The engine's own test initiator: real PDUs over TCP, one session kept open.
use target_engine::testkit::initiator;

/// A 64 MiB volume attached as LUN 0 of group `g` on a free port, and the
/// engine's test initiator logged in to it.
async fn served_volume(n: &TestNode, op: &str, volume: &str) -> initiator::Initiator {
    let port = free_port();
    post(n, op, "/api/v1/volumes", json!({"name": volume, "size": "64MiB"})).await;
    let (_, g) = post(
        n,
        op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}]}),
    )
    .await;
    let iqn = g["targets"][0]["iqn"].as_str().unwrap().to_string();
    post(n, op, "/api/v1/target-groups/g/luns", json!({"volume": volume, "lun": 0})).await;
    let mut ini = initiator::Initiator::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let opts = initiator::LoginOpts { initiator: initiator::INITIATOR, target: Some(&iqn), ..Default::default() };
    ini.login(&opts).await.expect("login");
    ini
}

fn read_capacity16() -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    cdb
}

fn capacity_bytes(data: &[u8]) -> u64 {
    let last_lba = u64::from_be_bytes(data[0..8].try_into().unwrap());
    let block = u32::from_be_bytes(data[8..12].try_into().unwrap());
    (last_lba + 1) * u64::from(block)
}

#[tokio::test]
async fn growing_an_attached_volume_is_seen_by_a_connected_initiator() {
    let n = node().await;
    let op = operator(&n).await;
    let mut ini = served_volume(&n, &op, "grow").await;
    // The first command after login reports the power-on unit attention.
    let _ = ini.command(0, &[0u8; 6], 0, &[], 0, 0).await;
    let before = ini.command(0, &read_capacity16(), 32, &[], 0, 0).await;
    assert_eq!(before.status, 0);
    assert_eq!(capacity_bytes(&before.data), 64 << 20);

    let r = n.send(Method::PATCH, "/api/v1/volumes/grow", Some(&op), Some(json!({"size": "128MiB"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Same session: a unit attention CAPACITY DATA HAS CHANGED (2Ah/09h), then the new size.
    let tur = ini.command(0, &[0u8; 6], 0, &[], 0, 0).await;
    assert_eq!(tur.status, 2, "CHECK CONDITION with the unit attention");
    let sense = &tur.sense;
    let (key, asc, ascq) = if sense[0] & 0x7f >= 0x72 {
        (sense[1] & 0xf, sense[2], sense[3])
    } else {
        (sense[2] & 0xf, sense[12], sense[13])
    };
    assert_eq!((key, asc, ascq), (6, 0x2a, 0x09), "UNIT ATTENTION, CAPACITY DATA HAS CHANGED");
    let after = ini.command(0, &read_capacity16(), 32, &[], 0, 0).await;
    assert_eq!(after.status, 0);
    assert_eq!(capacity_bytes(&after.data), 128 << 20, "the connected initiator sees the new size");
}

#[tokio::test]
async fn an_iops_limit_slows_a_connected_initiator_down_live() {
    let n = node().await;
    let op = operator(&n).await;
    let mut ini = served_volume(&n, &op, "slow").await;
    let _ = ini.command(0, &[0u8; 6], 0, &[], 0, 0).await;

    let r = n.send(Method::PATCH, "/api/v1/volumes/slow", Some(&op), Some(json!({"iops_limit": 100}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["iops_limit"], 100);
    // 100 IOPS with one second of burst: 160 reads cannot finish in under 0.6 s
    // (a lower bound, whatever else the machine is doing).
    let start = std::time::Instant::now();
    for i in 0..160u32 {
        let res = ini.command(0, &initiator::read10(i, 1), 512, &[], 0, 0).await;
        assert_eq!(res.status, 0);
    }
    assert!(start.elapsed() >= std::time::Duration::from_millis(550), "limited: {:?}", start.elapsed());

    let r = n.send(Method::PATCH, "/api/v1/volumes/slow", Some(&op), Some(json!({"iops_limit": 0}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["iops_limit"].is_null(), "0 removes the limit");
}

#[tokio::test]
async fn every_storage_route_checks_the_role_on_the_server() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let op = n.create_user(&admin, "opal", "operator").await;
    let port = free_port();
    // Objects for the routes to act on.
    post(&n, &op, "/api/v1/volumes", json!({"name": "v", "size": "64MiB"})).await;
    post(&n, &op, "/api/v1/volumes", json!({"name": "w", "size": "64MiB"})).await;
    post(&n, &op, "/api/v1/volumes", json!({"name": "u", "size": "64MiB"})).await;
    post(&n, &op, "/api/v1/chap-users", json!({"name": "c", "secret": "csecret123456"})).await;
    let (_, g) = post(
        &n,
        &op,
        "/api/v1/target-groups",
        json!({"name": "g", "targets": [{"node": "test-node", "portals": [format!("127.0.0.1:{port}")]}]}),
    )
    .await;
    let iqn = g["targets"][0]["iqn"].as_str().unwrap().to_string();
    post(&n, &op, "/api/v1/target-groups/g/luns", json!({"volume": "v", "lun": 0})).await;
    post(&n, &op, "/api/v1/target-groups/g/acl", json!({"initiator": "iqn.1994-05.com.redhat:h1"})).await;

    let reads = [
        "/api/v1/volumes",
        "/api/v1/volumes/v",
        "/api/v1/volumes/v/activity",
        "/api/v1/target-groups",
        "/api/v1/target-groups/g",
        "/api/v1/target-groups/g/luns",
        "/api/v1/target-groups/g/acl",
        "/api/v1/target-groups/g/connections",
        "/api/v1/target-groups/g/paths",
        "/api/v1/target-groups/g/session",
        "/api/v1/target-groups/g/privileges",
        "/api/v1/iscsi/discovery",
        "/api/v1/chap-users",
        "/api/v1/nodes",
        "/api/v1/nodes/test-node",
    ];
    for path in reads {
        assert_eq!(
            n.send(Method::GET, path, None, None).await.status,
            StatusCode::UNAUTHORIZED,
            "anonymous GET {path}"
        );
        assert_eq!(get(&n, &viewer, path).await.0, StatusCode::OK, "viewer GET {path}");
    }
    let acl = "/api/v1/target-groups/g/acl/iqn.1994-05.com.redhat:h1".to_string();
    let target = format!("/api/v1/target-groups/g/targets/{iqn}?force=true");
    let other_port = free_port();
    let changes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/api/v1/volumes".into(), Some(json!({"name": "x", "size": "64MiB"}))),
        (Method::PATCH, "/api/v1/volumes/v".into(), Some(json!({"iops_limit": 10}))),
        (Method::DELETE, "/api/v1/volumes/u".into(), None),
        (Method::POST, "/api/v1/target-groups".into(), Some(json!({"name": "h"}))),
        (Method::PATCH, "/api/v1/target-groups/g".into(), Some(json!({"acl_enabled": true}))),
        (Method::POST, "/api/v1/target-groups/g/stop".into(), None),
        (Method::POST, "/api/v1/target-groups/g/start".into(), None),
        (Method::DELETE, target, None),
        (
            Method::POST,
            "/api/v1/target-groups/g/targets".into(),
            Some(json!({"node": "test-node", "portals": [format!("127.0.0.1:{other_port}")]})),
        ),
        (Method::POST, "/api/v1/target-groups/g/luns".into(), Some(json!({"volume": "w"}))),
        (Method::DELETE, "/api/v1/target-groups/g/luns/0".into(), None),
        (Method::POST, "/api/v1/target-groups/g/acl".into(), Some(json!({"initiator": "iqn.1994-05.com.redhat:h2"}))),
        (Method::PATCH, acl.clone(), Some(json!({"luns": [1]}))),
        (Method::DELETE, acl, None),
        (Method::PUT, "/api/v1/target-groups/g/session".into(), Some(json!({"nop_in_interval": 30}))),
        (Method::PUT, "/api/v1/target-groups/g/privileges".into(), Some(json!({"target_cold_reset": true}))),
        (Method::PUT, "/api/v1/iscsi/discovery".into(), Some(json!({"chap": {"mode": "one-way", "user": "c"}}))),
        (Method::PUT, "/api/v1/iscsi/discovery".into(), Some(json!({"chap": {"mode": "none"}}))),
        (Method::DELETE, "/api/v1/target-groups/g?force=true".into(), None),
        (Method::POST, "/api/v1/chap-users".into(), Some(json!({"name": "d", "secret": "dsecret123456"}))),
        (Method::PATCH, "/api/v1/chap-users/c".into(), Some(json!({"description": "x"}))),
        (Method::DELETE, "/api/v1/chap-users/c".into(), None),
        (
            Method::PATCH,
            "/api/v1/nodes/test-node".into(),
            Some(json!({"interfaces": [{"name": "lo", "traffic_types": ["iscsi"]}]})),
        ),
    ];
    let before = get(&n, &op, "/api/v1/target-groups/g").await.1;
    for (method, path, body) in &changes {
        let r = n.send(method.clone(), path, None, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous {method} {path}");
        let r = n.send(method.clone(), path, Some(&viewer), body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "viewer {method} {path}: {}", r.body);
    }
    assert_eq!(before, get(&n, &op, "/api/v1/target-groups/g").await.1, "nothing changed");
    assert_eq!(get(&n, &op, "/api/v1/iscsi/discovery").await.1["chap"]["mode"], "none");
    assert_eq!(get(&n, &op, "/api/v1/volumes/u").await.0, StatusCode::OK);
    // The operator may do each of them (in this order they all apply).
    for (method, path, body) in &changes {
        let r = n.send(method.clone(), path, Some(&op), body.clone()).await;
        assert!(r.status.is_success(), "operator {method} {path}: {} {}", r.status, r.body);
    }
}

#[tokio::test]
async fn reservations_made_by_an_initiator_are_shown() {
    let n = node().await;
    let op = operator(&n).await;
    let mut ini = served_volume(&n, &op, "shared").await;
    let (s, none) = get(&n, &op, "/api/v1/volumes/shared/reservations").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(none["registrations"], json!([]));
    assert_eq!(none["reservation"], Value::Null);

    // A cluster node registers key 0x1234 and takes Write Exclusive, Registrants Only.
    let mut params = vec![0u8; 24];
    params[8..16].copy_from_slice(&0x1234u64.to_be_bytes());
    assert_eq!(ini.command_ok(0, &[0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0], 0, &params).await.status, 0);
    let mut params = vec![0u8; 24];
    params[0..8].copy_from_slice(&0x1234u64.to_be_bytes());
    assert_eq!(ini.command_ok(0, &[0x5f, 0x01, 0x05, 0, 0, 0, 0, 0, 24, 0], 0, &params).await.status, 0);

    let (s, r) = get(&n, &op, "/api/v1/volumes/shared/reservations").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["reservation"], "write-exclusive-registrants-only");
    assert_eq!(r["persistent"], false);
    assert_eq!(r["registrations"][0]["initiator"], initiator::INITIATOR);
    assert_eq!(r["registrations"][0]["key"], "0000000000001234");
    assert_eq!(r["registrations"][0]["holder"], true);

    // Viewers may read it; anonymous callers and unknown volumes get clear errors.
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vicky", "viewer").await;
    assert_eq!(get(&n, &viewer, "/api/v1/volumes/shared/reservations").await.0, StatusCode::OK);
    assert_eq!(
        n.send(Method::GET, "/api/v1/volumes/shared/reservations", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (s, e) = get(&n, &op, "/api/v1/volumes/nope/reservations").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
}

/// WCE in the Caching mode page, as the initiator reads it with MODE SENSE(6).
async fn wce(ini: &mut initiator::Initiator) -> bool {
    let r = ini.command_ok(0, &[0x1a, 0x08, 0x08, 0, 64, 0], 64, &[]).await;
    assert_eq!(r.status, 0);
    r.data[4 + 2] & 0x04 != 0
}

#[tokio::test]
async fn the_write_cache_policy_is_durable_by_default_and_changes_live() {
    let n = node().await;
    let op = operator(&n).await;
    let mut ini = served_volume(&n, &op, "wc").await;
    let (_, v) = get(&n, &op, "/api/v1/volumes/wc").await;
    assert_eq!((v["write_cache"].as_str(), v["wce"].as_bool()), (Some("write-through"), Some(false)), "{v}");
    assert!(!wce(&mut ini).await, "write-through: the initiator sees no write cache");

    let r = n.send(Method::PATCH, "/api/v1/volumes/wc", Some(&op), Some(json!({"write_cache": "write-back"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The connected initiator hears of it: MODE PARAMETERS CHANGED (2Ah/01h).
    let tur = ini.command(0, &[0u8; 6], 0, &[], 0, 0).await;
    assert_eq!(tur.status, 2);
    let s = &tur.sense;
    let (asc, ascq) = if s[0] & 0x7f >= 0x72 { (s[2], s[3]) } else { (s[12], s[13]) };
    assert_eq!((s[if s[0] & 0x7f >= 0x72 { 1 } else { 2 }] & 0xf, asc, ascq), (6, 0x2a, 0x01));
    assert!(wce(&mut ini).await);
    let (_, v) = get(&n, &op, "/api/v1/volumes/wc").await;
    assert_eq!((v["write_cache"].as_str(), v["wce"].as_bool()), (Some("write-back"), Some(true)));

    let r = n.send(Method::PATCH, "/api/v1/volumes/wc", Some(&op), Some(json!({"write_cache": "sometimes"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // Chosen at creation too.
    let (s, v) =
        post(&n, &op, "/api/v1/volumes", json!({"name": "wc2", "size": "8MiB", "write_cache": "initiator"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["write_cache"], "initiator");
}

/// CLUSTER.md §0: a change that takes space on another node is tried there
/// first. The dry run that node answers refuses what it would refuse (files
/// an earlier volume left, its caps), accepts the rest, and keeps nothing.
#[tokio::test]
async fn a_dry_run_refuses_what_the_node_would_and_keeps_nothing() {
    use portico_server::cluster::node_checks::NodeChecks;
    use portico_server::storage::proposal::{Change, Decided, Proposal};
    let n = common::node_with(|o| o.limits.max_volumes = 1).await;
    let op = operator(&n).await;
    // The node's row: the first, and only, one.
    let node_id = 1;
    let create = |name: &str| Proposal {
        change: Change::Storage(
            serde_json::from_value(json!({"command": "create_volume", "name": name, "size": "4MiB"})).unwrap(),
        ),
        decided: Decided {
            at: "2026-12-01T10:00:00Z".into(),
            wwn: Some(format!("6{:031x}", 7)),
            serial: Some("PRT00000007".into()),
            node_id: Some(node_id),
            copies: Vec::new(),
            sealed_secret: None,
        },
    };

    // Accepted, and nothing of it kept.
    assert!(n.storage.dry_run(create("v1")).await.is_ok());
    assert_eq!(get(&n, &op, "/api/v1/volumes").await.1, json!([]));
    assert!(!n.dir.path().join("volumes/v1.img").exists(), "a dry run makes no image");

    // Files an earlier volume of the name left on this node.
    std::fs::create_dir_all(n.dir.path().join("volumes")).unwrap();
    std::fs::write(n.dir.path().join("volumes/v2.img"), b"old").unwrap();
    let e = n.storage.dry_run(create("v2")).await.unwrap_err();
    assert_eq!(e.status, 409, "{e:?}");
    assert!(e.field("name").is_some(), "{e:?}");

    // This node's cap on volumes.
    assert_eq!(post(&n, &op, "/api/v1/volumes", json!({"name": "v1", "size": "4MiB"})).await.0, StatusCode::CREATED);
    let e = n.storage.dry_run(create("v3")).await.unwrap_err();
    assert!(e.message.contains("--max-volumes"), "{e:?}");
    let (_, volumes) = get(&n, &op, "/api/v1/volumes").await;
    assert_eq!(volumes.as_array().unwrap().len(), 1, "{volumes}");
}
