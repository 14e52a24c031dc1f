//! hoist's manifest cases: each kind of manifest, rejections, headers, deletes.

use serde_json::{Value, json};

use super::check::{body_eq, content_length, ensure, error, error_body, header, header_eq, status};
use super::data::{
    ACCEPT_MANIFESTS, Blob, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST,
    INVALID_MANIFEST, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, random_bytes,
};
use super::ops::{manifest, push_blob, put_manifest};
use super::{Outcome, Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "manifests/put/docker-schema2-201",
    "manifests/put/docker-manifest-list-201",
    "manifests/put/oci-manifest-201",
    "manifests/put/oci-index-201",
    "manifests/put/oci-artifact-subject-201",
    "manifests/put/by-digest-201",
    "manifests/put/digest-mismatch-400",
    "manifests/put/missing-blob-400",
    "manifests/put/invalid-json-400",
    "manifests/put/too-large-rejected",
    "manifests/get-headers-200",
    "manifests/head-headers-200",
    "manifests/delete/by-digest-202",
    "manifests/delete/tag-202",
];

/// Limit past which the spec lets a registry refuse a manifest ("at least 4 megabytes").
const FOUR_MIB: usize = 4 * 1024 * 1024;

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("manifests");
    let seed = |s: &str| format!("{}-{s}", ctx.run_id);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "author": seed("manifests"),
        }))
        .expect("json"),
    );
    let layer = Blob::new(random_bytes(512, &seed("manifest-layer")));
    let empty = Blob::new(b"{}".to_vec());
    let mut setup: Outcome = Ok(());
    for b in [&config, &layer, &empty] {
        if let Err(e) = push_blob(ctx, repo, b).await {
            setup = Err(format!("setup: {e}"));
        }
    }
    let image = |note: &str| -> Blob {
        Blob::new(
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &config),
                "layers": [desc(OCI_LAYER_GZIP, &layer)],
                "annotations": {"org.example.case": note},
            }))
            .expect("json"),
        )
    };

    // One PUT per kind: 201, Location, Docker-Content-Digest; then GET by tag returns the same
    // bytes with the exact Content-Type.
    let docker = Blob::new(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": desc(DOCKER_CONFIG, &config),
            "layers": [desc(DOCKER_LAYER, &layer)],
        }))
        .expect("json"),
    );
    rec.record(
        "manifests/put/docker-schema2-201",
        async {
            setup.clone()?;
            put_and_fetch(ctx, repo, "docker-schema2", DOCKER_MANIFEST, &docker).await
        }
        .await,
    );
    rec.record(
        "manifests/put/docker-manifest-list-201",
        async {
            setup.clone()?;
            let mut entry = desc(DOCKER_MANIFEST, &docker);
            entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
            let list = Blob::new(
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": DOCKER_LIST,
                    "manifests": [entry],
                }))
                .expect("json"),
            );
            put_and_fetch(ctx, repo, "docker-list", DOCKER_LIST, &list).await
        }
        .await,
    );
    let oci = image("oci-manifest");
    rec.record(
        "manifests/put/oci-manifest-201",
        async {
            setup.clone()?;
            put_and_fetch(ctx, repo, "oci-manifest", OCI_MANIFEST, &oci).await
        }
        .await,
    );
    rec.record(
        "manifests/put/oci-index-201",
        async {
            setup.clone()?;
            let mut entry = desc(OCI_MANIFEST, &oci);
            entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
            let index = Blob::new(
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [entry],
                }))
                .expect("json"),
            );
            put_and_fetch(ctx, repo, "oci-index", OCI_INDEX, &index).await
        }
        .await,
    );
    rec.record(
        "manifests/put/oci-artifact-subject-201",
        async {
            setup.clone()?;
            let artifact = Blob::new(
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": "application/vnd.example.hoist.test",
                    "config": desc(OCI_EMPTY, &empty),
                    "layers": [desc(OCI_EMPTY, &empty)],
                    "subject": desc(OCI_MANIFEST, &oci),
                }))
                .expect("json"),
            );
            let r =
                put_manifest(ctx, repo, &artifact.digest, OCI_MANIFEST, &artifact.content).await?;
            status(&r, &[201])?;
            header(&r, "location")?;
            header_eq(&r, "docker-content-digest", &artifact.digest)?;
            header_eq(&r, "oci-subject", &oci.digest)
        }
        .await,
    );

    rec.record(
        "manifests/put/by-digest-201",
        async {
            setup.clone()?;
            let m = image("by-digest");
            let r = put_manifest(ctx, repo, &m.digest, OCI_MANIFEST, &m.content).await?;
            status(&r, &[201])?;
            header(&r, "location")?;
            header_eq(&r, "docker-content-digest", &m.digest)
        }
        .await,
    );
    rec.record(
        "manifests/put/digest-mismatch-400",
        async {
            setup.clone()?;
            let m = image("mismatch");
            let other = image("mismatch-other");
            let r = put_manifest(ctx, repo, &other.digest, OCI_MANIFEST, &m.content).await?;
            error(&r, 400, "DIGEST_INVALID")
        }
        .await,
    );
    rec.record(
        "manifests/put/missing-blob-400",
        async {
            setup.clone()?;
            let missing = Blob::new(random_bytes(512, &seed("missing-layer")));
            let m = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &config),
                "layers": [desc(OCI_LAYER_GZIP, &missing)],
            }))
            .expect("json");
            let r = put_manifest(ctx, repo, "missing-blob", OCI_MANIFEST, &m).await?;
            error(&r, 400, "MANIFEST_BLOB_UNKNOWN")
        }
        .await,
    );
    rec.record(
        "manifests/put/invalid-json-400",
        async {
            setup.clone()?;
            let r = put_manifest(ctx, repo, "invalid", OCI_MANIFEST, INVALID_MANIFEST).await?;
            error(&r, 400, "MANIFEST_INVALID")
        }
        .await,
    );
    rec.record("manifests/put/too-large-rejected", async {
        setup.clone()?;
        // A valid manifest just over 4 MiB, padded with an annotation.
        let head = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &config),
            "layers": [desc(OCI_LAYER_GZIP, &layer)],
            "annotations": {"org.example.padding": ""},
        }))
        .expect("json");
        let pad = FOUR_MIB + 1 - head.len();
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &config),
            "layers": [desc(OCI_LAYER_GZIP, &layer)],
            "annotations": {"org.example.padding": "x".repeat(pad)},
        }))
        .expect("json");
        ensure(m.len() > FOUR_MIB, || "padding went wrong".to_owned())?;
        // On a client of its own: a server may stop reading the body and drop the connection.
        let solo = ctx.http.isolated()?;
        let size = m.len();
        let r = solo
            .put(&manifest(repo, "too-large"))
            .header("content-type", OCI_MANIFEST)
            .body(m)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "sending a {size}-byte manifest failed before a response could be read; a server \
                     that rejects it must read (drain) the body or close gracefully: {e}"
                )
            })?;
        status(&r, &[413, 400])?;
        error_body(&r)?;
        // A server that answers before reading the whole body must either drain it or close the
        // connection with `Connection: close`; otherwise a client reuses a dead connection.
        let next = solo.get("/v2/").send().await.map_err(|e| {
            format!(
                "{}: after the {} the next request on the same client failed; a server that closes \
                 the connection without reading the body must send Connection: close: {e}",
                r.desc, r.status
            )
        })?;
        status(&next, &[200])
    }
    .await);

    let fetched = image("headers");
    let pushed = async {
        setup.clone()?;
        let r = put_manifest(ctx, repo, "headers", OCI_MANIFEST, &fetched.content).await?;
        status(&r, &[201])
    }
    .await
    .map_err(|e| format!("setup: {e}"));
    rec.record(
        "manifests/get-headers-200",
        async {
            pushed.clone()?;
            let r = ctx
                .http
                .get(&manifest(repo, &fetched.digest))
                .header("accept", ACCEPT_MANIFESTS)
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_MANIFEST)?;
            header_eq(&r, "docker-content-digest", &fetched.digest)?;
            content_length(&r, fetched.len())?;
            body_eq(&r, &fetched.content)
        }
        .await,
    );
    rec.record(
        "manifests/head-headers-200",
        async {
            pushed.clone()?;
            let r = ctx
                .http
                .head(&manifest(repo, "headers"))
                .header("accept", ACCEPT_MANIFESTS)
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_MANIFEST)?;
            header_eq(&r, "docker-content-digest", &fetched.digest)?;
            content_length(&r, fetched.len())?;
            ensure(r.body.is_empty(), || {
                format!("{}: HEAD returned a body", r.desc)
            })
        }
        .await,
    );

    rec.record(
        "manifests/delete/by-digest-202",
        async {
            setup.clone()?;
            let m = image("delete-by-digest");
            let r = put_manifest(ctx, repo, "delete-me", OCI_MANIFEST, &m.content).await?;
            status(&r, &[201])?;
            let r = ctx.http.delete(&manifest(repo, &m.digest)).send().await?;
            status(&r, &[202])?;
            let r = ctx
                .http
                .get(&manifest(repo, &m.digest))
                .header("accept", ACCEPT_MANIFESTS)
                .send()
                .await?;
            error(&r, 404, "MANIFEST_UNKNOWN")?;
            let r = ctx
                .http
                .get(&manifest(repo, "delete-me"))
                .header("accept", ACCEPT_MANIFESTS)
                .send()
                .await?;
            status(&r, &[404])
        }
        .await,
    );
    rec.record(
        "manifests/delete/tag-202",
        async {
            setup.clone()?;
            let m = image("delete-tag");
            for tag in ["tag-a", "tag-b"] {
                let r = put_manifest(ctx, repo, tag, OCI_MANIFEST, &m.content).await?;
                status(&r, &[201])?;
            }
            let r = ctx.http.delete(&manifest(repo, "tag-a")).send().await?;
            status(&r, &[202])?;
            let get = |reference: String| async move {
                ctx.http
                    .get(&manifest(repo, &reference))
                    .header("accept", ACCEPT_MANIFESTS)
                    .send()
                    .await
            };
            let r = get("tag-a".into()).await?;
            error(&r, 404, "MANIFEST_UNKNOWN")?;
            let r = get(m.digest.clone()).await?;
            status(&r, &[200])?;
            let r = get("tag-b".into()).await?;
            status(&r, &[200])
        }
        .await,
    );
}

/// A descriptor of `blob` as JSON.
pub(crate) fn desc(media_type: &str, blob: &Blob) -> Value {
    json!({"mediaType": media_type, "digest": blob.digest, "size": blob.len()})
}

/// PUT by tag: 201, Location, `Docker-Content-Digest`; then GET by tag: the same bytes, with
/// `Content-Type` exactly the manifest's media type.
async fn put_and_fetch(
    ctx: &RunContext,
    repo: &str,
    tag: &str,
    media_type: &str,
    m: &Blob,
) -> Outcome {
    let r = put_manifest(ctx, repo, tag, media_type, &m.content).await?;
    status(&r, &[201])?;
    header(&r, "location")?;
    header_eq(&r, "docker-content-digest", &m.digest)?;
    let r = ctx
        .http
        .get(&manifest(repo, tag))
        .header("accept", ACCEPT_MANIFESTS)
        .send()
        .await?;
    status(&r, &[200])?;
    header_eq(&r, "content-type", media_type)?;
    header_eq(&r, "docker-content-digest", &m.digest)?;
    body_eq(&r, &m.content)
}
