//! Central's side: the CA, the server certificate, signing host CSRs, the listener's
//! TLS config.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;

use super::files::{ensure_dir, read_opt, warn_if_readable_by_others, write_private};
use super::{
    asn1_ms, certs_from_pem, key_from_pem, now_ms, peer_identity, pem_encode, provider,
    random_serial, rcgen_time, sha256_hex, PkiError,
};

const CA_CN: &str = "Roost central CA";
/// The common name of the certificate a central replica presents to the leader when it
/// forwards a request (a space: no host name can be it).
pub const REPLICA_CN: &str = "roost central replica";
const REPLICA_LIFETIME_MS: u64 = 30 * DAY_MS;
const SERVER_CN: &str = "Roost central";
const DAY_MS: u64 = 24 * 3600 * 1000;
const CA_LIFETIME_MS: u64 = 3650 * DAY_MS;
const SERVER_LIFETIME_MS: u64 = 365 * DAY_MS;
/// A server certificate this close to its end is replaced at start.
const SERVER_RENEW_MS: u64 = 30 * DAY_MS;
/// not_before is backdated this much, for hosts whose clocks run a little behind.
const SKEW_MS: u64 = 5 * 60 * 1000;
const MIN_HOST_TTL: Duration = Duration::from_secs(10);
const MAX_HOST_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Central's CA and server certificate, loaded from (or created in) its state dir.
pub struct CentralPki {
    ca_path: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

impl fmt::Debug for CentralPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material in logs.
        f.debug_struct("CentralPki")
            .field("ca_path", &self.ca_path)
            .field("ca_sha256", &self.ca_sha256())
            .finish_non_exhaustive()
    }
}

/// A host certificate central just signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCert {
    /// The certificate, PEM (the leaf only: the host already has the CA).
    pub cert_pem: String,
    /// Its serial, in the same form as [`super::PeerIdentity::serial_hex`].
    pub serial_hex: String,
    /// The end of its validity, in ms since the Unix epoch.
    pub not_after_ms: u64,
}

impl CentralPki {
    /// Load from `dir` or create on first start: `ca.pem`, `ca.key`, `server.pem` (the
    /// server certificate followed by the CA certificate) and `server.key`, all mode
    /// 0600. The server certificate is made again (the CA kept) when it lacks one of
    /// `sans` (plus `localhost`, 127.0.0.1 and ::1), expires within 30 days, or does not
    /// match its key or the CA. Returns whether the CA was created now.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<(CentralPki, bool), PkiError> {
        ensure_dir(dir)?;
        let wanted = wanted_sans(sans)?;
        let ca_path = dir.join("ca.pem");
        let ca_key_path = dir.join("ca.key");
        let (ca_der, ca_key, created) = match (read_opt(&ca_path)?, read_opt(&ca_key_path)?) {
            (Some(pem), Some(key)) => {
                warn_if_readable_by_others(&ca_key_path);
                let (der, key) = load_ca(&ca_path, &pem, &ca_key_path, &key)?;
                (der, key, false)
            }
            (Some(_), None) => {
                return Err(PkiError::cert(
                    format!("central's CA key `{}`", ca_key_path.display()),
                    format!(
                        "is missing while the CA certificate `{}` exists; restore ca.key from a \
                         backup (hosts trust this CA), or move the directory away to start a new \
                         CA, after which every host must enroll again",
                        ca_path.display()
                    ),
                ));
            }
            (None, stale_key) => {
                if stale_key.is_some() {
                    // A key without its certificate is a crash during the first start:
                    // no host can trust a CA whose certificate was never written.
                    tracing::warn!(path = %ca_key_path.display(), "replacing a CA key that has no certificate");
                }
                let (der, key) = create_ca(&ca_path, &ca_key_path)?;
                tracing::info!(path = %ca_path.display(), sha256 = %sha256_hex(&der), "created central's CA");
                (der, key, true)
            }
        };
        let ca_what = format!("central's CA certificate `{}`", ca_path.display());
        let ca_pem = pem_encode("CERTIFICATE", &ca_der);
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key)
            .map_err(|e| PkiError::cert(&ca_what, format!("cannot be used to sign ({e})")))?;

        let server_path = dir.join("server.pem");
        let server_key_path = dir.join("server.key");
        let current = if created {
            Err("the CA is new".to_string())
        } else {
            load_server(&server_path, &server_key_path, &ca_der, &wanted)?
        };
        let (server_chain, server_key) = match current {
            Ok(v) => v,
            Err(why) => {
                tracing::info!(path = %server_path.display(), reason = %why, "issuing central's server certificate");
                issue_server(&server_path, &server_key_path, &issuer, &ca_pem, wanted)?
            }
        };
        let pki = CentralPki {
            ca_path,
            ca_pem,
            ca_der,
            issuer,
            server_chain,
            server_key,
        };
        Ok((pki, created))
    }

    /// `ca.pem` in the state dir.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Lower-case hex SHA-256 of the CA certificate's DER (the join token carries it).
    pub fn ca_sha256(&self) -> String {
        sha256_hex(&self.ca_der)
    }

    /// Sign a host's CSR (PEM, PKCS#10) whose signature verifies. Only the CSR's key is
    /// used: the subject is CN=`host`, SAN DNS `host`, extended key usage clientAuth
    /// only, not a CA, valid from 5 minutes ago for `ttl`, with a random serial.
    pub fn sign_host_csr(
        &self,
        csr_pem: &str,
        host: &str,
        ttl: Duration,
    ) -> Result<SignedCert, PkiError> {
        check_host(host)?;
        if !(MIN_HOST_TTL..=MAX_HOST_TTL).contains(&ttl) {
            return Err(PkiError::cert(
                "the host certificate lifetime",
                format!(
                    "{}s is out of range; configure between {}s and {}s (10 years)",
                    ttl.as_secs(),
                    MIN_HOST_TTL.as_secs(),
                    MAX_HOST_TTL.as_secs()
                ),
            ));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(csr_message(&e)))?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(host);
        let dns = host.to_string().try_into().map_err(|e| {
            PkiError::cert(
                format!("the host name `{host}`"),
                format!("is not a DNS name ({e})"),
            )
        })?;
        p.subject_alt_names = vec![SanType::DnsName(dns)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial()?);
        let now = now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // At most a tenth of the lifetime, so the 2/3 renewal point stays ahead of
        // the issue time even for short-lived certificates.
        p.not_before = rcgen_time!(now.saturating_sub(SKEW_MS.min(ttl_ms / 10)));
        p.not_after = rcgen_time!(now.saturating_add(ttl_ms));
        let cert = p
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| PkiError::Csr(format!("cannot sign the CSR for host `{host}`: {e}")))?;
        let id = peer_identity(cert.der())?;
        tracing::debug!(host, serial = %id.serial_hex, "signed a host certificate");
        Ok(SignedCert {
            cert_pem: cert.pem(),
            serial_hex: id.serial_hex,
            not_after_ms: id.not_after_ms,
        })
    }

    /// A client TLS config for forwarding to the leading replica: presents a fresh
    /// certificate with CN [`REPLICA_CN`] signed by the CA (which every replica shares),
    /// trusts only the CA, ALPN `h2`.
    pub fn replica_client_config(&self) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        let what = "the replica client certificate";
        let key = KeyPair::generate().map_err(|e| PkiError::cert(what, format!("no key: {e}")))?;
        let p = leaf_params(
            REPLICA_CN,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            REPLICA_LIFETIME_MS,
        )?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(|e| PkiError::cert(what, format!("cannot be signed: {e}")))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| PkiError::cert(what, format!("bad key: {e}")))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::cert(what, e.to_string()))?
            .with_root_certificates(ca_roots(&self.ca_der)?)
            .with_client_auth_cert(vec![cert.der().clone(), self.ca_der.clone()], key_der)
            .map_err(|e| PkiError::cert(what, e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The listener's TLS config: presents `server.pem`'s chain; client certificates
    /// are requested but optional (enrollment comes without one) and verified against
    /// the CA when given; ALPN `h2`, `http/1.1`.
    pub fn server_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let what = "central's TLS server config";
        let tls = |e: &dyn fmt::Display| PkiError::cert(what, format!("cannot be built: {e}"));
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(ca_roots(&self.ca_der)?, provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls(&e))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())
            .map_err(|e| tls(&e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A root store holding only `ca`.
pub(super) fn ca_roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| {
        PkiError::cert(
            "the CA certificate",
            format!("cannot be a trust anchor: {e}"),
        )
    })?;
    Ok(Arc::new(roots))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Host names are DNS names: dot-separated labels of letters, digits and `-`.
fn check_host(host: &str) -> Result<(), PkiError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        return Ok(());
    }
    let shown: String = host.chars().take(64).collect();
    Err(PkiError::cert(
        format!("the host name `{}`", shown.escape_default()),
        "cannot be a certificate name; use letters, digits and `-` (dot-separated labels of 1-63 characters)",
    ))
}

fn csr_message(e: &rcgen::Error) -> String {
    let why = match e {
        rcgen::Error::CouldNotParseCertificationRequest => {
            "is not a PEM-encoded PKCS#10 request".to_string()
        }
        rcgen::Error::InvalidCertificationRequestSignature => {
            "has a signature that does not verify (corrupted, or not made with the key it carries)"
                .to_string()
        }
        rcgen::Error::UnsupportedExtension => {
            "asks for an extension central does not sign".to_string()
        }
        rcgen::Error::UnsupportedSignatureAlgorithm => {
            "uses an unsupported signature algorithm".to_string()
        }
        other => format!("cannot be read ({other})"),
    };
    format!("the certificate signing request {why}; make it with `HostIdentity::new_csr` (an ECDSA P-256 key, CN = the host name)")
}

/// The SANs the server certificate must carry.
fn wanted_sans(sans: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let defaults = ["localhost", "127.0.0.1", "::1"].map(String::from);
    for raw in sans.iter().chain(defaults.iter()) {
        let s = raw.trim();
        if s.is_empty() {
            continue;
        }
        let bare = s
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(s);
        let san = match bare.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let dns = s.to_ascii_lowercase();
                let ok = dns.len() <= 253
                    && dns.split('.').enumerate().all(|(i, l)| {
                        (i == 0 && l == "*")
                            || (!l.is_empty()
                                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    });
                let ia5 = if ok { dns.try_into().ok() } else { None };
                let Some(ia5) = ia5 else {
                    return Err(PkiError::cert(
                        format!("the server name `{}`", s.escape_default()),
                        "is neither an IP address nor a DNS name; fix the central's advertised names",
                    ));
                };
                SanType::DnsName(ia5)
            }
        };
        if seen.insert(san_key(&san)) {
            out.push(san);
        }
    }
    Ok(out)
}

fn san_key(san: &SanType) -> String {
    match san {
        SanType::IpAddress(ip) => format!("ip:{ip}"),
        SanType::DnsName(d) => format!("dns:{}", d.as_str().to_ascii_lowercase()),
        other => format!("{other:?}"),
    }
}

fn load_ca(
    ca_path: &Path,
    ca_pem: &str,
    key_path: &Path,
    key_pem: &str,
) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
    let ca_what = format!("central's CA certificate `{}`", ca_path.display());
    let key_what = format!("central's CA key `{}`", key_path.display());
    let restore = "restore it from a backup, or move the directory away to start a new CA (every host must enroll again)";
    let der = certs_from_pem(&ca_what, ca_pem)?.swap_remove(0);
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| PkiError::cert(&key_what, format!("is unreadable ({e}); {restore}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
        PkiError::cert(
            &ca_what,
            format!("is not a valid certificate ({e}); {restore}"),
        )
    })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::cert(
            &key_what,
            format!(
                "does not belong to the CA certificate `{}`; {restore}",
                ca_path.display()
            ),
        ));
    }
    let not_after = asn1_ms(&cert.validity().not_after);
    if not_after <= now_ms() {
        tracing::error!(path = %ca_path.display(), "central's CA certificate has expired: no host can connect");
    } else if not_after - now_ms() < 180 * DAY_MS {
        tracing::warn!(path = %ca_path.display(), not_after_ms = not_after, "central's CA certificate expires within 180 days");
    }
    Ok((der, key))
}

fn create_ca(
    ca_path: &Path,
    key_path: &Path,
) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
    let what = format!("central's CA `{}`", ca_path.display());
    let key = KeyPair::generate()
        .map_err(|e| PkiError::cert(&what, format!("cannot make a key ({e})")))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(CA_CN);
    // It signs only host and server certificates, never another CA.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.serial_number = Some(random_serial()?);
    let now = now_ms();
    p.not_before = rcgen_time!(now.saturating_sub(SKEW_MS));
    p.not_after = rcgen_time!(now.saturating_add(CA_LIFETIME_MS));
    let cert = p
        .self_signed(&key)
        .map_err(|e| PkiError::cert(&what, format!("cannot be made ({e})")))?;
    // The key first: a crash before the certificate is written leaves a lone key,
    // which the next start replaces.
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(ca_path, cert.pem().as_bytes())?;
    Ok((cert.der().clone(), key))
}

type ServerCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The current server certificate, or why it must be made again.
fn load_server(
    cert_path: &Path,
    key_path: &Path,
    ca_der: &CertificateDer<'static>,
    wanted: &[SanType],
) -> Result<Result<ServerCert, String>, PkiError> {
    let (Some(pem), Some(key_pem)) = (read_opt(cert_path)?, read_opt(key_path)?) else {
        return Ok(Err("server.pem or server.key is missing".into()));
    };
    warn_if_readable_by_others(key_path);
    let Ok(mut chain) = certs_from_pem("server.pem", &pem) else {
        return Ok(Err("server.pem is unreadable".into()));
    };
    let Ok(key) = KeyPair::from_pem(&key_pem) else {
        return Ok(Err("server.key is unreadable".into()));
    };
    let leaf = chain[0].clone();
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&leaf) else {
        return Ok(Err("server.pem is not a valid certificate".into()));
    };
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Ok(Err("server.key does not match server.pem".into()));
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(ca_roots(ca_der)?, provider())
        .build()
        .map_err(|e| {
            PkiError::cert(
                "the CA certificate",
                format!("cannot verify the server certificate: {e}"),
            )
        })?;
    let localhost = ServerName::try_from("localhost")
        .map_err(|e| PkiError::cert("`localhost`", e.to_string()))?;
    if let Err(e) = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &leaf,
        &[],
        &localhost,
        &[],
        UnixTime::now(),
    ) {
        return Ok(Err(format!(
            "server.pem does not verify against the CA ({e})"
        )));
    }
    if asn1_ms(&cert.validity().not_after) < now_ms().saturating_add(SERVER_RENEW_MS) {
        return Ok(Err("server.pem expires within 30 days".into()));
    }
    let mut have = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    have.insert(format!("dns:{}", d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        have.insert(format!("ip:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(missing) = wanted.iter().map(san_key).find(|k| !have.contains(k)) {
        return Ok(Err(format!("server.pem lacks the name {missing}")));
    }
    // Serve exactly leaf + CA, whatever else the file held.
    chain.truncate(1);
    chain.push(ca_der.clone());
    let Ok(key) = key_from_pem("server.key", &key_pem) else {
        return Ok(Err("server.key is unreadable".into()));
    };
    Ok(Ok((chain, key)))
}

/// A leaf certificate's parameters: CN `cn`, these SANs, one extended key usage, not a
/// CA, a random serial, valid from `SKEW_MS` ago for `lifetime_ms`.
fn leaf_params(
    cn: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    lifetime_ms: u64,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial()?);
    let now = now_ms();
    p.not_before = rcgen_time!(now.saturating_sub(SKEW_MS));
    p.not_after = rcgen_time!(now.saturating_add(lifetime_ms));
    Ok(p)
}

fn issue_server(
    cert_path: &Path,
    key_path: &Path,
    issuer: &Issuer<'static, KeyPair>,
    ca_pem: &str,
    sans: Vec<SanType>,
) -> Result<ServerCert, PkiError> {
    let what = format!("central's server certificate `{}`", cert_path.display());
    let key = KeyPair::generate()
        .map_err(|e| PkiError::cert(&what, format!("cannot make a key ({e})")))?;
    let p = leaf_params(
        SERVER_CN,
        sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        SERVER_LIFETIME_MS,
    )?;
    let cert = p
        .signed_by(&key, issuer)
        .map_err(|e| PkiError::cert(&what, format!("cannot be signed ({e})")))?;
    let key_pem = key.serialize_pem();
    // The key first: a crash in between leaves a key that does not match server.pem,
    // which the next start notices and replaces.
    write_private(key_path, key_pem.as_bytes())?;
    write_private(cert_path, format!("{}{ca_pem}", cert.pem()).as_bytes())?;
    let chain = certs_from_pem(&what, &format!("{}{ca_pem}", cert.pem()))?;
    Ok((chain, key_from_pem("server.key", &key_pem)?))
}
