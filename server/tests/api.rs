//! HTTP-level tests of the REST API: login, roles (401/403), lockout, the
//! last-admin rule, API tokens and the audit log. Each test runs a fresh
//! node (its own SQLite database) and sends real HTTP requests through the
//! same router `portico serve` uses.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{node, ADMIN_PASSWORD};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn anonymous_requests_get_401_with_a_json_error() {
    let n = node().await;
    for path in ["/api/v1/users", "/api/v1/me", "/api/v1/audit", "/api/v1/tokens", "/api/v1/overview"] {
        let r = n.send(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.body["status"], 401);
        assert!(r.body["message"].as_str().unwrap().len() > 5);
    }
    let r = n.send(Method::GET, "/api/v1/users", Some("portico_session=forged"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = n.send(Method::GET, "/api/v1/users", Some("ptk_forged"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_me_reports_the_role() {
    let n = node().await;
    let r = n.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"username": "admin", "role": "admin"}));
    let cookie = r.set_cookie.unwrap();
    assert!(cookie.starts_with("portico_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    let me = n.send(Method::GET, "/api/v1/me", Some(session), None).await;
    assert_eq!(me.body, json!({"username": "admin", "role": "admin"}));

    let out = n.send(Method::POST, "/api/v1/logout", Some(session), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    let me = n.send(Method::GET, "/api/v1/me", Some(session), None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "the session ends at logout");
}

#[tokio::test]
async fn wrong_passwords_and_malformed_bodies_are_clear_errors() {
    let n = node().await;
    let r = n.login("admin", "not-the-password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "Wrong user name or password.");
    let r = n.login("nobody", "whatever-password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "Wrong user name or password.", "unknown users look the same");
    let r = n.send(Method::POST, "/api/v1/login", None, Some(json!({"username": "admin"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["status"], 422);
    let req = Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"user"))
        .unwrap();
    let resp = n.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let r = n.send(Method::GET, "/api/v1/no-such-route", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn roles_are_checked_on_the_server() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vera", "viewer").await;
    let operator = n.create_user(&admin, "otto", "operator").await;

    let new_user = json!({"username": "eve", "password": "eve-password", "role": "admin"});
    for (who, auth) in [("viewer", &viewer), ("operator", &operator)] {
        let r = n.send(Method::POST, "/api/v1/users", Some(auth), Some(new_user.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who} creating a user");
        assert_eq!(r.body["status"], 403);
        let r = n.send(Method::GET, "/api/v1/users", Some(auth), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who} listing users");
        let r = n.send(Method::PATCH, "/api/v1/users/admin", Some(auth), Some(json!({"role": "viewer"}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who} demoting the admin");
        let r = n.send(Method::DELETE, "/api/v1/users/admin", Some(auth), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who} deleting the admin");
        // Everyone may read the overview and the audit log.
        assert_eq!(n.send(Method::GET, "/api/v1/overview", Some(auth), None).await.status, StatusCode::OK);
        assert_eq!(n.send(Method::GET, "/api/v1/audit", Some(auth), None).await.status, StatusCode::OK);
    }
    let r = n.send(Method::POST, "/api/v1/users", Some(&admin), Some(new_user)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["username"], "eve");
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());

    let denied: Vec<_> = n.audit(&admin).await.into_iter().filter(|e| e["result"] == "denied").collect();
    assert!(denied.iter().any(|e| e["user"] == "vera" && e["action"] == "user.create"), "refusals are audited");
}

#[tokio::test]
async fn user_validation_and_conflicts() {
    let n = node().await;
    let admin = n.admin().await;
    let r = n
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "Bad Name", "password": "short", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["fields"]["username"].is_string());
    assert!(r.body["fields"]["password"].is_string());
    let r = n
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "ok", "password": "long-enough", "role": "root"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown role: {:?}", r.body);
    n.create_user(&admin, "dora", "viewer").await;
    let r = n
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "dora", "password": "long-enough", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = n.send(Method::PATCH, "/api/v1/users/ghost", Some(&admin), Some(json!({"enabled": false}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_removed_disabled_or_demoted() {
    let n = node().await;
    let admin = n.admin().await;
    for (method, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"enabled": false}))),
        (Method::PATCH, Some(json!({"role": "operator"}))),
    ] {
        let r = n.send(method.clone(), "/api/v1/users/admin", Some(&admin), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method}: {:?}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains("last enabled administrator"));
    }
    // With a second admin, the first may go.
    let second = n.create_user(&admin, "ada", "admin").await;
    let r = n.send(Method::PATCH, "/api/v1/users/admin", Some(&second), Some(json!({"role": "viewer"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "viewer");
    // Now ada is the last admin.
    let r = n.send(Method::DELETE, "/api/v1/users/ada", Some(&second), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // A disabled user's sessions end.
    let r = n.send(Method::PATCH, "/api/v1/users/admin", Some(&second), Some(json!({"enabled": false}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(n.send(Method::GET, "/api/v1/me", Some(&admin), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(n.login("admin", ADMIN_PASSWORD).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account_and_the_audit_shows_it() {
    let n = node().await;
    let mut last = StatusCode::OK;
    for i in 1..=5 {
        let r = n.login("admin", "wrong-password").await;
        last = r.status;
        if i < 5 {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "failure {i}");
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "the fifth failure locks");
    // Locked: even the right password is refused for now.
    let r = n.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body["message"].as_str().unwrap().contains("Try again"));

    // The audit trail of a lockout, seen by an admin who is not locked out.
    let n2 = node().await;
    let admin = n2.admin().await;
    let vera = n2.create_user(&admin, "vera", "viewer").await;
    drop(vera);
    for _ in 0..5 {
        n2.login("vera", "wrong-password").await;
    }
    let audit = n2.audit(&admin).await;
    let lock = audit.iter().find(|e| e["action"] == "login.lockout").expect("a lockout entry");
    assert_eq!(lock["user"], "vera");
    assert_eq!(lock["result"], "denied");
    let failures =
        audit.iter().filter(|e| e["action"] == "login" && e["result"] == "failure" && e["user"] == "vera").count();
    assert_eq!(failures, 5);
    assert!(audit.iter().all(|e| !e.to_string().contains("wrong-password")), "passwords never reach the audit log");
}

#[tokio::test]
async fn api_tokens_act_as_their_owner_and_can_be_revoked() {
    let n = node().await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;

    let r = n.send(Method::POST, "/api/v1/tokens", Some(&viewer), Some(json!({"name": "monitoring"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.body["token"].as_str().unwrap().to_string();
    let id = r.body["id"].as_i64().unwrap();
    assert!(token.starts_with("ptk_"));

    let me = n.send(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(me.body, json!({"username": "vic", "role": "viewer"}));
    let r = n
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&token),
            Some(json!({"username": "x", "password": "xxxxxxxxx", "role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a viewer's token cannot change anything");

    let list = n.send(Method::GET, "/api/v1/tokens", Some(&viewer), None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(&token), "secrets are never listed");
    assert!(list.body[0]["last_used_at"].is_string());

    let r = n.send(Method::POST, "/api/v1/tokens", Some(&viewer), Some(json!({"name": "  "}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = n.send(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&viewer), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(n.send(Method::GET, "/api/v1/me", Some(&token), None).await.status, StatusCode::UNAUTHORIZED);
    let r = n.send(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&viewer), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "token.create" && e["user"] == "vic"));
    assert!(audit.iter().any(|e| e["action"] == "token.revoke"));
    assert!(audit.iter().all(|e| !e.to_string().contains(&token)));
}

#[tokio::test]
async fn the_audit_log_is_newest_first_and_paginated() {
    let n = node().await;
    let admin = n.admin().await;
    for i in 0..5 {
        n.create_user(&admin, &format!("user{i}"), "viewer").await;
    }
    let r = n.send(Method::GET, "/api/v1/audit?page=1&per_page=3", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(r.body["total"].as_u64().unwrap() >= 11);
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for key in ["time", "user", "action", "object", "result"] {
        assert!(entries[0].get(key).is_some(), "{key}");
    }
    let page2 = n.send(Method::GET, "/api/v1/audit?page=2&per_page=3", Some(&admin), None).await;
    assert!(page2.body["entries"][0]["id"].as_i64().unwrap() < ids[2]);
    let bad = n.send(Method::GET, "/api/v1/audit?page=x", Some(&admin), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let n = node().await;
    let r = n.send(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/login",
        "/api/v1/logout",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/users/{username}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/audit",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(r.body["components"]["schemas"]["UserView"].is_object());
    for p in
        ["/api/v1/iscsi/discovery", "/api/v1/target-groups/{name}/session", "/api/v1/target-groups/{name}/privileges"]
    {
        assert!(
            paths[p]["get"].is_object() && paths[p]["put"].is_object(),
            "{p}: {}",
            paths.get(p).cloned().unwrap_or_default()
        );
    }
    assert!(paths["/api/v1/target-groups/{name}/paths"]["get"].is_object(), "the live path states");
    for schema in
        ["DiscoverySettings", "SessionSettings", "SessionView", "PrivilegeSettings", "PrivilegesView", "TargetPaths"]
    {
        assert!(r.body["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

#[tokio::test]
async fn pages_render_on_the_server_and_anonymous_visitors_are_redirected() {
    let n = node().await;
    let req = Request::get("/").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let resp = n.app.clone().oneshot(req).await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(resp.headers()[header::LOCATION], "/login");
    let req = Request::get("/login").body(Body::empty()).unwrap();
    let resp = n.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("<form") && html.contains("name=\"password\""), "server-rendered login form");
}
