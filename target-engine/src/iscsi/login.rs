//! The login phase (RFC 7143 §6.3, §11.12, §11.13) as a sans-IO state
//! machine: Login Request PDUs in, Login Response PDUs out.
//!
//! Stages: security negotiation (CSG 0, CHAP per §12.1.3), operational
//! negotiation (CSG 1, keys per §13), then full feature phase (3).
//! Status classes and details are those of §11.13.5.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::admission::{MAX_LOGIN_KEYS, MAX_LOGIN_PDUS, MAX_LOGIN_TEXT};
use super::chap::{self, ChapAlg};
use super::keys::{self, Answer, Params, TargetLimits};
use super::name;
use super::pdu::{op, Bhs, Pdu};
use super::registry::{Catalog, ChapPolicy, TargetEntry};

/// Commands the initiator may have outstanding (MaxCmdSN - ExpCmdSN + 1).
pub const CMD_WINDOW: u32 = 128;

/// Login status (class, detail), RFC 7143 §11.13.5.
pub mod status {
    pub const SUCCESS: (u8, u8) = (0, 0);
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0);
    pub const AUTH_FAILED: (u8, u8) = (2, 1);
    pub const FORBIDDEN: (u8, u8) = (2, 2);
    pub const NOT_FOUND: (u8, u8) = (2, 3);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 5);
    pub const MISSING_PARAMETER: (u8, u8) = (2, 7);
    pub const NO_SESSION: (u8, u8) = (2, 10);
    pub const INVALID_REQUEST: (u8, u8) = (2, 11);
    pub const OUT_OF_RESOURCES: (u8, u8) = (3, 2);
}

/// What a successful login produced.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub params: Params,
    pub initiator: String,
    pub isid: [u8; 6],
    pub target: Option<Arc<TargetEntry>>,
    pub exp_cmd_sn: u32,
    /// StatSN of the next response.
    pub stat_sn: u32,
}

/// Outcome of one Login Request.
#[derive(Debug)]
pub enum Step {
    Continue(Pdu),
    /// Send this and close the connection.
    Fail(Pdu),
    /// Send this (after patching the TSIH in with [`set_tsih`]) and go to full feature phase.
    Done(Pdu, Box<LoginResult>),
}

pub fn set_tsih(pdu: &mut Pdu, tsih: u16) {
    pdu.bhs.set_u16(14, tsih);
}

/// Turns the final response of a login that succeeded into a refusal with
/// `st` (the target could not admit the session after all): no transit,
/// no keys; the connection is closed after it is sent.
pub fn refuse(pdu: &mut Pdu, st: (u8, u8)) {
    let csg = (pdu.bhs.flags() >> 2) & 3;
    pdu.bhs.set_flags(csg << 2);
    pdu.bhs.0[36] = st.0;
    pdu.bhs.0[37] = st.1;
    pdu.data = Bytes::new();
    pdu.bhs.set_data_len(0);
}

#[derive(Debug)]
enum Chap {
    NotStarted,
    /// AuthMethod=CHAP agreed, waiting for CHAP_A.
    WantAlg,
    /// Challenge sent, waiting for CHAP_N / CHAP_R.
    WantResponse {
        alg: ChapAlg,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
}

/// One connection's login.
#[derive(Debug)]
pub struct Login {
    catalog: Arc<Catalog>,
    local: SocketAddr,
    limits: TargetLimits,
    params: Params,
    first: bool,
    initiator: Option<String>,
    isid: [u8; 6],
    discovery: bool,
    target: Option<Arc<TargetEntry>>,
    chap: Chap,
    authenticated: bool,
    stat_sn: u32,
    exp_cmd_sn: u32,
    text: Vec<u8>,
    seen: std::collections::HashSet<String>,
    declared: bool,
    peer: String,
    /// Login Request PDUs received so far.
    pdus: u32,
}

impl Login {
    pub fn new(catalog: Arc<Catalog>, local: SocketAddr, peer: SocketAddr, limits: TargetLimits) -> Self {
        let params = Params { target_mrdsl: limits.max_recv_data_segment_length, ..Params::default() };
        Login {
            catalog,
            local,
            limits,
            params,
            first: true,
            initiator: None,
            isid: [0; 6],
            discovery: false,
            target: None,
            chap: Chap::NotStarted,
            authenticated: false,
            stat_sn: 0,
            exp_cmd_sn: 0,
            text: Vec::new(),
            seen: Default::default(),
            declared: false,
            peer: peer.to_string(),
            pdus: 0,
        }
    }

    /// The CHAP this login must pass: discovery's, or the target's for this
    /// initiator (its ACL entry's own credentials, if it has them).
    fn policy(&self) -> &ChapPolicy {
        match (&self.target, &self.initiator) {
            (Some(t), Some(i)) => t.chap_for(i),
            (Some(t), None) => &t.chap,
            (None, _) => &self.catalog.discovery_chap,
        }
    }

    fn response(&mut self, req: &Bhs, flags: u8, st: (u8, u8), kv: &[(String, String)]) -> Pdu {
        let mut b = Bhs::new(op::LOGIN_RESP);
        b.set_flags(flags);
        b.0[8..14].copy_from_slice(&req.0[8..14]);
        b.set_itt(req.itt());
        b.set_u32(24, self.stat_sn);
        self.stat_sn = self.stat_sn.wrapping_add(1);
        b.set_u32(28, self.exp_cmd_sn);
        b.set_u32(32, self.exp_cmd_sn.wrapping_add(CMD_WINDOW - 1));
        b.0[36] = st.0;
        b.0[37] = st.1;
        Pdu::with_data(b, keys::encode_text(kv))
    }

    fn fail(&mut self, req: &Bhs, st: (u8, u8), why: &str) -> Step {
        tracing::warn!(
            initiator = self.initiator.as_deref().unwrap_or("?"),
            peer = %self.peer,
            target = self.target.as_ref().map(|t| t.iqn.as_str()).unwrap_or(""),
            status = format!("{:02x}{:02x}", st.0, st.1),
            "login refused: {why}"
        );
        let csg = (req.flags() >> 2) & 3;
        Step::Fail(self.response(req, csg << 2, st, &[]))
    }

    /// Handles one Login Request PDU.
    pub fn step(&mut self, req: &Pdu) -> Step {
        let b = req.bhs;
        if b.opcode() != op::LOGIN_REQ {
            return self.fail(&b, status::INVALID_REQUEST, "non-login PDU during login");
        }
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return self.fail(&b, status::INITIATOR_ERROR, "too many Login PDUs");
        }
        let flags = b.flags();
        let transit = flags & 0x80 != 0;
        let cont = flags & 0x40 != 0;
        let csg = (flags >> 2) & 3;
        let nsg = flags & 3;
        if self.first {
            self.first = false;
            // Version-max >= 0 >= version-min always holds for version 0.
            if b.0[3] != 0 {
                return self.fail(&b, status::UNSUPPORTED_VERSION, "unsupported version");
            }
            self.isid.copy_from_slice(&b.0[8..14]);
            self.stat_sn = b.u32_at(28);
            if b.u16_at(14) != 0 {
                return self.fail(&b, status::NO_SESSION, "adding a connection to a session is not supported");
            }
        }
        self.exp_cmd_sn = b.u32_at(24);
        if self.text.len() + req.data.len() > MAX_LOGIN_TEXT {
            return self.fail(&b, status::INITIATOR_ERROR, "login text too long");
        }
        self.text.extend_from_slice(&req.data);
        if cont {
            // More text follows; answer with an empty response (§6.6.1).
            return Step::Continue(self.response(&b, csg << 2, status::SUCCESS, &[]));
        }
        let text = std::mem::take(&mut self.text);
        let kv = match keys::parse_text(&text) {
            Ok(kv) => kv,
            Err(_) => return self.fail(&b, status::INITIATOR_ERROR, "malformed login text"),
        };
        if kv.len() > MAX_LOGIN_KEYS {
            return self.fail(&b, status::INITIATOR_ERROR, "too many keys");
        }
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        let mut out: Vec<(String, String)> = Vec::new();

        if self.initiator.is_none() {
            let Some(given) = get("InitiatorName") else {
                return self.fail(&b, status::MISSING_PARAMETER, "no InitiatorName");
            };
            // Checked before it reaches a log line, an ACL or a TransportID.
            let Ok(name) = name::normalize(&given) else {
                return self.fail(&b, status::INITIATOR_ERROR, "InitiatorName is not a valid iSCSI name");
            };
            self.initiator = Some(name.clone());
            self.discovery = match get("SessionType").as_deref() {
                None | Some("Normal") => false,
                Some("Discovery") => true,
                Some(_) => return self.fail(&b, status::INITIATOR_ERROR, "bad SessionType"),
            };
            if !self.discovery {
                let Some(tn) = get("TargetName") else {
                    return self.fail(&b, status::MISSING_PARAMETER, "no TargetName");
                };
                let Some(t) = self.catalog.target(&tn).filter(|t| t.served_at(self.local)).cloned() else {
                    return self.fail(&b, status::NOT_FOUND, "unknown target");
                };
                let allowed = t.allows(&name);
                // From here on the target's own session settings apply.
                self.limits = t.session;
                self.params.target_mrdsl = t.session.max_recv_data_segment_length;
                out.push(("TargetPortalGroupTag".into(), t.tpg.to_string()));
                self.target = Some(t);
                if !allowed {
                    return self.fail(&b, status::FORBIDDEN, "initiator not in the target's ACL");
                }
            }
        }
        let needs_chap = *self.policy() != ChapPolicy::None;

        if csg == 0 {
            if let Err((st, why)) = self.security(&kv, &mut out) {
                return self.fail(&b, st, why);
            }
        } else if needs_chap && !self.authenticated {
            return self.fail(&b, status::AUTH_FAILED, "operational stage without authentication");
        } else {
            self.authenticated = self.authenticated || !needs_chap;
        }
        if csg == 3 || csg == 2 {
            return self.fail(&b, status::INITIATOR_ERROR, "bad current stage");
        }

        for (k, v) in &kv {
            if k.starts_with("CHAP_") || k == "AuthMethod" || k == "TargetName" {
                continue;
            }
            let identity = matches!(k.as_str(), "InitiatorName" | "InitiatorAlias" | "SessionType");
            // A parameter is negotiated at most once per login (RFC 7143 §6.2).
            if !identity && !self.seen.insert(k.clone()) {
                return self.fail(&b, status::INITIATOR_ERROR, "key negotiated twice");
            }
            if self.seen.len() > MAX_LOGIN_KEYS {
                return self.fail(&b, status::INITIATOR_ERROR, "too many keys");
            }
            if let Answer::Reply(r) = keys::negotiate(k, v, &self.limits, self.discovery, &mut self.params) {
                out.push((k.clone(), r));
            }
        }
        if csg == 1 && !self.declared {
            self.declared = true;
            out.push(("MaxRecvDataSegmentLength".into(), self.limits.max_recv_data_segment_length.to_string()));
        }

        let ready = match csg {
            0 => self.authenticated,
            _ => true,
        };
        if transit && ready {
            if nsg == 3 {
                use super::keys::DigestPolicy::Crc32c;
                if self.limits.header_digest == Crc32c && !self.params.header_digest {
                    return self.fail(&b, status::INITIATOR_ERROR, "the target requires HeaderDigest=CRC32C");
                }
                if self.limits.data_digest == Crc32c && !self.params.data_digest {
                    return self.fail(&b, status::INITIATOR_ERROR, "the target requires DataDigest=CRC32C");
                }
                let flags = 0x80 | (csg << 2) | 3;
                if csg == 0 && !self.declared {
                    self.declared = true;
                    out.push(("MaxRecvDataSegmentLength".into(), self.limits.max_recv_data_segment_length.to_string()));
                }
                let resp = self.response(&b, flags, status::SUCCESS, &out);
                let result = LoginResult {
                    params: self.params,
                    initiator: self.initiator.clone().unwrap_or_default(),
                    isid: self.isid,
                    target: self.target.clone(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    stat_sn: self.stat_sn,
                };
                tracing::info!(initiator = %result.initiator, peer = %self.peer,
                    target = self.target.as_ref().map(|t| t.iqn.as_str()).unwrap_or("(discovery)"), "login complete");
                return Step::Done(resp, Box::new(result));
            }
            if nsg == 1 && csg == 0 {
                return Step::Continue(self.response(&b, 0x80 | 1, status::SUCCESS, &out));
            }
            return self.fail(&b, status::INITIATOR_ERROR, "bad next stage");
        }
        Step::Continue(self.response(&b, csg << 2, status::SUCCESS, &out))
    }

    /// Security stage: AuthMethod, then CHAP_A, then CHAP_N/CHAP_R (+ mutual).
    fn security(
        &mut self,
        kv: &[(String, String)],
        out: &mut Vec<(String, String)>,
    ) -> Result<(), ((u8, u8), &'static str)> {
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
        let policy = self.policy().clone();
        if let Some(methods) = get("AuthMethod") {
            let offered: Vec<&str> = methods.split(',').collect();
            match policy {
                ChapPolicy::None => {
                    if offered.contains(&"None") {
                        out.push(("AuthMethod".into(), "None".into()));
                        self.authenticated = true;
                    } else {
                        out.push(("AuthMethod".into(), "Reject".into()));
                        return Err((status::AUTH_FAILED, "initiator offers no AuthMethod we accept"));
                    }
                }
                _ => {
                    if offered.contains(&"CHAP") {
                        out.push(("AuthMethod".into(), "CHAP".into()));
                        self.chap = Chap::WantAlg;
                    } else {
                        return Err((status::AUTH_FAILED, "CHAP required but not offered"));
                    }
                }
            }
            return Ok(());
        }
        match std::mem::replace(&mut self.chap, Chap::Done) {
            Chap::NotStarted => {
                self.chap = Chap::NotStarted;
                if policy == ChapPolicy::None {
                    self.authenticated = true;
                    return Ok(());
                }
                Err((status::AUTH_FAILED, "CHAP required but skipped"))
            }
            Chap::WantAlg => {
                let alg = get("CHAP_A").and_then(ChapAlg::pick).ok_or((status::AUTH_FAILED, "no supported CHAP_A"))?;
                let id = chap::random_bytes(1)[0];
                let challenge = chap::random_bytes(chap::CHALLENGE_LEN);
                out.push(("CHAP_A".into(), alg.code().to_string()));
                out.push(("CHAP_I".into(), id.to_string()));
                out.push(("CHAP_C".into(), chap::encode_hex(&challenge)));
                self.chap = Chap::WantResponse { alg, id, challenge };
                Ok(())
            }
            Chap::WantResponse { alg, id, challenge } => {
                let (user, secret, mutual) = match &policy {
                    ChapPolicy::OneWay { user, secret } => (user, secret, None),
                    ChapPolicy::Mutual { user, secret, target_user, target_secret } => {
                        (user, secret, Some((target_user, target_secret)))
                    }
                    ChapPolicy::None => return Err((status::AUTH_FAILED, "no CHAP policy")),
                };
                let name = get("CHAP_N").ok_or((status::AUTH_FAILED, "no CHAP_N"))?;
                let resp = get("CHAP_R")
                    .and_then(chap::decode_binary)
                    .ok_or((status::AUTH_FAILED, "missing or malformed CHAP_R"))?;
                let expected = alg.response(id, secret.as_bytes(), &challenge);
                let name_ok = chap::verify(user.as_bytes(), name.as_bytes());
                if !(chap::verify(&expected, &resp) & name_ok) {
                    return Err((status::AUTH_FAILED, "wrong CHAP name or response"));
                }
                match (mutual, get("CHAP_I"), get("CHAP_C")) {
                    (None, None, None) => {}
                    (Some((tu, ts)), Some(i), Some(c)) => {
                        let i: u8 = i.parse().map_err(|_| (status::AUTH_FAILED, "bad CHAP_I"))?;
                        let c = chap::decode_binary(c).ok_or((status::AUTH_FAILED, "bad CHAP_C"))?;
                        // A reflected challenge would let an attacker use us as an oracle.
                        if c.len() < 16 || c == challenge {
                            return Err((status::AUTH_FAILED, "short or reflected mutual challenge"));
                        }
                        out.push(("CHAP_N".into(), tu.clone()));
                        out.push(("CHAP_R".into(), chap::encode_hex(&alg.response(i, ts.as_bytes(), &c))));
                    }
                    // Mutual required but not asked for, or asked for but not configured.
                    _ => return Err((status::AUTH_FAILED, "mutual CHAP required by one side only")),
                }
                self.authenticated = true;
                Ok(())
            }
            Chap::Done => {
                self.chap = Chap::Done;
                Ok(())
            }
        }
    }
}

fn target_address(addr: SocketAddr, tpg: u16) -> String {
    let host = match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    format!("{host},{tpg}")
}

/// Builds the SendTargets answer (RFC 7143 Appendix C) for `initiator`:
/// this engine's targets, then those other nodes of the cluster serve
/// (the catalog's peer targets), each with its portals, as far as their
/// ACLs admit the initiator.
pub fn send_targets(catalog: &Catalog, initiator: &str, which: &str, local: SocketAddr) -> Bytes {
    let mut kv = Vec::new();
    for t in &catalog.targets {
        if !t.allows(initiator) {
            continue;
        }
        if which != "All" && which != t.iqn {
            continue;
        }
        kv.push(("TargetName".to_string(), t.iqn.clone()));
        for p in &t.portals {
            let addr = if p.ip().is_unspecified() { SocketAddr::new(local.ip(), p.port()) } else { *p };
            kv.push(("TargetAddress".to_string(), target_address(addr, t.tpg)));
        }
    }
    for t in &catalog.peer_targets {
        if !t.allows(initiator) || (which != "All" && which != t.iqn) {
            continue;
        }
        kv.push(("TargetName".to_string(), t.iqn.clone()));
        for p in &t.portals {
            kv.push(("TargetAddress".to_string(), target_address(*p, t.tpg)));
        }
    }
    keys::encode_text(&kv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn login() -> Login {
        let a: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        Login::new(Arc::new(Catalog::default()), a, a, TargetLimits::default())
    }

    fn req(flags: u8, text: &str) -> Pdu {
        let mut b = Bhs::new(op::LOGIN_REQ);
        b.set_flags(flags);
        Pdu::with_data(b, Bytes::copy_from_slice(text.as_bytes()))
    }

    /// A cluster's group spans nodes: discovery lists the peers' targets
    /// too, with their portals, and only to initiators their ACL admits.
    #[test]
    fn send_targets_lists_peer_targets_as_their_acl_allows() {
        let peer = |iqn: &str, portals: &[&str], initiators: Option<Vec<String>>| crate::config::PeerTarget {
            iqn: iqn.into(),
            portals: portals.iter().map(|p| p.parse().unwrap()).collect(),
            tpg: 2,
            initiators,
        };
        let catalog = Catalog {
            peer_targets: vec![
                peer("iqn.2026-11.x:g1.n2", &["10.0.0.2:3260", "10.0.1.2:3260"], None),
                peer("iqn.2026-11.x:g2.n2", &["10.0.0.2:3260"], Some(vec!["iqn.2026-11.x:host-a".into()])),
            ],
            ..Default::default()
        };
        let local: SocketAddr = "10.0.0.1:3260".parse().unwrap();
        let text = |initiator: &str, which: &str| {
            String::from_utf8(send_targets(&catalog, initiator, which, local).to_vec()).unwrap().replace('\0', "\n")
        };
        assert_eq!(
            text("iqn.2026-11.x:host-a", "All"),
            "TargetName=iqn.2026-11.x:g1.n2\nTargetAddress=10.0.0.2:3260,2\nTargetAddress=10.0.1.2:3260,2\n\
             TargetName=iqn.2026-11.x:g2.n2\nTargetAddress=10.0.0.2:3260,2\n"
        );
        assert_eq!(
            text("iqn.2026-11.x:host-b", "All"),
            "TargetName=iqn.2026-11.x:g1.n2\nTargetAddress=10.0.0.2:3260,2\nTargetAddress=10.0.1.2:3260,2\n"
        );
        assert_eq!(text("iqn.2026-11.x:host-b", "iqn.2026-11.x:g2.n2"), "");
    }

    #[test]
    fn discovery_without_auth() {
        let mut l = login();
        let r = l.step(&req(
            0x80 | 0x04 | 3,
            "InitiatorName=iqn.2026-11.x:y\0SessionType=Discovery\0MaxRecvDataSegmentLength=4096\0",
        ));
        let Step::Done(p, res) = r else { panic!("{r:?}") };
        assert_eq!(p.bhs.flags() & 0x83, 0x83);
        assert!(res.target.is_none());
        assert_eq!(res.params.initiator_mrdsl, 4096);
    }

    #[test]
    fn key_negotiated_twice_fails() {
        let mut l = login();
        let r = l.step(&req(0x04 | 3, "InitiatorName=iqn.2026-11.x:y\0SessionType=Discovery\0MaxBurstLength=4096\0"));
        assert!(matches!(r, Step::Continue(_)));
        let r = l.step(&req(0x80 | 0x04 | 3, "MaxBurstLength=8192\0"));
        assert!(matches!(r, Step::Fail(p) if p.bhs.0[36..38] == [2, 0]));
    }

    #[test]
    fn missing_names_and_unknown_targets_fail() {
        let mut l = login();
        assert!(matches!(l.step(&req(0x81, "SessionType=Discovery\0")), Step::Fail(p) if p.bhs.0[36..38] == [2, 7]));
        let mut l = login();
        let r = l.step(&req(0x81, "InitiatorName=iqn.2026-11.x:y\0TargetName=iqn.2026-11.no:pe\0"));
        assert!(matches!(r, Step::Fail(p) if p.bhs.0[36..38] == [2, 3]));
    }

    #[test]
    fn initiator_names_are_checked_and_normalised() {
        let mut l = login();
        let r = l.step(&req(0x81, "InitiatorName=iqn.2026-11.x:evil\nforged log line\0SessionType=Discovery\0"));
        assert!(matches!(r, Step::Fail(p) if p.bhs.0[36..38] == [2, 0]));
        let mut l = login();
        let r = l.step(&req(0x80 | 0x04 | 3, "InitiatorName=IQN.2026-11.X:Host\0SessionType=Discovery\0"));
        let Step::Done(_, res) = r else { panic!("{r:?}") };
        assert_eq!(res.initiator, "iqn.2026-11.x:host");
    }

    #[test]
    fn a_login_has_a_bounded_number_of_pdus_and_keys() {
        let mut l = login();
        let mut steps = 0;
        let last = loop {
            // Each request only continues the text: the login never ends on its own.
            let r = l.step(&req(0x40 | 0x04 | 3, "X-Filler=1\0"));
            steps += 1;
            if !matches!(r, Step::Continue(_)) {
                break r;
            }
            assert!(steps <= MAX_LOGIN_PDUS, "still going after {steps} PDUs");
        };
        assert!(matches!(last, Step::Fail(p) if p.bhs.0[36..38] == [2, 0]));

        let mut l = login();
        let r = l.step(&req(0x04 | 3, "InitiatorName=iqn.2026-11.x:y\0SessionType=Discovery\0"));
        assert!(matches!(r, Step::Continue(_)));
        let mut failed = false;
        for round in 0..MAX_LOGIN_PDUS {
            let text: String = (0..40).map(|i| format!("X-K{round}-{i}=v\0")).collect();
            match l.step(&req(0x04 | 3, &text)) {
                Step::Continue(_) => {}
                Step::Fail(p) => {
                    assert_eq!(p.bhs.0[36..38], [2, 0]);
                    failed = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
            assert!(l.seen.len() <= MAX_LOGIN_KEYS);
        }
        assert!(failed, "a flood of distinct keys must end the login");
    }

    proptest! {
        #[test]
        fn arbitrary_login_pdus_never_panic(steps in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)), 1..6)) {
            let mut l = login();
            for (flags, data) in steps {
                let mut b = Bhs::new(op::LOGIN_REQ);
                b.set_flags(flags);
                let r = l.step(&Pdu::with_data(b, Bytes::from(data)));
                if matches!(r, Step::Fail(_) | Step::Done(..)) { break; }
            }
        }
    }
}
