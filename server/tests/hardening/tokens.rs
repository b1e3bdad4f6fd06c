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

/// Issue 30, finding 5: a token may be read-only (it acts as a viewer,
/// whatever its owner's role) and may expire (then it is refused with 401
/// and says so); the list shows both, and a bad expiry is a field error.
#[tokio::test]
async fn a_read_only_token_only_reads_and_an_expired_token_is_refused() {
    let n = node().await;
    let admin = n.admin().await;
    let body = json!({"name": "monitoring", "read_only": true, "expires_in_days": 30});
    let r = n.send(Method::POST, "/api/v1/tokens", Some(&admin), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["read_only"], true);
    let read_only = r.body["token"].as_str().unwrap().to_string();
    let me = n.send(Method::GET, "/api/v1/me", Some(&read_only), None).await;
    assert_eq!((me.status, me.body["role"].as_str()), (StatusCode::OK, Some("viewer")), "{}", me.body);
    assert_eq!(n.send(Method::GET, "/api/v1/volumes", Some(&read_only), None).await.status, StatusCode::OK);
    let write = json!({"name": "v1", "size": "1MiB"});
    let refused = n.send(Method::POST, "/api/v1/volumes", Some(&read_only), Some(write.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let user = json!({"username": "x", "password": "long-enough-pass", "role": "admin"});
    let refused = n.send(Method::POST, "/api/v1/users", Some(&read_only), Some(user)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let full = token(&n, &admin, "full").await;
    assert_eq!(n.send(Method::POST, "/api/v1/volumes", Some(&full), Some(write)).await.status, StatusCode::CREATED);

    let listed = n.send(Method::GET, "/api/v1/tokens", Some(&admin), None).await.body;
    let monitoring = listed.as_array().unwrap().iter().find(|t| t["name"] == "monitoring").unwrap().clone();
    assert_eq!(monitoring["read_only"], true);
    let expires = monitoring["expires_at"].as_str().unwrap().to_string();
    let days_from_now = |days: i64| {
        let at = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        at.format(&time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(days_from_now(29) < expires && expires < days_from_now(31), "{expires}");
    let full_view = listed.as_array().unwrap().iter().find(|t| t["name"] == "full").unwrap().clone();
    assert_eq!((full_view["read_only"].as_bool(), full_view["expires_at"].is_null()), (Some(false), true));

    for days in [0, 3651] {
        let bad = json!({"name": "bad", "expires_in_days": days});
        let r = n.send(Method::POST, "/api/v1/tokens", Some(&admin), Some(bad)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body["fields"]["expires_in_days"].is_string(), "{}", r.body);
    }

    // Its time comes: the token is refused from then on.
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", n.dir.path().join("portico.db").display())).await.unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00Z' WHERE name = 'monitoring'")
        .execute(&db)
        .await
        .unwrap();
    let r = n.send(Method::GET, "/api/v1/me", Some(&read_only), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("expired"), "{}", r.body);
}
