//! Join tokens and the operator token.

use std::fmt;
use std::path::{Path, PathBuf};

use super::files::{ensure_dir, read_opt, warn_if_readable_by_others, write_private};
use super::{random_bytes, sha256_hex, PkiError};

const PREFIX: &str = "roostjoin1";
const ID_LEN: usize = 8;
const SECRET_LEN: usize = 32;
const HASH_LEN: usize = 64;
const SHAPE: &str = "`roostjoin1.ID.SECRET.CAHASH` (ID: 8 characters a-z 0-9, SECRET: 32 characters a-z 0-9, \
                     CAHASH: 64 lower-case hex characters); copy the whole token printed by `roost central token create`";

/// A join token: `roostjoin1.<id>.<secret>.<ca_sha256>`. The id names the token in
/// central's store, the secret proves the holder may enroll once, and the CA hash lets
/// the host check central before it sends anything.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinTokenSecret {
    /// 8 characters `[a-z0-9]`; not secret.
    pub id: String,
    /// 32 characters `[a-z0-9]`.
    pub secret: String,
    /// 64 lower-case hex characters: SHA-256 of central's CA certificate (DER).
    pub ca_sha256: String,
}

impl fmt::Debug for JoinTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokenSecret")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

/// `n` random characters of `[a-z0-9]`, without modulo bias.
fn random_alnum(n: usize) -> Result<String, PkiError> {
    const CHARS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<64>()? {
            // 252 = 7 * 36: bytes above it would favour the first characters.
            if b < 252 && out.len() < n {
                out.push(char::from(CHARS[usize::from(b % 36)]));
            }
        }
    }
    Ok(out)
}

impl JoinTokenSecret {
    /// A new token with a random id and secret, for the CA with hash `ca_sha256`.
    ///
    /// # Panics
    /// If the operating system's random number generator fails: no token is safer than
    /// a guessable one.
    pub fn generate(ca_sha256: &str) -> Self {
        let (id, secret) = match (random_alnum(ID_LEN), random_alnum(SECRET_LEN)) {
            (Ok(id), Ok(secret)) => (id, secret),
            (Err(e), _) | (_, Err(e)) => panic!("cannot make a join token: {e}"),
        };
        JoinTokenSecret {
            id,
            secret,
            ca_sha256: ca_sha256.to_string(),
        }
    }

    /// The token as the operator copies it.
    pub fn encode(&self) -> String {
        format!("{PREFIX}.{}.{}.{}", self.id, self.secret, self.ca_sha256)
    }

    /// Parse a token (surrounding whitespace ignored). Errors name the part that is
    /// wrong and never echo the secret.
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.len() != 4 {
            return Err(PkiError::Token(format!(
                "the join token must have 4 dot-separated parts {SHAPE}; this one has {}",
                parts.len()
            )));
        }
        let (prefix, id, secret, hash) = (parts[0], parts[1], parts[2], parts[3]);
        if prefix != PREFIX {
            let shown = if prefix.len() <= 16 && prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
                format!("`{prefix}`")
            } else {
                format!("{} characters that are not `{PREFIX}`", prefix.len())
            };
            return Err(PkiError::Token(format!(
                "the join token must start with `{PREFIX}.`; this one starts with {shown}: it is not a Roost \
                 join token, or from an incompatible version; a token looks like {SHAPE}"
            )));
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        check_part("ID (part 2)", id, ID_LEN, "characters a-z 0-9", alnum, true)?;
        check_part(
            "secret (part 3)",
            secret,
            SECRET_LEN,
            "characters a-z 0-9",
            alnum,
            false,
        )?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        check_part(
            "CA hash (part 4)",
            hash,
            HASH_LEN,
            "lower-case hex characters",
            lower_hex,
            true,
        )?;
        Ok(JoinTokenSecret {
            id: id.into(),
            secret: secret.into(),
            ca_sha256: hash.into(),
        })
    }

    /// What central stores instead of the secret: its lower-case hex SHA-256.
    pub fn secret_sha256(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

/// Check one part of a join token; `show` says whether a wrong character may be shown.
fn check_part(
    name: &str,
    value: &str,
    len: usize,
    alphabet: &str,
    ok: impl Fn(u8) -> bool,
    show: bool,
) -> Result<(), PkiError> {
    if value.len() != len {
        return Err(PkiError::Token(format!(
            "the join token's {name} must be {len} {alphabet}; this one has {} characters; a token looks like {SHAPE}",
            value.chars().count()
        )));
    }
    if let Some(pos) = value.bytes().position(|b| !ok(b)) {
        let which = match value
            .get(pos..)
            .and_then(|r| r.chars().next())
            .filter(|_| show)
        {
            Some(c) => format!("`{}` at position {}", c.escape_default(), pos + 1),
            None => format!("a character at position {}", pos + 1),
        };
        return Err(PkiError::Token(format!(
            "the join token's {name} must be {len} {alphabet}; this one has {which}, which is not one of them; a token looks like {SHAPE}"
        )));
    }
    Ok(())
}

/// The operator token in `dir/operator.token` (64 hex characters from 32 random
/// bytes, mode 0600), created if missing. Returns the token, its path and whether it
/// was created now.
pub fn operator_token(dir: &Path) -> Result<(String, PathBuf, bool), PkiError> {
    let path = dir.join("operator.token");
    if let Some(s) = read_opt(&path)? {
        let token = s.trim();
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token(format!(
                "`{}` does not hold an operator token (64 hex characters); delete it and start central \
                 again to make a new one (clients then need the new token)",
                path.display()
            )));
        }
        warn_if_readable_by_others(&path);
        return Ok((token.to_ascii_lowercase(), path, false));
    }
    ensure_dir(dir)?;
    let token = hex::encode(random_bytes::<32>()?);
    write_private(&path, format!("{token}\n").as_bytes())?;
    tracing::info!(path = %path.display(), "created the operator token");
    Ok((token, path, true))
}
