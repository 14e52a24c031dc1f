//! A closed `hoist serve` end to end: forged and stale tokens are refused, failed logins are
//! rate-limited, no secret reaches the log, the conformance suite passes for a user with push
//! rights, and the `hoist admin` commands work (and refuse a non-admin).

mod auth_support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use auth_support::*;
use base64::Engine;
use hoist_conformance::suite::{self, Credentials, Options};
use reqwest::Method;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64S: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a jwt");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// Signs `claims` with the server's own key (read from its data directory), as only the server
/// should be able to.
fn sign_with_server_key(server: &hoist_conformance::harness::Server, claims: &Value) -> String {
    let keys = hoist_auth::TokenKeys::load_or_generate(server.data.path()).expect("server key");
    let claims: hoist_auth::Claims = serde_json::from_value(claims.clone()).expect("claims");
    keys.sign(&claims).expect("signing")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_stale_and_misused_tokens_are_refused() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("alice", "alice-Pw-16180").await.unwrap();
    let alice = Auth::basic("alice", "alice-Pw-16180");
    let img = push_image(&server, "alice/app", "v1", &alice).await;
    let http = client();
    let manifest = "/v2/alice/app/manifests/v1";
    let get = |auth: Auth| {
        let http = http.clone();
        let url = server.url.clone();
        async move {
            send(
                &http,
                &url,
                Method::GET,
                manifest,
                &auth,
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await
        }
    };

    let good = token(&server, &service, &["repository:alice/app:pull"], &alice).await;
    let r = get(Auth::Bearer(good.clone())).await;
    assert_eq!(r.status, 200, "a good token pulls");
    assert_eq!(r.body.as_ref(), img.manifest_bytes.as_slice());
    let claims = claims_of(&good);
    assert_eq!(
        claims["aud"],
        Value::String(service.clone()),
        "aud is the service"
    );
    let header: Value =
        serde_json::from_slice(&B64.decode(good.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string(), "kid in the header: {header}");
    // The JWKS publishes that kid.
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/token/jwks",
        &Auth::None,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["keys"][0]["kid"], header["kid"]);
    // A token signed with the server key and unchanged claims is accepted: the forging below
    // changes only what each case names.
    let resigned = sign_with_server_key(&server, &claims);
    assert_eq!(
        get(Auth::Bearer(resigned)).await.status,
        200,
        "re-signed as issued"
    );

    let mut cases: Vec<(&str, String)> = Vec::new();
    // Expired (beyond any leeway).
    let mut c = claims.clone();
    c["exp"] = (now() - 600).into();
    c["iat"] = (now() - 900).into();
    c["nbf"] = (now() - 900).into();
    cases.push(("expired", sign_with_server_key(&server, &c)));
    // Wrong audience, signed with the right key.
    let mut c = claims.clone();
    c["aud"] = "some-other-registry".into();
    cases.push(("wrong audience", sign_with_server_key(&server, &c)));
    // Wrong issuer.
    let mut c = claims.clone();
    c["iss"] = "someone-else".into();
    cases.push(("wrong issuer", sign_with_server_key(&server, &c)));
    // Tampered signature: one bit of the signature flipped.
    let parts: Vec<&str> = good.split('.').collect();
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[10] ^= 0x01;
    cases.push((
        "tampered signature",
        format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig)),
    ));
    // Tampered payload: another subject, the signature kept.
    let mut c = claims.clone();
    c["sub"] = "admin".into();
    cases.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        ),
    ));
    // alg=none.
    cases.push((
        "unsigned",
        format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        ),
    ));
    cases.push(("garbage", "not.a.token".to_owned()));
    for (what, token) in &cases {
        let r = get(Auth::Bearer(token.clone())).await;
        assert_eq!(r.status, 401, "{what} token: {}", r.text());
        let c = r.header("www-authenticate").unwrap_or_default();
        assert!(c.starts_with("Bearer realm="), "{what}: challenge {c}");
    }

    // Wrong scope: a pull token used to push to the same repository, and on another
    // repository alice may use: 401 asking for the scope.
    let r = put_manifest(
        &server,
        "alice/app",
        "v2",
        &Auth::Bearer(good.clone()),
        &img.manifest_bytes,
    )
    .await;
    assert_eq!(r.status, 401, "a pull token pushing: {}", r.text());
    let c = r.header("www-authenticate").unwrap_or_default().to_owned();
    assert_eq!(
        param(&c, "scope").as_deref(),
        Some("repository:alice/app:pull,push"),
        "{c}"
    );
    assert_eq!(
        param(&c, "error").as_deref(),
        Some("insufficient_scope"),
        "{c}"
    );
    push_image(&server, "alice/other", "v1", &alice).await;
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/alice/other/manifests/v1",
        &Auth::Bearer(good.clone()),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "a token for alice/app used on alice/other");
    // And the right token works there.
    let other = token(&server, &service, &["repository:alice/other:pull"], &alice).await;
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/alice/other/manifests/v1",
        &Auth::Bearer(other),
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_limited_and_secrets_stay_out_of_the_log() {
    let server = start_verbose();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    let victim_pw = "Vict1m-pw-a9b8c7";
    admin.add_user("victim", victim_pw).await.unwrap();
    let pat = admin_api(&server, "victim", victim_pw)
        .create_token("ci", &["repository:victim/*:pull,push".to_owned()], None)
        .await
        .unwrap();
    let issued = token(
        &server,
        &service,
        &["repository:victim/app:pull,push"],
        &Auth::basic("victim", victim_pw),
    )
    .await;
    push_image(
        &server,
        "victim/app",
        "v1",
        &Auth::basic("victim", &pat.token),
    )
    .await;

    // Wrong passwords for a user who has not logged in yet, from an address of its own: after a
    // few, even the right password is refused for a while, with 429 and Retry-After.
    let quiet_pw = "Qu1et-pw-d4e5f6";
    admin.add_user("quiet", quiet_pw).await.unwrap();
    let http = client_from("127.0.0.76".parse().unwrap());
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = send(
            &http,
            &server.url,
            Method::GET,
            "/v2/",
            &Auth::basic("quiet", &format!("Wr0ng-quiet-{i}")),
            &[],
            None,
        )
        .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses[..4], [401; 4], "wrong passwords: {statuses:?}");
    assert_eq!(statuses[5], 429, "limited by the 6th: {statuses:?}");
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::basic("quiet", quiet_pw),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status,
        429,
        "quiet's right password while limited: {}",
        r.text()
    );
    // Another address does not help: the limit is per user too.
    let r = send(
        &client_from("127.0.0.75".parse().unwrap()),
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::basic("quiet", quiet_pw),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status, 429,
        "quiet's right password from elsewhere while limited"
    );

    // The same for a user whose password was verified a moment ago (so the server may remember
    // it): the lockout still holds.
    let http = client_from("127.0.0.77".parse().unwrap());
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::basic("victim", victim_pw),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "victim logs in before the guessing starts");
    let wrong: Vec<String> = (0..8).map(|i| format!("Wr0ng-guess-{i}-x")).collect();
    let mut statuses = Vec::new();
    for w in &wrong {
        let r = send(
            &http,
            &server.url,
            Method::GET,
            "/v2/",
            &Auth::basic("victim", w),
            &[],
            None,
        )
        .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses[0], 401, "a wrong password: {statuses:?}");
    let limited_at = statuses.iter().position(|s| *s == 429);
    assert!(
        limited_at.is_some_and(|i| i <= 5),
        "failed logins get limited by the 6th: {statuses:?}"
    );
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::basic("victim", victim_pw),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status,
        429,
        "the right password while limited: {}",
        r.text()
    );
    assert!(r.header("retry-after").is_some(), "429 says when to retry");
    let r = token_request(
        &http,
        &server,
        &service,
        &["repository:victim/app:pull"],
        &Auth::basic("victim", victim_pw),
    )
    .await;
    assert_eq!(r.status, 429, "the token endpoint is limited too");
    // Other users are not locked out by victim's failures.
    let r = send(
        &client(),
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::admin(),
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "admin is not limited by another user's failures"
    );

    // The admin API and the audit log record the failures without the secrets.
    let audit = admin.audit(Some(200)).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.actor.as_deref() == Some("victim") && e.outcome != "ok"),
        "the audit log records victim's failed logins"
    );
    let audit_text = format!("{audit:?}");
    let mut secrets: Vec<&str> = vec![ADMIN_PASSWORD, victim_pw, quiet_pw, &pat.token, &issued];
    secrets.extend(wrong.iter().map(String::as_str));
    assert_no_secrets(&audit_text, &secrets);
    // Give the log a moment to flush, then search all of it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = server.output();
    assert!(log.contains("listening on"), "the log was captured: {log}");
    assert_no_secrets(&log, &secrets);
    // Nor any part of the PAT after its prefix (ids are fine, secrets are not).
    let secret_part = pat.token.rsplit('.').next().unwrap();
    assert_no_secrets(&log, &[secret_part]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_suite_passes_for_a_user_with_push_rights() {
    let server = start();
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("runner", "Runner-pw-1123").await.unwrap();
    admin.create_org("confo").await.unwrap();
    admin.create_team("confo", "ci").await.unwrap();
    use hoist_client::admin::Action;
    admin
        .grant(
            "confo",
            "ci",
            "confo/*",
            &[Action::Pull, Action::Push, Action::Delete],
        )
        .await
        .unwrap();
    admin.add_member("confo", "ci", "runner").await.unwrap();
    let opts = Options {
        namespace: "confo".into(),
        credentials: Some(Credentials {
            username: "runner".into(),
            password: "Runner-pw-1123".into(),
        }),
        ..Options::default()
    };
    let report = suite::run(&server.url, &opts).await;
    assert!(
        report.cases.len() > 50,
        "the suite ran: {}",
        report.render()
    );
    let failures: Vec<String> = report
        .failures()
        .map(|c| format!("  {}: {}", c.name, c.reason))
        .collect();
    assert!(
        failures.is_empty(),
        "with auth on, hoist failed:\n{}",
        failures.join("\n")
    );
    // The suite really went through the token endpoint: tokens were issued to runner.
    let audit = admin.audit(Some(1000)).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "token.issue" && e.actor.as_deref() == Some("runner")),
        "runner got tokens"
    );
    // Without credentials the same suite fails (it is not passing by ignoring auth).
    let anon = suite::run(
        &server.url,
        &Options {
            namespace: "confo".into(),
            filter: Some("pull/".into()),
            ..Options::default()
        },
    )
    .await;
    assert!(
        anon.failed() > 0,
        "anonymous runs must fail against a closed registry"
    );
}

/// A hoist user with a home and a docker config of their own.
struct Cli {
    home: tempfile::TempDir,
    docker: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            docker: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .env("HOIST_HOME", self.home.path())
            .env("DOCKER_CONFIG", self.docker.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "hoist {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "hoist {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("hoist: "), "{err}");
        err
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_admin_commands_end_to_end() {
    let server = start();
    let service = service(&server).await;
    let addr = server.addr.as_str();
    let root = Cli::new();
    // Not logged in: refused, with the way out.
    let err = root.fails(&["admin", "--registry", addr, "user", "ls"], None);
    assert!(
        err.contains("unauthorized") && err.contains("hoist login"),
        "{err}"
    );
    root.ok(
        &["login", addr, "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    let a = |args: &[&str]| {
        let mut v = vec!["admin", "--registry", addr];
        v.extend_from_slice(args);
        v.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let run_ok = |args: &[&str], stdin: Option<&str>| {
        let v = a(args);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        root.ok(&v, stdin)
    };
    assert!(
        run_ok(
            &["user", "add", "bob", "--password-stdin"],
            Some("Bob-pw-0001\n")
        )
        .contains("Created user bob")
    );
    run_ok(
        &["user", "add", "carol", "--password-stdin"],
        Some("Carol-pw-0001\n"),
    );
    let ls = run_ok(&["user", "ls"], None);
    assert!(
        ls.contains("bob") && ls.contains("carol") && ls.contains("admin"),
        "{ls}"
    );
    run_ok(&["org", "create", "acme"], None);
    run_ok(&["team", "create", "acme", "devs"], None);
    run_ok(&["team", "add-member", "acme", "devs", "bob"], None);
    let out = run_ok(
        &["team", "grant", "acme", "devs", "acme/*", "pull,push"],
        None,
    );
    assert!(out.contains("Granted pull,push on acme/*"), "{out}");
    // The grant is in force: bob gets pull,push on acme/x, carol nothing.
    let granted_to = |user: &str, pw: &str| {
        let server = &server;
        let service = service.clone();
        let (user, pw) = (user.to_owned(), pw.to_owned());
        async move {
            let t = token(
                server,
                &service,
                &["repository:acme/x:pull,push,delete"],
                &Auth::basic(&user, &pw),
            )
            .await;
            granted(&t)
                .get("repository:acme/x")
                .cloned()
                .unwrap_or_default()
        }
    };
    assert_eq!(granted_to("bob", "Bob-pw-0001").await, ["pull", "push"]);
    assert!(granted_to("carol", "Carol-pw-0001").await.is_empty());

    // bob pushes with hoist login / hoist push; the repository is private until made public.
    let bob = Cli::new();
    bob.ok(
        &["login", addr, "-u", "bob", "--password-stdin"],
        Some("Bob-pw-0001\n"),
    );
    push_image(&server, "acme/x", "v1", &Auth::basic("bob", "Bob-pw-0001")).await;
    let plain = client();
    let anon_get = || {
        send(
            &plain,
            &server.url,
            Method::GET,
            "/v2/acme/x/manifests/v1",
            &Auth::None,
            &[("accept", OCI_MANIFEST)],
            None,
        )
    };
    assert_eq!(anon_get().await.status, 401);
    assert!(
        run_ok(&["repo", "visibility", "acme/x", "public"], None).contains("acme/x is now public")
    );
    assert_eq!(anon_get().await.status, 200);
    run_ok(&["repo", "visibility", "acme/x", "private"], None);
    assert_eq!(anon_get().await.status, 401);

    // A non-admin is refused the admin commands.
    for args in [
        vec!["user", "add", "mallory", "--password-stdin"],
        vec!["org", "create", "evil"],
        vec!["team", "grant", "acme", "devs", "acme/*", "delete"],
        vec!["repo", "visibility", "acme/x", "public"],
        vec!["user", "rm", "carol"],
        vec!["audit"],
    ] {
        let mut v = vec!["admin", "--registry", addr];
        v.extend_from_slice(&args);
        let err = bob.fails(&v, Some("Mallory-pw-1\n"));
        assert!(err.contains("denied"), "bob running {args:?}: {err}");
    }
    assert_eq!(anon_get().await.status, 401, "still private");

    // bob's own tokens: create, list, use as a password, revoke.
    let bob_admin = |args: &[&str]| {
        let mut v = vec!["admin", "--registry", addr];
        v.extend_from_slice(args);
        bob.ok(&v, None)
    };
    let pat = bob_admin(&[
        "token",
        "create",
        "ci",
        "--scope",
        "repository:acme/*:pull",
        "--expires-in",
        "1h",
    ]);
    let pat = pat.trim().to_owned();
    assert!(
        !pat.is_empty() && !pat.contains(' '),
        "the token alone on stdout: {pat:?}"
    );
    let ls = bob_admin(&["token", "ls"]);
    assert!(
        ls.contains("ci") && ls.contains("repository:acme/*:pull"),
        "{ls}"
    );
    assert!(!ls.contains(&pat), "token ls never shows the secret");
    let id = ls
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("ci"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no ci token in {ls}"))
        .to_owned();
    // The PAT logs in, and its scope caps bob's rights: pull only.
    let ci = Cli::new();
    ci.ok(
        &["login", addr, "-u", "bob", "--password-stdin"],
        Some(&format!("{pat}\n")),
    );
    let t = token(
        &server,
        &service,
        &["repository:acme/x:pull,push"],
        &Auth::basic("bob", &pat),
    )
    .await;
    assert_eq!(
        granted(&t)
            .get("repository:acme/x")
            .cloned()
            .unwrap_or_default(),
        ["pull"]
    );
    assert!(bob_admin(&["token", "revoke", &id]).contains("Revoked"));
    let err = ci.fails(
        &["login", addr, "-u", "bob", "--password-stdin"],
        Some(&format!("{pat}\n")),
    );
    assert!(
        err.contains("incorrect username or password"),
        "a revoked token: {err}"
    );

    // A robot: its token logs in with the robot's name and pulls.
    let robot_token = run_ok(
        &[
            "robot",
            "create",
            "acme",
            "ci",
            "--scope",
            "repository:acme/*:pull",
        ],
        None,
    );
    let robot_token = robot_token.trim();
    let t = token(
        &server,
        &service,
        &["repository:acme/x:pull,push"],
        &Auth::basic("acme+ci", robot_token),
    )
    .await;
    assert_eq!(
        granted(&t)
            .get("repository:acme/x")
            .cloned()
            .unwrap_or_default(),
        ["pull"]
    );

    // Passwords: bob changes his own; the old one stops working.
    bob_admin_stdin(
        &bob,
        addr,
        &["user", "passwd", "bob", "--password-stdin"],
        "Bob-pw-0002\n",
    );
    let fresh = Cli::new();
    fresh.fails(
        &["login", addr, "-u", "bob", "--password-stdin"],
        Some("Bob-pw-0001\n"),
    );
    fresh.ok(
        &["login", addr, "-u", "bob", "--password-stdin"],
        Some("Bob-pw-0002\n"),
    );
    // bob (logged in with the new password) may not change carol's.
    let err = fresh.fails(
        &[
            "admin",
            "--registry",
            addr,
            "user",
            "passwd",
            "carol",
            "--password-stdin",
        ],
        Some("x-Pw-9\n"),
    );
    assert!(err.contains("denied"), "{err}");

    // Leaving the team takes the grant away.
    assert!(run_ok(&["team", "rm-member", "acme", "devs", "bob"], None).contains("Removed bob"));
    assert!(granted_to("bob", "Bob-pw-0002").await.is_empty());

    // Removing a user: carol can no longer log in.
    run_ok(&["user", "rm", "carol"], None);
    let err = fresh.fails(
        &["login", addr, "-u", "carol", "--password-stdin"],
        Some("Carol-pw-0001\n"),
    );
    assert!(err.contains("incorrect username or password"), "{err}");

    // The audit log shows what happened, with who did it.
    let audit = run_ok(&["audit", "--limit", "500"], None);
    for needle in ["bob", "carol", "acme"] {
        assert!(audit.contains(needle), "audit mentions {needle}:\n{audit}");
    }
    assert!(
        !audit.contains("Bob-pw-0001") && !audit.contains(&pat),
        "no secrets in the audit log"
    );
    // Bad arguments fail before any request, naming the value.
    let err = root.fails(
        &[
            "admin",
            "--registry",
            addr,
            "team",
            "grant",
            "acme",
            "devs",
            "acme/*",
            "pull,write",
        ],
        None,
    );
    assert!(err.contains("\"write\""), "{err}");
}

fn bob_admin_stdin(bob: &Cli, addr: &str, args: &[&str], stdin: &str) {
    let mut v = vec!["admin", "--registry", addr];
    v.extend_from_slice(args);
    bob.ok(&v, Some(stdin));
}

/// Refresh (offline) tokens, as docker keeps them for its identity token: issued with
/// `offline_token=true`, exchanged with docker's OAuth `POST /token`, usable by hoist's own
/// clients (pull and the admin API) from docker's config, and dead once the user is removed.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_work_for_docker_style_clients() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("alice", "alice-Pw-55555").await.unwrap();
    let alice = Auth::basic("alice", "alice-Pw-55555");
    let img = push_image(&server, "alice/app", "v1", &alice).await;
    let http = client();

    let mut url = reqwest::Url::parse(&format!("{}/token", server.url)).unwrap();
    url.query_pairs_mut()
        .append_pair("service", &service)
        .append_pair("scope", "repository:alice/app:pull")
        .append_pair("offline_token", "true");
    let r = send(
        &http,
        &server.url,
        Method::GET,
        url.as_str(),
        &alice,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh = r.json()["refresh_token"]
        .as_str()
        .expect("a refresh token with offline_token=true")
        .to_owned();

    let post = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{}/token", server.url);
        async move {
            let resp = http.post(&url).form(&form).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (status, body) = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("service", service.clone()),
        ("client_id", "test".into()),
        ("scope", "repository:alice/app:pull,push".into()),
    ])
    .await;
    assert_eq!(status, 200, "refresh grant: {body}");
    let access = body["access_token"].as_str().expect("access_token");
    assert_eq!(
        granted(access).get("repository:alice/app").cloned(),
        Some(vec!["pull".to_owned(), "push".to_owned()])
    );
    assert_eq!(body["refresh_token"].as_str(), Some(refresh.as_str()));
    // A forged refresh token, and a password grant with a wrong password: refused.
    let mut forged = refresh.clone();
    forged.pop();
    forged.push(if refresh.ends_with('A') { 'B' } else { 'A' });
    let (status, _) = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", forged),
        ("service", service.clone()),
        ("client_id", "test".into()),
    ])
    .await;
    assert_eq!(status, 401, "a forged refresh token");
    let (status, body) = post(vec![
        ("grant_type", "password".into()),
        ("username", "alice".into()),
        ("password", "alice-Pw-55555".into()),
        ("service", service.clone()),
        ("client_id", "test".into()),
        ("scope", "repository:alice/app:pull".into()),
    ])
    .await;
    assert_eq!(status, 200, "password grant: {body}");
    let (status, _) = post(vec![
        ("grant_type", "password".into()),
        ("username", "alice".into()),
        ("password", "nope-nope-1".into()),
        ("service", service.clone()),
        ("client_id", "test".into()),
    ])
    .await;
    assert_eq!(status, 401, "password grant with a wrong password");

    // hoist itself with the refresh token as docker's identity token: pull, and the admin API.
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.path().join("config.json"),
        serde_json::to_vec(&serde_json::json!({
            "auths": {server.addr.as_str(): {"auth": B64S.encode("<token>:"), "identitytoken": refresh}}
        }))
        .unwrap(),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let hoist = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("HOIST_HOME", home.path())
            .env("DOCKER_CONFIG", docker.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let reference = format!("{}/alice/app:v1", server.addr);
    let out = hoist(&["pull", &reference]);
    assert!(
        out.status.success(),
        "hoist pull with an identity token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Digest: {}", img.manifest)));
    let out = hoist(&["admin", "--registry", &server.addr, "token", "ls"]);
    assert!(
        out.status.success(),
        "hoist admin with an identity token: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Removing alice ends her refresh token.
    admin.remove_user("alice").await.unwrap();
    let (status, _) = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("service", service.clone()),
        ("client_id", "test".into()),
    ])
    .await;
    assert_eq!(status, 401, "the refresh token of a removed user");
}

/// Who may administer what: a team holding `admin` on `org/*` makes its members administrators
/// of that organisation only; a user administers their own namespace; a token never
/// administers an organisation.
#[tokio::test(flavor = "multi_thread")]
async fn organisation_admins_and_namespace_owners() {
    use hoist_client::admin::{Action, AdminError, Visibility};
    let server = start();
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    for u in ["lead", "dev", "alice"] {
        admin.add_user(u, &format!("{u}-Pw-24680")).await.unwrap();
    }
    for org in ["acme", "other"] {
        admin.create_org(org).await.unwrap();
    }
    admin.create_team("acme", "leads").await.unwrap();
    admin
        .grant("acme", "leads", "acme/*", &[Action::Admin])
        .await
        .unwrap();
    admin.add_member("acme", "leads", "lead").await.unwrap();
    push_image(&server, "acme/app", "v1", &Auth::admin()).await;
    push_image(&server, "other/app", "v1", &Auth::admin()).await;
    push_image(
        &server,
        "alice/app",
        "v1",
        &Auth::basic("alice", "alice-Pw-24680"),
    )
    .await;

    let denied = |what: &str, r: Result<(), AdminError>| match r {
        Err(AdminError::Denied { .. }) => {}
        other => panic!("{what}: want denied, got {other:?}"),
    };
    let lead = admin_api(&server, "lead", "lead-Pw-24680");
    lead.create_team("acme", "devs")
        .await
        .expect("org admin creates a team");
    lead.add_member("acme", "devs", "dev")
        .await
        .expect("org admin adds a member");
    lead.grant("acme", "devs", "acme/*", &[Action::Pull, Action::Push])
        .await
        .expect("org admin grants");
    lead.set_visibility("acme/app", Visibility::Public)
        .await
        .expect("org admin publishes an org repository");
    denied(
        "lead: team in another org",
        lead.create_team("other", "x").await,
    );
    denied(
        "lead: grant in another org",
        lead.grant("other", "x", "other/*", &[Action::Pull]).await,
    );
    denied(
        "lead: another org's repository",
        lead.set_visibility("other/app", Visibility::Public).await,
    );
    denied("lead: new org", lead.create_org("neworg").await);
    denied("lead: new user", lead.add_user("eve", "eve-Pw-11111").await);
    match lead.audit(None).await {
        Err(AdminError::Denied { .. }) => {}
        other => panic!("lead reads the audit log: {other:?}"),
    }

    let dev = admin_api(&server, "dev", "dev-Pw-24680");
    denied("dev: team", dev.create_team("acme", "mine").await);
    denied(
        "dev: visibility",
        dev.set_visibility("acme/app", Visibility::Private).await,
    );
    denied(
        "dev: membership",
        dev.add_member("acme", "devs", "alice").await,
    );

    let alice = admin_api(&server, "alice", "alice-Pw-24680");
    alice
        .set_visibility("alice/app", Visibility::Public)
        .await
        .expect("a user publishes a repository of their own namespace");
    denied(
        "alice: org repository",
        alice.set_visibility("acme/app", Visibility::Private).await,
    );

    // lead's personal access token, even one scoped to everything in acme, does not administer
    // the organisation.
    let pat = lead
        .create_token(
            "ci",
            &["repository:acme/*:pull,push,delete,admin".to_owned()],
            None,
        )
        .await
        .expect("token");
    let by_token = admin_api(&server, "lead", &pat.token);
    denied(
        "lead's token: team",
        by_token.create_team("acme", "viatoken").await,
    );

    // What they did is public where it should be, private where it should be.
    let http = client();
    for (repo, want) in [("acme/app", 200), ("alice/app", 200), ("other/app", 401)] {
        let r = send(
            &http,
            &server.url,
            Method::GET,
            &format!("/v2/{repo}/manifests/v1"),
            &Auth::None,
            &[("accept", OCI_MANIFEST)],
            None,
        )
        .await;
        assert_eq!(r.status, want, "anonymous pull of {repo}");
    }
}

/// USAGE.md's "Hosting a registry" lines: `team add ORG TEAM --member USER` and
/// `grant ORG/TEAM ACTIONS PATTERN`, with `HOIST_REGISTRY` instead of `--registry`.
#[tokio::test(flavor = "multi_thread")]
async fn usage_md_admin_forms() {
    let server = start();
    let service = service(&server).await;
    let addr = server.addr.as_str();
    let root = Cli::new();
    root.ok(
        &["login", addr, "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    );
    let admin = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(BIN);
        c.arg("admin")
            .args(args)
            .env("HOIST_HOME", root.home.path())
            .env("DOCKER_CONFIG", root.docker.path())
            .env("HOIST_REGISTRY", addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "hoist admin {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    admin(
        &["user", "add", "alice", "--password-stdin"],
        Some("Alice-pw-0001\n"),
    );
    admin(&["org", "create", "acme"], None);
    let out = admin(&["team", "add", "acme", "dev", "--member", "alice"], None);
    assert!(
        out.contains("Created team acme/dev") && out.contains("Added alice to team acme/dev"),
        "{out}"
    );
    let out = admin(&["grant", "acme/dev", "push", "acme/*"], None);
    assert!(out.contains("Granted push on acme/*"), "{out}");
    let t = token(
        &server,
        &service,
        &["repository:acme/web:pull,push"],
        &Auth::basic("alice", "Alice-pw-0001"),
    )
    .await;
    // A push grant implies pull (README: `push` is `pull,push`; Harbor's rule), so a token
    // asked for both gets both.
    assert_eq!(
        granted(&t)
            .get("repository:acme/web")
            .cloned()
            .unwrap_or_default(),
        ["pull", "push"]
    );
    let err = root.fails(
        &[
            "admin",
            "--registry",
            addr,
            "grant",
            "acme",
            "push",
            "acme/*",
        ],
        None,
    );
    assert!(err.contains("want ORG/TEAM"), "{err}");
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// 200 concurrent failed logins (each a different user from a different address, so no rate
/// limit applies) are each answered 401, or 429 with `Retry-After` beyond the bounded queue of
/// password checks; never another error. The server's peak memory stays bounded (argon2 takes
/// 19 MiB a check: unbounded, this was 2 GB), it returns to near its idle level, and it keeps
/// answering.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_failed_logins_are_bounded() {
    let server = start();
    let pid = server.pid();
    // Warm: a few password checks, so the idle level includes what a check keeps.
    for i in 0..4 {
        let http = client_from(std::net::IpAddr::from([127, 0, 90, 1 + i]));
        let r = send(
            &http,
            &server.url,
            Method::GET,
            "/v2/",
            &Auth::basic(&format!("warm{i}"), "wrong-password"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        send(
            &client(),
            &server.url,
            Method::GET,
            "/v2/",
            &Auth::admin(),
            &[],
            None
        )
        .await
        .status,
        200
    );
    let idle = status_kib(pid, "VmRSS");
    let attempts: Vec<_> = (0..200u32)
        .map(|i| {
            let url = server.url.clone();
            async move {
                let http = client_from(std::net::IpAddr::from([
                    127,
                    0,
                    91 + (i / 200) as u8,
                    1 + (i % 200) as u8,
                ]));
                let auth = Auth::basic(&format!("nobody{i}"), &format!("wrong-password-{i}"));
                // Half at /v2/, half at the token endpoint: both check the password.
                let path = if i % 2 == 0 { "/v2/" } else { "/token" };
                send(&http, &url, Method::GET, path, &auth, &[], None).await
            }
        })
        .collect();
    let answers = futures::future::join_all(attempts).await;
    let peak = status_kib(pid, "VmHWM");
    let after = status_kib(pid, "VmRSS");
    let mut counts = std::collections::BTreeMap::new();
    for r in &answers {
        *counts.entry(r.status).or_insert(0) += 1;
        match r.status {
            401 => {}
            429 => {
                let retry = r.header("retry-after").expect("429 with Retry-After");
                assert!(
                    retry.parse::<u64>().is_ok_and(|s| s >= 1),
                    "Retry-After {retry}"
                );
            }
            other => panic!("a failed login answered {other}: {}", r.text()),
        }
    }
    eprintln!(
        "200 concurrent failed logins: {counts:?}; VmRSS idle {} MiB, peak (VmHWM) {} MiB, after {} MiB",
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        counts.get(&401).copied().unwrap_or(0) > 0,
        "some logins were checked: {counts:?}"
    );
    assert!(peak < 400 * 1024, "peak RSS {} MiB", peak / 1024);
    assert!(
        after < idle + 64 * 1024,
        "RSS after the burst {} MiB, idle {} MiB",
        after / 1024,
        idle / 1024
    );
    // Still answering, and the right password still works.
    assert_eq!(
        send(
            &client(),
            &server.url,
            Method::GET,
            "/v2/",
            &Auth::admin(),
            &[],
            None
        )
        .await
        .status,
        200
    );
}
