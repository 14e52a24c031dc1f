//! Closed mode, in process: the challenge, the token endpoint, 401 vs 403, catalog filtering,
//! mount rules, rate limiting, token rejection and the admin API, on the router with
//! `tower::ServiceExt::oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use hoist_auth::{Access, Auth, AuthConfig, Claims, Limits};
use hoist_registry::{App, router};
use hoist_storage::{MemoryDriver, SqliteMetadata, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN_PW: &str = "admin-password-1";
const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const HOST: &str = "reg.test:5000";

struct Env {
    app: axum::Router,
    auth: Arc<Auth>,
    _dir: tempfile::TempDir,
}

async fn env_with(max_failures: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = AuthConfig {
        user_limits: Limits {
            max_failures,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        },
        ..AuthConfig::default()
    };
    let auth = Arc::new(Auth::open(dir.path(), config).unwrap());
    assert!(auth.ensure_admin(ADMIN_PW).unwrap());
    let store = Store::open(
        Arc::new(MemoryDriver::new()),
        Arc::new(SqliteMetadata::in_memory().unwrap()),
    )
    .await
    .unwrap();
    let app = router(Arc::new(App::closed(store, auth.clone(), None)));
    Env {
        app,
        auth,
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(5).await
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn challenge(&self) -> &str {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn call(
    env: &Env,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b = b.header(header::CONTENT_LENGTH, body.len());
    let resp = env
        .app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn get(env: &Env, uri: &str, auth: Option<&str>) -> Resp {
    call(env, "GET", uri, auth, None, Vec::new()).await
}

async fn admin_json(env: &Env, method: &str, uri: &str, auth: &str, body: Value) -> Resp {
    call(
        env,
        method,
        uri,
        Some(auth),
        Some("application/json"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

/// Pushes a one-blob image to `repo` with `auth`; returns the manifest answer's status.
async fn push(env: &Env, repo: &str, auth: &str) -> StatusCode {
    let r = call(
        env,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={EMPTY}"),
        Some(auth),
        Some("application/octet-stream"),
        b"{}".to_vec(),
    )
    .await;
    if r.status != StatusCode::CREATED {
        return r.status;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": EMPTY, "size": 2},
        "layers": []
    });
    call(
        env,
        "PUT",
        &format!("/v2/{repo}/manifests/latest"),
        Some(auth),
        Some("application/vnd.oci.image.manifest.v1+json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await
    .status
}

async fn token(env: &Env, auth: Option<&str>, scopes: &[&str]) -> Resp {
    let mut uri = "/token?service=hoist".to_owned();
    for s in scopes {
        uri.push_str(&format!("&scope={s}"));
    }
    get(env, &uri, auth).await
}

fn claims_of(t: &str) -> Value {
    let payload = t.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Users alice and bob; org acme, team devs (alice) with pull on acme/* and push on acme/app.
async fn seed(env: &Env) -> String {
    let admin = basic("admin", ADMIN_PW);
    for u in ["alice", "bob"] {
        let r = admin_json(
            env,
            "POST",
            "/admin/v1/users",
            &admin,
            json!({"name": u, "password": format!("{u}-password")}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = admin_json(
        env,
        "POST",
        "/admin/v1/orgs",
        &admin,
        json!({"name": "acme"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin_json(
        env,
        "POST",
        "/admin/v1/orgs/acme/teams",
        &admin,
        json!({"name": "devs"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin_json(
        env,
        "PUT",
        "/admin/v1/orgs/acme/teams/devs/members/alice",
        &admin,
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for (p, a) in [("acme/*", json!(["pull"])), ("acme/app", json!(["push"]))] {
        let r = admin_json(
            env,
            "POST",
            "/admin/v1/orgs/acme/teams/devs/grants",
            &admin,
            json!({"pattern": p, "actions": a}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    admin
}

fn bob_basic() -> String {
    basic("bob", "bob-password")
}

#[tokio::test]
async fn the_mode_follows_the_admin_password_and_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = hoist_registry::Config {
        data: dir.path().join("data"),
        listen: "0.0.0.0:5000".parse().unwrap(),
        ..Default::default()
    };
    // Open on a public address: refused unless insecure_no_auth.
    let e = hoist_registry::open_auth(&config).expect_err("refused");
    assert!(e.to_string().contains("--insecure-no-auth"), "{e}");
    config.insecure_no_auth = true;
    assert!(hoist_registry::open_auth(&config).unwrap().is_none());
    config.insecure_no_auth = false;
    config.listen = "127.0.0.1:5000".parse().unwrap();
    assert!(hoist_registry::open_auth(&config).unwrap().is_none());
    assert!(!dir.path().join("data/auth.db").exists());
    // A password file: closed, admin created.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "file-password-1\n").unwrap();
    config.admin_password_file = Some(pw.clone());
    let auth = hoist_registry::open_auth(&config).unwrap().expect("closed");
    assert!(auth.login("admin", "file-password-1", "test").is_ok());
    drop(auth);
    // Users exist: closed without any password, even on a public address.
    config.admin_password_file = None;
    config.listen = "0.0.0.0:5000".parse().unwrap();
    let auth = hoist_registry::open_auth(&config)
        .unwrap()
        .expect("still closed");
    assert!(auth.login("admin", "file-password-1", "test").is_ok());
    use std::os::unix::fs::PermissionsExt;
    for f in ["auth.db", "auth-token-key.p8"] {
        let mode = std::fs::metadata(dir.path().join("data").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is private");
    }
    // An empty or missing password file is an error naming the file.
    std::fs::write(&pw, "").unwrap();
    config.admin_password_file = Some(pw);
    let e = hoist_registry::open_auth(&config).expect_err("empty file");
    assert!(e.to_string().contains("pw"), "{e}");
}

#[tokio::test]
async fn requests_without_credentials_get_the_challenge_with_the_scope() {
    let env = env().await;
    let r = get(&env, "/v2/", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.challenge(),
        r#"Bearer realm="http://reg.test:5000/token",service="hoist""#
    );
    assert_eq!(r.code(), "UNAUTHORIZED");
    let r = get(&env, "/v2/acme/app/manifests/latest", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.challenge(),
        r#"Bearer realm="http://reg.test:5000/token",service="hoist",scope="repository:acme/app:pull""#
    );
    let r = call(
        &env,
        "POST",
        "/v2/acme/app/blobs/uploads/",
        None,
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.challenge()
            .ends_with(r#"scope="repository:acme/app:pull,push""#),
        "{}",
        r.challenge()
    );
    let r = call(
        &env,
        "DELETE",
        &format!("/v2/acme/app/blobs/{EMPTY}"),
        None,
        None,
        Vec::new(),
    )
    .await;
    assert!(
        r.challenge()
            .ends_with(r#"scope="repository:acme/app:delete""#),
        "{}",
        r.challenge()
    );
    let r = get(&env, "/v2/_catalog", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.challenge().ends_with(r#"scope="registry:catalog:*""#),
        "{}",
        r.challenge()
    );
    // Wrong password: 401 with the route's scope too.
    let r = get(
        &env,
        "/v2/acme/app/tags/list",
        Some(&basic("admin", "wrong-password")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.challenge()
            .contains(r#"scope="repository:acme/app:pull""#)
    );
    // Right password on /v2/: 200; Basic works directly.
    let r = get(&env, "/v2/", Some(&basic("admin", ADMIN_PW))).await;
    assert_eq!(r.status, StatusCode::OK);
    // Metrics need an administrator.
    assert_eq!(
        get(&env, "/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&env, "/metrics", Some(&basic("admin", ADMIN_PW)))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_endpoint_grants_the_intersection_and_tokens_work() {
    let env = env().await;
    seed(&env).await;
    let alice = basic("alice", "alice-password");
    let r = token(
        &env,
        Some(&alice),
        &[
            "repository:alice/app:pull,push",
            "repository:acme/app:pull,push,delete",
            "repository:bob/app:pull",
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("refresh_token").is_none());
    let t = body["token"].as_str().unwrap().to_owned();
    let claims = claims_of(&t);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "hoist");
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}
        ])
    );
    // kid in the header, published in the JWKS.
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    let jwks = get(&env, "/token/jwks", None).await.json();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(get(&env, "/.well-known/jwks.json", None).await.json(), jwks);

    // The token pushes to alice/app and acme/app.
    assert_eq!(
        push(&env, "alice/app", &bearer(&t)).await,
        StatusCode::CREATED
    );
    assert_eq!(
        push(&env, "acme/app", &bearer(&t)).await,
        StatusCode::CREATED
    );
    let r = get(&env, "/v2/alice/app/manifests/latest", Some(&bearer(&t))).await;
    assert_eq!(r.status, StatusCode::OK);
    // Allowed but not in the token: 401 insufficient_scope, to fetch another token.
    let r = call(
        &env,
        "DELETE",
        "/v2/alice/app/manifests/latest",
        Some(&bearer(&t)),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.challenge()
            .contains(r#"scope="repository:alice/app:delete",error="insufficient_scope""#),
        "{}",
        r.challenge()
    );
    // Not allowed at all: 403.
    let r = call(
        &env,
        "DELETE",
        "/v2/acme/app/manifests/latest",
        Some(&bearer(&t)),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");

    // Wrong service, wrong password, unknown user.
    assert_eq!(
        get(&env, "/token?service=other", Some(&alice)).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        token(&env, Some(&basic("alice", "nope-nope")), &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token(&env, Some(&basic("nobody", "nope-nope")), &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Anonymous token: no access to private repos; works on /v2/.
    let anon = token(&env, None, &["repository:alice/app:pull"])
        .await
        .json();
    let at = anon["token"].as_str().unwrap();
    assert_eq!(claims_of(at)["access"], json!([]));
    assert_eq!(
        get(&env, "/v2/", Some(&bearer(at))).await.status,
        StatusCode::OK
    );
    let r = get(&env, "/v2/alice/app/manifests/latest", Some(&bearer(at))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn post_token_with_password_and_refresh_token() {
    let env = env().await;
    seed(&env).await;
    let form = "grant_type=password&username=alice&password=alice-password&service=hoist&client_id=test&access_type=offline&scope=repository%3Aalice%2Fx%3Apull+repository%3Aacme%2Fapp%3Apull";
    let r = call(
        &env,
        "POST",
        "/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["access"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service=hoist&client_id=test&scope=repository%3Aalice%2Fy%3Apush"
    );
    let r = call(
        &env,
        "POST",
        "/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form.into_bytes(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    assert_eq!(body["refresh_token"], refresh.as_str());
    let c = claims_of(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["access"][0]["actions"], json!(["push"]));
    // A forged refresh token, and a wrong password.
    let forged = format!("{}x", &refresh);
    let form = format!("grant_type=refresh_token&refresh_token={forged}&service=hoist");
    let r = call(
        &env,
        "POST",
        "/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form.into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let form = "grant_type=password&username=alice&password=wrong-wrong&service=hoist";
    let r = call(
        &env,
        "POST",
        "/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // GET with offline_token=true, as docker login does.
    let r = get(
        &env,
        "/token?service=hoist&account=alice&client_id=docker&offline_token=true",
        Some(&basic("alice", "alice-password")),
    )
    .await;
    assert!(
        r.json()["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("hrt.")
    );
    // Changing the password ends refresh tokens.
    let r = admin_json(
        &env,
        "PUT",
        "/admin/v1/users/alice/password",
        &basic("alice", "alice-password"),
        json!({"password": "alice-password-2"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service=hoist");
    let r = call(
        &env,
        "POST",
        "/token",
        None,
        Some("application/x-www-form-urlencoded"),
        form.into_bytes(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn denied_is_403_for_the_authenticated_and_401_for_the_anonymous() {
    let env = env().await;
    let admin = seed(&env).await;
    let alice = basic("alice", "alice-password");
    let bob = basic("bob", "bob-password");
    assert_eq!(push(&env, "bob/app", &bob).await, StatusCode::CREATED);
    // alice may not pull bob's private repository; anonymous neither.
    let r = get(&env, "/v2/bob/app/manifests/latest", Some(&alice)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");
    assert_eq!(r.challenge(), "");
    assert_eq!(
        get(&env, "/v2/bob/app/manifests/latest", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Push into someone else's namespace, or a namespace of nobody.
    assert_eq!(push(&env, "bob/other", &alice).await, StatusCode::FORBIDDEN);
    assert_eq!(
        push(&env, "library/busybox", &alice).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        push(&env, "library/busybox", &admin).await,
        StatusCode::CREATED
    );
    // Team grants: pull everywhere in acme, push only on acme/app.
    assert_eq!(push(&env, "acme/app", &alice).await, StatusCode::CREATED);
    assert_eq!(push(&env, "acme/lib", &alice).await, StatusCode::FORBIDDEN);
    // Delete needs delete.
    let r = call(
        &env,
        "DELETE",
        "/v2/acme/app/manifests/latest",
        Some(&alice),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &env,
        "DELETE",
        &format!("/v2/bob/app/blobs/{EMPTY}"),
        Some(&bob),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Bob makes his repository public: anyone pulls it, nobody else pushes.
    let r = admin_json(
        &env,
        "PUT",
        "/admin/v1/repos/bob/app/visibility",
        &alice,
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = admin_json(
        &env,
        "PUT",
        "/admin/v1/repos/bob/app/visibility",
        &bob,
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        get(&env, "/v2/bob/app/manifests/latest", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&env, "/v2/bob/app/manifests/latest", Some(&alice))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(push(&env, "bob/app", &alice).await, StatusCode::FORBIDDEN);
    let anon = token(&env, None, &["repository:bob/app:pull,push"])
        .await
        .json();
    let c = claims_of(anon["token"].as_str().unwrap());
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "bob/app", "actions": ["pull"]}])
    );
    // Referrers follow pull.
    let r = get(&env, &format!("/v2/bob/app/referrers/{EMPTY}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(
        &env,
        &format!("/v2/alice/none/referrers/{EMPTY}"),
        Some(&bob),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = admin_json(
        &env,
        "PUT",
        "/admin/v1/repos/bob/app/visibility",
        &bob,
        json!({"visibility": "private"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&env, "/v2/bob/app/manifests/latest", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_catalog_lists_only_pullable_repositories() {
    let env = env().await;
    let admin = seed(&env).await;
    for repo in ["acme/app", "acme/secret", "alice/x", "bob/y", "other/z"] {
        assert_eq!(
            push(&env, repo, &admin).await,
            StatusCode::CREATED,
            "{repo}"
        );
    }
    let list = |r: Resp| -> Vec<String> {
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        serde_json::from_value(r.json()["repositories"].clone()).unwrap()
    };
    assert_eq!(list(get(&env, "/v2/_catalog", Some(&admin)).await).len(), 5);
    assert_eq!(
        list(
            get(
                &env,
                "/v2/_catalog",
                Some(&basic("alice", "alice-password"))
            )
            .await
        ),
        vec!["acme/app", "acme/secret", "alice/x"]
    );
    assert_eq!(
        list(get(&env, "/v2/_catalog", Some(&basic("bob", "bob-password"))).await),
        vec!["bob/y"]
    );
    // Pages are full of visible repositories; hidden ones do not end the listing early.
    let alice = basic("alice", "alice-password");
    let r = get(&env, "/v2/_catalog?n=1&last=acme/secret", Some(&alice)).await;
    assert_eq!(
        r.headers.get(header::LINK).map(|v| v.to_str().unwrap()),
        Some(r#"</v2/_catalog?n=1&last=alice/x>; rel="next""#)
    );
    assert_eq!(list(r), vec!["alice/x"]);
    let r = get(&env, "/v2/_catalog?n=1&last=alice/x", Some(&alice)).await;
    assert!(r.headers.get(header::LINK).is_none());
    assert_eq!(list(r), Vec::<String>::new());
    let r = get(&env, "/v2/_catalog?n=2", Some(&bob_basic())).await;
    assert!(r.headers.get(header::LINK).is_none());
    assert_eq!(list(r), vec!["bob/y"]);
    // Tokens: without registry:catalog:* the catalog asks for it; with it, filtered.
    let bob = basic("bob", "bob-password");
    let t = token(&env, Some(&bob), &["repository:bob/y:pull"])
        .await
        .json();
    let r = get(
        &env,
        "/v2/_catalog",
        Some(&bearer(t["token"].as_str().unwrap())),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().contains(r#"scope="registry:catalog:*""#));
    let t = token(&env, Some(&bob), &["registry:catalog:*"])
        .await
        .json();
    assert_eq!(
        list(
            get(
                &env,
                "/v2/_catalog",
                Some(&bearer(t["token"].as_str().unwrap()))
            )
            .await
        ),
        vec!["bob/y"]
    );
    // Public repositories show to anonymous tokens.
    let r = admin_json(
        &env,
        "PUT",
        "/admin/v1/repos/other/z/visibility",
        &admin,
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let t = token(&env, None, &["registry:catalog:*"]).await.json();
    assert_eq!(
        list(
            get(
                &env,
                "/v2/_catalog",
                Some(&bearer(t["token"].as_str().unwrap()))
            )
            .await
        ),
        vec!["other/z"]
    );
}

#[tokio::test]
async fn mount_needs_pull_on_the_source_and_push_on_the_target() {
    let env = env().await;
    let admin = seed(&env).await;
    assert_eq!(push(&env, "acme/app", &admin).await, StatusCode::CREATED);
    assert_eq!(push(&env, "bob/y", &admin).await, StatusCode::CREATED);
    let alice = basic("alice", "alice-password");
    let mount = |from: &str, to: &str| format!("/v2/{to}/blobs/uploads/?mount={EMPTY}&from={from}");
    // pull on acme/app (team), push on alice/x (own namespace): mounted.
    let r = call(
        &env,
        "POST",
        &mount("acme/app", "alice/x"),
        Some(&alice),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // No pull on bob/y: a normal upload session instead.
    let r = call(
        &env,
        "POST",
        &mount("bob/y", "alice/x"),
        Some(&alice),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.headers.contains_key(header::LOCATION));
    // No push on the target: denied.
    let r = call(
        &env,
        "POST",
        &mount("acme/app", "acme/lib"),
        Some(&alice),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // With a token, the source's pull must be in the token.
    let t = token(&env, Some(&alice), &["repository:alice/w:pull,push"])
        .await
        .json();
    let t = bearer(t["token"].as_str().unwrap());
    let r = call(
        &env,
        "POST",
        &mount("acme/app", "alice/w"),
        Some(&t),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let t = token(
        &env,
        Some(&alice),
        &["repository:alice/w:pull,push", "repository:acme/app:pull"],
    )
    .await
    .json();
    let t = bearer(t["token"].as_str().unwrap());
    let r = call(
        &env,
        "POST",
        &mount("acme/app", "alice/w"),
        Some(&t),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn expired_tampered_wrong_audience_and_wrong_scope_tokens_are_rejected() {
    let env = env().await;
    let admin = basic("admin", ADMIN_PW);
    assert_eq!(push(&env, "admin/app", &admin).await, StatusCode::CREATED);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = Claims {
        iss: "hoist".into(),
        sub: "admin".into(),
        aud: "hoist".into(),
        exp: now + 300,
        nbf: now - 1,
        iat: now,
        jti: "x".into(),
        access: vec![Access {
            kind: "repository".into(),
            name: "admin/app".into(),
            actions: vec!["pull".into()],
        }],
        tid: None,
        uid: env.auth.login("admin", ADMIN_PW, "t").unwrap().uid,
    };
    let uri = "/v2/admin/app/manifests/latest";
    let t = env.auth.keys().sign(&good).unwrap();
    assert_eq!(
        get(&env, uri, Some(&bearer(&t))).await.status,
        StatusCode::OK
    );
    let cases = [
        (
            "expired",
            Claims {
                exp: now - 120,
                nbf: now - 400,
                ..good.clone()
            },
        ),
        (
            "wrong audience",
            Claims {
                aud: "elsewhere".into(),
                ..good.clone()
            },
        ),
        (
            "wrong issuer",
            Claims {
                iss: "elsewhere".into(),
                ..good.clone()
            },
        ),
        (
            "no subject id",
            Claims {
                uid: None,
                ..good.clone()
            },
        ),
        (
            "another subject id",
            Claims {
                uid: good.uid.map(|u| u + 1000),
                ..good.clone()
            },
        ),
    ];
    for (what, c) in cases {
        let t = env.auth.keys().sign(&c).unwrap();
        let r = get(&env, uri, Some(&bearer(&t))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            r.challenge().contains(r#"error="invalid_token""#),
            "{what}: {}",
            r.challenge()
        );
    }
    // Tampered: the payload says another repository.
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let mut payload = claims_of(&t);
    payload["access"][0]["name"] = json!("admin/other");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap());
    let forged = parts.join(".");
    assert_eq!(
        get(&env, "/v2/admin/other/tags/list", Some(&bearer(&forged)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Wrong scope: a pull token does not push; a token for one repository does not read another.
    let r = push(&env, "admin/app", &bearer(&t)).await;
    assert_eq!(r, StatusCode::UNAUTHORIZED);
    let r = get(&env, "/v2/admin/else/tags/list", Some(&bearer(&t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().contains("insufficient_scope"));
    // A token of a user who was removed no longer works beyond its own scopes.
    assert_eq!(
        get(&env, uri, Some("Bearer garbage")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let env = env_with(3).await;
    seed(&env).await;
    let bad = basic("alice", "wrong-password");
    assert_eq!(
        get(&env, "/v2/", Some(&bad)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&env, "/v2/", Some(&bad)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = get(&env, "/v2/", Some(&bad)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "60");
    // Locked out: even the right password waits.
    let r = token(&env, Some(&basic("alice", "alice-password")), &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Other users are not locked.
    assert_eq!(
        get(&env, "/v2/", Some(&basic("bob", "bob-password")))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_api_robots_tokens_and_the_audit_log() {
    let env = env().await;
    let admin = seed(&env).await;
    let alice = basic("alice", "alice-password");
    // Non-admins cannot add users or create orgs; errors have the OCI shape.
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/users",
        &alice,
        json!({"name": "eve", "password": "eve-password"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/users",
        &admin,
        json!({"name": "alice", "password": "another-pass"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/users",
        &admin,
        json!({"name": "Bad Name", "password": "another-pass"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&env, "GET", "/admin/v1/users", None, None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let users = get(&env, "/admin/v1/users", Some(&admin)).await.json();
    assert_eq!(
        users,
        json!([{"name": "admin", "admin": true}, {"name": "alice", "admin": false}, {"name": "bob", "admin": false}])
    );
    // A grant outside the organisation is refused.
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/orgs/acme/teams/devs/grants",
        &admin,
        json!({"pattern": "bob/*", "actions": ["pull"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A robot with push on acme/ci-*.
    let r = admin_json(&env, "POST", "/admin/v1/robots", &admin, json!({"org": "acme", "name": "ci", "scopes": ["repository:acme/ci-*:pull,push"], "expires_in_secs": 3600})).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let robot = r.json();
    assert_eq!(robot["name"], "acme+ci");
    let robot_auth = basic("acme+ci", robot["token"].as_str().unwrap());
    assert_eq!(
        push(&env, "acme/ci-app", &robot_auth).await,
        StatusCode::CREATED
    );
    assert_eq!(
        push(&env, "acme/app", &robot_auth).await,
        StatusCode::FORBIDDEN
    );
    // The robot's token under another name does not log in.
    assert_eq!(
        get(
            &env,
            "/v2/",
            Some(&basic("alice", robot["token"].as_str().unwrap()))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    // alice's PAT: pull only on acme/*, even though she may push acme/app.
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/tokens",
        &alice,
        json!({"name": "laptop", "scopes": ["repository:acme/*:pull"], "expires_in_secs": 3600}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let pat = r.json();
    let pat_secret = pat["token"].as_str().unwrap().to_owned();
    let pat_auth = basic("alice", &pat_secret);
    assert_eq!(
        get(&env, "/v2/acme/ci-app/manifests/latest", Some(&pat_auth))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        push(&env, "acme/app", &pat_auth).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        push(&env, "alice/x", &pat_auth).await,
        StatusCode::FORBIDDEN
    );
    let t = token(&env, Some(&pat_auth), &["repository:acme/app:pull,push"])
        .await
        .json();
    assert_eq!(
        claims_of(t["token"].as_str().unwrap())["access"][0]["actions"],
        json!(["pull"])
    );
    // A PAT cannot mint PATs or administer.
    let r = admin_json(
        &env,
        "POST",
        "/admin/v1/tokens",
        &pat_auth,
        json!({"name": "x", "scopes": ["repository:acme/*:pull"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let list = get(&env, "/admin/v1/tokens", Some(&alice)).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], pat["id"]);
    assert_eq!(list[0]["name"], "laptop");
    assert_eq!(list[0]["scopes"], json!(["repository:acme/*:pull"]));
    assert!(list[0]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(!list.to_string().contains(&pat_secret));
    // A registry token issued through the PAT works until the PAT is revoked.
    let pat_t = token(&env, Some(&pat_auth), &["repository:acme/ci-app:pull"])
        .await
        .json();
    let pat_bearer = bearer(pat_t["token"].as_str().unwrap());
    let ci_app = "/v2/acme/ci-app/manifests/latest";
    assert_eq!(
        get(&env, ci_app, Some(&pat_bearer)).await.status,
        StatusCode::OK
    );
    let bob_t = token(
        &env,
        Some(&basic("bob", "bob-password")),
        &["repository:bob/q:pull"],
    )
    .await
    .json();
    let bob_bearer = bearer(bob_t["token"].as_str().unwrap());
    assert_eq!(
        get(&env, "/v2/", Some(&bob_bearer)).await.status,
        StatusCode::OK
    );
    // bob cannot revoke alice's token; alice can.
    let id = pat["id"].as_str().unwrap();
    let r = call(
        &env,
        "DELETE",
        &format!("/admin/v1/tokens/{id}"),
        Some(&basic("bob", "bob-password")),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &env,
        "DELETE",
        &format!("/admin/v1/tokens/{id}"),
        Some(&alice),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&env, "/v2/", Some(&pat_auth)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = get(&env, ci_app, Some(&pat_bearer)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().contains("invalid_token"), "{}", r.challenge());
    // Removing a user ends their logins and their tokens.
    let r = call(
        &env,
        "DELETE",
        "/admin/v1/users/bob",
        Some(&admin),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&env, "/v2/", Some(&basic("bob", "bob-password")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&env, "/v2/", Some(&bob_bearer)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The audit log: logins, failures, token issue, admin changes, denials; never a secret.
    let r = get(&env, "/admin/v1/audit?limit=500", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    let log = r.json();
    let has = |action: &str, outcome: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome)
    };
    for (a, o) in [
        ("login", "ok"),
        ("login", "denied"),
        ("token.issue", "ok"),
        ("user.create", "ok"),
        ("user.create", "denied"),
        ("robot.create", "ok"),
        ("token.revoke", "ok"),
        ("user.delete", "ok"),
        ("access", "denied"),
    ] {
        assert!(has(a, o), "no {a} {o} in {log:#}");
    }
    let text = log.to_string();
    for secret in [
        "alice-password",
        ADMIN_PW,
        pat_secret.as_str(),
        robot["token"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "secret in the audit log");
    }
    assert_eq!(
        get(&env, "/admin/v1/audit", Some(&alice)).await.status,
        StatusCode::FORBIDDEN
    );
}
