//! TLS for `hoist serve`: rustls over HTTP/1.1 and HTTP/2 (ALPN `h2`, `http/1.1`), with the
//! certificate taken again on `SIGHUP` or when its files change, and optional client
//! certificates.
//!
//! - **Reload:** [`TlsAcceptor::watch`] re-reads the certificate, key and client CA on `SIGHUP`
//!   and when one of the files changes (their size, modification time or inode, checked every
//!   [`POLL`]). Each handshake takes the configuration current at its accept, so connections
//!   already open keep theirs and none is dropped. A reload that fails (a half-written file, a
//!   key that does not match the certificate) keeps the last good configuration and logs why.
//! - **Client certificates** (`tls_client_ca`): a client may present a certificate signed by
//!   that CA; its subject's common name (CN) names the user it authenticates as, exactly as a
//!   password login would. A client without a certificate is asked for credentials as usual; a
//!   certificate the CA did not sign fails the handshake.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// What went wrong loading the TLS files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("tls key {key} does not belong to certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs that sign client certificates (client-certificate auth on).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// What the files look like now: a change in any of them means a reload.
    fn stamp(&self) -> Vec<Option<(u64, u64, SystemTime)>> {
        use std::os::unix::fs::MetadataExt;
        self.paths()
            .map(|p| {
                std::fs::metadata(p).ok().map(|m| {
                    (
                        m.ino(),
                        m.len(),
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    )
                })
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string().to_lowercase(),
    }
}

/// Every certificate in a PEM file; none is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a pem certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

/// The client configuration of TLS to PostgreSQL: the server's certificate verified with the
/// PEM CAs in `ca_file`, else with the system's roots.
pub fn database_client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let what = ca_file.map_or_else(|| PathBuf::from("the system's roots"), Path::to_owned);
    match ca_file {
        Some(ca) => {
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(ca, format!("not a usable ca certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    &what,
                    "no ca certificate found (set database.ca_file)",
                ));
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&what, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Builds a server configuration from the files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| invalid(&files.key, format!("not a pem private key: {e}")))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(ca, format!("not a usable ca certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string().to_lowercase(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The current TLS configuration, and the files it came from.
pub struct TlsAcceptor {
    files: TlsFiles,
    current: RwLock<Current>,
}

struct Current {
    config: Arc<ServerConfig>,
    stamp: Vec<Option<(u64, u64, SystemTime)>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the files; an error names the file that is wrong.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsAcceptor>, TlsError> {
        let stamp = files.stamp();
        let config = Arc::new(server_config(&files)?);
        Ok(Arc::new(TlsAcceptor {
            files,
            current: RwLock::new(Current { config, stamp }),
        }))
    }

    /// The configuration new connections are accepted with.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().expect("tls lock").config.clone()
    }

    /// Reads the files again and, when they load, makes them the configuration of new
    /// connections. On an error the last good configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = self.files.stamp();
        let config = Arc::new(server_config(&self.files)?);
        *self.current.write().expect("tls lock") = Current { config, stamp };
        Ok(())
    }

    /// Whether a file changed since the configuration was loaded (or last tried).
    fn changed(&self) -> bool {
        self.current.read().expect("tls lock").stamp != self.files.stamp()
    }

    fn try_reload(&self, why: &str) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.files.cert.display(), why, "tls certificate reloaded");
            }
            Err(e) => {
                // Not again until the files change once more.
                self.current.write().expect("tls lock").stamp = self.files.stamp();
                tracing::error!(error = %e, why, "tls reload failed: the previous certificate stays");
            }
        }
    }

    /// Reloads on `SIGHUP` and when the files change; runs until dropped.
    pub async fn watch(self: Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: the certificate reloads on file changes only");
                None
            }
        };
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.try_reload("sighup")).await;
                }
                _ = every.tick() => {
                    if self.changed() {
                        let me = self.clone();
                        let _ = tokio::task::spawn_blocking(move || me.try_reload("file changed")).await;
                    }
                }
            }
        }
    }
}

/// The user a verified client certificate names: its subject's first common name.
pub fn client_user(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    let name = cn.as_str().ok()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn self_signed(cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn errors_name_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one");
        let (_, other_key) = self_signed("two");
        let cert = write(dir.path(), "cert.pem", &cert);
        let key = write(dir.path(), "key.pem", &key);
        let files = |cert: &Path, key: &Path, ca: Option<&Path>| TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: ca.map(Path::to_owned),
        };
        assert!(server_config(&files(&cert, &key, None)).is_ok());
        assert!(server_config(&files(&cert, &key, Some(&cert))).is_ok());

        let missing = dir.path().join("absent.pem");
        let e = server_config(&files(&missing, &key, None)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("reading {}", missing.display())),
            "{e}"
        );

        let garbage = write(dir.path(), "garbage.pem", "not pem\n");
        let e = server_config(&files(&garbage, &key, None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: holds no certificate", garbage.display())
        );
        let e = server_config(&files(&cert, &garbage, None)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}: not a pem private key", garbage.display())),
            "{e}"
        );
        let e = server_config(&files(&cert, &key, Some(&garbage))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: holds no certificate", garbage.display())
        );

        let wrong_key = write(dir.path(), "other.key", &other_key);
        let e = server_config(&files(&cert, &wrong_key, None)).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "tls key {} does not belong to certificate {}",
                wrong_key.display(),
                cert.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_last_good_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one");
        let files = TlsFiles {
            cert: write(dir.path(), "cert.pem", &cert),
            key: write(dir.path(), "key.pem", &key),
            client_ca: None,
        };
        let acceptor = TlsAcceptor::load(files.clone()).unwrap();
        let before = acceptor.config();
        assert!(!acceptor.changed());
        std::fs::write(&files.cert, "half a file").unwrap();
        assert!(acceptor.changed());
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&before, &acceptor.config()));
        let (cert, key) = self_signed("two");
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        acceptor.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &acceptor.config()));
        assert!(!acceptor.changed());
    }

    #[test]
    fn the_client_user_is_the_subject_s_common_name() {
        let (pem, _) = self_signed("alice");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(client_user(&der).as_deref(), Some("alice"));
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "no cn");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        assert_eq!(client_user(&der), None);
    }
}
