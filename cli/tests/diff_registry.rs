//! Differential suite: `hoist serve` against the CNCF registry 2.8 (`docker-registry`) on the error
//! paths the official conformance suite leaves out. Both registries get the same content, then the
//! same requests; status, error code and the headers clients read must agree, except for the
//! deliberate differences listed in [`DELIBERATE`] (each with its reason; a listed difference that
//! no longer shows fails too, so the list stays true).

use std::collections::BTreeMap;
use std::path::Path;

use hoist_conformance::harness::Server;
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

const REPO: &str = "diff/base";

/// Why hoist answers with a JSON error where the CNCF registry's router answers its plain-text
/// `404 page not found` / `405 method not allowed`: every refusal of hoist carries the OCI error
/// body (docker parses it; an empty or text body prints "unexpected end of JSON input"). The
/// status is the same; only the code and the content type differ.
const JSON_ALWAYS: &str = "hoist's refusals always carry an OCI error body (application/json); \
    the CNCF registry's router answers text/plain with the same status";
/// Why hoist names a malformed path component where the CNCF registry's route patterns do not
/// match (404 text): the spec has a code for it and the client learns what is wrong.
const NAMES_IT: &str = "hoist answers 400 with the spec's code naming the malformed part \
    (NAME_INVALID, TAG_INVALID, DIGEST_INVALID); the CNCF registry's route patterns do not match \
    and it answers a text 404";
/// Where the CNCF registry 2.8 answers 500 to bad input (a bug: nothing failed on its side).
const NOT_A_500: &str = "the CNCF registry answers 500 UNKNOWN to bad input; hoist answers 400 \
    with the code that names it";
/// OCI distribution-spec features 2.8 predates or ignores.
const SPEC_1_1: &str = "the OCI distribution spec 1.1 defines this and hoist implements it; \
    the CNCF registry 2.8 ignores it";

/// `(case, reason)`: where hoist answers otherwise on purpose.
const DELIBERATE: &[(&str, &str)] = &[
    ("catalog-post", JSON_ALWAYS),
    ("tags-delete", JSON_ALWAYS),
    ("blob-put", JSON_ALWAYS),
    ("manifest-post", JSON_ALWAYS),
    ("route-unknown", JSON_ALWAYS),
    ("route-outside-v2", JSON_ALWAYS),
    (
        "blob-range-past-end",
        "a 416 carries hoist's OCI error body (RANGE_INVALID); Go's http.ServeContent writes text",
    ),
    (
        "blob-range-reversed",
        "hoist's 416 names the size (Content-Range: bytes */N, RFC 9110 14.4); Go's ServeContent \
         sends none for a malformed range, and writes text",
    ),
    ("tags-uppercase-repo", NAMES_IT),
    ("tags-name-dots", NAMES_IT),
    ("upload-unknown-repo-start", NAMES_IT),
    ("manifest-put-unknown-repo-name", NAMES_IT),
    ("manifest-put-long-tag", NAMES_IT),
    ("blob-digest-garbage", NAMES_IT),
    (
        "manifest-bad-tag",
        "a GET of a tag that cannot exist is MANIFEST_UNKNOWN (404 as the CNCF registry, with a \
         JSON body); its router answers a text 404",
    ),
    ("tags-name-too-long", NOT_A_500),
    ("manifest-bad-digest", NOT_A_500),
    ("manifest-put-schema-3", NOT_A_500),
    (
        "catalog-n-text",
        "hoist refuses an n that is not a count (400 PAGINATION_NUMBER_INVALID, the CNCF \
         registry's own code for a bad n); 2.8 ignores it and answers a default page",
    ),
    (
        "catalog-n-negative",
        "hoist refuses a negative n (400 PAGINATION_NUMBER_INVALID); 2.8 ignores it",
    ),
    ("tags-n-1", SPEC_1_1),
    ("tags-n-text", SPEC_1_1),
    ("tags-last", SPEC_1_1),
    ("tags-last-past-end", SPEC_1_1),
    ("upload-monolithic", SPEC_1_1),
    ("upload-monolithic-mismatch", SPEC_1_1),
    ("upload-monolithic-bad-digest", SPEC_1_1),
    (
        "upload-patch-wrong-start",
        "the OCI spec requires 416 for a chunk that does not start at the upload's offset; 2.8 \
         ignores Content-Range and appends",
    ),
    (
        "upload-patch-range-garbage",
        "a malformed Content-Range is refused (416 RANGE_INVALID); 2.8 ignores the header",
    ),
    (
        "manifest-delete-tag",
        "the OCI spec 1.1 allows deleting a tag (202); 2.8 refuses (400 DIGEST_INVALID)",
    ),
    (
        "upload-mount-bad-digest",
        "a malformed mount digest is refused (400 DIGEST_INVALID) rather than silently turned \
         into a full upload; docker only ever sends valid ones",
    ),
    (
        "upload-mount-bad-from",
        "a malformed mount source is refused (400 NAME_INVALID) rather than silently turned into \
         a full upload",
    ),
    (
        "upload-unknown-get",
        "an unknown upload is BLOB_UPLOAD_UNKNOWN (the spec's code, 404 as 2.8); 2.8 first checks \
         its signed _state parameter and answers BLOB_UPLOAD_INVALID",
    ),
    (
        "upload-unknown-patch",
        "as upload-unknown-get: hoist's sessions need no signed _state",
    ),
    (
        "upload-unknown-put",
        "as upload-unknown-get: hoist's sessions need no signed _state",
    ),
    (
        "upload-unknown-delete",
        "as upload-unknown-get: hoist's sessions need no signed _state",
    ),
    (
        "referrers-api",
        "distribution 2.8 predates the OCI 1.1 referrers API (404 no route); hoist implements it",
    ),
    (
        "referrers-bad-digest",
        "distribution 2.8 has no referrers route (404); hoist validates the digest (400 \
         DIGEST_INVALID)",
    ),
];

/// What a probe sends.
#[derive(Clone)]
struct Probe {
    name: &'static str,
    method: Method,
    /// Path under the registry (`/v2/...`), or, with `upload`, a suffix for a fresh upload's
    /// location (`?digest=...`).
    path: String,
    /// Send to a fresh upload session's location rather than `path`.
    upload: bool,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn probe(name: &'static str, method: Method, path: impl Into<String>) -> Probe {
    Probe {
        name,
        method,
        path: path.into(),
        upload: false,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Probe {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    fn on_upload(mut self) -> Self {
        self.upload = true;
        self
    }
}

/// What a registry answered, reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    code: Option<String>,
    headers: BTreeMap<&'static str, String>,
}

fn sha256(b: &[u8]) -> String {
    hoist_oci::Digest::sha256_of(b).to_string()
}

/// Replaces upload ids and hosts so locations of both registries compare by shape.
fn location_shape(loc: &str) -> String {
    let path = match loc.find("/v2/") {
        Some(i) => &loc[i..],
        None => loc,
    };
    let path = path.split('?').next().unwrap_or(path);
    path.split('/')
        .map(|seg| {
            let id_like = seg.len() >= 20
                && !seg.contains(':')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if id_like { "<id>" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

struct Registry {
    url: String,
    http: Client,
}

impl Registry {
    async fn send(&self, p: &Probe) -> Answer {
        let url = if p.upload {
            let loc = self.start_upload().await;
            format!("{loc}{}{}", if loc.contains('?') { "&" } else { "?" }, {
                p.path.trim_start_matches('?')
            })
        } else {
            format!("{}{}", self.url, p.path)
        };
        let mut req = self.http.request(p.method.clone(), &url);
        for (k, v) in &p.headers {
            req = req.header(*k, v);
        }
        if !p.body.is_empty() || matches!(p.method, Method::PUT | Method::PATCH | Method::POST) {
            req = req.body(p.body.clone());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut headers = BTreeMap::new();
        if let Some(v) = h("docker-distribution-api-version") {
            headers.insert("Docker-Distribution-API-Version", v);
        }
        if let Some(v) = h("content-type") {
            let v = v.split(';').next().unwrap_or_default().trim().to_owned();
            headers.insert("Content-Type", v);
        }
        if let Some(v) = h("location") {
            headers.insert("Location", location_shape(&v));
        }
        for (name, key) in [
            ("range", "Range"),
            ("docker-content-digest", "Docker-Content-Digest"),
            ("content-range", "Content-Range"),
        ] {
            if let Some(v) = h(name) {
                headers.insert(key, v);
            }
        }
        if h("docker-upload-uuid").is_some() {
            headers.insert("Docker-Upload-UUID", "<present>".into());
        }
        // Lengths of error bodies differ with their detail text; those of content must not.
        if status.as_u16() < 400
            && let Some(v) = h("content-length")
        {
            headers.insert("Content-Length", v);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let code = if status.as_u16() >= 400 {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
        } else {
            None
        };
        Answer {
            status: status.as_u16(),
            code,
            headers,
        }
    }

    async fn start_upload(&self) -> String {
        let resp = self
            .http
            .post(format!("{}/v2/{REPO}/blobs/uploads/", self.url))
            .send()
            .await
            .expect("start upload");
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{}", self.url);
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        if loc.starts_with('/') {
            format!("{}{loc}", self.url)
        } else {
            loc
        }
    }

    async fn put_blob(&self, data: &[u8]) {
        let loc = self.start_upload().await;
        let sep = if loc.contains('?') { "&" } else { "?" };
        let resp = self
            .http
            .put(format!("{loc}{sep}digest={}", sha256(data)))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{}", self.url);
    }

    async fn put_manifest(&self, reference: &str, media_type: &str, body: &[u8]) {
        let resp = self
            .http
            .put(format!("{}/v2/{REPO}/manifests/{reference}", self.url))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{}", self.url);
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Content {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    /// A blob stored in the repository, deleted by a probe.
    spare: Vec<u8>,
    /// A second manifest, tagged `deleteme`, deleted by digest.
    other_manifest: Vec<u8>,
}

fn content() -> Content {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = b"layer bytes for the differential suite".to_vec();
    let manifest_of = |annotation: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(&layer), "size": layer.len()}],
            "annotations": {"case": annotation},
        }))
        .unwrap()
    };
    Content {
        manifest: manifest_of("base"),
        other_manifest: manifest_of("other"),
        config,
        layer,
        spare: b"a spare blob".to_vec(),
    }
}

fn probes(c: &Content) -> Vec<Probe> {
    let blob = sha256(&c.layer);
    let spare = sha256(&c.spare);
    let manifest = sha256(&c.manifest);
    let other = sha256(&c.other_manifest);
    let unknown = sha256(b"nobody pushed this");
    let r = |s: &str| format!("/v2/{REPO}/{s}");
    let missing_blob_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&c.config), "size": c.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": unknown, "size": 3}],
    }))
    .unwrap();
    let missing_child_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": unknown, "size": 3,
                       "platform": {"os": "linux", "architecture": "arm64"}}],
    }))
    .unwrap();
    let good_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest, "size": c.manifest.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    let chunk = b"0123456789".to_vec();
    let long_tag = "t".repeat(129);
    let long_name = format!("/v2/{}/tags/list", ["abcdefghij"; 26].join("/"));
    vec![
        // ----- base, catalog, tags -----
        probe("base", Method::GET, "/v2/"),
        probe("base-head", Method::HEAD, "/v2/"),
        probe("base-post", Method::POST, "/v2/"),
        probe("catalog", Method::GET, "/v2/_catalog"),
        probe("catalog-n-text", Method::GET, "/v2/_catalog?n=abc"),
        probe("catalog-n-negative", Method::GET, "/v2/_catalog?n=-1"),
        probe("catalog-n-zero", Method::GET, "/v2/_catalog?n=0"),
        probe("catalog-n-huge", Method::GET, "/v2/_catalog?n=100000"),
        probe("catalog-n-1000", Method::GET, "/v2/_catalog?n=1000"),
        probe("catalog-n-1", Method::GET, "/v2/_catalog?n=1"),
        probe(
            "catalog-last",
            Method::GET,
            "/v2/_catalog?n=5&last=diff/base",
        ),
        probe("catalog-last-bad", Method::GET, "/v2/_catalog?last=%ZZ"),
        probe("catalog-post", Method::POST, "/v2/_catalog"),
        probe("tags", Method::GET, r("tags/list")),
        probe("tags-n-1", Method::GET, r("tags/list?n=1")),
        probe("tags-n-text", Method::GET, r("tags/list?n=abc")),
        probe("tags-n-huge", Method::GET, r("tags/list?n=100000")),
        probe("tags-last", Method::GET, r("tags/list?n=1&last=latest")),
        probe("tags-last-past-end", Method::GET, r("tags/list?last=zzzz")),
        probe(
            "tags-unknown-repo",
            Method::GET,
            "/v2/diff/missing/tags/list",
        ),
        probe(
            "tags-uppercase-repo",
            Method::GET,
            "/v2/Diff/Upper/tags/list",
        ),
        probe("tags-name-too-long", Method::GET, long_name),
        probe("tags-name-dots", Method::GET, "/v2/diff/a..b/tags/list"),
        probe("tags-delete", Method::DELETE, r("tags/list")),
        // ----- blobs -----
        probe("blob-get", Method::GET, r(&format!("blobs/{blob}"))),
        probe("blob-head", Method::HEAD, r(&format!("blobs/{blob}"))),
        probe("blob-range", Method::GET, r(&format!("blobs/{blob}"))).header("range", "bytes=0-3"),
        probe("blob-range-open", Method::GET, r(&format!("blobs/{blob}")))
            .header("range", "bytes=5-"),
        probe(
            "blob-range-past-end",
            Method::GET,
            r(&format!("blobs/{blob}")),
        )
        .header("range", "bytes=100000-"),
        probe(
            "blob-range-reversed",
            Method::GET,
            r(&format!("blobs/{blob}")),
        )
        .header("range", "bytes=5-2"),
        probe("blob-range-head", Method::HEAD, r(&format!("blobs/{blob}")))
            .header("range", "bytes=0-3"),
        probe("blob-unknown", Method::GET, r(&format!("blobs/{unknown}"))),
        probe(
            "blob-unknown-head",
            Method::HEAD,
            r(&format!("blobs/{unknown}")),
        ),
        probe(
            "blob-unknown-repo",
            Method::GET,
            format!("/v2/diff/missing/blobs/{blob}"),
        ),
        probe("blob-digest-short", Method::GET, r("blobs/sha256:abc")),
        probe(
            "blob-digest-algorithm",
            Method::GET,
            r("blobs/md5:0123456789abcdef0123456789abcdef"),
        ),
        probe("blob-digest-garbage", Method::GET, r("blobs/notadigest")),
        probe("blob-put", Method::PUT, r(&format!("blobs/{blob}"))),
        probe(
            "blob-delete-unknown",
            Method::DELETE,
            r(&format!("blobs/{unknown}")),
        ),
        probe("blob-delete", Method::DELETE, r(&format!("blobs/{spare}"))),
        probe(
            "blob-delete-again",
            Method::DELETE,
            r(&format!("blobs/{spare}")),
        ),
        // ----- uploads -----
        probe("upload-start", Method::POST, r("blobs/uploads/")),
        probe(
            "upload-monolithic",
            Method::POST,
            r(&format!("blobs/uploads/?digest={}", sha256(&chunk))),
        )
        .header("content-type", "application/octet-stream")
        .body(chunk.clone()),
        probe(
            "upload-monolithic-mismatch",
            Method::POST,
            r(&format!("blobs/uploads/?digest={unknown}")),
        )
        .header("content-type", "application/octet-stream")
        .body(chunk.clone()),
        probe(
            "upload-monolithic-bad-digest",
            Method::POST,
            r("blobs/uploads/?digest=sha256:nope"),
        )
        .body(chunk.clone()),
        probe(
            "upload-mount",
            Method::POST,
            r(&format!("blobs/uploads/?mount={blob}&from={REPO}")),
        ),
        probe(
            "upload-mount-missing-repo",
            Method::POST,
            r(&format!("blobs/uploads/?mount={blob}&from=diff/nowhere")),
        ),
        probe(
            "upload-mount-missing-blob",
            Method::POST,
            r(&format!("blobs/uploads/?mount={unknown}&from={REPO}")),
        ),
        probe(
            "upload-mount-bad-digest",
            Method::POST,
            r(&format!("blobs/uploads/?mount=sha256:nope&from={REPO}")),
        ),
        probe(
            "upload-mount-bad-from",
            Method::POST,
            r(&format!("blobs/uploads/?mount={blob}&from=Not..Valid")),
        ),
        probe(
            "upload-unknown-repo-start",
            Method::POST,
            "/v2/Bad-Name/blobs/uploads/",
        ),
        probe(
            "upload-unknown-get",
            Method::GET,
            r("blobs/uploads/0a3e4c26-2c2b-4e3b-9c52-b5c3a6c0f0aa"),
        ),
        probe(
            "upload-unknown-patch",
            Method::PATCH,
            r("blobs/uploads/0a3e4c26-2c2b-4e3b-9c52-b5c3a6c0f0aa"),
        )
        .body(chunk.clone()),
        probe(
            "upload-unknown-put",
            Method::PUT,
            r(&format!(
                "blobs/uploads/0a3e4c26-2c2b-4e3b-9c52-b5c3a6c0f0aa?digest={blob}"
            )),
        ),
        probe(
            "upload-unknown-delete",
            Method::DELETE,
            r("blobs/uploads/0a3e4c26-2c2b-4e3b-9c52-b5c3a6c0f0aa"),
        ),
        probe("upload-status", Method::GET, "").on_upload(),
        probe("upload-patch", Method::PATCH, "")
            .on_upload()
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-9")
            .body(chunk.clone()),
        probe("upload-patch-streamed", Method::PATCH, "")
            .on_upload()
            .header("content-type", "application/octet-stream")
            .body(chunk.clone()),
        probe("upload-patch-wrong-start", Method::PATCH, "")
            .on_upload()
            .header("content-type", "application/octet-stream")
            .header("content-range", "5-14")
            .body(chunk.clone()),
        probe("upload-patch-range-garbage", Method::PATCH, "")
            .on_upload()
            .header("content-type", "application/octet-stream")
            .header("content-range", "bytes=abc")
            .body(chunk.clone()),
        probe(
            "upload-put-mismatch",
            Method::PUT,
            format!("digest={unknown}"),
        )
        .on_upload()
        .header("content-type", "application/octet-stream")
        .body(chunk.clone()),
        probe("upload-put-no-digest", Method::PUT, "")
            .on_upload()
            .body(chunk.clone()),
        probe("upload-put-bad-digest", Method::PUT, "digest=sha256:nope")
            .on_upload()
            .body(chunk.clone()),
        probe(
            "upload-put",
            Method::PUT,
            format!("digest={}", sha256(&chunk)),
        )
        .on_upload()
        .header("content-type", "application/octet-stream")
        .body(chunk),
        probe(
            "upload-put-empty",
            Method::PUT,
            format!("digest={}", sha256(b"")),
        )
        .on_upload(),
        probe("upload-delete", Method::DELETE, "").on_upload(),
        // ----- manifests -----
        probe("manifest-get", Method::GET, r("manifests/latest")).header("accept", OCI_MANIFEST),
        probe("manifest-head", Method::HEAD, r("manifests/latest")).header("accept", OCI_MANIFEST),
        probe(
            "manifest-get-digest",
            Method::GET,
            r(&format!("manifests/{manifest}")),
        )
        .header("accept", OCI_MANIFEST),
        probe(
            "manifest-head-digest",
            Method::HEAD,
            r(&format!("manifests/{manifest}")),
        )
        .header("accept", OCI_MANIFEST),
        probe(
            "manifest-unknown-tag",
            Method::GET,
            r("manifests/nosuchtag"),
        ),
        probe(
            "manifest-unknown-tag-head",
            Method::HEAD,
            r("manifests/nosuchtag"),
        ),
        probe(
            "manifest-unknown-digest",
            Method::GET,
            r(&format!("manifests/{unknown}")),
        ),
        probe(
            "manifest-bad-digest",
            Method::GET,
            r("manifests/sha256:abc"),
        ),
        probe("manifest-bad-tag", Method::GET, r("manifests/-bad")),
        probe(
            "manifest-unknown-repo",
            Method::GET,
            "/v2/diff/missing/manifests/latest",
        ),
        probe("manifest-post", Method::POST, r("manifests/latest")),
        probe("manifest-put-garbage", Method::PUT, r("manifests/garbage"))
            .header("content-type", OCI_MANIFEST)
            .body("{not json"),
        probe("manifest-put-empty", Method::PUT, r("manifests/empty"))
            .header("content-type", OCI_MANIFEST),
        probe("manifest-put-schema-3", Method::PUT, r("manifests/schema3"))
            .header("content-type", OCI_MANIFEST)
            .body(r#"{"schemaVersion":3}"#),
        probe(
            "manifest-put-missing-blob",
            Method::PUT,
            r("manifests/missing"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(missing_blob_manifest),
        probe(
            "manifest-put-missing-child",
            Method::PUT,
            r("manifests/missingchild"),
        )
        .header("content-type", OCI_INDEX)
        .body(missing_child_index),
        probe("manifest-put-index", Method::PUT, r("manifests/index"))
            .header("content-type", OCI_INDEX)
            .body(good_index),
        probe(
            "manifest-put-digest-mismatch",
            Method::PUT,
            r(&format!("manifests/{unknown}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(c.manifest.clone()),
        probe(
            "manifest-put-by-digest",
            Method::PUT,
            r(&format!("manifests/{manifest}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(c.manifest.clone()),
        probe(
            "manifest-put-long-tag",
            Method::PUT,
            r(&format!("manifests/{long_tag}")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(c.manifest.clone()),
        probe("manifest-put-new-tag", Method::PUT, r("manifests/v2"))
            .header("content-type", OCI_MANIFEST)
            .body(c.manifest.clone()),
        probe(
            "manifest-put-unknown-repo-name",
            Method::PUT,
            "/v2/UPPER/manifests/v1",
        )
        .header("content-type", OCI_MANIFEST)
        .body(c.manifest.clone()),
        probe("manifest-delete-tag", Method::DELETE, r("manifests/v2")),
        probe(
            "manifest-delete-unknown",
            Method::DELETE,
            r(&format!("manifests/{unknown}")),
        ),
        probe(
            "manifest-delete-bad-digest",
            Method::DELETE,
            r("manifests/sha256:abc"),
        ),
        probe(
            "manifest-delete",
            Method::DELETE,
            r(&format!("manifests/{other}")),
        ),
        probe(
            "manifest-delete-again",
            Method::DELETE,
            r(&format!("manifests/{other}")),
        ),
        probe(
            "manifest-get-deleted-tag",
            Method::GET,
            r("manifests/deleteme"),
        ),
        // ----- referrers (OCI 1.1) -----
        probe(
            "referrers-api",
            Method::GET,
            r(&format!("referrers/{manifest}")),
        ),
        probe(
            "referrers-bad-digest",
            Method::GET,
            r("referrers/sha256:abc"),
        ),
        // ----- unknown routes -----
        probe("route-unknown", Method::GET, "/v2/diff/base/nothing/here"),
        probe("route-outside-v2", Method::GET, "/v3/"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_answers_bad_requests_as_the_cncf_registry_does() {
    let hoist = Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist"))).expect("start hoist serve");
    let dist = Server::distribution().expect("start the CNCF registry");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let regs = [
        Registry {
            url: hoist.url.clone(),
            http: http.clone(),
        },
        Registry {
            url: dist.url.clone(),
            http,
        },
    ];
    let c = content();
    for reg in &regs {
        for b in [&c.config, &c.layer, &c.spare] {
            reg.put_blob(b).await;
        }
        reg.put_manifest("latest", OCI_MANIFEST, &c.manifest).await;
        reg.put_manifest("deleteme", OCI_MANIFEST, &c.other_manifest)
            .await;
    }
    let probes = probes(&c);
    assert!(probes.len() >= 60, "{} probes", probes.len());
    let deliberate: BTreeMap<&str, &str> = DELIBERATE.iter().copied().collect();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for p in &probes {
        let h = regs[0].send(p).await;
        let d = regs[1].send(p).await;
        let same = h == d;
        match (same, deliberate.contains_key(p.name)) {
            (true, false) | (false, true) => {}
            (false, false) => unexpected.push(format!(
                "  {} {} {}:\n    hoist:        {h:?}\n    distribution: {d:?}",
                p.name, p.method, p.path
            )),
            (true, true) => stale.push(p.name),
        }
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "hoist differs from the CNCF registry in {} of {} probes:\n{}\n\
         listed as deliberate but now the same: {stale:?}",
        unexpected.len(),
        probes.len(),
        unexpected.join("\n")
    );
    for name in deliberate.keys() {
        assert!(
            probes.iter().any(|p| p.name == *name),
            "DELIBERATE names no probe: {name}"
        );
    }
}
