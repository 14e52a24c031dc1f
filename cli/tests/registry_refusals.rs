//! How `hoist serve` refuses, and how clients show it:
//! - every answer with a status of 400 or more, from every route (the distribution API, the token
//!   endpoint, the JWKS, the admin API, metrics, unknown paths), with every method, with and
//!   without credentials, with no body and a malformed one, carries an OCI error body
//!   (`{"errors":[{code,message,...}]}`, `application/json`): docker parses the body of every
//!   refusal and prints "unexpected end of JSON input" when there is none;
//! - a team granted `push` (which implies `pull`, as in Harbor) pushes with the real docker CLI;
//!   pushing where the grant does not reach prints the registry's `denied: ...`, with docker and
//!   with `hoist push` alike.

mod auth_support;
mod common;

use std::process::Command;

use auth_support::{ADMIN_PASSWORD, Auth, BIN, admin_api, client, send, start};
use common::*;
use hoist_client::admin::Action;
use hoist_conformance::fixtures;
use reqwest::Method;

const DEV_PASSWORD: &str = "Dev-pw-0c1d2e3f";
const CI_PASSWORD: &str = "Ci-pw-4a5b6c7d";

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_carries_an_oci_error_body() {
    let server = start();
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("dev", DEV_PASSWORD).await.unwrap();
    let blob = hoist_oci::Digest::sha256_of(b"x");
    let paths = [
        "/v2/".to_owned(),
        "/v2/_catalog".into(),
        "/v2/_catalog?n=abc".into(),
        "/v2/acme/app/tags/list".into(),
        "/v2/acme/app/tags/list?n=-1".into(),
        "/v2/acme/app/manifests/latest".into(),
        "/v2/acme/app/manifests/sha256:abc".into(),
        format!("/v2/acme/app/blobs/{blob}"),
        "/v2/acme/app/blobs/nope".into(),
        "/v2/acme/app/blobs/uploads/".into(),
        "/v2/acme/app/blobs/uploads/0a3e4c26-2c2b-4e3b-9c52-b5c3a6c0f0aa".into(),
        format!("/v2/acme/app/referrers/{blob}"),
        "/v2/dev/app/manifests/latest".into(),
        format!("/v2/dev/app/blobs/uploads/?mount={blob}&from=acme/app"),
        "/v2/BAD..name/tags/list".into(),
        "/v2/nothing".into(),
        "/token".into(),
        "/token?scope=garbage".into(),
        "/token?scope=repository:acme/app:pull&service=other".into(),
        "/token/jwks".into(),
        "/.well-known/jwks.json".into(),
        "/metrics".into(),
        "/admin/v1/users".into(),
        "/admin/v1/users/nobody".into(),
        "/admin/v1/users/nobody/password".into(),
        "/admin/v1/orgs".into(),
        "/admin/v1/orgs/none/teams".into(),
        "/admin/v1/orgs/none/teams/t/members/u".into(),
        "/admin/v1/orgs/none/teams/t/grants".into(),
        "/admin/v1/repos/acme/app".into(),
        "/admin/v1/robots".into(),
        "/admin/v1/tokens".into(),
        "/admin/v1/tokens/nope".into(),
        "/admin/v1/audit?limit=x".into(),
        "/admin/v1/nothing".into(),
        "/nothing/at/all".into(),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    let auths = [Auth::None, Auth::basic("dev", DEV_PASSWORD), Auth::admin()];
    let bodies: [Option<(&str, &[u8])>; 3] = [
        None,
        Some(("application/json", b"{not json")),
        Some(("application/x-www-form-urlencoded", b"grant_type=nope&%zz")),
    ];
    let http = client();
    let mut refusals = 0;
    let mut statuses = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for path in &paths {
        for method in &methods {
            for auth in &auths {
                for body in &bodies {
                    let (headers, payload) = match body {
                        Some((ct, b)) => (vec![("content-type", *ct)], Some(b.to_vec())),
                        None => (Vec::new(), None),
                    };
                    let r = send(
                        &http,
                        &server.url,
                        method.clone(),
                        path,
                        auth,
                        &headers,
                        payload,
                    )
                    .await;
                    if r.status < 400 {
                        continue;
                    }
                    refusals += 1;
                    statuses.insert(r.status);
                    let ct = r.header("content-type").unwrap_or_default();
                    let what = format!("{method} {path} ({auth:?}, body {:?})", body.map(|b| b.0));
                    if !ct.starts_with("application/json") {
                        bad.push(format!("{what}: {} with content-type {ct:?}", r.status));
                        continue;
                    }
                    if *method == Method::HEAD {
                        continue;
                    }
                    let v: serde_json::Value = match serde_json::from_slice(&r.body) {
                        Ok(v) => v,
                        Err(e) => {
                            bad.push(format!(
                                "{what}: {} body is not JSON ({e}): {}",
                                r.status,
                                r.text()
                            ));
                            continue;
                        }
                    };
                    let e = &v["errors"][0];
                    if e["code"].as_str().is_none_or(|c| c.is_empty()) || !e["message"].is_string()
                    {
                        bad.push(format!(
                            "{what}: {} body is not an OCI error: {v}",
                            r.status
                        ));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {refusals} refusals lack an OCI error body:\n{}",
        bad.len(),
        bad.join("\n")
    );
    for s in [400, 401, 403, 404, 405] {
        assert!(statuses.contains(&s), "no {s} seen: {statuses:?}");
    }
    assert!(refusals > 1000, "only {refusals} refusals");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_granted_push_pushes_with_docker_and_denials_print_the_registrys_message() {
    require_root();
    let server = start();
    let addr = server.addr.clone();
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("ci", CI_PASSWORD).await.unwrap();
    admin.create_org("acme").await.unwrap();
    admin.create_team("acme", "builders").await.unwrap();
    admin.add_member("acme", "builders", "ci").await.unwrap();
    // `push` alone: README says it is the same as `pull,push`.
    admin
        .grant("acme", "builders", "acme/*", &[Action::Push])
        .await
        .unwrap();
    admin.create_org("other").await.unwrap();

    let dockerd = Dockerd::start();
    let work = tmp();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).unwrap();
    let allowed = format!("{addr}/acme/app:1");
    let denied = format!("{addr}/other/app:1");
    run(dockerd.docker().arg("import").arg(&rootfs).arg(&allowed));
    run(dockerd.docker().args(["tag", &allowed, &denied]));
    let (ok, out, err) = run_input(
        dockerd
            .docker()
            .args(["login", "-u", "ci", "--password-stdin", &addr]),
        CI_PASSWORD,
    );
    assert!(ok, "docker login: {out}{err}");

    let (ok, out, err) = run_status(dockerd.docker().args(["push", &allowed]));
    assert!(ok, "docker push with a push grant failed:\n{out}\n{err}");
    let pushed = pushed_digest(&out);
    assert!(pushed.starts_with("sha256:"), "{out}");

    let (ok, out, err) = run_status(dockerd.docker().args(["push", &denied]));
    assert!(!ok, "docker push outside the grant succeeded:\n{out}");
    let text = format!("{out}\n{err}");
    assert!(
        text.contains("denied: requested access to the resource is denied"),
        "docker does not print the registry's denial:\n{text}"
    );
    assert!(!text.contains("unexpected end of JSON input"), "{text}");

    // hoist push with the same credentials (what docker login stored) prints it as docker does.
    let home = tmp();
    let hoist = || {
        let mut c = Command::new(BIN);
        c.env("HOIST_HOME", home.path())
            .env("DOCKER_CONFIG", dockerd.config_dir())
            .env("RUST_LOG", "warn");
        c
    };
    run(hoist().arg("import").arg(&rootfs).arg(&denied));
    run(hoist().arg("import").arg(&rootfs).arg(&allowed));
    let (ok, out, err) = run_status(hoist().args(["push", &denied]));
    assert!(!ok, "hoist push outside the grant succeeded:\n{out}");
    assert!(
        err.contains("denied: requested access to the resource is denied"),
        "hoist does not print the registry's denial:\n{out}\n{err}"
    );
    assert!(
        !err.contains("403 Forbidden") && !err.contains("http://"),
        "{err}"
    );
    let (ok, out, err) = run_status(hoist().args(["push", &allowed]));
    assert!(ok, "hoist push with a push grant failed:\n{out}\n{err}");
}
