//! A tiny iSCSI initiator for tests and tools: real PDUs over real TCP,
//! built on the engine's own sans-IO codec. It panics on what a correct
//! target never sends, which is what a test wants.

use std::net::SocketAddr;
use std::time::Duration;

use crate::iscsi::chap::{self, ChapAlg};
use crate::iscsi::keys;
use crate::iscsi::pdu::{self, op, Bhs, Framing, Pdu};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const INITIATOR: &str = "iqn.2026-11.test.portico:init";

#[derive(Debug, Default, Clone)]
pub struct LoginOpts<'a> {
    pub initiator: &'a str,
    /// `None`: discovery session.
    pub target: Option<&'a str>,
    pub chap: Option<(&'a str, &'a str)>,
    /// (target user, target secret) expected back; enables mutual CHAP.
    pub mutual: Option<(&'a str, &'a str)>,
    /// Send our own challenge equal to the target's (reflection attack).
    pub reflect: bool,
    pub keys: Vec<(&'a str, &'a str)>,
}

impl<'a> LoginOpts<'a> {
    /// The test initiator logging in to `target` (`None`: discovery).
    pub fn new(target: Option<&'a str>) -> Self {
        LoginOpts { initiator: INITIATOR, target, ..Default::default() }
    }
}

#[derive(Debug)]
pub struct CmdResult {
    pub status: u8,
    pub data: Vec<u8>,
    pub sense: Vec<u8>,
    /// Flags byte of the final status PDU (O/U bits).
    pub flags: u8,
    pub residual: u32,
}

pub struct Initiator {
    pub stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub rx_framing: Framing,
    pub tx_framing: Framing,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    itt: u32,
    pub negotiated: Vec<(String, String)>,
    pub tsih: u16,
    pub isid: [u8; 6],
    /// The last MaxCmdSN the target announced (RFC 7143 §4.2.2.1).
    pub max_cmd_sn: u32,
}

impl Initiator {
    pub async fn connect(addr: SocketAddr) -> Initiator {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Initiator::connect_stream(stream)
    }

    /// Connects from a chosen source address (any of 127.0.0.0/8 on loopback).
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> std::io::Result<Initiator> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(source, 0))?;
        let stream = sock.connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut i = Initiator::connect_stream(stream);
        i.isid[5] = source.to_string().len() as u8;
        Ok(i)
    }

    fn connect_stream(stream: TcpStream) -> Initiator {
        Initiator {
            stream,
            buf: BytesMut::new(),
            rx_framing: Framing { max_data: 1 << 24, ..Framing::default() },
            tx_framing: Framing::default(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 0x100,
            negotiated: Vec::new(),
            tsih: 0,
            isid: [0x80, 0, 0, 0, 0x12, 0x34],
            max_cmd_sn: 1,
        }
    }

    /// Makes the connection end with a reset when it is dropped (SO_LINGER
    /// 0): what it had sent and the target had not received is discarded,
    /// never retransmitted later, as a host that gave a path up and sends
    /// its commands down another needs (a command delivered late on the
    /// old connection would overwrite what the retry wrote).
    pub fn reset_on_close(&self) -> std::io::Result<()> {
        self.stream.set_zero_linger()
    }

    /// Whether the target closed the connection: end of stream within `t`
    /// (PDUs that arrive first are skipped).
    pub async fn closed_within(&mut self, t: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + t;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => self.buf.clear(),
                Err(_) => return false,
            }
        }
    }

    pub fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    pub async fn send(&mut self, p: Pdu) {
        let bytes = pdu::encode(p, &self.tx_framing);
        self.stream.write_all(&bytes).await.expect("send");
    }

    pub async fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b).await
    }

    /// Next PDU, or `None` on close / timeout.
    pub async fn recv_timeout(&mut self, t: Duration) -> Option<Pdu> {
        loop {
            if let Ok(Some(n)) = pdu::check(&self.buf, &self.rx_framing) {
                let p = pdu::parse(&mut self.buf, n, &self.rx_framing).expect("valid PDU from target");
                if matches!(
                    p.bhs.opcode(),
                    op::SCSI_RESP
                        | op::NOP_IN
                        | op::TMF_RESP
                        | op::TEXT_RESP
                        | op::LOGOUT_RESP
                        | op::REJECT
                        | op::LOGIN_RESP
                ) || (p.bhs.opcode() == op::DATA_IN && p.bhs.flags() & 1 != 0)
                {
                    self.exp_stat_sn = p.bhs.u32_at(24).wrapping_add(1);
                }
                return Some(p);
            }
            match tokio::time::timeout(t, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    pub async fn recv(&mut self) -> Pdu {
        self.recv_timeout(Duration::from_secs(10)).await.expect("PDU from target")
    }

    async fn login_pdu(&mut self, csg: u8, nsg: u8, transit: bool, kv: &[(String, String)]) -> Pdu {
        let mut b = Bhs::new(op::LOGIN_REQ);
        b.set_immediate(true);
        b.set_flags(if transit { 0x80 } else { 0 } | csg << 2 | nsg);
        b.0[8..14].copy_from_slice(&self.isid);
        b.set_u16(14, self.tsih);
        b.set_itt(1);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send(Pdu::with_data(b, keys::encode_text(kv))).await;
        self.recv().await
    }

    /// Logs in; returns Err((class, detail)) when refused.
    pub async fn login(&mut self, o: &LoginOpts<'_>) -> Result<(), (u8, u8)> {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        let mut kv = vec![s("InitiatorName", o.initiator)];
        match o.target {
            Some(t) => {
                kv.push(s("SessionType", "Normal"));
                kv.push(s("TargetName", t));
            }
            None => kv.push(s("SessionType", "Discovery")),
        }
        kv.push(s("AuthMethod", if o.chap.is_some() { "CHAP,None" } else { "None" }));
        let status = |p: &Pdu| (p.bhs.0[36], p.bhs.0[37]);
        let r = self.login_pdu(0, 1, o.chap.is_none(), &kv).await;
        if status(&r) != (0, 0) {
            return Err(status(&r));
        }
        if let Some((user, secret)) = o.chap {
            let r = self.login_pdu(0, 1, false, &[s("CHAP_A", "7,5")]).await;
            if status(&r) != (0, 0) {
                return Err(status(&r));
            }
            let got = keys::parse_text(&r.data).unwrap();
            let get = |k: &str| got.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
            let alg = ChapAlg::pick(&get("CHAP_A")).unwrap();
            let id: u8 = get("CHAP_I").parse().unwrap();
            let challenge = chap::decode_binary(&get("CHAP_C")).unwrap();
            let mut kv = vec![
                s("CHAP_N", user),
                s("CHAP_R", &chap::encode_hex(&alg.response(id, secret.as_bytes(), &challenge))),
            ];
            let my_challenge = if o.reflect { challenge.clone() } else { chap::random_bytes(16) };
            if o.mutual.is_some() {
                kv.push(s("CHAP_I", "77"));
                kv.push(s("CHAP_C", &chap::encode_hex(&my_challenge)));
            }
            let r = self.login_pdu(0, 1, true, &kv).await;
            if status(&r) != (0, 0) {
                return Err(status(&r));
            }
            if let Some((tu, ts)) = o.mutual {
                let got = keys::parse_text(&r.data).unwrap();
                let get = |k: &str| got.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
                assert_eq!(get("CHAP_N"), tu);
                let want = alg.response(77, ts.as_bytes(), &my_challenge);
                assert_eq!(chap::decode_binary(&get("CHAP_R")).unwrap(), want, "target proved its secret");
            }
        }
        let mut kv = vec![s("MaxRecvDataSegmentLength", "65536")];
        for (k, v) in &o.keys {
            kv.push(s(k, v));
        }
        let r = self.login_pdu(1, 3, true, &kv).await;
        if status(&r) != (0, 0) {
            return Err(status(&r));
        }
        assert_eq!(r.bhs.flags() & 0x83, 0x83, "transit to full feature phase");
        self.tsih = r.bhs.u16_at(14);
        self.max_cmd_sn = r.bhs.u32_at(32);
        self.negotiated = keys::parse_text(&r.data).unwrap();
        let on = |k: &str| self.negotiated.iter().any(|(a, v)| a == k && v == "CRC32C");
        let (h, d) = (on("HeaderDigest"), on("DataDigest"));
        let target_mrdsl = self
            .negotiated
            .iter()
            .find(|(a, _)| a == "MaxRecvDataSegmentLength")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(8192);
        self.rx_framing = Framing { header_digest: h, data_digest: d, max_data: 65536 };
        self.tx_framing = Framing { header_digest: h, data_digest: d, max_data: target_mrdsl };
        Ok(())
    }

    pub fn key(&self, k: &str) -> Option<String> {
        self.negotiated.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone())
    }

    pub fn scsi_pdu(&mut self, lun: u64, cdb: &[u8], read: bool, write: bool, edtl: u32) -> Bhs {
        let mut b = Bhs::new(op::SCSI_CMD);
        b.set_flags(0x80 | if read { 0x40 } else { 0 } | if write { 0x20 } else { 0 } | 1);
        b.set_u64(8, crate::iscsi::session::encode_lun(lun));
        let itt = self.next_itt();
        b.set_itt(itt);
        b.set_u32(20, edtl);
        b.set_u32(24, self.cmd_sn);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        b.set_u32(28, self.exp_stat_sn);
        b.0[32..32 + cdb.len()].copy_from_slice(cdb);
        b
    }

    /// Runs one command to completion, answering R2Ts. `immediate`/`unsolicited`
    /// say how much of `write` to send before any R2T.
    pub async fn command(
        &mut self,
        lun: u64,
        cdb: &[u8],
        read_len: u32,
        write: &[u8],
        immediate: usize,
        unsolicited: usize,
    ) -> CmdResult {
        let edtl = if write.is_empty() { read_len } else { write.len() as u32 };
        let b = self.scsi_pdu(lun, cdb, read_len > 0, !write.is_empty(), edtl);
        let itt = b.itt();
        let mut sent = immediate.min(write.len());
        self.send(Pdu::with_data(b, Bytes::copy_from_slice(&write[..sent]))).await;
        let seg = self.tx_framing.max_data;
        let mut datasn = 0;
        while sent < unsolicited.min(write.len()) {
            let n = seg.min(unsolicited.min(write.len()) - sent);
            let last = sent + n == unsolicited.min(write.len());
            self.data_out(itt, 0xffff_ffff, datasn, sent as u32, &write[sent..sent + n], last).await;
            datasn += 1;
            sent += n;
        }
        let mut data = Vec::new();
        loop {
            let p = self.recv().await;
            match p.bhs.opcode() {
                op::R2T => {
                    assert_eq!(p.bhs.itt(), itt);
                    let ttt = p.bhs.u32_at(20);
                    let off = p.bhs.u32_at(40) as usize;
                    let len = p.bhs.u32_at(44) as usize;
                    let mut o = off;
                    let mut sn = 0;
                    while o < off + len {
                        let n = seg.min(off + len - o);
                        self.data_out(itt, ttt, sn, o as u32, &write[o..o + n], o + n == off + len).await;
                        sn += 1;
                        o += n;
                    }
                }
                op::DATA_IN => {
                    assert_eq!(p.bhs.u32_at(40) as usize, data.len(), "Data-In in order");
                    data.extend_from_slice(&p.data);
                    if p.bhs.flags() & 1 != 0 {
                        return CmdResult {
                            status: p.bhs.0[3],
                            data,
                            sense: vec![],
                            flags: p.bhs.flags(),
                            residual: p.bhs.u32_at(44),
                        };
                    }
                }
                op::SCSI_RESP => {
                    let sense = if p.data.len() >= 2 { p.data[2..].to_vec() } else { vec![] };
                    return CmdResult {
                        status: p.bhs.0[3],
                        data,
                        sense,
                        flags: p.bhs.flags(),
                        residual: p.bhs.u32_at(44),
                    };
                }
                op::NOP_IN => {}
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    pub async fn data_out(&mut self, itt: u32, ttt: u32, datasn: u32, offset: u32, data: &[u8], last: bool) {
        let mut b = Bhs::new(op::DATA_OUT);
        b.set_flags(if last { 0x80 } else { 0 });
        b.set_itt(itt);
        b.set_u32(20, ttt);
        b.set_u32(28, self.exp_stat_sn);
        b.set_u32(36, datasn);
        b.set_u32(40, offset);
        self.send(Pdu::with_data(b, Bytes::copy_from_slice(data))).await;
    }

    /// Runs `cdb`, retrying once past a unit attention.
    pub async fn command_ok(&mut self, lun: u64, cdb: &[u8], read_len: u32, write: &[u8]) -> CmdResult {
        for _ in 0..4 {
            let r = self.command(lun, cdb, read_len, write, 0, 0).await;
            if r.status == 2 && r.sense.get(2).map(|k| k & 0xf) == Some(6) {
                continue;
            }
            return r;
        }
        panic!("unit attentions never cleared");
    }

    pub async fn tmf(&mut self, function: u8, lun: u64, rtt: u32) -> u8 {
        let mut b = Bhs::new(op::TMF_REQ);
        b.set_immediate(true);
        b.set_flags(0x80 | function);
        b.set_u64(8, crate::iscsi::session::encode_lun(lun));
        let itt = self.next_itt();
        b.set_itt(itt);
        b.set_u32(20, rtt);
        b.set_u32(24, self.cmd_sn);
        b.set_u32(28, self.exp_stat_sn);
        self.send(Pdu::new(b)).await;
        loop {
            let p = self.recv().await;
            if p.bhs.opcode() == op::TMF_RESP {
                assert_eq!(p.bhs.itt(), itt);
                return p.bhs.0[2];
            }
        }
    }

    pub async fn send_targets(&mut self) -> Vec<(String, String)> {
        let mut b = Bhs::new(op::TEXT_REQ);
        b.set_flags(0x80);
        let itt = self.next_itt();
        b.set_itt(itt);
        b.set_u32(20, 0xffff_ffff);
        b.set_u32(24, self.cmd_sn);
        self.cmd_sn += 1;
        self.send(Pdu::with_data(b, keys::encode_text(&[("SendTargets".into(), "All".into())]))).await;
        let p = self.recv().await;
        assert_eq!(p.bhs.opcode(), op::TEXT_RESP);
        keys::parse_text(&p.data).unwrap()
    }

    /// An immediate NOP-Out that asks for a NOP-In echo of `payload`.
    pub fn nop_out_pdu(&mut self, payload: Bytes) -> Pdu {
        let mut b = Bhs::new(op::NOP_OUT);
        b.set_immediate(true);
        b.set_flags(0x80);
        let itt = self.next_itt();
        b.set_itt(itt);
        b.set_u32(20, 0xffff_ffff);
        b.set_u32(24, self.cmd_sn);
        Pdu::with_data(b, payload)
    }

    pub async fn nop(&mut self, payload: &[u8]) -> Pdu {
        let p = self.nop_out_pdu(Bytes::copy_from_slice(payload));
        self.send(p).await;
        self.recv().await
    }

    pub async fn logout(&mut self) -> Pdu {
        let mut b = Bhs::new(op::LOGOUT_REQ);
        b.set_immediate(true);
        b.set_flags(0x80);
        let itt = self.next_itt();
        b.set_itt(itt);
        b.set_u32(24, self.cmd_sn);
        self.send(Pdu::new(b)).await;
        self.recv().await
    }
}

/// The MaxCmdSN a target PDU announces.
pub fn max_cmd_sn(p: &Pdu) -> u32 {
    p.bhs.u32_at(32)
}

pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

pub fn report_luns() -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = 0xa0;
    c[6..10].copy_from_slice(&4096u32.to_be_bytes());
    c
}

/// LUN numbers from REPORT LUNS parameter data.
pub fn parse_report_luns(d: &[u8]) -> Vec<u64> {
    let n = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize / 8;
    (0..n)
        .map(|i| crate::iscsi::session::decode_lun(u64::from_be_bytes(d[8 + i * 8..16 + i * 8].try_into().unwrap())))
        .collect()
}
