//! Real clients against a closed `hoist serve`: the docker CLI (a private dockerd), podman,
//! skopeo and `hoist login` each log in, push and pull (through the Bearer token dance), what
//! comes back has the digest that went in; pushing without logging in fails with an
//! authentication error, and a wrong password is refused at login.
//!
//! Every tool pushes to its own repository in the namespace of user `dev`, who owns it. These
//! tests need root and the peer tools (`.ci/peers.sh`); a missing tool is a failure naming its
//! package.

mod auth_support;
mod common;

use std::process::Command;

use auth_support::{ADMIN_PASSWORD, BIN, admin_api, start};
use common::*;
use hoist_conformance::fixtures::{self, Layout};
use hoist_conformance::harness::Server;

const DEV_PASSWORD: &str = "Dev-pw-5a6b7c8d";
const WRONG_PASSWORD: &str = "Dev-pw-wrong-0000";

/// A closed server with user `dev`.
async fn closed_server() -> Server {
    require_root();
    let server = start();
    admin_api(&server, "admin", ADMIN_PASSWORD)
        .add_user("dev", DEV_PASSWORD)
        .await
        .expect("adding dev");
    server
}

/// Asserts a command failed for want of (valid) credentials.
fn assert_auth_failure(what: &str, (ok, out, err): (bool, String, String)) {
    assert!(!ok, "{what} succeeded:\n{out}\n{err}");
    let text = format!("{out}\n{err}").to_lowercase();
    assert!(
        text.contains("unauthorized")
            || text.contains("authentication required")
            || text.contains("incorrect username or password")
            || text.contains("invalid username or password")
            || text.contains("invalid username/password")
            // What docker and containers/image say when an anonymous token lacks the scope
            // (Docker Hub's answer to a push without login, too).
            || text.contains("requested access to the resource is denied"),
        "{what}: not an authentication error:\n{out}\n{err}"
    );
}

/// The manifest digest the registry serves for `reference`, asked with `dev`'s credentials.
fn registry_digest(reference: &str) -> String {
    let out = run(skopeo()
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg("--creds")
        .arg(format!("dev:{DEV_PASSWORD}"))
        .arg(format!("docker://{reference}")));
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_login_push_pull() {
    let server = closed_server().await;
    let addr = &server.addr;
    let work = tmp();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let (home, docker) = (tmp(), tmp());
    let hoist = |home: &std::path::Path| {
        let mut c = Command::new(BIN);
        c.env("HOIST_HOME", home)
            .env("DOCKER_CONFIG", docker.path())
            .env("RUST_LOG", "warn");
        c
    };
    let reference = format!("{addr}/dev/hoist:1");
    run(hoist(home.path())
        .arg("import")
        .arg(&rootfs)
        .arg(&reference));

    assert_auth_failure(
        "hoist push without login",
        run_status(hoist(home.path()).args(["push", &reference])),
    );
    assert_auth_failure(
        "hoist login with a wrong password",
        run_input(
            hoist(home.path()).args(["login", addr, "-u", "dev", "--password-stdin"]),
            &format!("{WRONG_PASSWORD}\n"),
        ),
    );
    let (ok, out, err) = run_input(
        hoist(home.path()).args(["login", addr, "-u", "dev", "--password-stdin"]),
        &format!("{DEV_PASSWORD}\n"),
    );
    assert!(ok && out.contains("Login Succeeded"), "{out}{err}");
    let out = run(hoist(home.path()).args(["push", &reference]));
    let pushed = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_owned();
    assert_eq!(registry_digest(&reference), pushed);

    // A fresh store pulls it back with the same login.
    let fresh = tmp();
    let out = run(hoist(fresh.path()).args(["pull", &reference]));
    assert!(out.contains(&format!("Digest: {pushed}")), "{out}");
    // After logout, pulling the private image fails.
    run(hoist(fresh.path()).args(["logout", addr]));
    let other = tmp();
    assert_auth_failure(
        "hoist pull after logout",
        run_status(hoist(other.path()).args(["pull", &reference])),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_login_push_pull() {
    let server = closed_server().await;
    let addr = &server.addr;
    let work = tmp();
    let layout = Layout::create(&work.path().join("src")).unwrap();
    let image = fixtures::busybox_image(&layout, "1").unwrap();
    let authfile = work.path().join("auth.json");
    let dest = format!("docker://{addr}/dev/skopeo:1");

    assert_auth_failure(
        "skopeo copy without credentials",
        run_status(
            skopeo()
                .args(["copy", "--dest-tls-verify=false"])
                .arg(layout.reference("1"))
                .arg(&dest),
        ),
    );
    assert_auth_failure(
        "skopeo login with a wrong password",
        run_input(
            skopeo()
                .args([
                    "login",
                    "--tls-verify=false",
                    "-u",
                    "dev",
                    "--password-stdin",
                ])
                .arg("--authfile")
                .arg(&authfile)
                .arg(addr),
            WRONG_PASSWORD,
        ),
    );
    let (ok, out, err) = run_input(
        skopeo()
            .args([
                "login",
                "--tls-verify=false",
                "-u",
                "dev",
                "--password-stdin",
            ])
            .arg("--authfile")
            .arg(&authfile)
            .arg(addr),
        DEV_PASSWORD,
    );
    assert!(ok, "skopeo login: {out}{err}");
    run(skopeo()
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg("--authfile")
        .arg(&authfile)
        .arg(layout.reference("1"))
        .arg(&dest));
    assert_eq!(
        registry_digest(&format!("{addr}/dev/skopeo:1")),
        image.manifest.digest.to_string()
    );
    // And back into a new layout, with the same login.
    let out_dir = work.path().join("out");
    let out_layout = format!("oci:{}:1", out_dir.display());
    run(skopeo()
        .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
        .arg("--authfile")
        .arg(&authfile)
        .arg(&dest)
        .arg(&out_layout));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(image.manifest.digest.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_login_push_pull() {
    let server = closed_server().await;
    let addr = &server.addr;
    let work = tmp();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let authfile = work.path().join("auth.json");
    std::fs::write(&authfile, "{}").unwrap();
    let store = Storage::new();
    let reference = format!("{addr}/dev/podman:1");
    run(store.podman().arg("import").arg(&rootfs).arg(&reference));

    assert_auth_failure(
        "podman push without login",
        run_status(
            store
                .podman()
                .args(["push", "--tls-verify=false"])
                .arg("--authfile")
                .arg(&authfile)
                .arg(&reference),
        ),
    );
    assert_auth_failure(
        "podman login with a wrong password",
        run_input(
            store
                .podman()
                .args([
                    "login",
                    "--tls-verify=false",
                    "-u",
                    "dev",
                    "--password-stdin",
                ])
                .arg("--authfile")
                .arg(&authfile)
                .arg(addr),
            WRONG_PASSWORD,
        ),
    );
    let (ok, out, err) = run_input(
        store
            .podman()
            .args([
                "login",
                "--tls-verify=false",
                "-u",
                "dev",
                "--password-stdin",
            ])
            .arg("--authfile")
            .arg(&authfile)
            .arg(addr),
        DEV_PASSWORD,
    );
    assert!(ok, "podman login: {out}{err}");
    let digestfile = work.path().join("digest");
    run(store
        .podman()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile)
        .arg("--authfile")
        .arg(&authfile)
        .arg(&reference));
    let pushed = std::fs::read_to_string(&digestfile)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(registry_digest(&reference), pushed);

    let fresh = Storage::new();
    run(fresh
        .podman()
        .args(["pull", "--tls-verify=false"])
        .arg("--authfile")
        .arg(&authfile)
        .arg(&reference));
    let got = run(fresh
        .podman()
        .args(["image", "inspect", "--format", "{{.Digest}}"])
        .arg(&reference));
    assert_eq!(got.trim(), pushed);
    // Without the login, a fresh store cannot pull the private image.
    let anon = Storage::new();
    let empty_auth = work.path().join("empty.json");
    std::fs::write(&empty_auth, "{}").unwrap();
    assert_auth_failure(
        "podman pull without login",
        run_status(
            anon.podman()
                .args(["pull", "--tls-verify=false"])
                .arg("--authfile")
                .arg(&empty_auth)
                .arg(&reference),
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_login_push_pull() {
    let server = closed_server().await;
    let addr = &server.addr;
    let dockerd = Dockerd::start();
    let work = tmp();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let reference = format!("{addr}/dev/docker:1");
    run(dockerd.docker().arg("import").arg(&rootfs).arg(&reference));

    assert_auth_failure(
        "docker push without login",
        run_status(dockerd.docker().args(["push", &reference])),
    );
    assert_auth_failure(
        "docker login with a wrong password",
        run_input(
            dockerd
                .docker()
                .args(["login", "-u", "dev", "--password-stdin", addr]),
            WRONG_PASSWORD,
        ),
    );
    let (ok, out, err) = run_input(
        dockerd
            .docker()
            .args(["login", "-u", "dev", "--password-stdin", addr]),
        DEV_PASSWORD,
    );
    assert!(
        ok && out.contains("Login Succeeded"),
        "docker login: {out}{err}"
    );
    // hoist reads what docker login stored (a password or an identity token) and uses it for
    // the admin API too.
    let home = tmp();
    let ls = run(Command::new(BIN)
        .env("HOIST_HOME", home.path())
        .env("DOCKER_CONFIG", dockerd.config_dir())
        .args(["admin", "--registry", addr, "token", "ls"]));
    assert!(ls.starts_with("ID"), "{ls}");
    let out = run(dockerd.docker().args(["push", &reference]));
    let pushed = pushed_digest(&out);
    assert_eq!(registry_digest(&reference), pushed);
    run(dockerd.docker().args(["image", "rm", &reference]));
    run(dockerd.docker().args(["pull", &reference]));
    let digests = run(dockerd.docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &reference,
    ]));
    assert!(
        digests.contains(&format!("{addr}/dev/docker@{pushed}")),
        "{digests}"
    );
    // After logout the private image cannot be pulled.
    run(dockerd.docker().args(["logout", addr]));
    run(dockerd.docker().args(["image", "rm", &reference]));
    assert_auth_failure(
        "docker pull after logout",
        run_status(dockerd.docker().args(["pull", &reference])),
    );
}
