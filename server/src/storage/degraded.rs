//! A node comes up with whatever of its stored configuration can come up.
//!
//! The engine's `apply` is all or nothing, and its errors name what failed:
//! `EngineError::Bind` a portal address (one that vanished from the host, or
//! that another program holds), `Backend` and `Reservations` a volume (an
//! image that cannot be opened, a reservation file that cannot be read). So
//! [`apply`] tries the configuration, leaves out the piece the engine named
//! (a volume with its LUNs, or a portal; a target left without portals goes
//! too), and tries again: at most once per piece, so it ends. A volume
//! whose image is missing is left out before the engine sees it, because the
//! engine would create an empty image in its place and serve zeros as the
//! volume's data.
//!
//! Each piece left out is a [`Problem`]: the overview and the API show it,
//! with the engine's reason, and the volume reads as offline. At start any
//! piece may be left out. A later change may only leave out pieces that
//! were already out (a change that breaks something new is refused, as
//! before); as each change retries them, a piece that works again (the
//! address is back, the file restored) comes back with the next change.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use target_engine::config::{BackendKind, EngineConfig};
use target_engine::engine::{Engine, EngineError};

/// A part of the configuration that can be left out on its own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Piece {
    Volume(String),
    Portal(SocketAddr),
}

/// Something of the stored configuration this node does not serve, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The piece left out; `None` for what follows from it or for the node as a whole.
    pub piece: Option<Piece>,
    /// `volume/NAME`, `portal/ADDR`, `target/IQN`, or `configuration`.
    pub object: String,
    pub reason: String,
}

impl Problem {
    pub fn node(object: &str, reason: impl Into<String>) -> Self {
        Problem { piece: None, object: object.into(), reason: reason.into() }
    }
}

/// The pieces the problems left out.
pub fn left_out(problems: &[Problem]) -> BTreeSet<Piece> {
    problems.iter().filter_map(|p| p.piece.clone()).collect()
}

fn piece_of(e: &EngineError) -> Option<Piece> {
    match e {
        EngineError::Bind { addr, .. } => Some(Piece::Portal(*addr)),
        EngineError::Backend { volume, .. } | EngineError::Reservations { volume, .. } => {
            Some(Piece::Volume(volume.clone()))
        }
        _ => None,
    }
}

/// Applies `config` to the engine, leaving out what fails when
/// `may_leave_out` allows it; returns what was left out. Any other failure
/// is the engine's error, and the engine runs what it ran before.
pub async fn apply(
    engine: &Engine,
    mut config: EngineConfig,
    may_leave_out: impl Fn(&Piece) -> bool,
) -> Result<Vec<Problem>, EngineError> {
    let running: BTreeSet<String> = engine.config().await.volumes.into_iter().map(|v| v.name).collect();
    let missing: Vec<(String, String)> = config
        .volumes
        .iter()
        .filter(|v| v.backend == BackendKind::File && !running.contains(&v.name))
        .filter_map(|v| {
            v.path.as_ref().filter(|p| p.symlink_metadata().is_err()).map(|p| (v.name.clone(), p.display().to_string()))
        })
        .collect();
    let mut problems = Vec::new();
    for (volume, path) in missing {
        let reason = format!("its image {path} is missing");
        problems.extend(leave_out(&mut config, &Piece::Volume(volume), reason));
    }
    loop {
        let e = match engine.apply(config.clone()).await {
            Ok(()) => return Ok(problems),
            Err(e) => e,
        };
        match piece_of(&e) {
            Some(piece) if may_leave_out(&piece) && holds(&config, &piece) => {
                problems.extend(leave_out(&mut config, &piece, e.to_string()));
            }
            _ => return Err(e),
        }
    }
}

fn holds(config: &EngineConfig, piece: &Piece) -> bool {
    match piece {
        Piece::Volume(name) => config.volumes.iter().any(|v| &v.name == name),
        Piece::Portal(addr) => config.targets.iter().any(|t| t.portals.contains(addr)),
    }
}

/// Takes `piece` out of `config`, with what depends on it.
fn leave_out(config: &mut EngineConfig, piece: &Piece, reason: String) -> Vec<Problem> {
    let mut problems = Vec::new();
    match piece {
        Piece::Volume(name) => {
            config.volumes.retain(|v| &v.name != name);
            for t in &mut config.targets {
                let gone: Vec<u64> =
                    t.luns.iter().filter(|(_, v)| *v == name).filter_map(|(k, _)| k.trim().parse().ok()).collect();
                t.luns.retain(|_, v| v != name);
                t.alua.retain(|k, _| k.trim().parse::<u64>().map_or(true, |l| !gone.contains(&l)));
                for entry in t.acl.iter_mut().flatten() {
                    entry.luns.retain(|l| !gone.contains(l));
                }
            }
            problems.push(Problem { piece: Some(piece.clone()), object: format!("volume/{name}"), reason });
        }
        Piece::Portal(addr) => {
            for t in &mut config.targets {
                t.portals.retain(|p| p != addr);
            }
            problems.push(Problem { piece: Some(piece.clone()), object: format!("portal/{addr}"), reason });
            config.targets.retain(|t| {
                if t.portals.is_empty() {
                    let why = "none of its portals could be opened".to_string();
                    problems.push(Problem::node(&format!("target/{}", t.iqn), why));
                }
                !t.portals.is_empty()
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        [[volume]]
        name = "a"
        backend = "memory"
        size = "1MiB"
        [[volume]]
        name = "b"
        backend = "memory"
        size = "1MiB"
        [[target]]
        iqn = "iqn.2026-11.local.portico:t1"
        portals = ["127.0.0.1:3260", "127.0.0.2:3260"]
        luns = { 0 = "a", 1 = "b" }
        alua = { 1 = "standby" }
        acl = [ { initiator = "iqn.2026-11.local.test:i", luns = [0, 1] } ]
        [[target]]
        iqn = "iqn.2026-11.local.portico:t2"
        portals = ["127.0.0.2:3260"]
        tpg = 2
        luns = { 0 = "b" }
    "#;

    #[test]
    fn a_volume_goes_with_its_luns_alua_states_and_acl_entries() {
        let mut c = EngineConfig::from_toml(CONFIG).unwrap();
        let p = leave_out(&mut c, &Piece::Volume("b".into()), "gone".into());
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].object, "volume/b");
        assert_eq!(c.volumes.len(), 1);
        assert_eq!(c.targets[0].luns.len(), 1);
        assert!(c.targets[0].alua.is_empty());
        assert_eq!(c.targets[0].acl.as_ref().unwrap()[0].luns, [0]);
        assert!(c.targets[1].luns.is_empty());
        c.validate().expect("still a valid configuration");
    }

    #[test]
    fn a_target_without_portals_goes_too() {
        let mut c = EngineConfig::from_toml(CONFIG).unwrap();
        let addr: SocketAddr = "127.0.0.2:3260".parse().unwrap();
        let p = leave_out(&mut c, &Piece::Portal(addr), "vanished".into());
        let objects: Vec<&str> = p.iter().map(|p| p.object.as_str()).collect();
        assert_eq!(objects, ["portal/127.0.0.2:3260", "target/iqn.2026-11.local.portico:t2"]);
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].portals, ["127.0.0.1:3260".parse::<SocketAddr>().unwrap()]);
        c.validate().unwrap();
        assert_eq!(left_out(&p), BTreeSet::from([Piece::Portal(addr)]));
    }
}
