//! `hoist serve` over TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`):
//!
//! - HTTP/2 and HTTP/1.1 through ALPN; a client that does not trust the CA is refused; plain
//!   HTTP to the TLS port gets nothing;
//! - a changed certificate is taken on SIGHUP and on a file change, while a connection opened
//!   before keeps working; a broken file keeps the last good certificate;
//! - a client certificate signed by the client CA authenticates as the user its CN names, for
//!   the registry API, the token endpoint and `hoist push`; one from another CA fails the
//!   handshake;
//! - the docker CLI, podman, skopeo and `hoist` push and pull with the test CA in
//!   `/etc/docker/certs.d/127.0.0.1:PORT/` (which containers/image reads too) and no insecure
//!   flag; podman, skopeo and hoist refuse a server whose CA is not the one there.
//!
//! Servers listen on 127.0.0.1 on ports the OS picks. The certs.d dirs this file makes under
//! /etc are named by those ports and removed on drop.

mod auth_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use auth_support::{ADMIN_PASSWORD, BIN};
use common::*;
use hoist_client::admin::AdminClient;
use hoist_client::credentials::Credential;
use hoist_client::endpoint::Endpoints;
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;
use hoist_testsupport::pki::{Ca, Pair};

/// A TLS server's files: its CA, its certificate and key, and a client CA.
struct Tls {
    dir: tempfile::TempDir,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Ca,
}

impl Tls {
    fn new() -> Tls {
        let dir = tmp();
        let ca = Ca::new("hoist test ca");
        let (cert, key) = ca.server().write(dir.path(), "server");
        let client_ca = Ca::new("hoist test client ca");
        std::fs::write(dir.path().join("client-ca.crt"), client_ca.pem()).unwrap();
        Tls {
            dir,
            ca,
            cert,
            key,
            client_ca,
        }
    }

    fn args(&self) -> Vec<String> {
        let p = |p: &Path| p.to_str().unwrap().to_owned();
        vec![
            "--tls-cert".into(),
            p(&self.cert),
            "--tls-key".into(),
            p(&self.key),
            "--tls-client-ca".into(),
            p(&self.dir.path().join("client-ca.crt")),
        ]
    }

    /// A closed server (user `admin`) on these files, logging at info level.
    fn start(&self) -> Server {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::hoist_with_admin_env(
            Path::new(BIN),
            ADMIN_PASSWORD,
            &args,
            &[("RUST_LOG", "info")],
        )
        .expect("starting hoist serve with tls")
    }
}

fn cert(pem: &str) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()
}

/// A client trusting only `ca`, presenting `identity` if given.
fn client(ca: &str, identity: Option<&Pair>, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([cert(ca)])
        .timeout(Duration::from_secs(10));
    if let Some(p) = identity {
        b = b.identity(
            reqwest::Identity::from_pem(format!("{}\n{}", p.cert, p.key).as_bytes()).unwrap(),
        );
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

async fn get(
    c: &reqwest::Client,
    server: &Server,
    path: &str,
) -> reqwest::Result<reqwest::Response> {
    c.get(format!("https://{}{path}", server.addr)).send().await
}

/// The status of a GET that must get an answer.
async fn status(c: &reqwest::Client, server: &Server, path: &str) -> u16 {
    get(c, server, path).await.unwrap().status().as_u16()
}

/// The error chain of a failed request, as one lowercase string.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut at = e.source();
    while let Some(e) = at {
        s.push_str(": ");
        s.push_str(&e.to_string());
        at = e.source();
    }
    s.to_lowercase()
}

/// Waits (20 s at most) until `pred` holds for the server's output.
fn wait_log(server: &Server, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.output();
        if pred(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the server's log:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_speaks_http2_and_http1_and_refuses_what_it_should() {
    let tls = Tls::new();
    let server = tls.start();
    let ca = tls.ca.pem();
    let r = get(&client(&ca, None, false), &server, "/v2/")
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (401, reqwest::Version::HTTP_2)
    );
    let r = get(&client(&ca, None, true), &server, "/v2/")
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (401, reqwest::Version::HTTP_11)
    );

    // A client trusting another CA is refused, saying why.
    let other = Ca::new("someone else");
    let e = get(&client(&other.pem(), None, false), &server, "/v2/")
        .await
        .unwrap_err();
    assert!(chain(&e).contains("certificate"), "{}", chain(&e));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let e = plain
        .get(format!("http://{}/v2/", server.addr))
        .send()
        .await
        .err();
    assert!(e.is_some(), "plain http got an answer from the tls port");
    // The server is still well.
    let r = get(&client(&ca, None, false), &server, "/v2/")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_certificate_is_taken_on_sighup_and_on_a_file_change_without_dropping_connections() {
    let tls = Tls::new();
    let server = tls.start();
    let first = tls.ca.pem();
    // A connection made now (HTTP/2: one connection for every request of this client), kept
    // across the reloads. It trusts only the first CA, so a request of it that succeeds after
    // a reload went over the connection made before.
    let kept = client(&first, None, false);
    assert_eq!(status(&kept, &server, "/v2/").await, 401);

    // A file change.
    let second = Ca::new("second ca");
    second.server().replace(&tls.cert, &tls.key);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&client(&second.pem(), None, false), &server, "/v2/")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not taken:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.output().contains("file changed"),
        "{}",
        server.output()
    );
    assert!(
        get(&client(&first, None, false), &server, "/v2/")
            .await
            .is_err()
    );
    assert_eq!(status(&kept, &server, "/v2/").await, 401);

    // SIGHUP: its own reload, logged as such.
    let third = Ca::new("third ca");
    third.server().replace(&tls.cert, &tls.key);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_log(&server, "sighup reload", |out| out.contains("sighup"));
    assert_eq!(
        status(&client(&third.pem(), None, false), &server, "/v2/").await,
        401
    );
    assert_eq!(status(&kept, &server, "/v2/").await, 401);

    // A broken certificate file: logged, and the last good certificate stays.
    std::fs::write(&tls.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let out = wait_log(&server, "failed reload", |out| {
        out.contains("tls reload failed")
    });
    assert!(
        out.contains(tls.cert.to_str().unwrap()),
        "the error names the file:\n{out}"
    );
    assert_eq!(
        status(&client(&third.pem(), None, false), &server, "/v2/").await,
        401
    );
    assert!(server.output().lines().all(|l| !l.contains("panicked")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_authenticates_as_the_user_its_cn_names() {
    let tls = Tls::new();
    let server = tls.start();
    let ca = tls.ca.pem();
    let certs = tmp();
    let host_dir = certs.path().join(&server.addr);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), &ca).unwrap();
    let endpoints = Endpoints::new().with_certs_dirs([certs.path()]);
    let admin = AdminClient::new(
        &server.addr,
        &endpoints,
        Some(Credential::Basic {
            username: "admin".into(),
            password: ADMIN_PASSWORD.into(),
        }),
    )
    .unwrap();
    admin
        .add_user("dev", "Dev-pw-5a6b7c8d")
        .await
        .expect("adding dev over tls");

    let dev = tls.client_ca.client("dev");
    let with_cert = client(&ca, Some(&dev), false);
    assert_eq!(status(&with_cert, &server, "/v2/").await, 200);
    assert_eq!(
        status(&client(&ca, None, false), &server, "/v2/").await,
        401
    );
    // A certificate naming no account: 401, saying so.
    let ghost = get(
        &client(&ca, Some(&tls.client_ca.client("ghost")), false),
        &server,
        "/v2/",
    )
    .await
    .unwrap();
    assert_eq!(ghost.status().as_u16(), 401);
    assert!(
        ghost
            .text()
            .await
            .unwrap()
            .contains("\\\"ghost\\\", who has no account")
    );
    // One from a CA the server does not know fails the handshake.
    let stranger = Ca::new("stranger").client("dev");
    assert!(
        get(&client(&ca, Some(&stranger), false), &server, "/v2/")
            .await
            .is_err()
    );

    // The token endpoint issues dev's grants to the certificate.
    let r = get(
        &with_cert,
        &server,
        "/token?service=hoist&scope=repository:dev/app:push,pull",
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token: serde_json::Value = r.json().await.unwrap();
    let claims = token["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "dev");
    let actions = claims["access"][0]["actions"].to_string();
    assert!(
        actions.contains("push") && actions.contains("pull"),
        "{claims}"
    );

    // hoist push with the certificate in certs.d and no login.
    std::fs::write(host_dir.join("client.cert"), &dev.cert).unwrap();
    std::fs::write(host_dir.join("client.key"), &dev.key).unwrap();
    let (home, docker) = (tmp(), tmp());
    std::fs::create_dir_all(home.path()).unwrap();
    std::os::unix::fs::symlink(certs.path(), home.path().join("certs.d")).unwrap();
    let hoist = || {
        let mut c = Command::new(BIN);
        c.env("HOIST_HOME", home.path())
            .env("DOCKER_CONFIG", docker.path());
        c
    };
    let rootfs = home.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let reference = format!("{}/dev/app:1", server.addr);
    run(hoist().arg("import").arg(&rootfs).arg(&reference));
    let out = run(hoist().args(["push", &reference]));
    assert!(out.contains("digest: sha256:"), "{out}");
    // Without the certificate the same push needs a login.
    std::fs::remove_file(host_dir.join("client.cert")).unwrap();
    std::fs::remove_file(host_dir.join("client.key")).unwrap();
    let (ok, out, err) = run_status(hoist().args(["push", &reference]));
    assert!(!ok, "pushed without credentials: {out}{err}");
}

/// `/etc/docker/certs.d/<addr>/ca.crt`, removed on drop. docker reads it; containers/image
/// (podman, skopeo) and hoist read docker's certs.d too.
struct CertsD(PathBuf);

impl CertsD {
    fn new(addr: &str, ca: &str) -> CertsD {
        let dir = Path::new("/etc/docker/certs.d").join(addr);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca).unwrap();
        CertsD(dir)
    }
}

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An open TLS server (no auth on loopback) on the files in `dir`.
fn open_server(ca: &Ca, dir: &Path) -> Server {
    let (cert, key) = ca.server().write(dir, "server");
    Server::hoist_with(
        Path::new(BIN),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .expect("starting hoist serve with tls")
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_podman_skopeo_and_hoist_push_and_pull_over_tls_with_certs_d() {
    require_root();
    let work = tmp();
    let ca = Ca::new("hoist interop ca");
    let server = open_server(&ca, work.path());
    let addr = server.addr.clone();
    let _certs = CertsD::new(&addr, &ca.pem());
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let digest_of = |reference: &str| {
        run(skopeo()
            .args(["inspect", "--format", "{{.Digest}}"])
            .arg(format!("docker://{reference}")))
        .trim()
        .to_owned()
    };

    // hoist (its engine reads /etc/docker/certs.d too).
    let (home, docker_config) = (tmp(), tmp());
    let hoist = |home: &Path| {
        let mut c = Command::new(BIN);
        c.env("HOIST_HOME", home)
            .env("DOCKER_CONFIG", docker_config.path());
        c
    };
    let reference = format!("{addr}/tls/hoist:1");
    run(hoist(home.path())
        .arg("import")
        .arg(&rootfs)
        .arg(&reference));
    let out = run(hoist(home.path()).args(["push", &reference]));
    let pushed = pushed_digest(&out);
    assert_eq!(digest_of(&reference), pushed);
    let fresh = tmp();
    let out = run(hoist(fresh.path()).args(["pull", &reference]));
    assert!(out.contains(&format!("Digest: {pushed}")), "{out}");

    // skopeo: an OCI layout there and back.
    let layout = Layout::create(&work.path().join("src")).unwrap();
    let image = fixtures::busybox_image(&layout, "1").unwrap();
    let dest = format!("docker://{addr}/tls/skopeo:1");
    run(skopeo()
        .args(["copy", "--preserve-digests"])
        .arg(layout.reference("1"))
        .arg(&dest));
    assert_eq!(
        digest_of(&format!("{addr}/tls/skopeo:1")),
        image.manifest.digest.to_string()
    );
    let out_dir = work.path().join("out");
    run(skopeo()
        .args(["copy", "--preserve-digests"])
        .arg(&dest)
        .arg(format!("oci:{}:1", out_dir.display())));
    assert!(
        std::fs::read_to_string(out_dir.join("index.json"))
            .unwrap()
            .contains(&image.manifest.digest.to_string())
    );

    // podman.
    let store = Storage::new();
    let reference = format!("{addr}/tls/podman:1");
    run(store.podman().arg("import").arg(&rootfs).arg(&reference));
    let digestfile = work.path().join("digest");
    run(store
        .podman()
        .args(["push", "--digestfile"])
        .arg(&digestfile)
        .arg(&reference));
    let pushed = std::fs::read_to_string(&digestfile)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(digest_of(&reference), pushed);
    let fresh = Storage::new();
    run(fresh.podman().arg("pull").arg(&reference));
    let got = run(fresh
        .podman()
        .args(["image", "inspect", "--format", "{{.Digest}}"])
        .arg(&reference));
    assert_eq!(got.trim(), pushed);

    // docker. KEPT: dockerd counts every 127.0.0.0/8 registry as insecure, so it tries TLS
    // without verifying (and never reads certs.d for it) before plain HTTP; the server speaks
    // only TLS, so what docker pushes here went over TLS, but docker's verification of the CA
    // is not what this shows.
    let dockerd = Dockerd::start();
    let reference = format!("{addr}/tls/docker:1");
    run(dockerd.docker().arg("import").arg(&rootfs).arg(&reference));
    let out = run(dockerd.docker().args(["push", &reference]));
    let pushed = pushed_digest(&out);
    assert_eq!(digest_of(&reference), pushed);
    run(dockerd.docker().args(["image", "rm", &reference]));
    run(dockerd.docker().args(["pull", &reference]));
    let digests = run(dockerd.docker().args([
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        &reference,
    ]));
    assert!(digests.contains(&pushed), "{digests}");
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_skopeo_and_hoist_refuse_a_server_the_ca_in_certs_d_did_not_sign() {
    require_root();
    let work = tmp();
    let server = open_server(&Ca::new("the server's ca"), work.path());
    let addr = server.addr.clone();
    let _certs = CertsD::new(&addr, &Ca::new("a different ca").pem());
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let refused = |what: &str, (ok, out, err): (bool, String, String)| {
        assert!(
            !ok,
            "{what} succeeded against an untrusted server:\n{out}{err}"
        );
        let text = format!("{out}{err}").to_lowercase();
        assert!(
            text.contains("certificate signed by unknown authority")
                || text.contains("unknownissuer"),
            "{what}: not a certificate error:\n{out}{err}"
        );
    };

    let (home, docker_config) = (tmp(), tmp());
    let reference = format!("{addr}/tls/hoist:1");
    let hoist = || {
        let mut c = Command::new(BIN);
        c.env("HOIST_HOME", home.path())
            .env("DOCKER_CONFIG", docker_config.path());
        c
    };
    run(hoist().arg("import").arg(&rootfs).arg(&reference));
    refused("hoist push", run_status(hoist().args(["push", &reference])));
    refused("hoist pull", run_status(hoist().args(["pull", &reference])));

    let layout = Layout::create(&work.path().join("src")).unwrap();
    fixtures::busybox_image(&layout, "1").unwrap();
    refused(
        "skopeo copy",
        run_status(
            skopeo()
                .arg("copy")
                .arg(layout.reference("1"))
                .arg(format!("docker://{addr}/tls/skopeo:1")),
        ),
    );
    let store = Storage::new();
    let reference = format!("{addr}/tls/podman:1");
    run(store.podman().arg("import").arg(&rootfs).arg(&reference));
    refused(
        "podman push",
        run_status(store.podman().arg("push").arg(&reference)),
    );
}

#[test]
fn a_handshake_that_never_finishes_is_cut_at_the_header_timeout() {
    use std::io::{Read, Write};
    let tls = Tls::new();
    let args = tls.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::hoist_with_admin_env(
        Path::new(BIN),
        ADMIN_PASSWORD,
        &args,
        &[
            ("HOIST_HEADER_TIMEOUT_SECS", "1"),
            ("HOIST_IDLE_TIMEOUT_SECS", "60"),
        ],
    )
    .unwrap();
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(partial).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        // The server closes (EOF or reset) without the client finishing its hello.
        let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
        let took = start.elapsed();
        assert!(closed, "the connection stayed open");
        assert!(
            took < Duration::from_secs(5),
            "cut after {took:?}, not at the 1 s header timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blobs_over_tls_are_exact_on_http1_and_http2_without_sendfile() {
    let dir = tmp();
    let ca = Ca::new("hoist test ca");
    let server = open_server(&ca, dir.path());
    let base = format!("https://{}", server.addr);
    let data: Vec<u8> = (0..(3 << 20) + 7)
        .map(|i: usize| (i.wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    let digest = hoist_oci::Digest::sha256_of(&data);
    let c = client(&ca.pem(), None, false);
    let resp = c
        .post(format!("{base}/v2/tls/big/blobs/uploads/?digest={digest}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    for http1 in [true, false] {
        let c = client(&ca.pem(), None, http1);
        let url = format!("{base}/v2/tls/big/blobs/{digest}");
        let resp = c.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.bytes().await.unwrap() == data,
            "http1 {http1}: differs"
        );
        let resp = c
            .get(&url)
            .header("range", "bytes=1000000-2999999")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 206);
        let part = resp.bytes().await.unwrap();
        assert!(part == data[1_000_000..3_000_000], "http1 {http1}: range");
    }
    // TLS encrypts in user space: nothing went out with sendfile.
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hoist_http_requests_total")
            && !metrics.contains("hoist_http_sendfile_bytes_total"),
        "{metrics}"
    );
}
