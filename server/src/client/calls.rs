//! The call each client subcommand makes, and how its answer is shown.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use portico_app::model::discovery::DiscoverySettings;
use portico_app::model::privileges::PrivilegeSettings;
use portico_app::model::session_settings::SessionSettings;
use portico_app::model::storage::{
    AclPatch, ChapUserPatch, InterfacePatch, NewAclRule, NewChapUser, NewLun, NewTargetGroup, NewVolume, NodePatch,
    SizeInput, TargetGroupPatch, TargetSpec, VolumePatch,
};
use portico_app::model::{NewToken, NewUser, UserPatch};
use serde_json::{json, Map, Value};

use super::args::*;
use super::http::{Api, CallError};
use super::output::{Answer, Column};

/// One path segment, escaped (IQNs and names may hold `:` or `.`).
fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn body<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("the API's model types serialise")
}

fn secret_from(var: &str, what: &str) -> Result<String, CallError> {
    std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
        CallError::Usage(format!(
            "set the {what} in the environment variable {var} (it is not taken on the command line)"
        ))
    })
}

fn size(s: &str) -> SizeInput {
    match s.parse::<u64>() {
        Ok(n) => SizeInput::Bytes(n),
        Err(_) => SizeInput::Text(s.to_string()),
    }
}

/// `NODE=PORTAL[,PORTAL…]`.
fn target_spec(s: &str) -> Result<TargetSpec, CallError> {
    let (node, portals) =
        s.split_once('=').ok_or_else(|| CallError::Usage(format!("--target {s}: give NODE=PORTAL[,PORTAL…]")))?;
    Ok(TargetSpec { node: node.to_string(), portals: portals.split(',').map(str::to_string).collect(), iqn: None })
}

/// `IFACE=TYPE[,TYPE…]`.
fn interface(s: &str) -> Result<InterfacePatch, CallError> {
    let (name, types) =
        s.split_once('=').ok_or_else(|| CallError::Usage(format!("--interface {s}: give IFACE=TYPE[,TYPE…]")))?;
    let traffic_types = types.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
    Ok(InterfacePatch { name: name.to_string(), traffic_types })
}

/// KEY=VALUE pairs as a JSON object, checked against the keys of `known`
/// (the settings type serialised), so a misspelt key is an error here and
/// not silently ignored. A value is read as JSON (numbers, true, false) or
/// else as text; `default` is null.
fn settings(values: &[String], known: Value) -> Result<Value, CallError> {
    let known = known.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for pair in values {
        let (key, value) = pair.split_once('=').ok_or_else(|| CallError::Usage(format!("{pair:?}: give KEY=VALUE")))?;
        if !known.contains_key(key) {
            let keys: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(CallError::Usage(format!("{key:?} is not a setting; the settings are {}", keys.join(", "))));
        }
        let value = match value {
            "default" => Value::Null,
            v => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())),
        };
        out.insert(key.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// `KEY=VALUE` privileges as the API's settings; none given is `None`.
fn privilege_settings(values: &[String]) -> Result<Option<PrivilegeSettings>, CallError> {
    if values.is_empty() {
        return Ok(None);
    }
    let json = settings(values, body(&PrivilegeSettings::default()))?;
    serde_json::from_value(json).map(Some).map_err(|e| CallError::Usage(format!("--privilege: {e}")))
}

const VOLUMES: &[Column] = &[
    ("NAME", "name"),
    ("SIZE", "size"),
    ("REPLICAS", "replicas"),
    ("STATE", "state"),
    ("NODE", "node"),
    ("GROUP", "attached_to"),
    ("LUN", "lun"),
    ("CACHE", "write_cache"),
];
const GROUPS: &[Column] = &[("NAME", "name"), ("STATE", "state"), ("ACL", "acl_enabled"), ("CHAP", "chap.mode")];
const TARGETS: &[Column] = &[("NODE", "node"), ("IQN", "iqn"), ("PORTALS", "portals"), ("TPG", "tpg")];
const LUNS: &[Column] = &[("LUN", "lun"), ("VOLUME", "volume"), ("SIZE", "size")];
const ACL: &[Column] = &[("INITIATOR", "initiator"), ("ALIAS", "alias"), ("LUNS", "luns"), ("CHAP", "chap.mode")];
const CONNECTIONS: &[Column] = &[
    ("INITIATOR", "initiator"),
    ("ADDRESS", "address"),
    ("TARGET", "target"),
    ("PORTAL", "portal"),
    ("SINCE", "since"),
];
const CHAP_USERS: &[Column] = &[("NAME", "name"), ("DESCRIPTION", "description"), ("USED BY", "used_by")];
const NODES: &[Column] = &[
    ("NAME", "name"),
    ("STATE", "state"),
    ("RAFT", "raft_role"),
    ("CLUSTER ADDRESS", "cluster_addr"),
    ("LAST HEARTBEAT", "last_heartbeat"),
];
const USERS: &[Column] =
    &[("USER", "username"), ("ROLE", "role"), ("ENABLED", "enabled"), ("LAST LOGIN", "last_login_at")];
const TOKENS: &[Column] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("OWNER", "owner"),
    ("CREATED", "created_at"),
    ("LAST USED", "last_used_at"),
    ("EXPIRES", "expires_at"),
    ("READ ONLY", "read_only"),
];
const JOIN_TOKENS: &[Column] =
    &[("ID", "id"), ("CREATED BY", "created_by"), ("CREATED", "created_at"), ("EXPIRES", "expires_at")];
const AUDIT: &[Column] = &[
    ("TIME", "time"),
    ("USER", "user"),
    ("ACTION", "action"),
    ("OBJECT", "object"),
    ("RESULT", "result"),
    ("NODE", "node"),
    ("DETAIL", "detail"),
];

/// Makes the call a subcommand stands for.
pub async fn execute(api: &Api, command: ClientCommand) -> Result<Answer, CallError> {
    match command {
        ClientCommand::Volume(f) => volume(api, f.action).await,
        ClientCommand::TargetGroup(f) => group(api, f.action).await,
        ClientCommand::ChapUser(f) => chap_user(api, f.action).await,
        ClientCommand::Discovery(f) => discovery(api, f.action).await,
        ClientCommand::Node(f) => node(api, f.action).await,
        ClientCommand::Cluster(f) => cluster(api, f.action).await,
        ClientCommand::User(f) => user(api, f.action).await,
        ClientCommand::Token(f) => token(api, f.action).await,
        ClientCommand::Audit(Single { args: AuditArgs { page, per_page }, .. }) => {
            let json = api.get(&format!("/api/v1/audit?page={page}&per_page={per_page}")).await?;
            Ok(Answer { json, view: super::output::View::Rows { within: Some("entries"), columns: AUDIT } })
        }
        ClientCommand::Overview(_) => Ok(Answer::record(api.get("/api/v1/overview").await?)),
        ClientCommand::Whoami(_) => Ok(Answer::record(api.get("/api/v1/me").await?)),
    }
}

async fn volume(api: &Api, action: VolumeAction) -> Result<Answer, CallError> {
    Ok(match action {
        VolumeAction::List => Answer::rows(api.get("/api/v1/volumes").await?, VOLUMES),
        VolumeAction::Show { name } => Answer::record(api.get(&format!("/api/v1/volumes/{}", seg(&name))).await?),
        VolumeAction::Create { name, size: s, block_size, replicas, write_cache, node } => {
            let new = NewVolume {
                name: name.clone(),
                size: size(&s),
                block_size,
                replicas,
                write_cache: write_cache.into(),
                node,
            };
            let json = api.post("/api/v1/volumes", body(&new)).await?;
            Answer::done(json, format!("Created the volume {name}."))
        }
        VolumeAction::Update { name, size: s, iops_limit, mbps_limit, write_cache, replicas } => {
            let patch = VolumePatch {
                size: s.as_deref().map(size),
                iops_limit,
                mbps_limit,
                write_cache: write_cache.map(Into::into),
                replicas,
                auto_failback: None,
            };
            let json = api.patch(&format!("/api/v1/volumes/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the volume {name}."))
        }
        VolumeAction::Delete { name } => {
            let json = api.delete(&format!("/api/v1/volumes/{}", seg(&name))).await?;
            Answer::done(json, format!("Deleted the volume {name}."))
        }
        VolumeAction::Activity { name } => {
            Answer::record(api.get(&format!("/api/v1/volumes/{}/activity", seg(&name))).await?)
        }
        VolumeAction::Reservations { name } => {
            Answer::record(api.get(&format!("/api/v1/volumes/{}/reservations", seg(&name))).await?)
        }
    })
}

async fn group(api: &Api, action: GroupAction) -> Result<Answer, CallError> {
    let path = |g: &str| format!("/api/v1/target-groups/{}", seg(g));
    Ok(match action {
        GroupAction::List => Answer::rows(api.get("/api/v1/target-groups").await?, GROUPS),
        GroupAction::Show { name } => Answer::record(api.get(&path(&name)).await?),
        GroupAction::Create { name, targets, acl, chap, other_paths } => {
            let new = NewTargetGroup {
                name: name.clone(),
                targets: targets.iter().map(|t| target_spec(t)).collect::<Result<_, _>>()?,
                acl_enabled: acl,
                chap: chap.setting().unwrap_or_default(),
                other_paths,
            };
            let json = api.post("/api/v1/target-groups", body(&new)).await?;
            Answer::done(json, format!("Created the target group {name}."))
        }
        GroupAction::Update { name, acl, chap, other_paths } => {
            let patch = TargetGroupPatch { acl_enabled: acl, chap: chap.setting(), other_paths };
            let json = api.patch(&path(&name), body(&patch)).await?;
            Answer::done(json, format!("Changed the target group {name}."))
        }
        GroupAction::Delete { name, force } => {
            let json = api.delete(&format!("{}?force={force}", path(&name))).await?;
            Answer::done(json, format!("Deleted the target group {name}."))
        }
        GroupAction::Start { name } => {
            let json = api.post(&format!("{}/start", path(&name)), json!({})).await?;
            Answer::done(json, format!("Started the target group {name}."))
        }
        GroupAction::Stop { name } => {
            let json = api.post(&format!("{}/stop", path(&name)), json!({})).await?;
            Answer::done(json, format!("Stopped the target group {name}: its targets refuse logins."))
        }
        GroupAction::Target(TargetAction::List { group }) => Answer {
            json: api.get(&path(&group)).await?,
            view: super::output::View::Rows { within: Some("targets"), columns: TARGETS },
        },
        GroupAction::Target(TargetAction::Add { group, node, portals, iqn }) => {
            let spec = TargetSpec { node: node.clone(), portals, iqn };
            let json = api.post(&format!("{}/targets", path(&group)), body(&spec)).await?;
            Answer::done(json, format!("Added a target on {node} to {group}."))
        }
        GroupAction::Target(TargetAction::Remove { group, iqn }) => {
            let json = api.delete(&format!("{}/targets/{}", path(&group), seg(&iqn))).await?;
            Answer::done(json, format!("Removed the target {iqn} from {group}."))
        }
        GroupAction::Lun(LunAction::List { group }) => {
            Answer::rows(api.get(&format!("{}/luns", path(&group))).await?, LUNS)
        }
        GroupAction::Lun(LunAction::Attach { group, volume, lun }) => {
            let json =
                api.post(&format!("{}/luns", path(&group)), body(&NewLun { volume: volume.clone(), lun })).await?;
            let number = json.get("lun").map(super::output::cell).unwrap_or_else(|| "?".into());
            Answer::done(json, format!("Attached {volume} to {group} as LUN {number}."))
        }
        GroupAction::Lun(LunAction::Detach { group, lun }) => {
            let json = api.delete(&format!("{}/luns/{lun}", path(&group))).await?;
            Answer::done(json, format!("Detached LUN {lun} from {group}."))
        }
        GroupAction::Acl(AclAction::List { group }) => {
            Answer::rows(api.get(&format!("{}/acl", path(&group))).await?, ACL)
        }
        GroupAction::Acl(AclAction::Add { group, initiator, alias, luns, chap, privileges }) => {
            let privileges = privilege_settings(&privileges)?;
            let rule = NewAclRule { initiator: initiator.clone(), alias, luns, chap: chap.setting(), privileges };
            let json = api.post(&format!("{}/acl", path(&group)), body(&rule)).await?;
            Answer::done(json, format!("{initiator} may log in to {group}."))
        }
        GroupAction::Acl(AclAction::Update {
            group,
            initiator,
            alias,
            luns,
            chap,
            group_chap,
            privileges,
            group_privileges,
        }) => {
            let privileges = if group_privileges { Some(None) } else { privilege_settings(&privileges)?.map(Some) };
            let patch = AclPatch {
                alias,
                luns: luns.map(|l| match l {
                    LunList::All => None,
                    LunList::Some(v) => Some(v),
                }),
                chap: if group_chap { Some(None) } else { chap.setting().map(Some) },
                privileges,
            };
            let json = api.patch(&format!("{}/acl/{}", path(&group), seg(&initiator)), body(&patch)).await?;
            Answer::done(json, format!("Changed the ACL rule of {initiator} in {group}."))
        }
        GroupAction::Acl(AclAction::Remove { group, initiator }) => {
            let json = api.delete(&format!("{}/acl/{}", path(&group), seg(&initiator))).await?;
            Answer::done(json, format!("{initiator} may no longer log in to {group}."))
        }
        GroupAction::Connections { name } => {
            Answer::rows(api.get(&format!("{}/connections", path(&name))).await?, CONNECTIONS)
        }
        GroupAction::Session(SettingsAction::Show { group }) => {
            Answer::record(api.get(&format!("{}/session", path(&group))).await?)
        }
        GroupAction::Session(SettingsAction::Set { group, values }) => {
            let settings = settings(&values, body(&SessionSettings::default()))?;
            let json = api.put(&format!("{}/session", path(&group)), settings).await?;
            Answer::done(json, format!("Changed the session parameters of {group}; new sessions get them."))
        }
        GroupAction::Privileges(SettingsAction::Show { group }) => {
            Answer::record(api.get(&format!("{}/privileges", path(&group))).await?)
        }
        GroupAction::Privileges(SettingsAction::Set { group, values }) => {
            let settings = settings(&values, body(&PrivilegeSettings::default()))?;
            let json = api.put(&format!("{}/privileges", path(&group)), settings).await?;
            Answer::done(json, format!("Changed the privileges of {group}."))
        }
    })
}

async fn chap_user(api: &Api, action: ChapAction) -> Result<Answer, CallError> {
    Ok(match action {
        ChapAction::List => Answer::rows(api.get("/api/v1/chap-users").await?, CHAP_USERS),
        ChapAction::Create { name, secret_env, description } => {
            let new = NewChapUser { name: name.clone(), secret: secret_from(&secret_env, "CHAP secret")?, description };
            let json = api.post("/api/v1/chap-users", body(&new)).await?;
            Answer::done(json, format!("Created the CHAP user {name}."))
        }
        ChapAction::Update { name, secret_env, description } => {
            let secret = secret_env.map(|v| secret_from(&v, "new CHAP secret")).transpose()?;
            let patch = ChapUserPatch { secret, description };
            let json = api.patch(&format!("/api/v1/chap-users/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the CHAP user {name}."))
        }
        ChapAction::Delete { name } => {
            let json = api.delete(&format!("/api/v1/chap-users/{}", seg(&name))).await?;
            Answer::done(json, format!("Deleted the CHAP user {name}."))
        }
    })
}

async fn discovery(api: &Api, action: DiscoveryAction) -> Result<Answer, CallError> {
    Ok(match action {
        DiscoveryAction::Show => Answer::record(api.get("/api/v1/iscsi/discovery").await?),
        DiscoveryAction::Set { chap } => {
            let chap = chap.setting().ok_or_else(|| CallError::Usage("give --chap none, one-way or mutual".into()))?;
            let json = api.put("/api/v1/iscsi/discovery", body(&DiscoverySettings { chap })).await?;
            Answer::done(json, "Changed who may use discovery.")
        }
    })
}

async fn node(api: &Api, action: NodeAction) -> Result<Answer, CallError> {
    Ok(match action {
        NodeAction::List => Answer::rows(api.get("/api/v1/nodes").await?, NODES),
        NodeAction::Show { name } => Answer::record(api.get(&format!("/api/v1/nodes/{}", seg(&name))).await?),
        NodeAction::Update { name, maintenance, interfaces } => {
            let patch = NodePatch {
                interfaces: interfaces.iter().map(|i| interface(i)).collect::<Result<_, _>>()?,
                maintenance,
            };
            let json = api.patch(&format!("/api/v1/nodes/{}", seg(&name)), body(&patch)).await?;
            Answer::done(json, format!("Changed the node {name}."))
        }
        NodeAction::Remove { name } => {
            let json = api.delete(&format!("/api/v1/nodes/{}", seg(&name))).await?;
            Answer::done(json, format!("Removed the node {name} from the cluster."))
        }
    })
}

async fn cluster(api: &Api, action: ClusterAction) -> Result<Answer, CallError> {
    Ok(match action {
        ClusterAction::Status => Answer::record(api.get("/api/v1/cluster").await?),
        ClusterAction::JoinToken => {
            let json = api.post("/api/v1/cluster/join-tokens", json!({})).await?;
            let token = json.get("token").and_then(Value::as_str).unwrap_or_default().to_string();
            Answer::done(json, format!("PORTICO_JOIN_TOKEN={token}\n(single use, valid for one hour; shown only now)"))
        }
        ClusterAction::JoinTokens => Answer::rows(api.get("/api/v1/cluster/join-tokens").await?, JOIN_TOKENS),
        ClusterAction::RevokeJoinToken { id } => {
            let json = api.delete(&format!("/api/v1/cluster/join-tokens/{}", seg(&id))).await?;
            Answer::done(json, format!("Revoked the join token {id}."))
        }
    })
}

async fn user(api: &Api, action: UserAction) -> Result<Answer, CallError> {
    Ok(match action {
        UserAction::List => Answer::rows(api.get("/api/v1/users").await?, USERS),
        UserAction::Create { username, role, password_env } => {
            let new = NewUser {
                username: username.clone(),
                password: secret_from(&password_env, "password")?,
                role: role.into(),
            };
            let json = api.post("/api/v1/users", body(&new)).await?;
            Answer::done(json, format!("Created the user {username}."))
        }
        UserAction::Update { username, role, password_env, enabled } => {
            let password = password_env.map(|v| secret_from(&v, "new password")).transpose()?;
            let patch = UserPatch { role: role.map(Into::into), password, enabled };
            let json = api.patch(&format!("/api/v1/users/{}", seg(&username)), body(&patch)).await?;
            Answer::done(json, format!("Changed the user {username}."))
        }
        UserAction::Delete { username } => {
            let json = api.delete(&format!("/api/v1/users/{}", seg(&username))).await?;
            Answer::done(json, format!("Deleted the user {username}."))
        }
    })
}

async fn token(api: &Api, action: TokenAction) -> Result<Answer, CallError> {
    Ok(match action {
        TokenAction::List => Answer::rows(api.get("/api/v1/tokens").await?, TOKENS),
        TokenAction::Create { name, expires_in_days, read_only } => {
            let json = api.post("/api/v1/tokens", body(&NewToken { name, expires_in_days, read_only })).await?;
            let token = json.get("token").and_then(Value::as_str).unwrap_or_default().to_string();
            Answer::done(json, format!("{token}\n(shown only now; send it as PORTICO_TOKEN)"))
        }
        TokenAction::Revoke { id } => {
            let json = api.delete(&format!("/api/v1/tokens/{id}")).await?;
            Answer::done(json, format!("Revoked the token {id}."))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_against_the_apis_keys() {
        let known = body(&SessionSettings::default());
        let v = settings(&["max_burst_length=262144".into(), "immediate_data=default".into()], known.clone()).unwrap();
        assert_eq!(v, json!({"max_burst_length": 262144, "immediate_data": null}));
        let e = settings(&["max_burst=1".into()], known.clone()).unwrap_err().to_string();
        assert!(e.contains("max_burst_length"), "{e}");
        assert!(settings(&["max_burst_length".into()], known).is_err());
    }

    #[test]
    fn targets_and_interfaces_are_read_from_their_short_forms() {
        let t = target_spec("n1=10.0.0.5:3260,10.0.1.5").unwrap();
        assert_eq!((t.node.as_str(), t.portals.len()), ("n1", 2));
        assert!(target_spec("n1").is_err());
        let i = interface("eth1=iscsi,replication").unwrap();
        assert_eq!(i.traffic_types, vec!["iscsi", "replication"]);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("iqn.2026-11.local:h1"), "iqn%2E2026%2D11%2Elocal%3Ah1");
    }
}
