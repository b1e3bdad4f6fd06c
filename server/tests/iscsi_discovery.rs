//! Discovery through the node service: CHAP on discovery sessions set with
//! `/api/v1/iscsi/discovery` and applied live, and the SendTargets rule —
//! an initiator is told only the targets it may reach. Checked with
//! libiscsi's `iscsi-ls` and with the engine's test initiator.

mod common;

use axum::http::{Method, StatusCode};
use common::storage::{free_port, get, group, iscsi_ls, operator, post, put};
use common::{node, TestNode};
use serde_json::{json, Value};
use target_engine::testkit::initiator::{Initiator, LoginOpts};

const DISCOVERY: &str = "/api/v1/iscsi/discovery";

/// The targets a discovery session of `initiator` is told, sorted.
async fn send_targets(port: u16, initiator: &str) -> Vec<String> {
    let mut ini = Initiator::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    ini.login(&LoginOpts { initiator, ..Default::default() }).await.expect("discovery login");
    let mut names: Vec<String> =
        ini.send_targets().await.into_iter().filter(|(k, _)| k == "TargetName").map(|(_, v)| v).collect();
    names.sort();
    names
}

/// The `Target:` lines of `iscsi-ls` run as `initiator` against the portal.
async fn listed_by_iscsi_ls(port: u16, initiator: &str) -> Vec<String> {
    let url = format!("iscsi://127.0.0.1:{port}");
    let (ok, text) = iscsi_ls(&["-i", initiator, &url], &[]).await;
    println!("iscsi-ls -i {initiator} {url}\n{text}");
    assert!(ok, "{text}");
    text.lines().filter(|l| l.starts_with("Target:")).map(str::to_string).collect()
}

async fn chap_user(n: &TestNode, op: &str, name: &str, secret: &str) {
    let (s, body) = post(n, op, "/api/v1/chap-users", json!({"name": name, "secret": secret})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn discovery_chap_is_set_through_the_api_and_applied_live() {
    let n = node().await;
    let op = operator(&n).await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let port = free_port();
    let portal = format!("127.0.0.1:{port}");
    chap_user(&n, &op, "disc", "discsecret12").await;
    chap_user(&n, &op, "portico", "portico-back1").await;
    let iqn = group(&n, &op, "g", &portal, json!({})).await;

    // Open by default, readable by viewers, changed by operators only.
    let (s, d) = get(&n, &viewer, DISCOVERY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d, json!({"chap": {"mode": "none", "user": null, "mutual_user": null}}));
    assert_eq!(n.send(Method::GET, DISCOVERY, None, None).await.status, StatusCode::UNAUTHORIZED);
    let one_way = json!({"chap": {"mode": "one-way", "user": "disc"}});
    assert_eq!(put(&n, &viewer, DISCOVERY, one_way.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(n.send(Method::PUT, DISCOVERY, None, Some(one_way.clone())).await.status, StatusCode::UNAUTHORIZED);
    let open = format!("iscsi://{portal}");
    let (ok, text) = iscsi_ls(&[&open], &[]).await;
    println!("discovery open, no credentials: iscsi-ls {open}\n{text}");
    assert!(ok && text.contains(&iqn), "{text}");

    // Incomplete settings are refused per field.
    let (s, e) = put(&n, &op, DISCOVERY, json!({"chap": {"mode": "one-way"}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["fields"]["chap.user"].is_string(), "{e}");
    let (s, e) = put(&n, &op, DISCOVERY, json!({"chap": {"mode": "one-way", "user": "nobody"}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (s, e) = put(&n, &op, DISCOVERY, json!({"chap": {"mode": "mutual", "user": "disc"}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["fields"]["chap.mutual_user"].is_string(), "{e}");

    // One-way: without credentials or with a wrong secret refused, with the right one listed.
    let (s, d) = put(&n, &op, DISCOVERY, one_way).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["chap"]["user"], "disc");
    assert!(!d.to_string().contains("discsecret12"), "the secret is never returned");
    let right = format!("iscsi://disc%discsecret12@{portal}");
    let wrong = format!("iscsi://disc%wrongsecret1@{portal}");
    for (url, listed) in [(&open, false), (&wrong, false), (&right, true)] {
        let (ok, text) = iscsi_ls(&[url], &[]).await;
        println!("discovery one-way: iscsi-ls {url}\n{text}");
        assert_eq!(ok && text.contains(&format!("Target:{iqn} Portal:{portal},")), listed, "{url}: {text}");
    }

    // A CHAP user discovery uses cannot be deleted.
    let r = n.send(Method::DELETE, "/api/v1/chap-users/disc", Some(&op), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("discovery"), "{}", r.body);
    let (_, users) = get(&n, &op, "/api/v1/chap-users").await;
    let disc = users.as_array().unwrap().iter().find(|u| u["name"] == "disc").unwrap();
    assert_eq!(disc["used_by"], json!(["discovery"]));
    assert!(!users.to_string().contains("discsecret12"));

    // Mutual: the target answers as `portico`, and initiators check it.
    let (s, d) =
        put(&n, &op, DISCOVERY, json!({"chap": {"mode": "mutual", "user": "disc", "mutual_user": "portico"}})).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert!(!d.to_string().contains("portico-back1"));
    let target_right =
        [("LIBISCSI_CHAP_TARGET_USERNAME", "portico"), ("LIBISCSI_CHAP_TARGET_PASSWORD", "portico-back1")];
    let target_wrong =
        [("LIBISCSI_CHAP_TARGET_USERNAME", "portico"), ("LIBISCSI_CHAP_TARGET_PASSWORD", "not-the-one12")];
    for (env, listed) in [(&[][..], false), (&target_wrong[..], false), (&target_right[..], true)] {
        let (ok, text) = iscsi_ls(&[&right], env).await;
        println!(
            "discovery mutual, expecting the target's secret {:?}: iscsi-ls {right}\n{text}",
            env.get(1).map(|e| e.1)
        );
        assert_eq!(ok && text.contains(&iqn), listed, "{env:?}: {text}");
    }
    let addr = portal.parse().unwrap();
    let mut ini = Initiator::connect(addr).await;
    let opts = LoginOpts {
        initiator: "iqn.2026-11.test.portico:init",
        chap: Some(("disc", "discsecret12")),
        mutual: Some(("portico", "portico-back1")),
        ..Default::default()
    };
    ini.login(&opts).await.expect("the target proves the mutual secret (the test initiator checks CHAP_R)");
    assert!(ini.send_targets().await.contains(&("TargetName".to_string(), iqn.clone())));
    // An initiator expecting another target secret rejects the target's answer.
    let checked = tokio::spawn(async move {
        let mut ini = Initiator::connect(addr).await;
        let opts = LoginOpts {
            initiator: "iqn.2026-11.test.portico:init",
            chap: Some(("disc", "discsecret12")),
            mutual: Some(("portico", "not-the-one12")),
            ..Default::default()
        };
        ini.login(&opts).await
    })
    .await;
    assert!(checked.is_err_and(|e| e.is_panic()), "the test initiator refuses a target that proves another secret");

    // Open again, live.
    let (s, _) = put(&n, &op, DISCOVERY, json!({"chap": {"mode": "none"}})).await;
    assert_eq!(s, StatusCode::OK);
    let (ok, text) = iscsi_ls(&[&open], &[]).await;
    assert!(ok && text.contains(&iqn), "{text}");
    assert_eq!(n.send(Method::DELETE, "/api/v1/chap-users/disc", Some(&op), None).await.status, StatusCode::NO_CONTENT);

    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "discovery.update" && e["result"] == "success"));
    assert!(audit.iter().any(|e| e["action"] == "discovery.update" && e["result"] == "denied"));
    assert!(audit.iter().all(|e| !e.to_string().contains("secret1") && !e.to_string().contains("back1")));
}

/// Names of `iqns` for the group names given, sorted.
fn targets(all: &[(&str, String)], groups: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = all.iter().filter(|(g, _)| groups.contains(g)).map(|(_, iqn)| iqn.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn send_targets_lists_only_the_targets_each_initiator_may_reach() {
    let n = node().await;
    let op = operator(&n).await;
    let port = free_port();
    let portal = format!("127.0.0.1:{port}");
    const A: &str = "iqn.2026-11.test.portico:host-a";
    const B: &str = "iqn.2026-11.test.portico:host-b";
    const C: &str = "iqn.2026-11.test.portico:host-c";
    chap_user(&n, &op, "grp", "groupsecret1").await;
    let acl_on = || json!({"acl_enabled": true});
    let layout: [(&str, Value, &[&str]); 6] = [
        ("open", json!({}), &[]),
        ("chap", json!({"chap": {"mode": "one-way", "user": "grp"}}), &[]),
        ("only-a", acl_on(), &[A]),
        ("only-b", acl_on(), &[B]),
        ("both", acl_on(), &[A, B]),
        ("nobody", acl_on(), &[]),
    ];
    let mut all = Vec::new();
    for (name, extra, initiators) in layout {
        let iqn = group(&n, &op, name, &portal, extra).await;
        for initiator in initiators {
            let path = format!("/api/v1/target-groups/{name}/acl");
            let (s, body) = post(&n, &op, &path, json!({"initiator": initiator})).await;
            assert_eq!(s, StatusCode::CREATED, "{body}");
        }
        all.push((name, iqn));
    }

    // A group with ACL on is listed only to its ACL's initiators; a group
    // that requires CHAP is listed to everyone (RFC 7143 lets SendTargets
    // list targets the initiator must still authenticate to).
    assert_eq!(send_targets(port, A).await, targets(&all, &["open", "chap", "only-a", "both"]));
    assert_eq!(send_targets(port, B).await, targets(&all, &["open", "chap", "only-b", "both"]));
    assert_eq!(send_targets(port, C).await, targets(&all, &["open", "chap"]));

    // The same through libiscsi, each target with its portal.
    for (initiator, groups) in
        [(A, &["open", "chap", "only-a", "both"][..]), (B, &["open", "chap", "only-b", "both"][..])]
    {
        let mut lines = listed_by_iscsi_ls(port, initiator).await;
        lines.sort();
        let mut want: Vec<String> =
            targets(&all, groups).iter().map(|iqn| format!("Target:{iqn} Portal:{portal},")).collect();
        want.sort();
        assert_eq!(lines.len(), want.len(), "{lines:?}");
        for (line, prefix) in lines.iter().zip(&want) {
            assert!(line.starts_with(prefix), "{line} / {prefix}");
        }
    }

    // A change of an ACL changes the answer at once.
    let (s, body) = post(&n, &op, "/api/v1/target-groups/only-a/acl", json!({"initiator": B})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(send_targets(port, B).await, targets(&all, &["open", "chap", "only-a", "only-b", "both"]));
    let r = n.send(Method::PATCH, "/api/v1/target-groups/open", Some(&op), Some(json!({"acl_enabled": true}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(send_targets(port, C).await, targets(&all, &["chap"]));
}
