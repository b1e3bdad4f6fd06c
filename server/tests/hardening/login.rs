//! Item 8: login abuse, over real HTTP from distinct loopback addresses.
//! The per-address limits run before any hashing, argon2 work is capped,
//! a locked user name lets the owner in from a clean address, refusals are
//! audited as counts, and behind a trusted proxy the forwarded client is
//! the one counted.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::http::{Call, HttpReply};
use crate::common::{node, node_with, TestNode, ADMIN_PASSWORD};

fn login(from: &str, password: &str) -> Call<'static> {
    Call::new(Method::POST, "/api/v1/login").from(from).json(json!({"username": "admin", "password": password}))
}

/// Wrong passwords from `from` until the user name is locked (the fifth).
async fn lock_admin(addr: SocketAddr, from: &str) {
    for i in 1..=5 {
        let r = login(from, "wrong-password").send(addr).await;
        let expected = if i < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(r.status, expected, "failure {i}: {}", r.body);
    }
}

async fn audit(n: &TestNode) -> Vec<Value> {
    let admin = n.admin().await;
    n.audit(&admin).await
}

#[tokio::test]
async fn a_locked_user_name_lets_the_owner_in_from_a_clean_address() {
    let n = node().await;
    let addr = n.serve().await;
    lock_admin(addr, "127.0.0.66").await;
    let r = login("127.0.0.66", ADMIN_PASSWORD).send(addr).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "the guessing address is kept out: {}", r.body);
    assert!(r.message().contains("Try again"), "{}", r.body);

    let owner = login("127.0.0.5", ADMIN_PASSWORD).send(addr).await;
    assert_eq!(owner.status, StatusCode::OK, "the administrator from another machine: {}", owner.body);
    let wrong = login("127.0.0.6", "wrong-password").send(addr).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "a clean address gets its password checked");

    let entries = audit(&n).await;
    let lock = entries.iter().find(|e| e["action"] == "login.lockout").expect("the lock is audited");
    assert_eq!(lock["source"], "127.0.0.66");
}

#[tokio::test]
async fn the_per_address_limit_is_checked_before_hashing() {
    let n = node().await;
    let addr = n.serve().await;
    let rush: Vec<_> = (0..6).map(|_| tokio::spawn(login("127.0.0.77", "wrong-password").send(addr))).collect();
    let mut statuses = Vec::new();
    for r in rush {
        statuses.push(r.await.unwrap().status);
    }
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (1, 5), "one password checked at a time per address: {statuses:?}");
    let entries = audit(&n).await;
    let failures = entries.iter().filter(|e| e["action"] == "login" && e["source"] == "127.0.0.77").count();
    assert_eq!(failures, 1, "only the checked attempt has a row of its own");
}

#[tokio::test]
async fn argon2_work_is_capped() {
    let n = node_with(|o| {
        o.settings.hash_concurrency = 1;
        o.settings.hash_queue = 1;
    })
    .await;
    let addr = n.serve().await;
    let rush: Vec<_> =
        (10..18).map(|i| tokio::spawn(login(&format!("127.0.0.{i}"), "wrong-password").send(addr))).collect();
    let mut replies: Vec<HttpReply> = Vec::new();
    for r in rush {
        replies.push(r.await.unwrap());
    }
    let hashed = replies.iter().filter(|r| r.status == StatusCode::UNAUTHORIZED).count();
    let busy: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(hashed <= 2 && hashed + busy.len() == 8, "{hashed} hashed, {} busy", busy.len());
    assert!(busy[0].message().contains("busy"), "{}", busy[0].body);
    // The cap is a turn, not a lock: afterwards logins work again.
    assert_eq!(login("127.0.0.30", ADMIN_PASSWORD).send(addr).await.status, StatusCode::OK);
}

/// The number of refused logins the `login.refused` entries count.
fn refused_count(entries: &[Value], source: &str) -> (usize, u64) {
    let rows: Vec<&Value> =
        entries.iter().filter(|e| e["action"] == "login.refused" && e["source"] == source).collect();
    let total =
        rows.iter().map(|e| e["detail"].as_str().unwrap().split(' ').next().unwrap().parse::<u64>().unwrap()).sum();
    (rows.len(), total)
}

#[tokio::test]
async fn repeated_refusals_are_audited_as_one_counted_entry() {
    let n = node_with(|o| o.settings.refusal_audit_period = Duration::from_millis(300)).await;
    let addr = n.serve().await;
    lock_admin(addr, "127.0.0.88").await;
    for _ in 0..30 {
        let r = login("127.0.0.88", "still-guessing").send(addr).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let entries = audit(&n).await;
    let (rows, total) = refused_count(&entries, "127.0.0.88");
    assert_eq!(total, 30, "every refusal is counted");
    assert!(rows <= 3, "in a few entries, not one per request: {rows}");
    let per_request = entries.iter().filter(|e| e["action"] == "login" && e["source"] == "127.0.0.88").count();
    assert_eq!(per_request, 5, "rows of their own only for the checked passwords");
    assert!(entries.iter().all(|e| !e.to_string().contains("still-guessing")), "no password in the log");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let n = node_with(|o| o.trusted_proxies = vec!["127.0.0.9".parse().unwrap()]).await;
    let addr = n.serve().await;
    let via_proxy = |client: &str, password: &str| {
        login("127.0.0.9", password).header("x-forwarded-for", format!("203.0.113.50, {client}"))
    };
    for i in 1..=5 {
        let r = via_proxy("198.51.100.7", "wrong-password").send(addr).await;
        assert_eq!(r.status == StatusCode::TOO_MANY_REQUESTS, i == 5, "failure {i}: {}", r.body);
    }
    // Another client behind the same proxy is a clean source.
    let r = via_proxy("198.51.100.8", ADMIN_PASSWORD).send(addr).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A client that writes the header itself is counted as what it is.
    let direct = login("127.0.0.21", "wrong-password").header("x-forwarded-for", "198.51.100.8").send(addr).await;
    assert_eq!(direct.status, StatusCode::UNAUTHORIZED);

    let entries = audit(&n).await;
    let sources: Vec<&str> =
        entries.iter().filter(|e| e["action"] == "login").filter_map(|e| e["source"].as_str()).collect();
    assert!(sources.contains(&"198.51.100.7") && sources.contains(&"127.0.0.21"), "{sources:?}");
    assert!(!sources.contains(&"127.0.0.9") && !sources.contains(&"203.0.113.50"), "{sources:?}");

    // The proxy also says which host the browser addressed.
    let cookie = r.set_cookie().unwrap().split(';').next().unwrap().to_string();
    let create = |from: &str| {
        Call::new(Method::POST, "/api/v1/volumes")
            .from(from)
            .header("cookie", cookie.clone())
            .header("origin", "http://san.example.com")
            .header("x-forwarded-host", "san.example.com")
            .json(json!({"name": format!("v{}", from.replace('.', "-")), "size": "1MiB"}))
    };
    assert_eq!(create("127.0.0.9").send(addr).await.status, StatusCode::CREATED);
    assert_eq!(create("127.0.0.21").send(addr).await.status, StatusCode::FORBIDDEN, "not from a trusted proxy");
}
