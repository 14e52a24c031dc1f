//! The TLS settings of a `certs.d` dir make a reqwest client trust a registry's private CA and
//! present a client certificate: real handshakes against a local TLS server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use hoist_client::Endpoints;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A TLS server on 127.0.0.1 with the fixture server certificate, answering `200 ok` to each
/// request of up to `connections` connections. With `require_client_cert`, it accepts only
/// clients presenting a certificate signed by the fixture CA.
fn serve(require_client_cert: bool, connections: usize) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(fixture("ca.crt")).unwrap())
            .unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let certs = CertificateDer::pem_file_iter(fixture("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = Arc::new(builder.with_single_cert(certs, key).unwrap());

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
            // Read the request head; a failed handshake ends here with an error.
            let mut line = String::new();
            let mut ok = false;
            while tls.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    ok = true;
                    break;
                }
                line.clear();
            }
            if ok {
                let tls = tls.get_mut();
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    port
}

/// A certs dir holding `files` (fixture names) for `host`.
fn certs_dir(host: &str, files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join(host);
    std::fs::create_dir(&host_dir).unwrap();
    for name in files {
        std::fs::copy(fixture(name), host_dir.join(name)).unwrap();
    }
    dir
}

async fn get(endpoints: &Endpoints, host: &str) -> Result<String, reqwest::Error> {
    let tls = endpoints.tls(host).unwrap();
    let client = tls
        .apply(reqwest::Client::builder())
        .unwrap()
        .build()
        .unwrap();
    client
        .get(format!("https://{host}/v2/"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

#[tokio::test]
async fn a_certs_dir_ca_is_trusted_besides_the_system_roots() {
    let port = serve(false, 2);
    let host = format!("127.0.0.1:{port}");

    let err = get(&Endpoints::new(), &host).await.unwrap_err();
    assert!(
        err.is_connect(),
        "the private CA is not trusted by default: {err:?}"
    );

    let dir = certs_dir(&host, &["ca.crt"]);
    let endpoints = Endpoints::new().with_certs_dirs([dir.path()]);
    assert_eq!(get(&endpoints, &host).await.unwrap(), "ok");
}

#[tokio::test]
async fn a_certs_dir_client_certificate_is_presented() {
    let port = serve(true, 2);
    let host = format!("127.0.0.1:{port}");

    let without = certs_dir(&host, &["ca.crt"]);
    let endpoints = Endpoints::new().with_certs_dirs([without.path()]);
    assert!(
        get(&endpoints, &host).await.is_err(),
        "the server requires a client certificate"
    );

    let with = certs_dir(&host, &["ca.crt", "client.cert", "client.key"]);
    let endpoints = Endpoints::new().with_certs_dirs([with.path()]);
    assert_eq!(get(&endpoints, &host).await.unwrap(), "ok");
}
