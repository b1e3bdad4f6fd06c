//! CHAP secrets at rest: the engine needs them in clear, so they are sealed
//! with ChaCha20-Poly1305 under a 256-bit key kept in the data directory
//! (`secret.key`, mode 0600) rather than stored in clear in the database.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const KEY_FILE: &str = "secret.key";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("cannot read or create the key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the key file {0} is not 32 bytes")]
    BadKey(String),
    #[error("a sealed secret cannot be opened (wrong key or damaged data)")]
    Open,
}

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// Loads the key from `data_dir`, creating it (mode 0600) on first use.
    pub fn open_or_create(data_dir: &Path) -> Result<Self, SecretBoxError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecretBoxError::Io { path: path.display().to_string(), source };
        let key = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                let mut f =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
                f.write_all(&key).map_err(io)?;
                f.sync_all().map_err(io)?;
                key.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        if key.len() != 32 {
            return Err(SecretBoxError::BadKey(path.display().to_string()));
        }
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// The key itself, for a node that joins the cluster (sent only over
    /// the cluster's authenticated channel).
    pub fn key_bytes(data_dir: &Path) -> Result<Vec<u8>, SecretBoxError> {
        Self::open_or_create(data_dir)?;
        let path = data_dir.join(KEY_FILE);
        std::fs::read(&path).map_err(|source| SecretBoxError::Io { path: path.display().to_string(), source })
    }

    /// Stores the cluster's key on a node that joins, before anything is
    /// sealed or opened with it.
    pub fn install_key(data_dir: &Path, key: &[u8]) -> Result<(), SecretBoxError> {
        let path = data_dir.join(KEY_FILE);
        if key.len() != 32 {
            return Err(SecretBoxError::BadKey(path.display().to_string()));
        }
        let io = |source| SecretBoxError::Io { path: path.display().to_string(), source };
        let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(key).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Nonce followed by ciphertext and tag.
    pub fn seal(&self, secret: &str) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.cipher.encrypt(&nonce, secret.as_bytes()).expect("encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretBoxError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretBoxError::Open);
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), data).map_err(|_| SecretBoxError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretBoxError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = SecretBox::open_or_create(dir.path()).unwrap();
        let sealed = b.seal("alicesecret1");
        assert!(!sealed.windows(12).any(|w| w == b"alicesecret1"), "not stored in clear");
        assert_ne!(b.seal("alicesecret1"), sealed, "random nonces");
        assert_eq!(b.open(&sealed).unwrap(), "alicesecret1");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The same key is loaded again.
        let again = SecretBox::open_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "alicesecret1");
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(b.open(&damaged).is_err());
    }
}
