//! Trust for the host link: central's CA, its server certificate, host certificates,
//! the operator token and join tokens.
//!
//! - [`CentralPki`] (central side): the CA and server certificate on disk, signing of
//!   host CSRs, and the TLS server config of central's listener.
//! - [`HostIdentity`] (host side): the host's key (made on the host, never leaves it),
//!   its signed certificate and central's CA, and the TLS client config of the link.
//! - [`JoinTokenSecret`]: `roostjoin1.ID.SECRET.CAHASH`, a one-use enrollment secret
//!   plus the SHA-256 of central's CA, which [`pinned_client_config`] checks before
//!   the host trusts anything central says.
//!
//! Every key and certificate file is written mode 0600 through a temporary name and a
//! rename, so a crash never leaves half a file. TLS always uses the ring provider
//! explicitly: nothing here depends on a process-wide default provider.

mod central;
mod files;
mod host;
mod pinned;
mod token;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub use central::{CentralPki, SignedCert, REPLICA_CN};
pub use host::HostIdentity;
pub use pinned::{pinned_client_config, PinnedCa};
pub use token::{operator_token, JoinTokenSecret};

/// What went wrong with a certificate, a key, a token or their files.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read, written or renamed.
    #[error("cannot {op} `{path}`: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we tried: "read", "write", "create", ...
        op: &'static str,
        /// The OS error and what to do about it.
        reason: String,
    },
    /// A certificate or key is unreadable, does not match, or cannot be made.
    #[error("{what}: {reason}")]
    Cert {
        /// Which certificate or key (with its path when it has one).
        what: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// What is wrong with a join token or the operator token (never echoes a secret).
    #[error("{0}")]
    Token(String),
    /// What is wrong with a host's certificate signing request.
    #[error("{0}")]
    Csr(String),
}

impl PkiError {
    fn cert(what: impl Into<String>, reason: impl Into<String>) -> Self {
        PkiError::Cert {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Constant-time comparison of two byte strings (for tokens).
///
/// Only the contents are compared in constant time; a length difference returns
/// early (token lengths are public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What a client certificate presented on the link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name: the host's name.
    pub cn: String,
    /// The serial number, in the same form as [`SignedCert::serial_hex`].
    pub serial_hex: String,
    /// The end of the certificate's validity, in ms since the Unix epoch.
    pub not_after_ms: u64,
}

/// Read the identity from a certificate's DER (as presented on the link).
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let what = "the peer certificate";
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::cert(what, format!("is not a valid X.509 certificate: {e}")))?;
    let cn = common_name(&cert).ok_or_else(|| {
        PkiError::cert(
            what,
            "has no subject common name; a host certificate names its host as CN",
        )
    })?;
    Ok(PeerIdentity {
        cn,
        serial_hex: serial_hex(cert.raw_serial()),
        not_after_ms: asn1_ms(&cert.validity().not_after),
    })
}

/// The one canonical form of a serial number: lower-case hex of its unsigned
/// big-endian bytes, without leading zero bytes (DER adds a 0x00 before a high bit).
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

fn common_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

fn asn1_ms(t: &x509_parser::time::ASN1Time) -> u64 {
    u64::try_from(t.timestamp())
        .unwrap_or(0)
        .saturating_mul(1000)
}

/// Now, in ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The crypto provider of every TLS config here, never the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| {
        PkiError::cert(
            "the system random number generator",
            format!("failed ({e}); check that /dev/urandom or getrandom(2) works on this machine"),
        )
    })?;
    Ok(b)
}

/// A random positive certificate serial of 16 bytes. The top bit is cleared (so DER
/// needs no 0x00 pad) and the next one set (so DER drops no leading zero byte): the
/// serial's DER content is exactly these 16 bytes.
fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    let mut b = random_bytes::<16>()?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&b))
}

/// All certificates in a PEM string (at least one).
fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::cert(what, format!("is not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(PkiError::cert(what, "holds no `BEGIN CERTIFICATE` block"));
    }
    Ok(certs)
}

fn key_from_pem(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::cert(what, format!("holds no usable private key ({e})")))
}

/// PEM-encode DER (RFC 7468: base64 in 64-character lines).
fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `unix_ms` as the date-time type rcgen's certificate params use (that type's crate
/// is not a dependency of ours, hence a macro rather than a function).
macro_rules! rcgen_time {
    ($unix_ms:expr) => {
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_millis($unix_ms)
    };
}
use rcgen_time;
