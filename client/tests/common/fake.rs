//! A small in-process registry for the failure cases a real one cannot be made to produce:
//! corrupted blobs, connections cut mid-blob, chunk uploads that fail part way, 5xx answers, and a
//! Bearer token server that records what it issued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hoist_oci::Digest;

#[derive(Default)]
pub struct Knobs {
    /// Blobs served with their last byte flipped.
    pub corrupt: HashSet<Digest>,
    /// Blobs whose next full `GET` sends half the bytes, then cuts the connection.
    pub cut_once: HashSet<Digest>,
    /// Answer this many blob `GET`s with 503 before serving.
    pub blob_503s: u32,
    /// Answer blob `GET`s with this status (a 4xx that must not be retried).
    pub blob_status: Option<StatusCode>,
    /// The next `PATCH` at or after this offset keeps half its bytes and answers 500.
    pub fail_patch_at: Option<u64>,
    /// The next `PUT` closing a chunked session (no body) answers 502 and keeps the session, as a
    /// balancer does when the replica completing it dies.
    pub fail_finish_once: bool,
    /// The next `PUT` closing a chunked session drops the session and answers 404
    /// `BLOB_UPLOAD_UNKNOWN`, as a registry does whose store lost the upload.
    pub lose_session_once: bool,
    /// Require Bearer tokens from `/token`, issued for Basic `user:password`.
    pub bearer: Option<(String, String)>,
}

#[derive(Default)]
pub struct Fake {
    pub knobs: Knobs,
    blobs: HashMap<Digest, Bytes>,
    links: HashSet<(String, Digest)>,
    manifests: HashMap<(String, String), (Bytes, String)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_id: u64,
    /// Tokens issued: token -> scopes.
    tokens: HashMap<String, Vec<String>>,
    /// Every token request's scopes, in order.
    pub token_requests: Vec<Vec<String>>,
    /// Every request: "METHOD path [range]".
    pub log: Vec<String>,
}

pub type Shared = Arc<Mutex<Fake>>;

pub struct FakeServer {
    pub addr: String,
    pub state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(knobs: Knobs) -> Self {
        let state: Shared = Arc::new(Mutex::new(Fake {
            knobs,
            ..Fake::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new()
            .fallback(handle)
            .with_state((state.clone(), addr.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.state.lock().unwrap()
    }

    /// Puts a blob in the registry, linked in `repo`.
    pub fn put_blob(&self, repo: &str, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let d = Digest::sha256_of(&bytes);
        let mut f = self.fake();
        f.blobs.insert(d.clone(), bytes);
        f.links.insert((repo.to_owned(), d.clone()));
        d
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let mut f = self.fake();
        let b = Bytes::copy_from_slice(bytes);
        let d = Digest::sha256_of(bytes);
        f.manifests.insert(
            (repo.to_owned(), reference.to_owned()),
            (b.clone(), media_type.to_owned()),
        );
        f.manifests
            .insert((repo.to_owned(), d.to_string()), (b, media_type.to_owned()));
    }

    pub fn blob(&self, d: &Digest) -> Option<Bytes> {
        self.fake().blobs.get(d).cloned()
    }

    pub fn linked(&self, repo: &str, d: &Digest) -> bool {
        self.fake().links.contains(&(repo.to_owned(), d.clone()))
    }

    /// Forgets every token issued (the next request with one gets a 401).
    pub fn revoke_tokens(&self) {
        self.fake().tokens.clear();
    }

    pub fn log(&self) -> Vec<String> {
        self.fake().log.clone()
    }
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn basic(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b = v.strip_prefix("Basic ")?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

async fn handle(
    State((state, addr)): State<(Shared, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let range = headers
        .get(header::RANGE)
        .or(headers.get(header::CONTENT_RANGE))
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let mut f = state.lock().unwrap();
    f.log.push(format!("{method} {path}{range}"));

    if path == "/token" {
        let Some((user, password)) = f.knobs.bearer.clone() else {
            return status(StatusCode::NOT_FOUND);
        };
        if basic(&headers) != Some(format!("{user}:{password}")) {
            return status(StatusCode::UNAUTHORIZED);
        }
        let scopes: Vec<String> = query(&uri)
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        f.token_requests.push(scopes.clone());
        let token = format!("token-{}", f.token_requests.len());
        f.tokens.insert(token.clone(), scopes);
        return (
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"token":"{token}","expires_in":300}}"#),
        )
            .into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status(StatusCode::NOT_FOUND);
    };

    // Which repository and access the request needs.
    let (repo, kind, tail) = if rest.is_empty() {
        (String::new(), "base", String::new())
    } else if let Some(i) = rest.rfind("/blobs/uploads") {
        let tail = rest[i + "/blobs/uploads".len()..].trim_start_matches('/');
        (rest[..i].to_owned(), "upload", tail.to_owned())
    } else if let Some(i) = rest.rfind("/blobs/") {
        (rest[..i].to_owned(), "blob", rest[i + 7..].to_owned())
    } else if let Some(i) = rest.rfind("/manifests/") {
        (rest[..i].to_owned(), "manifest", rest[i + 11..].to_owned())
    } else {
        return status(StatusCode::NOT_FOUND);
    };
    if f.knobs.bearer.is_some() {
        let push = !matches!(method, Method::GET | Method::HEAD);
        let mut needed = Vec::new();
        if !repo.is_empty() {
            needed.push(format!(
                "repository:{repo}:{}",
                if push { "pull,push" } else { "pull" }
            ));
        }
        let granted = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| f.tokens.get(t));
        // `repository:NAME:pull` is covered by a grant of `repository:NAME:pull,push`.
        let covers = |grant: &str, need: &str| {
            let (g_name, g_actions) = grant.rsplit_once(':').unwrap_or((grant, ""));
            let (n_name, n_actions) = need.rsplit_once(':').unwrap_or((need, ""));
            g_name == n_name
                && n_actions
                    .split(',')
                    .all(|a| g_actions.split(',').any(|g| g == a))
        };
        let ok =
            granted.is_some_and(|g| needed.iter().all(|n| g.iter().any(|have| covers(have, n))));
        if !ok {
            let scope = needed.first().cloned().unwrap_or_default();
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    format!(r#"Bearer realm="http://{addr}/token",service="fake",scope="{scope}""#),
                )],
            )
                .into_response();
        }
    }

    match (kind, method) {
        ("base", _) => status(StatusCode::OK),
        ("blob", Method::HEAD) => {
            let Ok(d) = Digest::parse(&tail) else {
                return status(StatusCode::BAD_REQUEST);
            };
            match f.blobs.get(&d) {
                Some(b) if f.links.contains(&(repo, d.clone())) => (
                    StatusCode::OK,
                    [(header::CONTENT_LENGTH, b.len().to_string())],
                )
                    .into_response(),
                _ => status(StatusCode::NOT_FOUND),
            }
        }
        ("blob", Method::GET) => {
            if let Some(code) = f.knobs.blob_status {
                return status(code);
            }
            if f.knobs.blob_503s > 0 {
                f.knobs.blob_503s -= 1;
                return status(StatusCode::SERVICE_UNAVAILABLE);
            }
            let Ok(d) = Digest::parse(&tail) else {
                return status(StatusCode::BAD_REQUEST);
            };
            let Some(mut bytes) = f.blobs.get(&d).cloned() else {
                return status(StatusCode::NOT_FOUND);
            };
            if f.knobs.corrupt.contains(&d) {
                let mut v = bytes.to_vec();
                *v.last_mut().unwrap() ^= 0xff;
                bytes = v.into();
            }
            let start = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(start) = start.filter(|&s| s > 0) {
                let total = bytes.len();
                return (
                    StatusCode::PARTIAL_CONTENT,
                    [(
                        header::CONTENT_RANGE,
                        format!("bytes {start}-{}/{total}", total - 1),
                    )],
                    bytes.slice(start..),
                )
                    .into_response();
            }
            if f.knobs.cut_once.remove(&d) {
                let half = bytes.slice(..bytes.len() / 2);
                // Let the half reach the client before the connection is cut.
                let stream = futures::StreamExt::chain(
                    futures::stream::iter(vec![Ok::<_, std::io::Error>(half)]),
                    futures::stream::once(async {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        Err(std::io::Error::other("cut"))
                    }),
                );
                return (
                    StatusCode::OK,
                    [(header::CONTENT_LENGTH, bytes.len().to_string())],
                    Body::from_stream(stream),
                )
                    .into_response();
            }
            (StatusCode::OK, bytes).into_response()
        }
        ("manifest", Method::GET | Method::HEAD) => match f.manifests.get(&(repo, tail)) {
            Some((b, mt)) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, mt.clone()),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        Digest::sha256_of(b).to_string(),
                    ),
                ],
                b.clone(),
            )
                .into_response(),
            None => status(StatusCode::NOT_FOUND),
        },
        ("manifest", Method::PUT) => {
            let mt = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let d = Digest::sha256_of(&body);
            f.manifests
                .insert((repo.clone(), tail), (body.clone(), mt.clone()));
            f.manifests
                .insert((repo.clone(), d.to_string()), (body, mt));
            (
                StatusCode::CREATED,
                [(header::LOCATION, format!("/v2/{repo}/manifests/{d}"))],
            )
                .into_response()
        }
        ("upload", Method::POST) => {
            let q = query(&uri);
            let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let (Some(mount), Some(from)) = (get("mount"), get("from"))
                && let Ok(d) = Digest::parse(&mount)
                && f.links.contains(&(from, d.clone()))
            {
                f.links.insert((repo.clone(), d.clone()));
                return (
                    StatusCode::CREATED,
                    [(header::LOCATION, format!("/v2/{repo}/blobs/{d}"))],
                )
                    .into_response();
            }
            f.next_id += 1;
            let id = format!("u{}", f.next_id);
            f.uploads.insert(id.clone(), (repo.clone(), Vec::new()));
            upload_answer(StatusCode::ACCEPTED, &repo, &id, 0)
        }
        ("upload", Method::PATCH) => {
            let Some((_, data)) = f.uploads.get(&tail) else {
                return status(StatusCode::NOT_FOUND);
            };
            let offset = data.len() as u64;
            if let Some(start) = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok())
                && start != offset
            {
                return status(StatusCode::RANGE_NOT_SATISFIABLE);
            }
            if f.knobs.fail_patch_at.is_some_and(|at| offset >= at) {
                f.knobs.fail_patch_at = None;
                let half = body.len() / 2;
                f.uploads
                    .get_mut(&tail)
                    .unwrap()
                    .1
                    .extend_from_slice(&body[..half]);
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            }
            let data = &mut f.uploads.get_mut(&tail).unwrap().1;
            data.extend_from_slice(&body);
            let len = data.len() as u64;
            upload_answer(StatusCode::ACCEPTED, &repo, &tail, len)
        }
        ("upload", Method::GET) => match f.uploads.get(&tail) {
            Some((_, data)) => {
                let len = data.len() as u64;
                upload_answer(StatusCode::NO_CONTENT, &repo, &tail, len)
            }
            None => status(StatusCode::NOT_FOUND),
        },
        ("upload", Method::PUT) => {
            if body.is_empty() && f.knobs.fail_finish_once && f.uploads.contains_key(&tail) {
                f.knobs.fail_finish_once = false;
                return status(StatusCode::BAD_GATEWAY);
            }
            if body.is_empty() && f.knobs.lose_session_once && f.uploads.contains_key(&tail) {
                f.knobs.lose_session_once = false;
                f.uploads.remove(&tail);
                return status(StatusCode::NOT_FOUND);
            }
            let Some((_, mut data)) = f.uploads.remove(&tail) else {
                return status(StatusCode::NOT_FOUND);
            };
            data.extend_from_slice(&body);
            let q = query(&uri);
            let Some(d) = q
                .iter()
                .find(|(k, _)| k == "digest")
                .and_then(|(_, v)| Digest::parse(v).ok())
            else {
                return status(StatusCode::BAD_REQUEST);
            };
            if !d.matches(&data) {
                return status(StatusCode::BAD_REQUEST);
            }
            f.blobs.insert(d.clone(), data.into());
            f.links.insert((repo.clone(), d.clone()));
            (
                StatusCode::CREATED,
                [(header::LOCATION, format!("/v2/{repo}/blobs/{d}"))],
            )
                .into_response()
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn upload_answer(code: StatusCode, repo: &str, id: &str, len: u64) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        format!("/v2/{repo}/blobs/uploads/{id}").parse().unwrap(),
    );
    if len > 0 {
        h.insert(header::RANGE, format!("0-{}", len - 1).parse().unwrap());
    }
    (code, h).into_response()
}
