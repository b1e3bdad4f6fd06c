//! The tables every node holds alike (CLUSTER.md §0), and a dump of them in
//! a form two nodes' copies can be compared by: every row of every table in
//! key order, each value as SQLite's own `quote()` gives it (blobs as hex).
//!
//! Sessions, when a user last logged in and a token was last used, the audit
//! log and the node's key files are not here: they are this node's.

use sqlx::SqliteConnection;

/// The replicated tables, in the order their rows depend on each other.
pub const TABLES: &[&str] = &[
    "users",
    "api_tokens",
    "nodes",
    "interfaces",
    "volumes",
    "volume_copies",
    "volume_moves",
    "chap_users",
    "target_groups",
    "targets",
    "luns",
    "acl_rules",
    "iscsi_settings",
    "counters",
    "join_tokens",
    "cluster_audit",
    "revoked_node_keys",
];

/// Every row of the replicated tables as text, one line per row.
pub async fn dump(conn: &mut SqliteConnection) -> sqlx::Result<String> {
    let mut out = String::new();
    for table in TABLES {
        let columns: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info(?) ORDER BY cid")
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
        let quoted: Vec<String> = columns.iter().map(|(c,)| format!("quote(\"{c}\")")).collect();
        let names: Vec<&str> = columns.iter().map(|(c,)| c.as_str()).collect();
        out.push_str(&format!("{table} ({})\n", names.join(", ")));
        // Table and column names come from the schema, never from a request.
        let sql = format!("SELECT {} FROM \"{table}\" ORDER BY rowid", quoted.join(" || ', ' || "));
        let rows: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
        for (row,) in rows {
            out.push_str("  ");
            out.push_str(&row);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use portico_app::model::storage::Command;
    use serde_json::json;

    use super::*;
    use crate::storage::commands;
    use crate::storage::proposal::{self, Change, Here, Proposal, SharedAuditRecord, UserChange};
    use crate::storage::quotas::Limits;
    use crate::storage::secret_box::SecretBox;

    fn storage(command: serde_json::Value) -> Change {
        Change::Storage(serde_json::from_value::<Command>(command).expect("a command"))
    }

    fn node(name: &str, ifname: &str, address: &str) -> Change {
        let interfaces = BTreeMap::from([(ifname.to_string(), vec![address.to_string()])]);
        Change::RegisterNode { name: name.to_string(), interfaces, member: Default::default() }
    }

    fn user(change: UserChange) -> Change {
        Change::Users(change)
    }

    /// A day in the life of a cluster's state: every kind of change, some
    /// refused, in one order.
    fn changes() -> Vec<Change> {
        vec![
            node("n1", "lo", "127.0.0.1"),
            Change::RegisterNode {
                name: "n2".into(),
                interfaces: BTreeMap::from([("eth0".to_string(), vec!["10.0.0.2".to_string()])]),
                member: proposal::Membership { replication_addr: Some("10.0.1.2:3270".into()), ..Default::default() },
            },
            storage(json!({"command": "create_chap_user", "name": "host-a", "secret": "host-a-secret1"})),
            storage(json!({"command": "create_chap_user", "name": "target-a", "secret": "target-secret1"})),
            storage(json!({"command": "create_chap_user", "name": "host-a", "secret": "taken-already1"})),
            storage(json!({"command": "create_volume", "name": "v1", "size": "1GiB"})),
            storage(json!({"command": "create_volume", "name": "v2", "size": 1048576, "block_size": 4096,
                "write_cache": "write-back"})),
            storage(json!({"command": "create_volume", "name": "v1", "size": "1GiB"})),
            storage(json!({"command": "update_node", "name": "n2",
                "patch": {"interfaces": [{"name": "eth0", "traffic_types": ["iscsi", "replication"]}]}})),
            storage(json!({"command": "create_target_group", "name": "g1", "acl_enabled": true,
                "chap": {"mode": "mutual", "user": "host-a", "mutual_user": "target-a"},
                "targets": [{"node": "n1", "portals": ["127.0.0.1:3260"]}]})),
            storage(json!({"command": "add_target", "group": "g1",
                "target": {"node": "n2", "portals": ["10.0.0.2"]}})),
            storage(json!({"command": "attach_volume", "group": "g1", "lun": {"volume": "v1"}})),
            storage(json!({"command": "attach_volume", "group": "g1", "lun": {"volume": "v2", "lun": 7}})),
            storage(json!({"command": "add_acl_rule", "group": "g1",
                "rule": {"initiator": "iqn.1994-05.com.redhat:host-a", "luns": [0]}})),
            storage(json!({"command": "set_discovery", "chap": {"mode": "one-way", "user": "host-a"}})),
            storage(json!({"command": "set_group_session", "group": "g1", "settings": {"immediate_data": false}})),
            storage(json!({"command": "update_volume", "name": "v1", "patch": {"size": "2GiB", "iops_limit": 500}})),
            storage(json!({"command": "update_chap_user", "name": "host-a", "patch": {"secret": "host-a-secret2"}})),
            storage(json!({"command": "detach_lun", "group": "g1", "lun": 7})),
            storage(json!({"command": "remove_target", "group": "g1",
                "iqn": "iqn.2026-11.local.portico:g1.n2", "force": false})),
            storage(json!({"command": "add_target", "group": "g1",
                "target": {"node": "n2", "portals": ["10.0.0.2:3261"]}})),
            storage(json!({"command": "delete_volume", "name": "v2"})),
            storage(json!({"command": "delete_volume", "name": "v1"})),
            // Two copies: the other on n2 (see `decided`).
            storage(json!({"command": "create_volume", "name": "v3", "size": "1GiB", "replicas": 2})),
            mark("v3", 1, false),
            mark("v3", 2, true),
            mark("v9", 1, true),
            // n2's copy replaced by one on n1, the primary's node: refused.
            Change::ReplaceCopy { volume: "v3".into(), from: 2, to: 1 },
            Change::ReplaceCopy { volume: "v3".into(), from: 3, to: 4 },
            user(UserChange::Create {
                username: "admin".into(),
                password_hash: "$argon2id$a".into(),
                role: "admin".into(),
            }),
            user(UserChange::Create {
                username: "op".into(),
                password_hash: "$argon2id$b".into(),
                role: "operator".into(),
            }),
            user(UserChange::SetRole { username: "admin".into(), role: "viewer".into() }),
            user(UserChange::CreateToken {
                user_id: 2,
                name: "script".into(),
                token_hash: "ab12".into(),
                expires_at: None,
                read_only: false,
            }),
            user(UserChange::CreateToken {
                user_id: 2,
                name: "other".into(),
                token_hash: "cd34".into(),
                expires_at: None,
                read_only: false,
            }),
            user(UserChange::RevokeToken { id: 1, owner: Some(1) }),
            user(UserChange::RevokeToken { id: 1, owner: None }),
            user(UserChange::SetPassword { username: "op".into(), password_hash: "$argon2id$c".into() }),
            Change::CreateJoinToken {
                id: "00112233aabbccdd".into(),
                secret_hash: "ab".repeat(32),
                expires_at: "2999-01-01T00:00:00Z".into(),
                created_by: "admin".into(),
            },
            Change::RevokeJoinToken { id: "00112233aabbccdd".into() },
            // Revoked already: nothing to revoke.
            Change::RevokeJoinToken { id: "00112233aabbccdd".into() },
            audit(2, "n2", &[1, 2]),
            // Shared again after a lost answer: nothing is added twice.
            audit(2, "n2", &[2, 3]),
            audit(1, "n1", &[1]),
            Change::ShareAudit {
                origin: 1,
                node: "n1".into(),
                records: vec![SharedAuditRecord { result: "maybe".into(), ..record(2) }],
            },
        ]
    }

    fn mark(volume: &str, epoch: u64, in_sync: bool) -> Change {
        Change::MarkCopy { volume: volume.into(), epoch, node_id: 2, in_sync }
    }

    /// What `here` decides for `change`, with a replicated volume's other
    /// copy on node 2 (as the placement would choose it).
    fn decided(change: Change, here: &Here<'_>) -> Proposal {
        let mut proposal = proposal::decide(change, here).expect("decided");
        if let Change::Storage(Command::CreateVolume(v)) = &proposal.change {
            proposal.decided.copies = (2..=u64::from(v.replicas)).map(|n| n as i64).collect();
        }
        proposal
    }

    fn record(seq: i64) -> SharedAuditRecord {
        SharedAuditRecord {
            seq,
            time: format!("2026-12-01T10:00:0{seq}Z"),
            user: "admin".into(),
            action: "volume.create".into(),
            object: format!("volume/v{seq}"),
            result: "success".into(),
            source: Some("10.0.0.9".into()),
            detail: None,
        }
    }

    fn audit(origin: u64, node: &str, seqs: &[i64]) -> Change {
        Change::ShareAudit { origin, node: node.into(), records: seqs.iter().map(|s| record(*s)).collect() }
    }

    /// Applies `proposal` in its own transaction; what it answered.
    async fn apply(pool: &sqlx::SqlitePool, proposal: &Proposal) -> Result<(), String> {
        let mut tx = pool.begin().await.unwrap();
        match commands::apply(proposal.clone(), &mut tx).await {
            Ok(_) => {
                tx.commit().await.unwrap();
                Ok(())
            }
            Err(e) => {
                tx.rollback().await.unwrap();
                Err(format!("{} {}", e.status, e.message))
            }
        }
    }

    /// CLUSTER.md §0: the same proposals on two empty databases give the
    /// same rows, byte for byte, and the same refusals.
    #[tokio::test]
    async fn the_same_proposals_give_the_same_rows() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pool_a, pool_b) = (crate::db::open(a.path()).await.unwrap(), crate::db::open(b.path()).await.unwrap());
        let secrets = SecretBox::open_or_create(a.path()).unwrap();
        let limits = Limits::default();
        let here = Here { node_id: 1, secrets: &secrets, limits: &limits, data_dir: a.path() };
        let mut answers = Vec::new();
        let mut log = Vec::new();
        for change in changes() {
            let proposal = decided(change, &here);
            // The proposal travels as bytes (the Raft log), never in the clear.
            let bytes = serde_json::to_vec(&proposal).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains("secret1"), "a secret in the clear");
            answers.push(apply(&pool_a, &proposal).await);
            log.push(bytes);
        }
        // Later, elsewhere: the log replayed.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        for (bytes, answer) in log.iter().zip(&answers) {
            let proposal: Proposal = serde_json::from_slice(bytes).unwrap();
            assert_eq!(&apply(&pool_b, &proposal).await, answer, "{proposal:?}");
        }
        let refused: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
        assert_eq!(
            refused,
            [
                "409 A CHAP user named host-a already exists.",
                "409 A volume named v1 already exists.",
                "409 The volume v1 is attached to g1 as LUN 0: detach it first.",
                "409 The volume v3 is at epoch 1, not 2.",
                "404 The volume v9 does not exist.",
                "409 Node 1 holds a copy of v3 already.",
                "404 A copy of v3 on node 3 does not exist.",
                "409 This is the last enabled administrator: add or enable another administrator first.",
                "404 The token 1 does not exist.",
                "404 No unused join token has the id 00112233aabbccdd.",
                "422 Some fields need attention.",
            ]
        );
        let shared: Vec<(i64, i64)> =
            sqlx::query_as("SELECT origin, seq FROM cluster_audit ORDER BY rowid").fetch_all(&pool_b).await.unwrap();
        assert_eq!(shared, [(2, 1), (2, 2), (2, 3), (1, 1)]);
        // A reset password revoked the user's tokens: none is left.
        let (tokens,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_tokens").fetch_one(&pool_b).await.unwrap();
        assert_eq!(tokens, 0);
        let (join_tokens,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM join_tokens").fetch_one(&pool_b).await.unwrap();
        assert_eq!(join_tokens, 0, "a revoked join token is gone");
        let copies: Vec<(i64, bool)> =
            sqlx::query_as("SELECT node_id, in_sync FROM volume_copies").fetch_all(&pool_b).await.unwrap();
        assert_eq!(copies, [(2, false)], "v3's copy on n2, marked out of sync at epoch 1");
        let dump_a = dump(&mut pool_a.acquire().await.unwrap()).await.unwrap();
        let dump_b = dump(&mut pool_b.acquire().await.unwrap()).await.unwrap();
        assert_eq!(dump_a, dump_b);
        for expected in ["127.0.0.1:3260", "10.0.0.2:3261", "one-way", "immediate_data", "2147483648"] {
            assert!(dump_a.contains(expected), "{expected} in\n{dump_a}");
        }
        assert!(!dump_a.contains("host-a-secret"), "secrets are sealed");
        let ports: Vec<(i64,)> =
            sqlx::query_as("SELECT tpg FROM targets ORDER BY tpg").fetch_all(&pool_b).await.unwrap();
        assert_eq!(ports, [(1,), (3,)], "a removed target's port number is not handed out again");
        assert_eq!(secrets.open(&sealed(&dump_a, "host-a")).unwrap(), "host-a-secret2");
    }

    /// The sealed secret of a CHAP user, from its dump line.
    fn sealed(dump: &str, user: &str) -> Vec<u8> {
        let line = dump.lines().find(|l| l.contains(&format!("'{user}'"))).expect("the user's row");
        let start = line.find("X'").expect("a blob") + 2;
        let end = start + line[start..].find('\'').unwrap();
        hex::decode(&line[start..end]).unwrap()
    }

    /// A CHAP secret that breaks the rules is refused before anything is
    /// proposed, with the other mistakes of the same request.
    #[tokio::test]
    async fn a_bad_secret_is_refused_before_the_proposal() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretBox::open_or_create(dir.path()).unwrap();
        let limits = Limits::default();
        let here = Here { node_id: 1, secrets: &secrets, limits: &limits, data_dir: dir.path() };
        let change = storage(json!({"command": "create_chap_user", "name": "has space", "secret": "short"}));
        let e = proposal::decide(change, &here).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.field("secret").is_some() && e.field("name").is_some(), "{e:?}");
    }
}
