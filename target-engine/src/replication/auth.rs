//! Authenticating a replication stream before anything else moves on it.
//!
//! Both ends hold the cluster's replication key (`key_file` in
//! `[replication]`, the same on every node). Neither sends it: each proves
//! it holds the key with an HMAC-SHA-256 (RFC 2104) over the hello and both
//! ends' fresh random nonces, under its own role label, so a proof is good
//! for one stream in one direction only. The exchange:
//!
//! 1. the primary says hello, with its nonce;
//! 2. the replica answers with its nonce and its proof;
//! 3. the primary checks that proof, and answers with its own;
//! 4. the replica checks it, and only then looks at the volume and epoch.
//!
//! Proofs are compared in constant time. The key authenticates the ends;
//! the stream itself is not encrypted, so the replication traffic type
//! belongs on the cluster's own network.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of each end's nonce, and of a proof.
pub const NONCE: usize = 32;
pub const PROOF: usize = 32;
/// The shortest key accepted.
pub const MIN_KEY: usize = 16;
/// The longest key file read.
const MAX_KEY_FILE: u64 = 4096;

/// The cluster's replication key. Its bytes never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

impl Key {
    /// The key in `path`: its bytes, without surrounding white space.
    pub fn load(path: &Path) -> Result<Key, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read the replication key {}: {e}", path.display()))?;
        if meta.len() > MAX_KEY_FILE {
            return Err(format!("the replication key file {} is longer than {MAX_KEY_FILE} bytes", path.display()));
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read the replication key {}: {e}", path.display()))?;
        Key::new(bytes.trim_ascii()).map_err(|why| format!("the replication key in {}: {why}", path.display()))
    }

    pub fn new(bytes: &[u8]) -> Result<Key, String> {
        if bytes.len() < MIN_KEY {
            return Err(format!("it has {} bytes; a key has at least {MIN_KEY}", bytes.len()));
        }
        Ok(Key(bytes.to_vec()))
    }
}

/// A fresh random nonce.
pub fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    getrandom::getrandom(&mut n).expect("the system's random source");
    n
}

/// Which end a proof speaks for.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    Primary,
    Replica,
}

/// What both proofs of one stream cover: the hello and both nonces.
#[derive(Clone, Debug)]
pub struct Exchange<'a> {
    pub cluster: &'a str,
    pub volume: &'a str,
    pub epoch: u64,
    pub primary: u32,
    pub replica: u32,
    pub primary_nonce: &'a [u8; NONCE],
    pub replica_nonce: &'a [u8; NONCE],
}

impl Exchange<'_> {
    fn mac(&self, key: &Key, side: Side) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
        mac.update(match side {
            Side::Primary => b"portico replication v1: primary",
            Side::Replica => b"portico replication v1: replica",
        });
        for text in [self.cluster, self.volume] {
            mac.update(&(text.len() as u64).to_be_bytes());
            mac.update(text.as_bytes());
        }
        mac.update(&self.epoch.to_be_bytes());
        mac.update(&self.primary.to_be_bytes());
        mac.update(&self.replica.to_be_bytes());
        mac.update(self.primary_nonce);
        mac.update(self.replica_nonce);
        mac
    }

    /// `side`'s proof that it holds `key`.
    pub fn proof(&self, key: &Key, side: Side) -> [u8; PROOF] {
        self.mac(key, side).finalize().into_bytes().into()
    }

    /// Whether `given` is `side`'s proof under `key` (in constant time).
    pub fn verify(&self, key: &Key, side: Side, given: &[u8; PROOF]) -> bool {
        self.mac(key, side).verify_slice(given).is_ok()
    }
}

/// `side`'s proof that it holds `key`, bound to one TLS session by the
/// keying material both ends exported from it (`super::keyed_tls`).
fn session_mac(key: &Key, side: Side, exported: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(match side {
        Side::Primary => b"portico replication tls v1: primary",
        Side::Replica => b"portico replication tls v1: replica",
    });
    mac.update(exported);
    mac
}

pub fn session_proof(key: &Key, side: Side, exported: &[u8]) -> [u8; PROOF] {
    session_mac(key, side, exported).finalize().into_bytes().into()
}

/// Whether `given` is `side`'s proof for this session (in constant time).
pub fn verify_session_proof(key: &Key, side: Side, exported: &[u8], given: &[u8; PROOF]) -> bool {
    session_mac(key, side, exported).verify_slice(given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_key_side_and_stream_only() {
        let key = Key::new(b"0123456789abcdef").unwrap();
        let other = Key::new(b"0123456789abcdeX").unwrap();
        let (p, r) = ([1u8; NONCE], [2u8; NONCE]);
        let x = Exchange {
            cluster: "c",
            volume: "v",
            epoch: 3,
            primary: 1,
            replica: 2,
            primary_nonce: &p,
            replica_nonce: &r,
        };
        let proof = x.proof(&key, Side::Replica);
        assert!(x.verify(&key, Side::Replica, &proof));
        assert!(!x.verify(&other, Side::Replica, &proof), "another key");
        assert!(!x.verify(&key, Side::Primary, &proof), "the other side's label");
        let r2 = [3u8; NONCE];
        let again = Exchange { replica_nonce: &r2, ..x.clone() };
        assert!(!again.verify(&key, Side::Replica, &proof), "another stream's nonce");
        let later = Exchange { epoch: 4, ..x };
        assert!(!later.verify(&key, Side::Replica, &proof), "another hello");
        assert!(Key::new(b"short").is_err());
        assert_eq!(format!("{key:?}"), "Key(<secret>)");
    }
}
