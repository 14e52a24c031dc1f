//! What the auth tests share: a closed-mode `hoist serve`, raw HTTP with Basic or Bearer
//! credentials (from a source address of the caller's choice, so deliberate failed logins of one
//! test do not count against another's address), the token endpoint, and seeding images.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;

use hoist_client::admin::AdminClient;
use hoist_client::credentials::Credential;
use hoist_client::endpoint::Endpoints;
use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use reqwest::Method;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_hoist");

/// The admin password every test server starts with; distinctive, so logs can be searched.
pub const ADMIN_PASSWORD: &str = "Adm1n-pw-7f3c9e2b";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// `hoist serve` with auth on (user `admin` from `--admin-password-file`).
pub fn start() -> Server {
    Server::hoist_with_admin(Path::new(BIN), ADMIN_PASSWORD, &[]).expect("starting hoist serve")
}

/// Like [`start`], logging everything at debug level (for tests that search the log).
pub fn start_verbose() -> Server {
    Server::hoist_with_admin_env(
        Path::new(BIN),
        ADMIN_PASSWORD,
        &[],
        &[("RUST_LOG", "debug")],
    )
    .expect("starting hoist serve")
}

/// How a request authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic(user.to_owned(), password.to_owned())
    }

    pub fn admin() -> Auth {
        Auth::basic("admin", ADMIN_PASSWORD)
    }
}

/// A reqwest client whose connections leave from `source` (any 127.0.0.0/8 address reaches a
/// server on 127.0.0.1).
pub fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

pub fn client() -> reqwest::Client {
    client_from("127.0.0.1".parse().unwrap())
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first error code of a `{"errors":[...]}` body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get("errors")?
            .get(0)?
            .get("code")?
            .as_str()
            .map(str::to_owned)
    }
}

/// Sends one request; `url` is absolute or a path on `base`.
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    url: &str,
    auth: &Auth,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let full = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{base}{url}")
    };
    let mut rb = http.request(method.clone(), &full);
    rb = match auth {
        Auth::None => rb,
        Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
        Auth::Bearer(t) => rb.bearer_auth(t),
    };
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb = match body {
        Some(b) => rb.body(b),
        None if matches!(method, Method::POST | Method::PUT | Method::PATCH) => {
            rb.header("content-length", "0")
        }
        None => rb,
    };
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {full}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("reading a body");
    Resp {
        status,
        headers,
        body,
    }
}

/// The `service` of the registry's Bearer challenge (`GET /v2/` without credentials).
pub async fn service(server: &Server) -> String {
    let r = send(
        &client(),
        &server.url,
        Method::GET,
        "/v2/",
        &Auth::None,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "closed mode: /v2/ without credentials");
    let challenge = r
        .header("www-authenticate")
        .expect("a challenge")
        .to_owned();
    param(&challenge, "service").unwrap_or_else(|| panic!("no service in {challenge}"))
}

/// A parameter of a `WWW-Authenticate` value (quoted values only, as hoist sends them).
pub fn param(challenge: &str, key: &str) -> Option<String> {
    let at = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &challenge[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// `GET /token?service=..&scope=..` with `auth`; returns the response.
pub async fn token_request(
    http: &reqwest::Client,
    server: &Server,
    service: &str,
    scopes: &[&str],
    auth: &Auth,
) -> Resp {
    let mut url = reqwest::Url::parse(&format!("{}/token", server.url)).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("service", service);
        for s in scopes {
            q.append_pair("scope", s);
        }
    }
    send(
        http,
        &server.url,
        Method::GET,
        url.as_str(),
        auth,
        &[],
        None,
    )
    .await
}

/// A token for `scopes` (the token endpoint must answer 200).
pub async fn token(server: &Server, service: &str, scopes: &[&str], auth: &Auth) -> String {
    let r = token_request(&client(), server, service, scopes, auth).await;
    assert_eq!(r.status, 200, "token endpoint: {}", r.text());
    let v = r.json();
    v["token"]
        .as_str()
        .or(v["access_token"].as_str())
        .expect("a token")
        .to_owned()
}

/// What a token grants: `repository:NAME` (or `registry:catalog`) -> sorted actions.
pub fn granted(token: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a jwt");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("json claims");
    let mut out = std::collections::BTreeMap::new();
    for a in claims["access"].as_array().cloned().unwrap_or_default() {
        let key = format!(
            "{}:{}",
            a["type"].as_str().unwrap_or(""),
            a["name"].as_str().unwrap_or("")
        );
        let mut actions: Vec<String> = a["actions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        actions.sort();
        if !actions.is_empty() {
            out.insert(key, actions);
        }
    }
    out
}

/// An admin-API client for `user`.
pub fn admin_api(server: &Server, user: &str, password: &str) -> AdminClient {
    AdminClient::new(
        &server.addr,
        &Endpoints::new(),
        Some(Credential::Basic {
            username: user.to_owned(),
            password: password.to_owned(),
        }),
    )
    .expect("admin client")
}

/// Uploads a blob monolithically (`POST` then `PUT ?digest=`); returns its digest.
pub async fn put_blob(server: &Server, repo: &str, auth: &Auth, data: &[u8]) -> Digest {
    let http = client();
    let digest = Digest::sha256_of(data);
    let r = send(
        &http,
        &server.url,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        auth,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 202, "opening an upload in {repo}: {}", r.text());
    let loc = r.header("location").expect("location").to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = send(
        &http,
        &server.url,
        Method::PUT,
        &format!("{loc}{sep}digest={digest}"),
        auth,
        &[("content-type", "application/octet-stream")],
        Some(data.to_vec()),
    )
    .await;
    assert_eq!(r.status, 201, "closing an upload in {repo}: {}", r.text());
    digest
}

/// A small image pushed to `repo:tag`.
pub struct Pushed {
    pub config: Digest,
    pub layer: Digest,
    pub manifest: Digest,
    pub manifest_bytes: Vec<u8>,
}

/// A manifest naming `config` and `layer`, made unique by `salt`.
pub fn manifest_json(
    config: &Digest,
    config_len: usize,
    layer: &Digest,
    layer_len: usize,
    salt: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": config_len},
        "layers": [{"mediaType": LAYER, "digest": layer.as_str(), "size": layer_len}],
        "annotations": {"salt": salt},
    }))
    .unwrap()
}

pub async fn put_manifest(
    server: &Server,
    repo: &str,
    reference: &str,
    auth: &Auth,
    bytes: &[u8],
) -> Resp {
    send(
        &client(),
        &server.url,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
        auth,
        &[("content-type", OCI_MANIFEST)],
        Some(bytes.to_vec()),
    )
    .await
}

/// Pushes a one-layer image to `repo:tag` as `auth`.
pub async fn push_image(server: &Server, repo: &str, tag: &str, auth: &Auth) -> Pushed {
    let config_bytes = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"repo": repo, "tag": tag}},
    }))
    .unwrap();
    let layer_bytes = format!("layer of {repo}:{tag}").into_bytes();
    let config = put_blob(server, repo, auth, &config_bytes).await;
    let layer = put_blob(server, repo, auth, &layer_bytes).await;
    let manifest_bytes = manifest_json(&config, config_bytes.len(), &layer, layer_bytes.len(), tag);
    let r = put_manifest(server, repo, tag, auth, &manifest_bytes).await;
    assert_eq!(r.status, 201, "pushing {repo}:{tag}: {}", r.text());
    Pushed {
        config,
        layer,
        manifest: Digest::sha256_of(&manifest_bytes),
        manifest_bytes,
    }
}

/// Asserts that `output` (a server's log) holds none of `secrets`.
pub fn assert_no_secrets(output: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        if let Some(line) = output.lines().find(|l| l.contains(s)) {
            panic!("a secret appears in the server's log: {line}");
        }
    }
}
