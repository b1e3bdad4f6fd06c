//! Item 9: a reset password or a disabled account revokes the user's API
//! tokens as well as the sessions, and a token cannot mint tokens.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::{node, TestNode};

async fn token(n: &TestNode, session: &str, name: &str) -> String {
    let r = n.send(Method::POST, "/api/v1/tokens", Some(session), Some(json!({"name": name}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["token"].as_str().unwrap().to_string()
}

async fn works(n: &TestNode, token: &str) -> bool {
    n.send(Method::GET, "/api/v1/me", Some(token), None).await.status == StatusCode::OK
}

#[tokio::test]
async fn resetting_a_password_revokes_the_users_tokens() {
    let n = node().await;
    let admin = n.admin().await;
    let ops = n.create_user(&admin, "ops", "operator").await;
    let t = token(&n, &ops, "script").await;
    assert!(works(&n, &t).await);
    let r = n.send(Method::PATCH, "/api/v1/users/ops", Some(&admin), Some(json!({"password": "brand-new-pass"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!works(&n, &t).await, "the token ends with the old password");
    assert_eq!(n.send(Method::GET, "/api/v1/me", Some(&ops), None).await.status, StatusCode::UNAUTHORIZED);
    let listed = n.send(Method::GET, "/api/v1/tokens", Some(&admin), None).await.body;
    assert!(listed.as_array().unwrap().iter().all(|t| t["owner"] != "ops"), "{listed}");
    let audit = n.audit(&admin).await;
    let entry = audit.iter().find(|e| e["action"] == "user.update" && e["object"] == "user/ops").unwrap();
    assert!(entry["detail"].as_str().unwrap().contains("API tokens revoked"), "{entry}");
}

#[tokio::test]
async fn disabling_a_user_revokes_the_tokens_for_good() {
    let n = node().await;
    let admin = n.admin().await;
    let ops = n.create_user(&admin, "ops", "operator").await;
    let t = token(&n, &ops, "script").await;
    let off = n.send(Method::PATCH, "/api/v1/users/ops", Some(&admin), Some(json!({"enabled": false}))).await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(!works(&n, &t).await);
    let on = n.send(Method::PATCH, "/api/v1/users/ops", Some(&admin), Some(json!({"enabled": true}))).await;
    assert_eq!(on.status, StatusCode::OK);
    assert!(!works(&n, &t).await, "enabling the account again does not bring the token back");
}

#[tokio::test]
async fn a_token_cannot_mint_tokens() {
    let n = node().await;
    let admin = n.admin().await;
    let t = token(&n, &admin, "ci").await;
    let r = n.send(Method::POST, "/api/v1/tokens", Some(&t), Some(json!({"name": "child"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("cannot create tokens"));
    let listed = n.send(Method::GET, "/api/v1/tokens", Some(&t), None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1, "only the one the session made: {listed}");
    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "token.create" && e["result"] == "denied"));
}
