//! The deployment files of `docker/` work as written. The manifests parse and their hoist
//! configurations load through hoist's own loader; the image `docker/Dockerfile` builds (its
//! `prebuilt` target, from this test's hoist binary, on a local stand-in for
//! `debian:bookworm-slim`) runs as three replicas on s3s-fs and PostgreSQL with
//! `docker/ha/hoist.toml`, behind haproxy with `docker/ha/haproxy.cfg`, and an image pushed
//! through haproxy comes back with its digest. The files are used as they are, but for the
//! addresses and credentials of the test's own servers, replaced as text.
//!
//! Runs as root (containers). s3s-fs, PostgreSQL, haproxy and skopeo come from `.ci/peers.sh`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run, skopeo};
use hoist_conformance::fixtures::{self, Layout};
use hoist_registry::config::StorageKind;
use hoist_testsupport::Home;
use hoist_testsupport::haproxy::Haproxy;
use hoist_testsupport::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use serde_json::Value;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");
const ADMIN_PASSWORD: &str = "deploy-test-password";
const IMAGE: &str = "hoist-deploy-test:latest";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

/// A file of the repository, as text.
fn repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `text` with every `from` replaced by `to`; `from` must be there (so a change of the example
/// files that the test no longer matches fails here, not later).
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// Loads `text` as a `hoist serve` configuration file, with no `HOIST_*` variables.
fn load_config(text: &str, name: &str) -> hoist_registry::Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    hoist_registry::Config::load(Some(&path), |_| None)
        .unwrap_or_else(|e| panic!("{name} does not load: {e:#}\n{text}"))
}

fn yaml_documents(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The document of `kind` named `name`.
fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {docs:?}");
    found[0]
}

/// A configuration for replicas that share a bucket and a database.
fn assert_shared_backends(config: &hoist_registry::Config, name: &str) {
    assert_eq!(config.storage.driver, StorageKind::S3, "{name}");
    assert!(!config.storage.s3.bucket.is_empty(), "{name}");
    assert!(config.database.is_some(), "{name}: no [database]");
    assert!(config.auth_realm.is_some(), "{name}: no shared auth_realm");
    assert!(
        !config.listen.ip().is_loopback(),
        "{name}: {}",
        config.listen
    );
    assert!(config.admin_password_file.is_some(), "{name}: runs open");
}

#[test]
fn the_manifests_parse_and_their_configurations_load() {
    let docs = yaml_documents("docker/k8s/hoist.yaml");
    let deployment = object(&docs, "Deployment", "hoist");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 5000);
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{c}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{c}");
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    // The Secret is mounted where the configuration and its admin password file are read.
    let name = "hoist-config";
    let secret = object(&docs, "Secret", name);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == name)
        .expect("the Secret is a volume");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret's volume is mounted");
    let dir = Path::new(mount["mountPath"].as_str().unwrap());
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(Path::new(config_path), dir.join("hoist.toml"));
    let toml = secret["stringData"]["hoist.toml"].as_str().unwrap();
    let config = load_config(toml, "hoist.toml");
    assert_shared_backends(&config, "the Secret's hoist.toml");
    let password = config.admin_password_file.as_ref().unwrap();
    let key = password.strip_prefix(dir).unwrap().to_str().unwrap();
    assert!(
        secret["stringData"][key].is_string(),
        "no {key} in the Secret"
    );
    // The Service reaches the pods' port.
    let service = object(&docs, "Service", "hoist");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(c["ports"][0]["name"], "http");
    // Garbage collection on in every replica (claimed once per period in the database), the
    // pod network trusted for X-Forwarded-For.
    assert!(config.gc_interval_secs > 0);
    assert!(!config.trusted_proxies().unwrap().is_empty());
    assert_eq!(
        docs.iter().filter(|d| d["kind"] == "Deployment").count(),
        1,
        "one Deployment"
    );

    let ha = load_config(&repo_file("docker/ha/hoist.toml"), "hoist.toml");
    assert_shared_backends(&ha, "docker/ha/hoist.toml");
    assert!(ha.gc_interval_secs > 0);
    assert!(!ha.trusted_proxies().unwrap().is_empty());
    // The image's own configuration listens everywhere, closed.
    let image = load_config(&repo_file("docker/hoist.toml"), "hoist.toml");
    assert_eq!(image.listen.to_string(), "0.0.0.0:5000");
    assert!(image.admin_password_file.is_some());

    // compose.yaml runs three replicas of the image on that configuration, behind haproxy.
    let compose = yaml_documents("docker/ha/compose.yaml");
    let services = &compose[0]["services"];
    for r in ["hoist1", "hoist2", "hoist3"] {
        let volumes = services[r]["volumes"].as_array().expect(r);
        assert!(
            volumes
                .iter()
                .any(|v| v == "./hoist.toml:/etc/hoist/hoist.toml:ro"),
            "{r}: {volumes:?}"
        );
        let env = &services[r]["environment"];
        assert!(
            !env["HOIST_GC_INTERVAL_SECS"].is_string(),
            "{r}: every replica runs the configuration's collection: {env}"
        );
    }
    assert!(services["haproxy"].is_object());

    // haproxy takes the file as it is (names that do not resolve leave their server down).
    let out = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(repo_root().join("docker/ha/haproxy.cfg"))
        .output()
        .expect("haproxy is not installed: run .ci/peers.sh");
    assert!(
        out.status.success(),
        "haproxy refuses docker/ha/haproxy.cfg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `127.0.0.1:port` over HTTP/1.0, with Basic credentials when given; the status
/// and the body, or `None` when nothing answers.
fn http_get(port: u16, path: &str, basic: Option<(&str, &str)>) -> Option<(u16, String)> {
    use base64::Engine;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = basic.map_or(String::new(), |(u, p)| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        format!("Authorization: Basic {b}\r\n")
    });
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// A rootfs standing in for `debian:bookworm-slim`, as a tar: what this test's hoist binary
/// needs to run (the dynamic loader and the libraries `ldd` lists, at the paths it lists them),
/// /etc/passwd, /etc/group, the host's CA bundle, /tmp. No shell: the Dockerfile's `prebuilt`
/// target runs nothing in its base.
fn bookworm_slim_stand_in(tar_path: &Path) {
    let out = Command::new("ldd")
        .arg(HOIST)
        .output()
        .expect("running ldd");
    assert!(out.status.success(), "ldd {HOIST}: {out:?}");
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            files.insert(PathBuf::from(path));
        }
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("ld-linux")),
        "no dynamic loader in ldd's answer: {files:?}"
    );
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if ca.is_file() {
        files.insert(ca.to_owned());
    }
    let mut dirs: BTreeSet<PathBuf> = [
        "dev",
        "etc",
        "proc",
        "root",
        "sys",
        "tmp",
        "usr/local/bin",
        "var/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for f in &files {
        let rel = f.strip_prefix("/").unwrap();
        dirs.extend(
            rel.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_owned),
        );
    }
    let mut tar = tar::Builder::new(std::fs::File::create(tar_path).unwrap());
    let header = |path: &Path, kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    };
    for d in &dirs {
        let mode = match d.to_str().unwrap() {
            "tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        let h = header(d, tar::EntryType::Directory, mode, 0);
        tar.append(&h, std::io::empty()).unwrap();
    }
    for f in &files {
        // The file a link names: the image gets a copy at the path ldd printed.
        let bytes = std::fs::read(f).unwrap();
        let mode = if f == ca { 0o644 } else { 0o755 };
        let h = header(
            f.strip_prefix("/").unwrap(),
            tar::EntryType::Regular,
            mode,
            bytes.len() as u64,
        );
        tar.append(&h, bytes.as_slice()).unwrap();
    }
    for (name, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let h = header(
            Path::new(name),
            tar::EntryType::Regular,
            0o644,
            text.len() as u64,
        );
        tar.append(&h, text.as_bytes()).unwrap();
    }
    tar.finish().unwrap();
}

/// Waits (up to 60 s) for `GET /readyz` on `port` to answer 200; the replica's logs otherwise.
fn wait_ready(h: &Home, name: &str, port: u16) {
    let start = Instant::now();
    loop {
        if let Some((200, _)) = http_get(port, "/readyz", None) {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let logs = h.run(&["logs", name]);
            panic!(
                "{name} is not ready on port {port}: {}\n{}{}",
                h.status(name),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The API requests (`/v2/…`, not health checks) a replica's `/metrics` counted.
fn api_requests(port: u16) -> u64 {
    let (status, body) =
        http_get(port, "/metrics", Some(("admin", ADMIN_PASSWORD))).expect("metrics answer");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("hoist_http_requests_total{") && !l.contains("route=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn the_image_runs_three_replicas_behind_haproxy() {
    let started = Instant::now();
    // Its containers are removed when it is dropped, also when the test fails.
    let h = Home::containers(HOIST);
    let stand_in = h.path().join("bookworm-slim.tar");
    bookworm_slim_stand_in(&stand_in);
    h.ok(&["import", stand_in.to_str().unwrap(), "debian:bookworm-slim"]);

    // The build context: the Dockerfile, the image's configuration and the binary, which the
    // build takes through HOIST_BIN.
    let ctx = h.path().join("context");
    std::fs::create_dir_all(ctx.join("docker")).unwrap();
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    for f in ["docker/Dockerfile", "docker/hoist.toml", ".dockerignore"] {
        std::fs::copy(repo_root().join(f), ctx.join(f)).unwrap();
    }
    if std::fs::hard_link(HOIST, ctx.join("bin/hoist")).is_err() {
        std::fs::copy(HOIST, ctx.join("bin/hoist")).unwrap();
    }
    let dockerfile = ctx.join("docker/Dockerfile");
    h.ok(&[
        "build",
        "--progress",
        "plain",
        "-f",
        dockerfile.to_str().unwrap(),
        "--target",
        "prebuilt",
        "--build-arg",
        "HOIST_BIN=bin/hoist",
        "-t",
        IMAGE,
        ctx.to_str().unwrap(),
    ]);
    let built = h.inspect(IMAGE);
    let config = &built["Config"];
    assert_eq!(config["User"], "10001:10001", "{config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["hoist"]));
    assert!(config["ExposedPorts"]["5000/tcp"].is_object(), "{config}");
    assert!(config["Volumes"]["/var/lib/hoist"].is_object(), "{config}");
    let built_at = started.elapsed();

    let s3 = S3Server::s3s_fs();
    let db = hoist_testsupport::postgres::database();
    let balancer = free_port();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let password = h.path().join("admin-password");
    std::fs::write(&password, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let example = repo_file("docker/ha/hoist.toml");
    let mut names = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut text = replace(
            &example,
            "listen = \"0.0.0.0:5000\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        for (from, to) in [
            ("\"http://s3:9000\"", format!("\"{}\"", s3.endpoint())),
            ("bucket = \"hoist\"", format!("bucket = \"{BUCKET}\"")),
            (
                "access_key_id = \"hoist\"",
                format!("access_key_id = \"{ACCESS_KEY}\""),
            ),
            (
                "secret_access_key = \"change-me\"",
                format!("secret_access_key = \"{SECRET_KEY}\""),
            ),
            (
                "\"postgres://hoist:change-me@postgres:5432/hoist\"",
                format!("\"{}\"", db.url()),
            ),
            (
                "auth_realm = \"https://registry.example.com\"",
                format!("auth_realm = \"http://127.0.0.1:{balancer}\""),
            ),
        ] {
            text = replace(&text, from, &to);
        }
        let file = h.path().join(format!("hoist{}.toml", i + 1));
        std::fs::write(&file, text).unwrap();
        let name = format!("hoist{}", i + 1);
        h.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "-v",
            &format!("{}:/etc/hoist/hoist.toml:ro", file.display()),
            "-v",
            &format!(
                "{}:/run/secrets/hoist-admin-password:ro",
                password.display()
            ),
            IMAGE,
        ]);
        names.push(name);
    }
    for (name, port) in names.iter().zip(&ports) {
        wait_ready(&h, name, *port);
    }
    let ready_at = started.elapsed();

    let mut cfg = replace(
        &repo_file("docker/ha/haproxy.cfg"),
        "bind :5000",
        &format!("bind 127.0.0.1:{balancer}"),
    );
    for (name, port) in names.iter().zip(&ports) {
        cfg = replace(&cfg, &format!("{name}:5000"), &format!("127.0.0.1:{port}"));
    }
    let haproxy = Haproxy::with_config(&cfg, &format!("127.0.0.1:{balancer}"));
    let addr = haproxy.addr.clone();

    // A push through the balancer (the token from whichever replica answered /token, the
    // blobs and the manifest to whichever got each request), and a pull back.
    let work = h.path().join("oci");
    let layout = Layout::create(&work.join("src")).unwrap();
    let image = fixtures::busybox_image(&layout, "1").unwrap();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    run(skopeo()
        .args([
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
        ])
        .arg(layout.reference("1"))
        .arg(format!("docker://{addr}/team/app:1")));
    let out = work.join("pulled");
    run(skopeo()
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
        ])
        .arg(format!("docker://{addr}/team/app:1"))
        .arg(format!("oci:{}:1", out.display())));
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str().unwrap(),
        image.manifest.digest.to_string()
    );

    // hoist itself: login through the balancer, push, and pull into a fresh home.
    let docker_config = tempfile::tempdir().unwrap();
    let hoist = |home: &Path, args: &[&str], stdin: Option<&str>| -> String {
        let mut child = h
            .cmd(args)
            .env("HOIST_HOME", home)
            .env("DOCKER_CONFIG", docker_config.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hoist {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let reference = format!("{addr}/team/hoisted:1");
    h.ok(&["tag", "busybox", &reference]);
    hoist(
        &h.home(),
        &["login", &addr, "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    let pushed = hoist(&h.home(), &["push", &reference], None);
    let fresh = tempfile::tempdir().unwrap();
    let pulled = hoist(fresh.path(), &["pull", &reference], None);
    // `...: digest: sha256:... size: N` from push, `Digest: sha256:...` from pull.
    let digest = |out: &str| -> String {
        out.to_lowercase()
            .split("digest: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in {out}"))
            .to_owned()
    };
    assert_eq!(digest(&pulled), digest(&pushed), "{pushed}\n{pulled}");

    // The requests were spread: more than one replica served API requests.
    let served: Vec<u64> = ports.iter().map(|p| api_requests(*p)).collect();
    assert!(
        served.iter().filter(|n| **n > 0).count() >= 2,
        "API requests per replica: {served:?}\n{}",
        haproxy.log()
    );

    drop(haproxy);
    for name in &names {
        h.ok(&["rm", "-f", name]);
    }
    assert_eq!(h.ok(&["ps", "-aq"]).trim(), "");
    eprintln!(
        "deploy: image built in {built_at:?}, replicas ready at {ready_at:?}, done in {:?}; \
         API requests per replica {served:?}",
        started.elapsed()
    );
}
