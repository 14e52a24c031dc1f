//! `hoist serve` on an object store and PostgreSQL: blobs in an S3 bucket (s3s-fs, and moto),
//! metadata and auth in PostgreSQL. Two `hoist serve` processes on the same bucket and database
//! act as replicas: what one stores the other serves, and a token one issues the other accepts.
//! With `redirect`, a blob GET answers 307 with a presigned URL, and skopeo follows it.
//!
//! Every server is started by the test on 127.0.0.1 and stopped by it; the S3 servers and
//! PostgreSQL come from `.ci/peers.sh`.

mod auth_support;
mod common;

use std::path::Path;

use auth_support::{ADMIN_PASSWORD, BIN};
use common::*;
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;
use hoist_testsupport::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

/// A closed `hoist serve` on `s3`'s bucket and the PostgreSQL database `db`.
fn replica(s3: &S3Server, db: &str, redirect: bool) -> Server {
    let endpoint = s3.endpoint();
    let env = [
        ("HOIST_STORAGE_DRIVER", "s3"),
        ("HOIST_S3_BUCKET", BUCKET),
        ("HOIST_S3_ENDPOINT", endpoint.as_str()),
        ("HOIST_S3_REGION", "us-east-1"),
        ("HOIST_S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("HOIST_S3_SECRET_ACCESS_KEY", SECRET_KEY),
        ("HOIST_S3_PREFIX", "registry"),
        ("HOIST_S3_REDIRECT", if redirect { "1" } else { "0" }),
        ("HOIST_DATABASE_URL", db),
        ("HOIST_DATABASE_POOL_SIZE", "4"),
    ];
    Server::hoist_with_admin_env(Path::new(BIN), ADMIN_PASSWORD, &[], &env)
        .expect("starting hoist serve on s3 and postgresql")
}

fn creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

/// Pushes a busybox image with skopeo to `addr`; its manifest digest.
fn push(addr: &str, work: &Path, repo: &str) -> String {
    let layout = Layout::create(&work.join(repo.replace('/', "-"))).unwrap();
    let image = fixtures::busybox_image(&layout, "1").unwrap();
    run(skopeo()
        .args([
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
        ])
        .arg(creds())
        .arg(layout.reference("1"))
        .arg(format!("docker://{addr}/{repo}:1")));
    image.manifest.digest.to_string()
}

/// Pulls `repo:1` from `addr` into a fresh layout; the digest of what came back.
fn pull(addr: &str, work: &Path, repo: &str, name: &str) -> String {
    let out = work.join(name);
    run(skopeo()
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
        ])
        .arg(creds())
        .arg(format!("docker://{addr}/{repo}:1"))
        .arg(format!("oci:{}:1", out.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

fn two_replicas_share_one_bucket_and_one_database(s3: S3Server) {
    let db = hoist_testsupport::postgres::database();
    let (a, b) = (replica(&s3, db.url(), false), replica(&s3, db.url(), false));
    let work = tmp();
    let pushed = push(&a.addr, work.path(), "team/app");
    // The other replica serves it: its blobs from the bucket, its manifest and tag from the
    // database, the same admin account.
    assert_eq!(pull(&b.addr, work.path(), "team/app", "from-b"), pushed);
    // A push to the second is served by the first.
    let again = push(&b.addr, work.path(), "team/other");
    assert_eq!(pull(&a.addr, work.path(), "team/other", "from-a"), again);
    // A token from one replica's token endpoint opens the other's API (one signing key).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .get(format!(
                "http://{}/token?service=hoist&scope=repository:team/app:pull",
                a.addr
            ))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["token"].as_str().unwrap();
        let r = http
            .get(format!("http://{}/v2/team/app/manifests/1", b.addr))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", b.output());
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            pushed
        );
    });
}

#[test]
fn replicas_on_s3s_fs_and_postgresql() {
    two_replicas_share_one_bucket_and_one_database(S3Server::s3s_fs());
}

#[test]
fn replicas_on_moto_and_postgresql() {
    two_replicas_share_one_bucket_and_one_database(S3Server::moto());
}

#[test]
fn redirect_answers_blob_gets_with_a_presigned_url_that_clients_follow() {
    let s3 = S3Server::s3s_fs();
    let db = hoist_testsupport::postgres::database();
    let server = replica(&s3, db.url(), true);
    let work = tmp();
    let pushed = push(&server.addr, work.path(), "team/app");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (location, layer) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let manifest: serde_json::Value = http
            .get(format!("http://{}/v2/team/app/manifests/1", server.addr))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
        let r = http
            .get(format!("http://{}/v2/team/app/blobs/{layer}", server.addr))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 307);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        // The presigned URL serves the blob's bytes, with no credentials of ours.
        let bytes = reqwest::get(&location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(hoist_oci::Digest::sha256_of(&bytes).to_string(), layer);
        (location, layer)
    });
    assert!(location.starts_with(&s3.endpoint()), "{location}");
    assert!(location.contains("X-Amz-Signature"), "{location}");
    // skopeo follows the redirect.
    assert_eq!(
        pull(&server.addr, work.path(), "team/app", "pulled"),
        pushed
    );
    assert!(!layer.is_empty());
}

/// `hoist serve` with `env`, expected to fail at start; what it printed to stderr.
fn serve_fails(env: &[(&str, &str)]) -> String {
    let data = tmp();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hoist serve did not fail with {env:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// TLS to PostgreSQL: with `[database] ca_file` the server's certificate is verified and every
/// connection hoist holds is TLS; a server another CA signed is refused, naming why; and the
/// connection never falls back to plain text (the server here refuses plain TCP).
#[test]
fn the_database_over_tls_is_verified_and_never_plain() {
    use hoist_testsupport::{pki, postgres};
    let ca = pki::Ca::new("hoist test database ca");
    let pg = postgres::Server::start_tls(&ca.server());
    let url = pg.create_database();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let work = tmp();
    let ca_file = work.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_path = ca_file.to_str().unwrap();
    let s = Server::hoist_with_admin_env(
        Path::new(BIN),
        ADMIN_PASSWORD,
        &[],
        &[
            ("HOIST_DATABASE_URL", url.as_str()),
            ("HOIST_DATABASE_CA_FILE", ca_path),
        ],
    )
    .expect("starting hoist serve with its database over tls");
    let pushed = push(&s.addr, work.path(), "tls/app");
    assert_eq!(pull(&s.addr, work.path(), "tls/app", "back"), pushed);
    let count = |ssl: bool| -> u32 {
        pg.psql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = '{name}' AND s.ssl = {ssl}"
            ),
        )
        .parse()
        .unwrap()
    };
    assert!(count(true) >= 1, "no tls connection of hoist's");
    assert_eq!(count(false), 0, "a plain connection of hoist's");
    drop(s);
    // `sslmode=prefer` (the default) without a ca_file is plain text as before: this server
    // refuses it.
    let err = serve_fails(&[("HOIST_DATABASE_URL", url.as_str())]);
    assert!(err.contains("no encryption"), "{err}");
    // A server certificate another CA signed.
    let other = pki::Ca::new("another ca");
    let other_file = work.path().join("other-ca.pem");
    std::fs::write(&other_file, other.pem()).unwrap();
    let err = serve_fails(&[
        ("HOIST_DATABASE_URL", url.as_str()),
        ("HOIST_DATABASE_CA_FILE", other_file.to_str().unwrap()),
    ]);
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
    // A CA file that is not one names the file.
    let junk = work.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let err = serve_fails(&[
        ("HOIST_DATABASE_URL", url.as_str()),
        ("HOIST_DATABASE_CA_FILE", junk.to_str().unwrap()),
    ]);
    assert!(err.contains(junk.to_str().unwrap()), "{err}");
}
