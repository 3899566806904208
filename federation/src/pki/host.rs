//! A host's side: its key, its signed certificate, central's CA, the link's TLS config.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::central::ca_roots;
use super::files::{ensure_dir, read, read_opt, rename, warn_if_readable_by_others, write_private};
use super::{asn1_ms, certs_from_pem, common_name, key_from_pem, provider, PkiError};

const KEY: &str = "host.key";
const PENDING_KEY: &str = "host.key.new";
const CERT: &str = "host.pem";
const CA: &str = "ca.pem";
const ENROLL_AGAIN: &str =
    "enroll again: remove the directory and start the host with `--join URL --join-token TOKEN`";

/// A host's link identity under its directory: `host.key` (made here, never sent),
/// `host.pem` (signed by central) and `ca.pem` (central's CA).
#[derive(Clone)]
pub struct HostIdentity {
    dir: PathBuf,
    name: String,
    key_pem: String,
    cert_pem: String,
    ca_pem: String,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material in logs.
        f.debug_struct("HostIdentity")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

/// The parts of a certificate the identity needs.
struct CertInfo {
    der: CertificateDer<'static>,
    name: String,
    public_key: Vec<u8>,
    not_before_ms: u64,
    not_after_ms: u64,
}

fn cert_info(what: &str, pem: &str) -> Result<CertInfo, PkiError> {
    let der = certs_from_pem(what, pem)?.swap_remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::cert(what, format!("is not a valid certificate ({e})")))?;
    let name = common_name(&cert)
        .ok_or_else(|| PkiError::cert(what, "has no subject common name (the host's name)"))?;
    let info = CertInfo {
        name,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        not_before_ms: asn1_ms(&cert.validity().not_before),
        not_after_ms: asn1_ms(&cert.validity().not_after),
        der: der.clone(),
    };
    Ok(info)
}

fn key_matches(key_pem: &str, public_key: &[u8]) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|k| k.public_key_raw() == public_key)
}

impl HostIdentity {
    /// The identity stored under `dir`, or None if no certificate was installed yet.
    /// Finishes an install that a crash interrupted (certificate written, pending key
    /// not yet renamed).
    pub fn load(dir: &Path) -> Result<Option<HostIdentity>, PkiError> {
        let cert_path = dir.join(CERT);
        let Some(cert_pem) = read_opt(&cert_path)? else {
            return Ok(None);
        };
        let info = cert_info(
            &format!("the host certificate `{}`", cert_path.display()),
            &cert_pem,
        )?;
        let key_path = dir.join(KEY);
        let pending_path = dir.join(PENDING_KEY);
        let mut key_pem = read_opt(&key_path)?;
        if !key_pem
            .as_deref()
            .is_some_and(|k| key_matches(k, &info.public_key))
        {
            if let Some(pending) =
                read_opt(&pending_path)?.filter(|k| key_matches(k, &info.public_key))
            {
                tracing::info!(dir = %dir.display(), "finishing an interrupted certificate install");
                rename(&pending_path, &key_path)?;
                key_pem = Some(pending);
            } else {
                return Err(PkiError::cert(
                    format!("the host key `{}`", key_path.display()),
                    format!(
                        "{} the certificate `{}`; {ENROLL_AGAIN}",
                        if key_pem.is_some() {
                            "does not match"
                        } else {
                            "is missing for"
                        },
                        cert_path.display()
                    ),
                ));
            }
        }
        warn_if_readable_by_others(&key_path);
        let key_pem = key_pem.unwrap_or_default();
        let ca_path = dir.join(CA);
        let ca_pem = read(&ca_path, ENROLL_AGAIN)?;
        certs_from_pem(
            &format!("central's CA certificate `{}`", ca_path.display()),
            &ca_pem,
        )?;
        Ok(Some(HostIdentity {
            dir: dir.into(),
            name: info.name,
            key_pem,
            cert_pem,
            ca_pem,
            not_before_ms: info.not_before_ms,
            not_after_ms: info.not_after_ms,
        }))
    }

    /// Make a fresh ECDSA P-256 key, store it as `host.key.new` (mode 0600; the working
    /// `host.key` stays until [`HostIdentity::install`]) and return a CSR (PEM) with
    /// CN=`host`.
    pub fn new_csr(dir: &Path, host: &str) -> Result<String, PkiError> {
        ensure_dir(dir)?;
        let csr_err =
            |e: rcgen::Error| PkiError::Csr(format!("cannot make a CSR for host `{host}`: {e}"));
        let key = KeyPair::generate().map_err(csr_err)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        let csr = p.serialize_request(&key).map_err(csr_err)?;
        let pem = csr.pem().map_err(csr_err)?;
        write_private(&dir.join(PENDING_KEY), key.serialize_pem().as_bytes())?;
        Ok(pem)
    }

    /// Install a certificate signed for the pending key (`host.key.new`, or `host.key`
    /// again when a previous install of this very certificate finished). Refuses a
    /// certificate for another key or one that does not chain to `ca_pem`.
    pub fn install(dir: &Path, cert_pem: &str, ca_pem: &str) -> Result<HostIdentity, PkiError> {
        let what = "the certificate central signed";
        let info = cert_info(what, cert_pem)?;
        let ca_der = certs_from_pem("the CA certificate central sent", ca_pem)?.swap_remove(0);
        let verifier = WebPkiClientVerifier::builder_with_provider(ca_roots(&ca_der)?, provider())
            .build()
            .map_err(|e| {
                PkiError::cert(
                    "the CA certificate central sent",
                    format!("cannot verify certificates: {e}"),
                )
            })?;
        verifier
            .verify_client_cert(&info.der, &[], UnixTime::now())
            .map_err(|e| {
                PkiError::cert(
                    what,
                    format!("is not a valid client certificate from the CA sent with it ({e}); make a new CSR and ask again"),
                )
            })?;
        let pending_path = dir.join(PENDING_KEY);
        let key_path = dir.join(KEY);
        let pending = read_opt(&pending_path)?;
        let pending_ok = pending
            .as_deref()
            .is_some_and(|k| key_matches(k, &info.public_key));
        if !pending_ok {
            let installed = read_opt(&key_path)?.is_some_and(|k| key_matches(&k, &info.public_key));
            if !installed {
                return Err(PkiError::cert(
                    what,
                    if pending.is_some() {
                        format!(
                            "is for another key than the pending `{}`; send the CSR from the latest `new_csr`",
                            pending_path.display()
                        )
                    } else {
                        format!(
                            "has no pending key `{}` to go with; make a CSR with `new_csr` first",
                            pending_path.display()
                        )
                    },
                ));
            }
        }
        // host.pem before the key's rename: `load` finishes a rename a crash cut off.
        write_private(&dir.join(CA), ca_pem.as_bytes())?;
        write_private(&dir.join(CERT), cert_pem.as_bytes())?;
        if pending_ok {
            rename(&pending_path, &key_path)?;
        }
        HostIdentity::load(dir)?.ok_or_else(|| PkiError::Io {
            path: dir.join(CERT),
            op: "read",
            reason: "it vanished right after it was written; check what else writes this directory"
                .into(),
        })
    }

    /// The host's name: the certificate's CN.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The end of the certificate's validity, in ms since the Unix epoch.
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms
    }

    /// True once 2/3 of the certificate's lifetime has passed.
    pub fn renew_due(&self, now_ms: u64) -> bool {
        let life = self.not_after_ms.saturating_sub(self.not_before_ms);
        now_ms
            >= self
                .not_before_ms
                .saturating_add(life / 3 * 2 + (life % 3) * 2 / 3)
    }

    /// Central's CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The link's TLS client config: presents `host.pem` with `host.key`, trusts only
    /// `ca.pem`, ALPN `h2`.
    pub fn client_tls_config(&self) -> Result<Arc<rustls::ClientConfig>, PkiError> {
        let what = "the host link's TLS client config";
        let tls = |e: &dyn fmt::Display| {
            PkiError::cert(what, format!("cannot be built: {e}; {ENROLL_AGAIN}"))
        };
        let provider = provider();
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs_from_pem("central's CA certificate (ca.pem)", &self.ca_pem)? {
            roots.add(ca).map_err(|e| tls(&e))?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| tls(&e))?;
        let chain = certs_from_pem("the host certificate (host.pem)", &self.cert_pem)?;
        let key = key_from_pem("the host key (host.key)", &self.key_pem)?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(&e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}
