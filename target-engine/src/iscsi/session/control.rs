//! Session control PDUs: NOP (RFC 7143 §11.18, §11.19), task management
//! (§11.5, SAM-5 §7), Text / SendTargets (§11.10, Appendix C), Logout (§11.14).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::super::keys;
use super::super::login;
use super::super::pdu::{op, Bhs, Pdu};
use super::super::response::OutPdu;
use super::{decode_lun, Session, Stop};

impl Session {
    pub(super) fn ping(&mut self) {
        self.ping_ttt = self.ping_ttt.wrapping_add(1) | 0x1000_0000;
        let mut b = Bhs::new(op::NOP_IN);
        b.set_flags(0x80);
        b.set_itt(0xffff_ffff);
        b.set_u32(20, self.ping_ttt);
        self.send(vec![OutPdu { pdu: Pdu::new(b), status: false }]);
    }

    pub(super) fn nop_out(&mut self, p: Pdu) {
        let b = p.bhs;
        if b.itt() == 0xffff_ffff {
            return; // answer to our ping (or a pure CmdSN carrier)
        }
        let mut r = Bhs::new(op::NOP_IN);
        r.set_flags(0x80);
        r.set_u64(8, b.lun_raw());
        r.set_itt(b.itt());
        r.set_u32(20, 0xffff_ffff);
        let n = p.data.len().min(self.params.initiator_mrdsl as usize);
        self.send(vec![OutPdu { pdu: Pdu::with_data(r, p.data.slice(..n)), status: true }]);
    }

    /// Aborts running and collecting tasks, optionally only those of one LUN.
    pub(super) fn abort_all(&mut self, lun: Option<u64>) {
        {
            let mut t = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            t.retain(|_, r| {
                if lun.is_none_or(|l| l == r.lun) {
                    r.abort.abort();
                    false
                } else {
                    true
                }
            });
        }
        self.writes.retain(|_, w| lun.is_some_and(|l| l != w.cmd.lun));
        let writes = &self.writes;
        self.ttt_owner.retain(|_, itt| writes.contains_key(itt));
    }

    pub(super) async fn tmf(&mut self, p: Pdu) {
        let b = p.bhs;
        let function = b.flags() & 0x7f;
        let lun = decode_lun(b.lun_raw());
        let luns = self.handle.current_luns();
        let mut elsewhere = None;
        let resp_code: u8 = match function {
            1 => {
                let rtt = b.u32_at(20);
                let found = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&rtt);
                if let Some(r) = found {
                    r.abort.abort();
                    0
                } else if self.writes.remove(&rtt).is_some() {
                    let writes = &self.writes;
                    self.ttt_owner.retain(|_, itt| writes.contains_key(itt));
                    0
                } else {
                    1
                }
            }
            2 | 4 => {
                self.abort_all(Some(lun));
                0
            }
            5 => match luns.get(&lun) {
                Some(lu) => {
                    self.abort_all(Some(lun));
                    if let Some(n) = &self.nexus {
                        lu.reset(&n.id);
                    }
                    // The unit is exported by other nodes too: they reset
                    // it for their nexuses before the response goes out.
                    elsewhere = lu.cluster_forwarder().map(|f| (f, lu.spec.name.clone()));
                    0
                }
                None => 2,
            },
            // TARGET COLD RESET closes every session of the target: only an
            // initiator the administrator allowed may send it.
            7 if !self.nexus.as_ref().is_some_and(|n| n.privileges().target_cold_reset) => 6,
            6 | 7 => {
                self.abort_all(None);
                for h in self.registry.sessions() {
                    if !Arc::ptr_eq(&h, &self.handle) && !h.info.discovery && h.info.target == self.handle.info.target {
                        h.reset_tasks();
                    }
                }
                if let Some(n) = &self.nexus {
                    for lu in luns.values() {
                        lu.reset(&n.id);
                    }
                }
                0
            }
            3 | 8 => 5,
            _ => 255,
        };
        tracing::info!(function, lun, response = resp_code, "task management");
        let mut r = Bhs::new(op::TMF_RESP);
        r.set_flags(0x80);
        r.0[2] = resp_code;
        r.set_itt(b.itt());
        let response = vec![OutPdu { pdu: Pdu::new(r), status: true }];
        if let Some((forwarder, volume)) = elsewhere {
            // The session reads its next PDU once the other nodes answered
            // (a bounded wait), so resets cannot pile up.
            forwarder.reset_elsewhere(&volume).await;
        }
        self.send(response);
        if function == 7 && resp_code == 0 {
            // TARGET COLD RESET: every connection to this target is closed
            // once the response is out (RFC 7143 §11.5.1).
            for h in self.registry.sessions() {
                if !h.info.discovery && h.info.target == self.handle.info.target {
                    h.close();
                }
            }
        }
    }

    pub(super) fn text(&mut self, p: Pdu) {
        let b = p.bhs;
        let ttt = b.u32_at(20);
        let payload = match (&self.text_rest, ttt) {
            (Some((t, rest)), tt) if *t == tt => rest.clone(),
            _ => {
                let kv = keys::parse_text(&p.data).unwrap_or_default();
                let mut answer = Bytes::new();
                let mut other = Vec::new();
                for (k, v) in kv {
                    if k != "SendTargets" {
                        other.push((k, "NotUnderstood".to_string()));
                        continue;
                    }
                    {
                        let cat = self.registry.catalog();
                        let which = if v.is_empty() {
                            self.result.target.as_ref().map(|t| t.iqn.clone()).unwrap_or_default()
                        } else {
                            v
                        };
                        answer = login::send_targets(&cat, &self.result.initiator, &which, self.local);
                    }
                }
                if !other.is_empty() {
                    // Renegotiation in full feature phase is not offered.
                    let mut b = BytesMut::from(&answer[..]);
                    b.extend_from_slice(&keys::encode_text(&other));
                    answer = b.freeze();
                }
                answer
            }
        };
        let max = self.params.initiator_mrdsl as usize;
        let mut r = Bhs::new(op::TEXT_RESP);
        r.set_itt(b.itt());
        let data = if payload.len() > max {
            let t = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            self.text_rest = Some((t, payload.slice(max..)));
            r.set_flags(0x40);
            r.set_u32(20, t);
            payload.slice(..max)
        } else {
            self.text_rest = None;
            r.set_flags(0x80);
            r.set_u32(20, 0xffff_ffff);
            payload
        };
        self.send(vec![OutPdu { pdu: Pdu::with_data(r, data), status: true }]);
    }

    pub(super) async fn logout(&mut self, p: Pdu) -> Result<(), Stop> {
        // Let running commands finish so their status is not lost (§11.14).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.tasks.lock().unwrap_or_else(|e| e.into_inner()).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut r = Bhs::new(op::LOGOUT_RESP);
        r.set_flags(0x80);
        r.set_itt(p.bhs.itt());
        // Reason 2 (remove the connection for recovery) needs ERL 2:
        // "connection recovery is not supported".
        if p.bhs.flags() & 0x7f == 2 {
            r.0[2] = 2;
        }
        r.set_u16(40, 2);
        self.send(vec![OutPdu { pdu: Pdu::new(r), status: true }]);
        Err(Stop::Logout)
    }
}
