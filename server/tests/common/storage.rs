//! Helpers of the block storage tests: JSON calls, an operator's session, a
//! free iSCSI port, a target group served on it, and libiscsi's `iscsi-ls`.

use std::process::Command as Process;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::TestNode;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn post(n: &TestNode, auth: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = n.send(Method::POST, path, Some(auth), Some(body)).await;
    (r.status, r.body)
}

pub async fn put(n: &TestNode, auth: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = n.send(Method::PUT, path, Some(auth), Some(body)).await;
    (r.status, r.body)
}

pub async fn patch(n: &TestNode, auth: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let r = n.send(Method::PATCH, path, Some(auth), Some(body)).await;
    (r.status, r.body)
}

pub async fn get(n: &TestNode, auth: &str, path: &str) -> (StatusCode, Value) {
    let r = n.send(Method::GET, path, Some(auth), None).await;
    (r.status, r.body)
}

/// An operator's session on a fresh node.
pub async fn operator(n: &TestNode) -> String {
    let admin = n.admin().await;
    n.create_user(&admin, "opal", "operator").await
}

/// Creates the group `name` with one target on the test node at `portal`
/// and `extra` merged into the request; returns the target's IQN.
pub async fn group(n: &TestNode, op: &str, name: &str, portal: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "targets": [{"node": "test-node", "portals": [portal]}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, g) = post(n, op, "/api/v1/target-groups", body).await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    g["targets"][0]["iqn"].as_str().unwrap().to_string()
}

/// Runs `iscsi-ls` with `args` and extra environment; whether it succeeded,
/// and what it printed (stdout, then stderr).
pub async fn iscsi_ls(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Process::new("iscsi-ls");
    cmd.args(args).envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || {
        cmd.output().expect("iscsi-ls (Debian package libiscsi-bin) is needed; ./scripts/test.sh installs it")
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
