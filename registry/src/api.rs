//! The distribution API handlers. One dispatcher parses the route; each handler checks the
//! [`Grant`], then talks to the content layer (never to a driver).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use hoist_oci::{Digest, RepoName, media_type};
use hoist_storage::content::{MAX_MANIFEST_SIZE, Reference};
use hoist_storage::metadata::Page;

use crate::App;
use crate::auth::{Action, Grant};
use crate::error::{ApiError, Code};
use crate::route::{Route, parse_v2};

type ApiResult = Result<Response, ApiError>;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";
const OCI_SUBJECT: &str = "oci-subject";
const FILTERS_APPLIED: &str = "oci-filters-applied";
/// How much of an oversized manifest body is read and dropped before answering.
const MAX_DRAIN: usize = 16 * 1024 * 1024;

/// The single `/v2` entry point.
pub async fn dispatch(State(app): State<Arc<App>>, grant: Grant, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/v2").unwrap_or(&path);
    let result = match parse_v2(&method, rest) {
        Ok(route) => handle(&app, &grant, route, req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn query(req: &Request) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or_default()
}

async fn handle(app: &App, grant: &Grant, route: Route, req: Request) -> ApiResult {
    let method = req.method().clone();
    match route {
        Route::Base => {
            grant.require_base()?;
            // `{}` without a newline, as the CNCF registry writes it.
            Ok((StatusCode::OK, axum::Json(serde_json::json!({}))).into_response())
        }
        Route::Catalog => catalog(app, grant, &query(&req)).await,
        Route::Tags { name } => {
            grant.require(&name, Action::Pull)?;
            tags(app, &name, &query(&req)).await
        }
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => {
                grant.require(&name, Action::Pull)?;
                manifest_get(app, &name, &reference, method == Method::HEAD).await
            }
            Method::PUT => {
                grant.require(&name, Action::Push)?;
                let resp = manifest_put(app, &name, &reference, req).await?;
                grant.note_repo(&name);
                Ok(resp)
            }
            _ => {
                grant.require(&name, Action::Delete)?;
                app.store.manifest_delete(&name, &reference).await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
        },
        Route::Blob { name, digest } => match method {
            Method::GET | Method::HEAD => {
                grant.require(&name, Action::Pull)?;
                // A TLS connection encrypts in user space: mapped bytes would only swell its RSS.
                let send = req.extensions().get::<crate::listener::Tls>().is_none();
                let head = method == Method::HEAD;
                blob_get(app, &name, &digest, req.headers(), head, send).await
            }
            _ => {
                grant.require(&name, Action::Delete)?;
                app.store.blob_delete(&name, &digest).await?;
                Ok(StatusCode::ACCEPTED.into_response())
            }
        },
        Route::UploadStart { name } => {
            grant.require(&name, Action::Push)?;
            upload_start(app, grant, &name, req).await
        }
        Route::Upload { name, id } => {
            grant.require(&name, Action::Push)?;
            match method {
                Method::GET => {
                    let st = app.store.upload_status(&name, &id).await?;
                    Ok(upload_response(
                        StatusCode::NO_CONTENT,
                        &name,
                        &id,
                        st.offset,
                    ))
                }
                Method::PATCH => upload_patch(app, &name, &id, req).await,
                Method::PUT => upload_put(app, &name, &id, req).await,
                _ => {
                    app.store.upload_cancel(&name, &id).await?;
                    Ok(empty(
                        StatusCode::NO_CONTENT,
                        &[("docker-upload-uuid", id.clone())],
                    ))
                }
            }
        }
        Route::Referrers { name, digest } => {
            grant.require(&name, Action::Pull)?;
            referrers(app, &name, &digest, &query(&req)).await
        }
    }
}

// ----- helpers -----

/// A JSON answer as the CNCF registry writes one (Go's encoder): the value and a newline.
fn json_body(v: &serde_json::Value) -> Response {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .expect("valid response")
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, "0");
    for (k, v) in headers {
        b = b.header(*k, header_value(v));
    }
    b.body(Body::empty()).expect("valid response")
}

/// `Range: 0-<last byte>` as the CNCF registry writes it (`0-0` for an empty upload).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn upload_location(name: &RepoName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn upload_response(status: StatusCode, name: &RepoName, id: &str, offset: u64) -> Response {
    empty(
        status,
        &[
            ("location", upload_location(name, id)),
            ("range", range_value(offset)),
            (UPLOAD_UUID, id.to_owned()),
        ],
    )
}

fn blob_created(name: &RepoName, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            (DIGEST_HEADER, digest.to_string()),
        ],
    )
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    header_str(h, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Whether a request carries a body worth reading.
fn has_body(h: &HeaderMap) -> bool {
    content_length(h).is_some_and(|n| n > 0) || h.contains_key(header::TRANSFER_ENCODING)
}

fn body_stream(
    req: Request,
) -> impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Send {
    req.into_body().into_data_stream()
}

fn query_digest(q: &HashMap<String, String>, key: &str) -> Result<Option<Digest>, ApiError> {
    q.get(key)
        .map(|d| Digest::parse(d).map_err(|e| ApiError::new(Code::DigestInvalid, e.to_string())))
        .transpose()
}

/// Parses `Content-Range: <start>-<end>` (with or without a `bytes` prefix).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

// ----- blobs -----

/// A byte range request against a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(v: Option<&str>, size: u64) -> ByteRange {
    let Some(v) = v else { return ByteRange::Whole };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        // Multiple ranges are not supported; answer with the whole blob as RFC 9110 allows.
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| {
            if n == 0 {
                None
            } else {
                Some((size.saturating_sub(n), size.saturating_sub(1)))
            }
        }),
        (false, _) => a.parse::<u64>().ok().and_then(|start| {
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                b.parse::<u64>().ok()
            };
            end.map(|end| (end >= start).then_some((start, end.min(size.saturating_sub(1)))))
        }),
        (true, true) => None,
    };
    match parsed {
        None => ByteRange::Whole,
        Some(None) => ByteRange::Unsatisfiable,
        Some(Some((start, _))) if start >= size => ByteRange::Unsatisfiable,
        Some(Some((start, end))) => ByteRange::Part(start, end),
    }
}

async fn blob_get(
    app: &App,
    name: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
    sendfile: bool,
) -> ApiResult {
    let size = app
        .store
        .blob_stat(name, digest)
        .await?
        .ok_or_else(|| ApiError::new(Code::BlobUnknown, digest.to_string()))?;
    // An object store that presigns URLs serves the bytes itself (the CNCF registry's
    // `redirect`): the client follows the 307, with its Range header if it sent one.
    if !head && let Some(url) = app.store.blob_redirect(digest).await {
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, header_value(&url))
            .header(DIGEST_HEADER, header_value(digest.as_str()))
            .body(Body::empty())
            .expect("valid response"));
    }
    let range = parse_range(header_str(headers, "range"), size);
    let (status, start, len) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        ByteRange::Unsatisfiable => {
            return Err(ApiError::new(
                Code::RangeInvalid,
                format!("range not satisfiable for {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
            .with_header(
                header::HeaderName::from_static(DIGEST_HEADER),
                digest.as_str(),
            ));
        }
    };
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, header_value(digest.as_str()))
        .header(header::ETAG, header_value(&format!("\"{digest}\"")))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    if head {
        return Ok(b.body(Body::empty()).expect("valid response"));
    }
    let stream = if sendfile {
        app.store.blob_send(name, digest, start, Some(len)).await?
    } else {
        app.store
            .blob_stream(name, digest, start, Some(len))
            .await?
    };
    Ok(b.body(Body::from_stream(stream)).expect("valid response"))
}

// ----- uploads -----

async fn upload_start(app: &App, grant: &Grant, name: &RepoName, req: Request) -> ApiResult {
    let q = query(&req);
    if let Some(digest) = query_digest(&q, "mount")? {
        if let Some(from) = q.get("from") {
            let from = RepoName::parse(from)
                .map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))?;
            // Mount needs pull on the source; without it the blob is simply not mountable.
            if grant.require(&from, Action::Pull).is_ok()
                && app.store.blob_mount(name, &from, &digest).await?.is_some()
            {
                return Ok(blob_created(name, &digest));
            }
        } else if app.store.blob_stat(name, &digest).await?.is_some() {
            return Ok(blob_created(name, &digest));
        }
    }
    if let Some(digest) = query_digest(&q, "digest")? {
        app.store.blob_put(name, &digest, body_stream(req)).await?;
        return Ok(blob_created(name, &digest));
    }
    let st = app.store.upload_start(name).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, &st.id, 0))
}

/// Checks a chunk's `Content-Range` against the upload and the declared length; returns where
/// the chunk must start and how many bytes it declares.
async fn chunk_range(
    app: &App,
    name: &RepoName,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = header_str(headers, "content-range") else {
        return Ok(None);
    };
    let current = app.store.upload_status(name, id).await?.offset;
    let range_error = |detail: String| {
        ApiError::new(Code::RangeInvalid, detail)
            .with_header(header::LOCATION, &upload_location(name, id))
            .with_header(header::RANGE, &range_value(current))
    };
    let Some((start, end)) = parse_content_range(v) else {
        return Err(range_error(format!("invalid Content-Range {v:?}")));
    };
    let len = end - start + 1;
    if let Some(declared) = content_length(headers)
        && declared != len
    {
        return Err(range_error(format!(
            "Content-Range {start}-{end} does not match Content-Length {declared}"
        )));
    }
    if start != current {
        return Err(range_error(format!(
            "upload is at offset {current}, the chunk starts at {start}"
        )));
    }
    Ok(Some((start, len)))
}

/// Appends a request's body to an upload: exactly the declared range when there is one.
async fn append(
    app: &App,
    name: &RepoName,
    id: &str,
    range: Option<(u64, u64)>,
    req: Request,
) -> Result<hoist_storage::content::UploadStatus, ApiError> {
    let appended = match range {
        Some((start, len)) => {
            app.store
                .upload_append_exact(name, id, start, len, body_stream(req))
                .await
        }
        None => {
            app.store
                .upload_append(name, id, None, body_stream(req))
                .await
        }
    };
    appended.map_err(|e| {
        let current = match &e {
            hoist_storage::ContentError::RangeInvalid { current, .. } => Some(*current),
            hoist_storage::ContentError::ChunkLength { .. } => range.map(|(start, _)| start),
            _ => None,
        };
        match current {
            Some(current) => ApiError::from(e)
                .with_header(header::LOCATION, &upload_location(name, id))
                .with_header(header::RANGE, &range_value(current)),
            None => e.into(),
        }
    })
}

async fn upload_patch(app: &App, name: &RepoName, id: &str, req: Request) -> ApiResult {
    let range = chunk_range(app, name, id, req.headers()).await?;
    let st = append(app, name, id, range, req).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, st.offset))
}

async fn upload_put(app: &App, name: &RepoName, id: &str, req: Request) -> ApiResult {
    let q = query(&req);
    let digest = query_digest(&q, "digest")?.ok_or_else(|| {
        ApiError::new(
            Code::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let range = chunk_range(app, name, id, req.headers()).await?;
    if range.is_some() {
        // Appending at an explicit offset goes through the same check as PATCH.
        append(app, name, id, range, req).await?;
        app.store
            .upload_complete(
                name,
                id,
                &digest,
                None::<futures::stream::Empty<Result<bytes::Bytes, axum::Error>>>,
            )
            .await?;
    } else {
        let body = has_body(req.headers()).then(|| body_stream(req));
        app.store.upload_complete(name, id, &digest, body).await?;
    }
    Ok(blob_created(name, &digest))
}

// ----- manifests -----

async fn manifest_get(app: &App, name: &RepoName, reference: &Reference, head: bool) -> ApiResult {
    // A manifest of a repository that does not exist is an unknown manifest, as the CNCF
    // registry answers (docker prints `manifest unknown` either way).
    let unknown = |e: hoist_storage::ContentError| match e {
        hoist_storage::ContentError::NameUnknown(_) => {
            ApiError::new(Code::ManifestUnknown, reference.to_string())
        }
        e => e.into(),
    };
    let (digest, media_type, size, body) = if head {
        let r = app
            .store
            .manifest_stat(name, reference)
            .await
            .map_err(unknown)?;
        (r.digest, r.media_type, r.size, Body::empty())
    } else {
        let m = app
            .store
            .manifest_get(name, reference)
            .await
            .map_err(unknown)?;
        let size = m.bytes.len() as u64;
        (m.digest, m.media_type, size, Body::from(m.bytes))
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, header_value(&media_type))
        .header(header::CONTENT_LENGTH, size)
        .header(DIGEST_HEADER, header_value(digest.as_str()))
        .header(header::ETAG, header_value(&format!("\"{digest}\"")))
        .body(body)
        .expect("valid response"))
}

async fn manifest_put(
    app: &App,
    name: &RepoName,
    reference: &Reference,
    req: Request,
) -> ApiResult {
    let too_large = || {
        ApiError::new(
            Code::ManifestTooLarge,
            format!("manifests are limited to {MAX_MANIFEST_SIZE} bytes"),
        )
    };
    let declared_too_large =
        content_length(req.headers()).is_some_and(|n| n > MAX_MANIFEST_SIZE as u64);
    let content_type = header_str(req.headers(), "content-type").map(str::to_owned);
    let mut body = bytes::BytesMut::new();
    let mut stream = std::pin::pin!(body_stream(req));
    let mut over = declared_too_large;
    let mut drained = 0usize;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| ApiError::new(Code::ManifestInvalid, format!("reading the manifest: {e}")))?
    {
        if over || body.len() + chunk.len() > MAX_MANIFEST_SIZE {
            // Read (and drop) a bounded amount more, so the client sees the answer instead of
            // a reset connection; past that, answer and let the connection close.
            over = true;
            drained += chunk.len();
            if drained > MAX_DRAIN {
                return Err(too_large());
            }
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    if over {
        return Err(too_large());
    }
    let body = body.freeze();
    let put = app
        .store
        .manifest_put(name, reference, content_type.as_deref(), body)
        .await?;
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{}", put.digest)),
        (DIGEST_HEADER, put.digest.to_string()),
    ];
    if let Some(subject) = &put.subject {
        headers.push((OCI_SUBJECT, subject.to_string()));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

// ----- listings -----

/// The most entries one page of a listing holds: the CNCF registry's default
/// `catalog.maxentries`. The catalog refuses a larger `n` as the CNCF registry does (`400
/// PAGINATION_NUMBER_INVALID`); a tag list clamps it and the `Link` header leads on (the CNCF
/// registry 2.8 does not page tags at all).
pub const MAX_PAGE: usize = 1000;

/// How `n` past [`MAX_PAGE`] is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    Clamp,
    Refuse,
}

fn page_size(q: &HashMap<String, String>, over: Over) -> Result<Option<usize>, ApiError> {
    q.get("n")
        .map(|n| {
            // Any count of digits is a count: one past `u64::MAX` asks for everything as well.
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                let count = n.parse::<usize>().unwrap_or(usize::MAX);
                if count > MAX_PAGE && over == Over::Refuse {
                    return Err(ApiError::new(
                        Code::PaginationNumberInvalid,
                        format!("n={n} is more than the {MAX_PAGE} entries a page holds"),
                    ));
                }
                Ok(count.min(MAX_PAGE))
            } else {
                Err(ApiError::new(
                    Code::PaginationNumberInvalid,
                    format!("n={n} is not a count"),
                ))
            }
        })
        .transpose()
}

fn with_link(mut resp: Response, path: &str, n: Option<usize>, page: &Page) -> Response {
    if let (true, Some(n), Some(last)) = (page.more, n, page.items.last()) {
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        resp.headers_mut().insert(header::LINK, header_value(&link));
    }
    resp
}

async fn tags(app: &App, name: &RepoName, q: &HashMap<String, String>) -> ApiResult {
    let n = page_size(q, Over::Clamp)?;
    let page = app
        .store
        .tags(name, n, q.get("last").map(String::as_str))
        .await?;
    let resp = json_body(&serde_json::json!({ "name": name.as_str(), "tags": page.items }));
    Ok(with_link(resp, &format!("/v2/{name}/tags/list"), n, &page))
}

async fn catalog(app: &App, grant: &Grant, q: &HashMap<String, String>) -> ApiResult {
    let n = page_size(q, Over::Refuse)?;
    let visible = grant.catalog_filter()?;
    // Hidden repositories must not shorten a page: read on until it is full.
    let mut last = q.get("last").cloned();
    let mut items = Vec::new();
    let more = loop {
        let page = app.store.catalog(n, last.as_deref()).await?;
        last = page.items.last().cloned();
        items.extend(page.items.into_iter().filter(|r| visible(r)));
        if let Some(n) = n
            && items.len() >= n
        {
            let extra = items.len() > n;
            items.truncate(n);
            break page.more || extra;
        }
        if !page.more || last.is_none() {
            break false;
        }
    };
    let page = Page { items, more };
    let resp = json_body(&serde_json::json!({ "repositories": page.items }));
    Ok(with_link(resp, "/v2/_catalog", n, &page))
}

async fn referrers(
    app: &App,
    name: &RepoName,
    subject: &Digest,
    q: &HashMap<String, String>,
) -> ApiResult {
    let filter = q.get("artifactType").filter(|s| !s.is_empty());
    let records = match app
        .store
        .referrers(name, subject, filter.map(String::as_str))
        .await
    {
        Ok(r) => r,
        Err(hoist_storage::ContentError::NameUnknown(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let manifests: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.as_str(),
                "size": r.size,
            });
            if let Some(at) = &r.artifact_type {
                d["artifactType"] = serde_json::Value::String(at.clone());
            }
            if let Some(a) = r
                .annotations
                .as_deref()
                .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let body =
        serde_json::to_vec(&index).map_err(|e| ApiError::new(Code::Unknown, e.to_string()))?;
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type::OCI_INDEX)
        .header(header::CONTENT_LENGTH, body.len());
    if filter.is_some() {
        b = b.header(FILTERS_APPLIED, "artifactType");
    }
    Ok(b.body(Body::from(body)).expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(parse_range(None, 10), ByteRange::Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), ByteRange::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), ByteRange::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), ByteRange::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), ByteRange::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), ByteRange::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), ByteRange::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), ByteRange::Whole);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-3"), None);
        assert_eq!(parse_content_range("x-y"), None);
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(10), "0-9");
    }
}
