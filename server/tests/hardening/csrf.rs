//! Item 7: state-changing requests from another origin are refused, over
//! real HTTP, for the REST API and the server functions alike; server
//! functions take JSON only; over TLS the cookie is `__Host-` prefixed.

use std::net::SocketAddr;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::http::Call;
use crate::common::{node, node_with, TestNode, ADMIN_PASSWORD};

/// Logs in over HTTP from the node's own origin; returns the `Cookie` value.
async fn log_in(addr: SocketAddr) -> String {
    let r = Call::new(Method::POST, "/api/v1/login")
        .header("origin", format!("http://{addr}"))
        .json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send(addr)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.set_cookie().unwrap().split(';').next().unwrap().to_string()
}

fn create_volume(name: &str) -> Call<'static> {
    Call::new(Method::POST, "/api/v1/volumes").json(json!({"name": name, "size": "1MiB"}))
}

async fn volume_exists(addr: SocketAddr, cookie: &str, name: &str) -> bool {
    let path = format!("/api/v1/volumes/{name}");
    Call::new(Method::GET, &path).header("cookie", cookie).send(addr).await.status == StatusCode::OK
}

#[tokio::test]
async fn a_change_from_a_page_on_another_port_is_refused() {
    let n = node().await;
    let addr = n.serve().await;
    let cookie = log_in(addr).await;
    let other = format!("http://127.0.0.1:{}", addr.port() + 1);

    let r = create_volume("forged").header("cookie", &cookie).header("origin", &other).send(addr).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.message().contains("another origin"), "{}", r.body);
    let r = create_volume("forged")
        .header("cookie", &cookie)
        .header("origin", &other)
        .header("sec-fetch-site", "same-site")
        .send(addr)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = create_volume("forged").header("cookie", &cookie).header("origin", "null").send(addr).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = Call::new(Method::DELETE, "/api/v1/users/admin")
        .header("cookie", &cookie)
        .header("origin", &other)
        .send(addr)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "every method but GET/HEAD/OPTIONS: {}", r.body);
    assert!(!volume_exists(addr, &cookie, "forged").await);

    // The dashboard's own origin, and a script that sends no Origin, pass.
    let own = create_volume("mine")
        .header("cookie", &cookie)
        .header("origin", format!("http://{addr}"))
        .header("sec-fetch-site", "same-origin")
        .send(addr)
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
    let script = create_volume("scripted").header("cookie", &cookie).send(addr).await;
    assert_eq!(script.status, StatusCode::CREATED, "{}", script.body);
}

#[tokio::test]
async fn a_login_from_another_origin_is_refused() {
    let n = node().await;
    let addr = n.serve().await;
    let r = Call::new(Method::POST, "/api/v1/login")
        .header("origin", "http://attacker.example")
        .json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send(addr)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.set_cookie().is_none());
}

#[tokio::test]
async fn server_functions_take_json_only_and_check_the_origin() {
    let n = node().await;
    let addr = n.serve().await;
    let cookie = log_in(addr).await;
    let own = format!("http://{addr}");
    let path = "/rpc/storage/volumes/create";

    let form = Call::new(Method::POST, path)
        .header("cookie", &cookie)
        .header("origin", &own)
        .body("application/x-www-form-urlencoded", "name=byform&size=1MiB&block_size=512")
        .send(addr)
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", form.body);
    let plain = Call::new(Method::POST, path)
        .header("cookie", &cookie)
        .body("text/plain", r#"{"name":"byplain","size":"1MiB","block_size":512}"#)
        .send(addr)
        .await;
    assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", plain.body);
    let args = json!({"name": "byjson", "size": "1MiB", "block_size": 512});
    let foreign = Call::new(Method::POST, path)
        .header("cookie", &cookie)
        .header("origin", format!("http://127.0.0.1:{}", addr.port() + 1))
        .json(args.clone())
        .send(addr)
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.body);
    let json =
        Call::new(Method::POST, path).header("cookie", &cookie).header("origin", &own).json(args).send(addr).await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.body);

    assert!(!volume_exists(addr, &cookie, "byform").await);
    assert!(!volume_exists(addr, &cookie, "byplain").await);
    assert!(volume_exists(addr, &cookie, "byjson").await);
}

/// A node behind a TLS-terminating proxy on 127.0.0.1, which reports
/// HTTPS with `X-Forwarded-Proto`.
async fn behind_a_tls_proxy() -> (TestNode, std::net::SocketAddr) {
    let n = node_with(|o| o.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let addr = n.serve().await;
    (n, addr)
}

#[tokio::test]
async fn over_tls_the_session_cookie_is_host_prefixed() {
    let (_n, addr) = behind_a_tls_proxy().await;
    let r = Call::new(Method::POST, "/api/v1/login")
        .header("x-forwarded-proto", "https")
        .json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send(addr)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let set = r.set_cookie().unwrap();
    assert!(set.starts_with("__Host-portico_session="), "{set}");
    assert!(set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"), "{set}");
    let pair = set.split(';').next().unwrap().to_string();
    let value = pair.split_once('=').unwrap().1.to_string();

    let me = |cookie: String, tls: bool| {
        let mut call = Call::new(Method::GET, "/api/v1/me").header("cookie", cookie);
        if tls {
            call = call.header("x-forwarded-proto", "https");
        }
        call.send(addr)
    };
    assert_eq!(me(pair.clone(), true).await.status, StatusCode::OK);
    // Over TLS a cookie without the prefix (one a sibling name could set) does not count.
    assert_eq!(me(format!("portico_session={value}"), true).await.status, StatusCode::UNAUTHORIZED);
    // Over plain HTTP the plain name is the session cookie.
    assert_eq!(me(pair, false).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me(format!("portico_session={value}"), false).await.status, StatusCode::OK);
}

/// Issue 30, finding 5: `X-Forwarded-Proto` from a client that is not a
/// trusted proxy is ignored (its request is plain HTTP, the cookie is not
/// the TLS one), and only a request that came over HTTPS gets
/// Strict-Transport-Security.
#[tokio::test]
async fn only_a_trusted_proxy_may_say_the_request_came_over_https() {
    let n = node().await;
    let addr = n.serve().await;
    let login = |addr| {
        Call::new(Method::POST, "/api/v1/login")
            .header("x-forwarded-proto", "https")
            .json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send(addr)
    };
    let r = login(addr).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let set = r.set_cookie().unwrap();
    assert!(set.starts_with("portico_session=") && !set.contains("Secure"), "{set}");
    assert!(r.headers.get("strict-transport-security").is_none());

    let (_n, addr) = behind_a_tls_proxy().await;
    let r = login(addr).await;
    assert!(r.set_cookie().unwrap().starts_with("__Host-portico_session="));
    assert_eq!(r.headers.get("strict-transport-security").unwrap(), "max-age=31536000");
}
