//! Sealing the replicas' shared secrets (central's CA key and operator token) for the
//! database: ChaCha20-Poly1305 (ring's AEAD) under a 32-byte key kept in a file that
//! every replica is given (`--key-file`). The database alone reveals nothing.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use std::path::Path;

/// Why a key file or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file is missing, unreadable or malformed.
    #[error("--key-file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong and the fix.
        reason: String,
    },
    /// A sealed value does not open with this key.
    #[error("{0}")]
    Open(String),
}

/// The sealing key.
pub struct SealKey(LessSafeKey);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// Read a key file: 64 hex digits (whitespace around them ignored). With `create`,
    /// a missing file is made with a new random key, mode 0600 (give the same file to
    /// every replica).
    pub fn load(path: &Path, create: bool) -> Result<(Self, bool), SealError> {
        let err = |reason: String| SealError::Key {
            path: path.display().to_string(),
            reason,
        };
        let mut made = false;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).map_err(|e| err(format!("no randomness: {e}")))?;
                let t = format!("{}\n", hex::encode(k));
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut f| f.write_all(t.as_bytes()))
                    .map_err(|e| err(format!("cannot create it: {e}")))?;
                made = true;
                t
            }
            Err(e) => {
                return Err(err(format!(
                    "cannot read it ({e}); give every replica the same key file"
                )))
            }
        };
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                err(
                    "must hold 64 hex digits (a 32-byte key), e.g. from `openssl rand -hex 32`"
                        .into(),
                )
            })?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| err("not a ChaCha20-Poly1305 key".into()))?;
        Ok((Self(LessSafeKey::new(key)), made))
    }

    /// Seal `plain` under a fresh random nonce; `what` is bound in as associated data
    /// (a value sealed for one purpose does not open as another). Hex text.
    pub fn seal(&self, what: &str, plain: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce)
            .map_err(|e| SealError::Open(format!("no randomness: {e}")))?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(what.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Open("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(hex::encode(out))
    }

    /// Open what [`SealKey::seal`] made for `what`.
    pub fn open(&self, what: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let wrong = || {
            SealError::Open(format!(
                "the database's {what} does not open with this --key-file: every replica \
                 needs the key file of the replica that first started on this database"
            ))
        };
        let raw = hex::decode(sealed.trim()).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut buf)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let (a, made) = SealKey::load(&dir.path().join("k"), true).unwrap();
        assert!(made);
        let (a2, made) = SealKey::load(&dir.path().join("k"), true).unwrap();
        assert!(!made);
        let s = a.seal("secrets", b"the CA key").unwrap();
        assert!(!s.contains(&hex::encode(b"the CA key")));
        assert_eq!(a2.open("secrets", &s).unwrap(), b"the CA key");
        // Another purpose, another key, a flipped bit: all refused.
        assert!(a.open("other", &s).is_err());
        let (b, _) = SealKey::load(&dir.path().join("k2"), true).unwrap();
        assert!(b
            .open("secrets", &s)
            .unwrap_err()
            .to_string()
            .contains("--key-file"));
        let mut bad = s.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        assert!(a
            .open("secrets", std::str::from_utf8(&bad).unwrap())
            .is_err());
        // A malformed or missing key file names itself and the fix.
        std::fs::write(dir.path().join("bad"), "nothex").unwrap();
        let e = SealKey::load(&dir.path().join("bad"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = SealKey::load(&dir.path().join("none"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--key-file") && e.contains("cannot read"), "{e}");
    }
}
