//! Operations many cases share: paths, pushing blobs and manifests, reading lists.

use serde_json::Value;

use super::check::{ensure, header, status, success};
use super::data::{Blob, OCTET};
use super::http::Resp;
use super::{Outcome, RunContext};

pub(crate) fn uploads(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

pub(crate) fn blob(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

pub(crate) fn manifest(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

pub(crate) fn tags(repo: &str) -> String {
    format!("/v2/{repo}/tags/list")
}

pub(crate) fn referrers(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/referrers/{digest}")
}

/// The `Location` of a response, required.
pub(crate) fn location(r: &Resp) -> Result<String, String> {
    header(r, "location").map(str::to_owned)
}

/// Starts an upload session (POST, `Content-Length: 0`); returns the response.
pub(crate) async fn start_upload(ctx: &RunContext, repo: &str) -> Result<Resp, String> {
    ctx.http
        .post(&uploads(repo))
        .header("content-length", "0")
        .send()
        .await
}

/// Starts an upload session and returns its location, requiring 202.
pub(crate) async fn open_session(ctx: &RunContext, repo: &str) -> Result<String, String> {
    let r = start_upload(ctx, repo).await?;
    status(&r, &[202])?;
    location(&r)
}

/// POST then PUT `blob`, as the official suite's setup does: any 2xx passes.
pub(crate) async fn push_blob(ctx: &RunContext, repo: &str, blob: &Blob) -> Outcome {
    let r = ctx.http.post(&uploads(repo)).send().await?;
    let loc = location(&r)?;
    let r = ctx
        .http
        .put(&loc)
        .query("digest", &blob.digest)
        .header("content-type", OCTET)
        .body(blob.content.clone())
        .send()
        .await?;
    success(&r)
}

/// PUT a manifest; returns the response.
pub(crate) async fn put_manifest(
    ctx: &RunContext,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Result<Resp, String> {
    ctx.http
        .put(&manifest(repo, reference))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
}

/// PUT a manifest, requiring any 2xx.
pub(crate) async fn push_manifest(
    ctx: &RunContext,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Outcome {
    let r = put_manifest(ctx, repo, reference, media_type, body).await?;
    success(&r)
}

/// The `tags` array of a tag list body (missing or `null` reads as empty).
pub(crate) fn tag_list(r: &Resp) -> Result<Vec<String>, String> {
    string_list(r, "tags")
}

/// A string array field of a JSON body (missing or `null` reads as empty).
pub(crate) fn string_list(r: &Resp, field: &str) -> Result<Vec<String>, String> {
    let v = r.json()?;
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{}: {field} holds a non-string: {t}", r.desc))
            })
            .collect(),
        Some(other) => Err(format!("{}: {field} is not an array: {other}", r.desc)),
    }
}

/// The `manifests` of an image index body (missing or `null` reads as empty).
pub(crate) fn index_manifests(r: &Resp) -> Result<Vec<Value>, String> {
    let v = r.json()?;
    match v.get("manifests") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(other) => Err(format!("{}: manifests is not an array: {other}", r.desc)),
    }
}

/// The path of a location (absolute or relative), without its query.
pub(crate) fn location_path(ctx: &RunContext, loc: &str) -> String {
    let rel = ctx.http.relative(loc);
    match rel.split_once('?') {
        Some((p, _)) => p.to_owned(),
        None => rel,
    }
}

/// GET a blob and require 200 with exactly `content`.
pub(crate) async fn expect_blob(ctx: &RunContext, repo: &str, b: &Blob) -> Outcome {
    let r = ctx.http.get(&blob(repo, &b.digest)).send().await?;
    status(&r, &[200])?;
    ensure(r.body.as_ref() == b.content.as_slice(), || {
        format!(
            "{}: body differs from the uploaded blob ({} bytes, expected {})",
            r.desc,
            r.body.len(),
            b.len()
        )
    })
}
