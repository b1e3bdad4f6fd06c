//! A target group's session parameters and privileges, and an ACL rule's
//! own CHAP and privileges, set through the API and checked over iSCSI with
//! the engine's test initiator (and libiscsi's `iscsi-ls`).

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::storage::{free_port, get, group, iscsi_ls, operator, patch, post, put};
use common::{node, TestNode};
use serde_json::{json, Value};
use target_engine::iscsi::pdu::op;
use target_engine::testkit::initiator::{parse_report_luns, report_luns, Initiator, LoginOpts, INITIATOR};

/// A group `g` at a free port with `volumes` attached as LUNs 0, 1, …; its
/// port and target IQN.
async fn served_group(n: &TestNode, op: &str, volumes: &[&str], extra: Value) -> (u16, String) {
    let port = free_port();
    let iqn = group(n, op, "g", &format!("127.0.0.1:{port}"), extra).await;
    for (lun, v) in volumes.iter().enumerate() {
        assert_eq!(post(n, op, "/api/v1/volumes", json!({"name": v, "size": "16MiB"})).await.0, StatusCode::CREATED);
        let (s, body) = post(n, op, "/api/v1/target-groups/g/luns", json!({"volume": v, "lun": lun})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    (port, iqn)
}

/// The offer an initiator makes that lets the target's limits decide.
const OFFER: [(&str, &str); 6] = [
    ("MaxBurstLength", "16776192"),
    ("FirstBurstLength", "16776192"),
    ("ImmediateData", "Yes"),
    ("InitialR2T", "No"),
    ("HeaderDigest", "None,CRC32C"),
    ("DataDigest", "CRC32C,None"),
];

async fn login(port: u16, iqn: &str, initiator: &str, chap: Option<(&str, &str)>) -> Result<Initiator, (u8, u8)> {
    let mut ini = Initiator::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let opts = LoginOpts { initiator, target: Some(iqn), chap, keys: OFFER.to_vec(), ..Default::default() };
    ini.login(&opts).await.map(|()| ini)
}

/// What a session negotiated, for the keys the target decides.
fn negotiated(ini: &Initiator) -> Vec<(String, String)> {
    let keys = [
        "MaxRecvDataSegmentLength",
        "MaxBurstLength",
        "FirstBurstLength",
        "ImmediateData",
        "InitialR2T",
        "HeaderDigest",
        "DataDigest",
    ];
    keys.iter().map(|k| (k.to_string(), ini.key(k).unwrap_or_else(|| panic!("{k} not negotiated")))).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn session_parameters_are_validated_and_reach_new_sessions_only() {
    let n = node().await;
    let op = operator(&n).await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let (port, iqn) = served_group(&n, &op, &["s"], json!({})).await;

    // The engine's defaults, nothing chosen.
    let (s, v) = get(&n, &viewer, "/api/v1/target-groups/g/session").await;
    assert_eq!(s, StatusCode::OK);
    let defaults = json!({"max_recv_data_segment_length": 262144, "max_burst_length": 1048576, "first_burst_length": 262144,
        "immediate_data": true, "initial_r2t": false, "header_digest": "either", "data_digest": "either",
        "nop_in_interval": 5, "nop_in_timeout": 10});
    assert_eq!(v["defaults"], defaults);
    assert_eq!(v["offered"], defaults);
    assert!(v["settings"].as_object().unwrap().values().all(Value::is_null), "{v}");

    // Wrong values: a 422 with a message for each setting, and nothing changes.
    let (s, e) = put(
        &n,
        &op,
        "/api/v1/target-groups/g/session",
        json!({"max_recv_data_segment_length": 100, "nop_in_timeout": 0, "first_burst_length": 99_999_999_999u64}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["fields"]["max_recv_data_segment_length"], "Must be between 512 and 1048576.");
    assert_eq!(e["fields"]["nop_in_timeout"], "Must be between 1 and 3600.");
    assert_eq!(e["fields"]["first_burst_length"], "Must be between 512 and 16777215.");
    let (s, e) = put(&n, &op, "/api/v1/target-groups/g/session", json!({"max_burst_length": 4096})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["fields"]["first_burst_length"].as_str().unwrap().contains("must not exceed max_burst_length"), "{e}");
    let (s, e) = put(&n, &op, "/api/v1/target-groups/g/session", json!({"max_burst": 4096})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "unknown settings are refused: {e}");
    assert_eq!(put(&n, &viewer, "/api/v1/target-groups/g/session", json!({})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&n, &op, "/api/v1/target-groups/g/session").await.1["offered"], defaults);

    // A session logged in now negotiates the defaults.
    let mut old = login(port, &iqn, INITIATOR, None).await.expect("login");
    let before = pairs(&[
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "1048576"),
        ("FirstBurstLength", "262144"),
        ("ImmediateData", "Yes"),
        ("InitialR2T", "No"),
        ("HeaderDigest", "None"),
        ("DataDigest", "CRC32C"),
    ]);
    assert_eq!(negotiated(&old), before);

    let chosen = json!({"max_recv_data_segment_length": 65536, "max_burst_length": 131072, "first_burst_length": 65536,
        "immediate_data": false, "initial_r2t": true, "header_digest": "crc32c", "data_digest": "none",
        "nop_in_interval": 1, "nop_in_timeout": 30});
    let (s, v) = put(&n, &op, "/api/v1/target-groups/g/session", chosen.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["settings"], chosen);
    assert_eq!(v["offered"], chosen);
    assert_eq!(get(&n, &op, "/api/v1/target-groups/g").await.1["session"]["offered"], chosen);

    // A new session gets them ...
    let mut new = login(port, &iqn, "iqn.2026-11.test.portico:second", None).await.expect("login");
    let after = pairs(&[
        ("MaxRecvDataSegmentLength", "65536"),
        ("MaxBurstLength", "131072"),
        ("FirstBurstLength", "65536"),
        ("ImmediateData", "No"),
        ("InitialR2T", "Yes"),
        ("HeaderDigest", "CRC32C"),
        ("DataDigest", "None"),
    ]);
    assert_eq!(negotiated(&new), after);
    println!("negotiated before the change: {before:?}\nnegotiated after the change: {after:?}");
    assert_eq!(new.command_ok(0, &[0u8; 6], 0, &[]).await.status, 0, "commands flow with header digests on");
    // ... and the session from before carries on with what it negotiated.
    assert_eq!(old.command_ok(0, &[0u8; 6], 0, &[]).await.status, 0, "the old session was not dropped");
    let sessions = n.engine.sessions().into_iter().filter(|s| !s.discovery).count();
    assert_eq!(sessions, 2);
    // The new session is pinged after one idle second (the default is five).
    let ping = new.recv_timeout(Duration::from_millis(3500)).await.expect("a NOP-In within 3.5 s");
    assert_eq!(ping.bhs.opcode(), op::NOP_IN);

    // Back to the defaults.
    let (s, v) = put(&n, &op, "/api/v1/target-groups/g/session", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["offered"], defaults);
    let third = login(port, &iqn, "iqn.2026-11.test.portico:third", None).await.expect("login");
    assert_eq!(negotiated(&third), before);
    let audit = n.audit(&admin).await;
    assert!(audit.iter().any(|e| e["action"] == "target-group.session"
        && e["detail"].as_str().is_some_and(|d| d.contains("header_digest crc32c"))));
}

/// TARGET COLD RESET as a task management function: its response code.
async fn cold_reset(ini: &mut Initiator) -> u8 {
    ini.tmf(7, 0, 0).await
}

/// The TPGS field of standard INQUIRY data: 3 explicit and implicit ALUA, 1 implicit only.
async fn tpgs(ini: &mut Initiator) -> u8 {
    let r = ini.command_ok(0, &[0x12, 0, 0, 0, 96, 0], 96, &[]).await;
    assert_eq!(r.status, 0);
    (r.data[5] >> 4) & 3
}

const FUNCTION_AUTHORIZATION_FAILED: u8 = 6;
const FUNCTION_COMPLETE: u8 = 0;

#[tokio::test]
async fn privileges_reach_the_engine_live() {
    let n = node().await;
    let op = operator(&n).await;
    let admin = n.admin().await;
    let viewer = n.create_user(&admin, "vic", "viewer").await;
    let (port, iqn) = served_group(&n, &op, &["p"], json!({})).await;
    let (s, v) = get(&n, &viewer, "/api/v1/target-groups/g/privileges").await;
    assert_eq!(s, StatusCode::OK);
    let cautious = json!({"target_cold_reset": false, "set_target_port_groups": true, "software_write_protect": false});
    assert_eq!((v["defaults"].clone(), v["effective"].clone()), (cautious.clone(), cautious));

    // By default a host may not reset the target under the others' feet.
    let mut ini = login(port, &iqn, INITIATOR, None).await.expect("login");
    assert_eq!(cold_reset(&mut ini).await, FUNCTION_AUTHORIZATION_FAILED);
    assert_eq!(tpgs(&mut ini).await, 3);

    // Explicit ALUA off: the same session now sees implicit ALUA only.
    let (s, v) = put(&n, &op, "/api/v1/target-groups/g/privileges", json!({"set_target_port_groups": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["effective"]["set_target_port_groups"], false);
    assert_eq!(tpgs(&mut ini).await, 1);
    assert_eq!(put(&n, &viewer, "/api/v1/target-groups/g/privileges", json!({})).await.0, StatusCode::FORBIDDEN);
    let (s, e) = put(&n, &op, "/api/v1/target-groups/g/privileges", json!({"cold_reset": true})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // The group allows TARGET COLD RESET, the initiator's ACL rule refuses it.
    let (s, v) = put(&n, &op, "/api/v1/target-groups/g/privileges", json!({"target_cold_reset": true})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["effective"]["set_target_port_groups"], true, "left out: the default again");
    assert_eq!(tpgs(&mut ini).await, 3);
    let rule = json!({"initiator": INITIATOR, "privileges": {"target_cold_reset": false}});
    let (s, r) = post(&n, &op, "/api/v1/target-groups/g/acl", rule).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        r["privileges"],
        json!({"target_cold_reset": false, "set_target_port_groups": null, "software_write_protect": null})
    );
    let (s, body) = patch(&n, &op, "/api/v1/target-groups/g", json!({"acl_enabled": true})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(cold_reset(&mut ini).await, FUNCTION_AUTHORIZATION_FAILED, "the rule's refusal wins over the group");

    // Without its own privileges the rule follows the group: the reset is
    // carried out, and it closes every session of the target.
    let path = format!("/api/v1/target-groups/g/acl/{INITIATOR}");
    let (s, r) = patch(&n, &op, &path, json!({"privileges": null})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["privileges"], Value::Null);
    assert_eq!(cold_reset(&mut ini).await, FUNCTION_COMPLETE);
    assert!(ini.closed_within(Duration::from_secs(5)).await, "a cold reset ends the sessions");
    let audit = n.audit(&admin).await;
    assert!(audit
        .iter()
        .any(|e| e["action"] == "target-group.privileges" && e["detail"] == "target_cold_reset allowed"));
}

#[tokio::test]
async fn an_initiator_with_its_own_chap_cannot_be_opened_with_the_groups_secret() {
    let n = node().await;
    let op = operator(&n).await;
    for (name, secret) in [("grp", "groupsecret1"), ("hostb", "hostbsecret1"), ("tgt", "targetsecret")] {
        assert_eq!(
            post(&n, &op, "/api/v1/chap-users", json!({"name": name, "secret": secret})).await.0,
            StatusCode::CREATED
        );
    }
    let (port, iqn) =
        served_group(&n, &op, &["va", "vb"], json!({"acl_enabled": true, "chap": {"mode": "one-way", "user": "grp"}}))
            .await;
    const A: &str = "iqn.2026-11.test.portico:host-a";
    const B: &str = "iqn.2026-11.test.portico:host-b";
    let (s, r) = post(&n, &op, "/api/v1/target-groups/g/acl", json!({"initiator": A, "luns": [0]})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["chap"], Value::Null, "the group's CHAP");

    // An own CHAP is one-way or mutual with known users.
    let acl = "/api/v1/target-groups/g/acl";
    for (chap, field) in [
        (json!({"mode": "none"}), "chap.mode"),
        (json!({"mode": "one-way", "user": "nobody"}), "chap.user"),
        (json!({"mode": "mutual", "user": "hostb"}), "chap.mutual_user"),
    ] {
        let (s, e) = post(&n, &op, acl, json!({"initiator": B, "luns": [1], "chap": chap})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert!(e["fields"][field].is_string(), "{field}: {e}");
    }
    let (s, r) =
        post(&n, &op, acl, json!({"initiator": B, "luns": [1], "chap": {"mode": "one-way", "user": "hostb"}})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["chap"], json!({"mode": "one-way", "user": "hostb", "mutual_user": null}));

    // A logs in with the group's secret and sees LUN 0; B's name with the
    // group's secret is refused; B with its own secret sees LUN 1.
    let mut a = login(port, &iqn, A, Some(("grp", "groupsecret1"))).await.expect("A with the group's secret");
    assert_eq!(parse_report_luns(&a.command_ok(0, &report_luns(), 4096, &[]).await.data), vec![0]);
    const AUTHENTICATION_FAILURE: (u8, u8) = (2, 1);
    assert_eq!(login(port, &iqn, B, Some(("grp", "groupsecret1"))).await.err(), Some(AUTHENTICATION_FAILURE));
    let mut b = login(port, &iqn, B, Some(("hostb", "hostbsecret1"))).await.expect("B with its own secret");
    assert_eq!(parse_report_luns(&b.command_ok(0, &report_luns(), 4096, &[]).await.data), vec![1]);
    assert!(login(port, &iqn, A, Some(("hostb", "hostbsecret1"))).await.is_err(), "B's secret does not open A");

    // The same with libiscsi.
    let url = |creds: &str, lun: u8| format!("iscsi://{creds}@127.0.0.1:{port}/{iqn}/{lun}");
    for (initiator, creds, lun, served) in
        [(B, "grp%groupsecret1", 1, false), (B, "hostb%hostbsecret1", 1, true), (A, "grp%groupsecret1", 0, true)]
    {
        let (ok, text) = iscsi_ls(&["-s", "-i", initiator, &url(creds, lun)], &[]).await;
        println!("iscsi-ls -s -i {initiator} {}\n{text}", url(creds, lun));
        assert_eq!(ok && text.contains(&format!("Lun:{lun}")), served, "{text}");
    }

    // Mutual for B alone: the target answers B as `tgt`.
    let path = format!("{acl}/{B}");
    let (s, r) =
        patch(&n, &op, &path, json!({"chap": {"mode": "mutual", "user": "hostb", "mutual_user": "tgt"}})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let mut ini = Initiator::connect(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let opts = LoginOpts {
        initiator: B,
        target: Some(&iqn),
        chap: Some(("hostb", "hostbsecret1")),
        mutual: Some(("tgt", "targetsecret")),
        ..Default::default()
    };
    ini.login(&opts).await.expect("B logs in with mutual CHAP and the target proves its secret");

    // CHAP users an ACL rule uses cannot be deleted; back to the group's CHAP they can.
    for user in ["hostb", "tgt"] {
        let r = n.send(Method::DELETE, &format!("/api/v1/chap-users/{user}"), Some(&op), None).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains(&format!("g/acl/{B}")), "{}", r.body);
    }
    let (_, users) = get(&n, &op, "/api/v1/chap-users").await;
    assert!(!users.to_string().contains("secret1"));
    let hostb = users.as_array().unwrap().iter().find(|u| u["name"] == "hostb").unwrap();
    assert_eq!(hostb["used_by"], json!([format!("g/acl/{B}")]));
    let (s, r) = patch(&n, &op, &path, json!({"chap": null})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["chap"], Value::Null);
    drop((a, b));
    login(port, &iqn, B, Some(("grp", "groupsecret1")))
        .await
        .expect("B with the group's secret once it has none of its own");
    assert_eq!(
        n.send(Method::DELETE, "/api/v1/chap-users/hostb", Some(&op), None).await.status,
        StatusCode::NO_CONTENT
    );
}
