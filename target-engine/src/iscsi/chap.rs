//! CHAP authentication (RFC 1994, RFC 7143 §12.1.3).
//!
//! Response = H(identifier || secret || challenge) with H chosen by CHAP_A:
//! 5 = MD5, 6 = SHA-1, 7 = SHA-256 (IANA PPP authentication algorithms).
//! Binary values travel as `0x…` hex or `0b…` base64 (RFC 7143 §6.1).

use md5::Digest;
use subtle::ConstantTimeEq;

/// Challenge length we send: well above the 16-byte minimum.
pub const CHALLENGE_LEN: usize = 32;
/// Longest binary value we decode (bounds memory per login).
const MAX_BINARY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlg {
    Md5 = 5,
    Sha1 = 6,
    Sha256 = 7,
}

impl ChapAlg {
    /// Picks the first algorithm of the initiator's CHAP_A list we support.
    pub fn pick(list: &str) -> Option<ChapAlg> {
        list.split(',').find_map(|a| match a.trim() {
            "5" => Some(ChapAlg::Md5),
            "6" => Some(ChapAlg::Sha1),
            "7" => Some(ChapAlg::Sha256),
            _ => None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update([id]);
            h.update(secret);
            h.update(challenge);
            h.finalize().to_vec()
        }
        match self {
            ChapAlg::Md5 => run::<md5::Md5>(id, secret, challenge),
            ChapAlg::Sha1 => run::<sha1::Sha1>(id, secret, challenge),
            ChapAlg::Sha256 => run::<sha2::Sha256>(id, secret, challenge),
        }
    }
}

/// Constant-time comparison of an expected and a received response.
pub fn verify(expected: &[u8], got: &[u8]) -> bool {
    expected.len() == got.len() && bool::from(expected.ct_eq(got))
}

/// Fresh random bytes for a challenge or identifier.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).expect("the OS random source is available");
    v
}

pub fn encode_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decodes a CHAP binary value (`0x` hex or `0b` base64).
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if v.len() > MAX_BINARY * 2 + 2 {
        return None;
    }
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = h.as_bytes();
        // An odd number of digits has an implied leading zero.
        let mut out = Vec::with_capacity(h.len() / 2 + 1);
        let mut i = 0;
        if h.len() % 2 == 1 {
            out.push(hexval(h[0])?);
            i = 1;
        }
        while i < h.len() {
            out.push(hexval(h[i])? << 4 | hexval(h[i + 1])?);
            i += 2;
        }
        Some(out)
    } else if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        base64(b)
    } else {
        None
    }
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1994_md5_shape() {
        let r = ChapAlg::Md5.response(1, b"secret", b"challenge");
        assert_eq!(r.len(), 16);
        assert_eq!(ChapAlg::Sha1.response(1, b"s", b"c").len(), 20);
        assert_eq!(ChapAlg::Sha256.response(1, b"s", b"c").len(), 32);
        // Known MD5: md5(0x01 "secret" "challenge")
        let mut h = md5::Md5::new();
        h.update(b"\x01secretchallenge");
        assert_eq!(r, h.finalize().to_vec());
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![10, 11]));
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAQID"), Some(vec![1, 2, 3]));
        assert_eq!(decode_binary("0bAQI="), Some(vec![1, 2]));
        assert_eq!(decode_binary("zz"), None);
        assert_eq!(decode_binary(&encode_hex(&[0, 255, 7])), Some(vec![0, 255, 7]));
    }

    #[test]
    fn pick_and_verify() {
        assert_eq!(ChapAlg::pick("7,5"), Some(ChapAlg::Sha256));
        assert_eq!(ChapAlg::pick("99,5"), Some(ChapAlg::Md5));
        assert_eq!(ChapAlg::pick("99"), None);
        assert!(verify(b"abc", b"abc"));
        assert!(!verify(b"abc", b"abd"));
        assert!(!verify(b"abc", b"ab"));
        assert!(random_bytes(CHALLENGE_LEN) != random_bytes(CHALLENGE_LEN));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,80}") {
            let _ = decode_binary(&s);
        }
    }
}
