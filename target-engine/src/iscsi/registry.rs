//! What the transport needs to know about the configured targets (the
//! catalog) and the sessions that are logged in (RFC 7143 §4.4.3 session
//! identity, §6.3.5 session reinstatement), and the [`Admission`] gates
//! every connection passes.
//!
//! Initiator names in the catalog are in their normal form
//! ([`super::name::normalize`]), as are the names logins present, so an ACL
//! entry written in capitals still matches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use super::admission::Admission;
use crate::scsi::{LunMap, Nexus, Privileges};

/// CHAP requirement for a target or for discovery. `Debug` hides secrets.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ChapPolicy {
    #[default]
    None,
    OneWay {
        user: String,
        secret: String,
    },
    Mutual {
        user: String,
        secret: String,
        target_user: String,
        target_secret: String,
    },
}

impl std::fmt::Debug for ChapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChapPolicy::None => write!(f, "None"),
            ChapPolicy::OneWay { user, .. } => write!(f, "OneWay {{ user: {user:?}, secret: <redacted> }}"),
            ChapPolicy::Mutual { user, target_user, .. } => write!(
                f,
                "Mutual {{ user: {user:?}, secret: <redacted>, target_user: {target_user:?}, target_secret: <redacted> }}"
            ),
        }
    }
}

/// One initiator an ACL lets in.
#[derive(Debug, Clone)]
pub struct AclEntry {
    /// The initiator's name, in its normal form.
    pub initiator: String,
    pub luns: Vec<u64>,
    /// Its own CHAP credentials; `None`: the target's.
    pub chap: Option<ChapPolicy>,
    /// Its own privileges; `None`: the target's.
    pub privileges: Option<Privileges>,
}

/// One target as the transport sees it.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    pub iqn: String,
    pub tpg: u16,
    pub portals: Vec<SocketAddr>,
    pub luns: LunMap,
    pub chap: ChapPolicy,
    /// `None`: every initiator sees every LUN.
    pub acl: Option<Vec<AclEntry>>,
    /// Relative target port identifier (SPC-4 §7.8.6.5), unique per target.
    pub relative_port: u16,
    /// What initiators of this target may do to every host (see [`Privileges`]).
    pub privileges: Privileges,
    /// What the target offers in login negotiation, and its NOP-In timing.
    pub session: super::keys::TargetLimits,
}

impl TargetEntry {
    fn acl_entry(&self, initiator: &str) -> Option<&AclEntry> {
        self.acl.as_ref()?.iter().find(|e| e.initiator == initiator)
    }

    pub fn allows(&self, initiator: &str) -> bool {
        self.acl.is_none() || self.acl_entry(initiator).is_some()
    }

    /// The CHAP credentials `initiator` must log in with: its ACL entry's
    /// own, if it has them, else the target's. A host that knows the
    /// target's secret cannot log in under the name of an entry that has
    /// its own.
    pub fn chap_for(&self, initiator: &str) -> &ChapPolicy {
        self.acl_entry(initiator).and_then(|e| e.chap.as_ref()).unwrap_or(&self.chap)
    }

    /// The privileges of `initiator`'s nexuses on this target.
    pub fn privileges_for(&self, initiator: &str) -> Privileges {
        self.acl_entry(initiator).and_then(|e| e.privileges).unwrap_or(self.privileges)
    }

    /// The LUN map `initiator` may see (ACL-filtered).
    pub fn lun_view(&self, initiator: &str) -> LunMap {
        if self.acl.is_none() {
            return self.luns.clone();
        }
        let allowed = self.acl_entry(initiator).map(|e| e.luns.as_slice()).unwrap_or_default();
        self.luns.iter().filter(|(k, _)| allowed.contains(k)).map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Whether this target is reachable through the portal a connection came in on.
    pub fn served_at(&self, local: SocketAddr) -> bool {
        self.portals.iter().any(|p| p.port() == local.port() && (p.ip() == local.ip() || p.ip().is_unspecified()))
    }
}

/// Everything configured, replaced as a whole by `Engine::apply`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub targets: Vec<Arc<TargetEntry>>,
    pub discovery_chap: ChapPolicy,
    /// Targets other nodes serve, which discovery lists too.
    pub peer_targets: Vec<crate::config::PeerTarget>,
}

impl Catalog {
    pub fn target(&self, iqn: &str) -> Option<&Arc<TargetEntry>> {
        self.targets.iter().find(|t| t.iqn == iqn)
    }
}

/// Dashboard view of one session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    pub initiator: String,
    /// Initiator's address (host:port).
    pub address: String,
    /// Target IQN; empty for a discovery session.
    pub target: String,
    /// Portal the session came in on.
    pub portal: String,
    pub tsih: u16,
    pub isid: String,
    pub discovery: bool,
    pub since: SystemTime,
}

/// A live session: enough to report it, change its LUN view and end it.
#[derive(Debug)]
pub struct SessionHandle {
    pub info: SessionInfo,
    pub nexus: Option<Arc<Nexus>>,
    pub luns: RwLock<Arc<LunMap>>,
    close: watch::Sender<bool>,
    reset: watch::Sender<u64>,
}

impl SessionHandle {
    pub fn close(&self) {
        let _ = self.close.send(true);
    }

    /// Asks the session to abort all its tasks (TARGET WARM RESET from
    /// another session of the same target, SAM-5 §7.10).
    pub fn reset_tasks(&self) {
        self.reset.send_modify(|n| *n += 1);
    }

    pub fn subscribe_reset(&self) -> watch::Receiver<u64> {
        self.reset.subscribe()
    }

    pub fn current_luns(&self) -> Arc<LunMap> {
        self.luns.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs a new LUN view; raises REPORTED LUNS DATA HAS CHANGED if the
    /// set of LUNs or the logical unit behind one of them changed. A unit
    /// reopened for the same logical unit (its volume's primary moved) is
    /// installed without it: it reports its own change.
    pub fn update_luns(&self, new: LunMap) {
        let mut g = self.luns.write().unwrap_or_else(|e| e.into_inner());
        let pairs = || g.len() == new.len() && g.iter().zip(new.iter()).all(|((a, _), (b, _))| a == b);
        let same_objects = pairs() && g.values().zip(new.values()).all(|(x, y)| Arc::ptr_eq(x, y));
        if same_objects {
            return;
        }
        let same_units = pairs() && g.values().zip(new.values()).all(|(x, y)| x.spec.naa == y.spec.naa);
        *g = Arc::new(new);
        if !same_units {
            if let Some(n) = &self.nexus {
                n.report_luns_changed();
            }
        }
    }
}

/// Why a session could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("the engine already has {0} sessions, its cap")]
    SessionsFull(usize),
}

/// Catalog plus session table, shared by listeners, connections and the engine.
#[derive(Debug, Default)]
pub struct Registry {
    catalog: RwLock<Arc<Catalog>>,
    sessions: Mutex<HashMap<u16, Arc<SessionHandle>>>,
    next_tsih: AtomicU16,
    admission: Arc<Admission>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry { next_tsih: AtomicU16::new(1), ..Default::default() })
    }

    /// The gates every connection and session passes.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_catalog(&self, c: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
    }

    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        let mut v: Vec<_> = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by_key(|s| s.info.tsih);
        v
    }

    /// Registers a new session, closing any session with the same initiator
    /// port and target (reinstatement). Returns the handle and its close
    /// signal, or refuses when the engine is at its session cap.
    ///
    /// The cap is below 65535, so a free TSIH is found within cap + 2 tries.
    pub fn register(
        &self,
        mut info: SessionInfo,
        nexus: Option<Arc<Nexus>>,
        luns: LunMap,
    ) -> Result<(Arc<SessionHandle>, watch::Receiver<bool>), RegisterError> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let old: Vec<u16> = map
            .values()
            .filter(|s| s.info.initiator == info.initiator && s.info.isid == info.isid && s.info.target == info.target)
            .map(|s| s.info.tsih)
            .collect();
        let cap = self.admission.max_sessions().min(65_535);
        if map.len() - old.len() >= cap {
            return Err(RegisterError::SessionsFull(cap));
        }
        for t in old {
            if let Some(s) = map.remove(&t) {
                tracing::info!(tsih = t, initiator = %s.info.initiator, "session reinstated: closing the old one");
                s.close();
            }
        }
        let tsih = loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 && !map.contains_key(&t) {
                break t;
            }
        };
        info.tsih = tsih;
        let (tx, rx) = watch::channel(false);
        let h = Arc::new(SessionHandle {
            info,
            nexus,
            luns: RwLock::new(Arc::new(luns)),
            close: tx,
            reset: watch::channel(0).0,
        });
        map.insert(tsih, h.clone());
        Ok((h, rx))
    }

    pub fn unregister(&self, h: &Arc<SessionHandle>) {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&h.info.tsih).is_some_and(|s| Arc::ptr_eq(s, h)) {
            map.remove(&h.info.tsih);
        }
    }
}
