//! TLS from the forwarder to an `https://` upstream proxy: which certificates are
//! trusted ([`Trust`]: the system's roots, plus the CA certificates of a file the
//! user names), the client configuration built from them, and telling a TLS failure
//! (permanent: a wrong CA does not fix itself) from a network one.
//!
//! It does not listen for TLS: Chromium talks plain HTTP-proxy to the forwarder, over
//! loopback. The `ring` provider is passed explicitly, so nothing here installs a
//! process-wide rustls default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Which certificate authorities an `https://` upstream proxy's certificate may be
/// signed by: always the system's roots, plus those of an optional CA file.
#[derive(Clone, Default)]
pub struct Trust {
    extra: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("extra_ca_certificates", &self.extra.len())
            .finish()
    }
}

/// Why a CA file cannot be used. The messages name the file (never secret) and
/// what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Missing, unreadable, a directory, …
    #[error("{}: cannot be read: {source} (expected a PEM file of CA certificates)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// No `-----BEGIN CERTIFICATE-----` block, or a broken one.
    #[error("{}: {why} (expected a PEM file with one or more -----BEGIN CERTIFICATE----- blocks)", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A block that is not an X.509 certificate usable as a trust anchor.
    #[error("{}: certificate {index} is not a usable CA certificate: {why} (expected X.509 CA certificates)", path.display())]
    NotCa {
        /// The file.
        path: PathBuf,
        /// 1-based, in file order.
        index: usize,
        /// What rustls said.
        why: String,
    },
}

impl Trust {
    /// The system's roots plus every certificate in the PEM file at `path`, each
    /// checked to be usable as a trust anchor. This is also what validation calls
    /// when the configuration is loaded, so a file that passes there works here.
    pub fn with_ca_file(path: &Path) -> Result<Trust, CaError> {
        let bytes = std::fs::read(path).map_err(|source| CaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let not_pem = |why: String| CaError::NotPem {
            path: path.to_path_buf(),
            why,
        };
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| not_pem(format!("not valid PEM ({e})")))?;
        if certs.is_empty() {
            return Err(not_pem("no PEM certificate in it".to_owned()));
        }
        let mut store = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| CaError::NotCa {
                path: path.to_path_buf(),
                index: i + 1,
                why: e.to_string(),
            })?;
        }
        Ok(Trust { extra: certs })
    }

    /// How many certificates the CA file added.
    pub fn extra_certificates(&self) -> usize {
        self.extra.len()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = system_roots().clone();
        for cert in &self.extra {
            // Each was checked by `with_ca_file`.
            let _ = roots.add(cert.clone());
        }
        roots
    }
}

/// The system's trust store (`/etc/ssl/certs` and the like, as OpenSSL would find it),
/// read once per process: it does not change under a run, and reading it costs a
/// few milliseconds. Certificates it cannot parse are skipped, as OpenSSL would.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system CA certificate could not be loaded");
        }
        let mut roots = RootCertStore::empty();
        let (added, skipped) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, skipped, "system CA certificates loaded");
        roots
    })
}

/// A TLS client for one upstream proxy: its name (what its certificate must be
/// issued to) and the roots to check it against.
pub(crate) struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Connector {
    /// For the proxy at `host` (a DNS name or an IP address).
    pub(crate) fn new(host: &str, trust: &Trust) -> std::io::Result<Connector> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| invalid(format!("the proxy host is not a TLS server name: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS configuration: {e}")))?
            .with_root_certificates(trust.roots())
            .with_no_client_auth();
        Ok(Connector {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake over `tcp`. `Err(Tls)`: the proxy's certificate (or its TLS)
    /// was refused — nothing was sent to it; `Err(Io)`: the network failed.
    pub(crate) async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HandshakeError> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                // tokio-rustls hands rustls' own errors back inside an io::Error.
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(tls) => HandshakeError::Tls(describe(tls)),
                    None => HandshakeError::Io(e),
                }
            })
    }
}

/// How a handshake failed.
pub(crate) enum HandshakeError {
    /// Refused by TLS itself: an untrusted or mismatched certificate, or a peer
    /// that does not speak TLS. Retrying cannot help.
    Tls(String),
    /// The connection failed (reset, closed early): may be transient.
    Io(std::io::Error),
}

/// A short reason for a TLS failure, in words a user can act on.
fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "its certificate is not signed by a trusted CA (unknown issuer)".to_owned()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "its certificate is not issued to the proxy's host name".to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "its certificate has expired".to_owned(),
        Error::InvalidCertificate(other) => format!("its certificate was refused ({other:?})"),
        Error::InvalidMessage(_) => {
            "it did not answer with TLS (is it an http:// proxy rather than https://?)".to_owned()
        }
        other => format!("TLS failed: {other}"),
    }
}
