//! Password hashing and bearer secrets.
//!
//! Passwords: argon2id with the crate's default parameters (RFC 9106's
//! second recommended option, 19 MiB per hash), run on the blocking pool so
//! a login never stalls the async workers, and only through an
//! [`Argon2Pool`]: a fixed number of hashes at a time and a short queue, so
//! that a flood of logins costs bounded memory and CPU and is refused
//! rather than queued without end. Session cookies and API tokens: 256 random bits,
//! stored only as their SHA-256, compared through the database lookup of that
//! hash (an attacker cannot steer the hash, so no timing leak of the secret).

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Prefix of API tokens, so that they are recognisable in secret scanners.
pub const API_TOKEN_PREFIX: &str = "ptk_";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("too many passwords are being checked")]
    Busy,
}

/// Where every argon2 hash runs: at most `concurrent` at a time, at most
/// `queued` more waiting for a turn; beyond that a request is refused at
/// once with [`SecretError::Busy`]. A hash whose caller went away still
/// holds its turn until it finishes, so abandoned requests cannot exceed
/// the cap either.
#[derive(Debug)]
pub struct Argon2Pool {
    turns: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    limit: usize,
}

/// A turn to hash, held until the hash is done.
struct Turn {
    _permit: OwnedSemaphorePermit,
    _admission: Admission,
}

/// One admitted request, waiting or hashing.
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Argon2Pool {
    pub fn new(concurrent: usize, queued: usize) -> Self {
        let concurrent = concurrent.max(1);
        Argon2Pool {
            turns: Arc::new(Semaphore::new(concurrent)),
            admitted: Arc::new(AtomicUsize::new(0)),
            limit: concurrent + queued,
        }
    }

    async fn turn(&self) -> Result<Turn, SecretError> {
        let admitted = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(self.admitted.clone());
        if admitted >= self.limit {
            return Err(SecretError::Busy);
        }
        let permit = self.turns.clone().acquire_owned().await.map_err(|_| SecretError::Busy)?;
        Ok(Turn { _permit: permit, _admission: admission })
    }

    /// Hashes a password with argon2id (PHC string format).
    pub async fn hash(&self, password: String) -> Result<String, SecretError> {
        let turn = self.turn().await?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| SecretError::Hash(e.to_string()))
        })
        .await?
    }

    /// Checks a password against a stored PHC string. `None` (unknown user)
    /// is checked against a fixed hash so that both cases take the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, SecretError> {
        let turn = self.turn().await?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let known = stored.is_some();
            let phc = match stored {
                Some(phc) => phc,
                None => dummy_hash()?.to_string(),
            };
            let parsed = PasswordHash::new(&phc).map_err(|e| SecretError::Hash(e.to_string()))?;
            let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
            Ok(ok && known)
        })
        .await?
    }
}

/// An argon2id hash of a random password nobody knows, made once per process.
fn dummy_hash() -> Result<&'static str, SecretError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let salt = SaltString::generate(&mut OsRng);
    let h = Argon2::default()
        .hash_password(random_token("").as_bytes(), &salt)
        .map_err(|e| SecretError::Hash(e.to_string()))?
        .to_string();
    Ok(DUMMY.get_or_init(|| h))
}

/// 256 random bits, URL-safe base64, with an optional prefix.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A random password for the first admin: 20 characters without look-alikes.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20).map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char).collect()
}

/// Hex SHA-256, the form in which tokens are stored and looked up.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pool = Argon2Pool::new(1, 0);
        let h = pool.hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(pool.verify("correct horse".into(), Some(h.clone())).await.unwrap());
        assert!(!pool.verify("wrong horse".into(), Some(h)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!Argon2Pool::new(1, 0).verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_cap_and_the_queue_hashing_is_refused_at_once() {
        let pool = Arc::new(Argon2Pool::new(1, 2));
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.hash(format!("password {i}")).await })
            })
            .collect();
        let mut done = 0;
        let mut busy = 0;
        for r in runs {
            match r.await.unwrap() {
                Ok(_) => done += 1,
                Err(SecretError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(done + busy, 8);
        assert!(done <= 3 && busy >= 5, "{done} hashed, {busy} refused");
        assert_eq!(pool.admitted.load(Ordering::Acquire), 0, "every turn is given back");
        pool.hash("after the rush".into()).await.unwrap();
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = random_token(API_TOKEN_PREFIX);
        let b = random_token(API_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("ptk_") && a.len() == 4 + 43);
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let p = random_password();
        assert_eq!(p.len(), 20);
    }
}
