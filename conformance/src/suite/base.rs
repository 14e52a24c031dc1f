//! hoist's cases for the base route, repository names and error bodies.

use super::check::{error, error_full, header_eq, status};
use super::data::{Blob, INVALID_MANIFEST, OCI_CONFIG, OCI_MANIFEST, OCTET, random_bytes};
use super::manifests::desc;
use super::ops::{blob, manifest, open_session, push_blob, put_manifest, tags, uploads};
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "base/api-version-200",
    "name-invalid/tags-list-uppercase",
    "name-invalid/upload-post-trailing-separator",
    "name-invalid/manifest-put-too-long",
    "errors/blob-unknown",
    "errors/blob-upload-unknown",
    "errors/digest-invalid",
    "errors/manifest-blob-unknown",
    "errors/manifest-invalid",
    "errors/manifest-unknown",
    "errors/name-invalid",
    "errors/name-unknown",
];

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    rec.record(
        "base/api-version-200",
        async {
            let r = ctx.http.get("/v2/").send().await?;
            status(&r, &[200])?;
            header_eq(&r, "docker-distribution-api-version", "registry/2.0")
        }
        .await,
    );

    // Names outside `[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*`, or 256+ long.
    rec.record(
        "name-invalid/tags-list-uppercase",
        async {
            let r = ctx.http.get(&tags(&ctx.repo("Upper"))).send().await?;
            error(&r, 400, "NAME_INVALID")
        }
        .await,
    );
    rec.record(
        "name-invalid/upload-post-trailing-separator",
        async {
            let r = ctx
                .http
                .post(&uploads(&ctx.repo("trailing-")))
                .send()
                .await?;
            error(&r, 400, "NAME_INVALID")
        }
        .await,
    );
    rec.record(
        "name-invalid/manifest-put-too-long",
        async {
            let long = ctx.repo(&"a".repeat(256));
            let r = ctx
                .http
                .put(&manifest(&long, "latest"))
                .header("content-type", OCI_MANIFEST)
                .body(b"{}".to_vec())
                .send()
                .await?;
            error(&r, 400, "NAME_INVALID")
        }
        .await,
    );

    // One case per error code the suite can provoke without credentials, each checking hoist's
    // full body shape: `{"errors":[{"code","message","detail"}]}`.
    let repo = &ctx.repo("errors");
    let seed = |s: &str| format!("{}-{s}", ctx.run_id);
    let known = Blob::new(random_bytes(64, &seed("errors")));
    let setup = push_blob(ctx, repo, &known)
        .await
        .map_err(|e| format!("setup: {e}"));
    rec.record(
        "errors/blob-unknown",
        async {
            setup.clone()?;
            let missing = Blob::new(random_bytes(64, &seed("missing")));
            let r = ctx.http.get(&blob(repo, &missing.digest)).send().await?;
            error_full(&r, 404, "BLOB_UNKNOWN")
        }
        .await,
    );
    rec.record(
        "errors/blob-upload-unknown",
        async {
            setup.clone()?;
            let id = random_bytes(16, &seed("upload"));
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            let r = ctx
                .http
                .get(&format!("{}{uuid}", uploads(repo)))
                .send()
                .await?;
            error_full(&r, 404, "BLOB_UPLOAD_UNKNOWN")
        }
        .await,
    );
    rec.record(
        "errors/digest-invalid",
        async {
            setup.clone()?;
            let loc = open_session(ctx, repo).await?;
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &known.digest)
                .header("content-type", OCTET)
                .body(b"not the bytes of that digest".to_vec())
                .send()
                .await?;
            error_full(&r, 400, "DIGEST_INVALID")
        }
        .await,
    );
    rec.record(
        "errors/manifest-blob-unknown",
        async {
            setup.clone()?;
            let missing = Blob::new(random_bytes(64, &seed("missing-config")));
            let m = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &missing),
                "layers": [],
            }))
            .expect("json");
            let r = put_manifest(ctx, repo, "missing", OCI_MANIFEST, &m).await?;
            error_full(&r, 400, "MANIFEST_BLOB_UNKNOWN")
        }
        .await,
    );
    rec.record(
        "errors/manifest-invalid",
        async {
            setup.clone()?;
            let r = put_manifest(ctx, repo, "invalid", OCI_MANIFEST, INVALID_MANIFEST).await?;
            error_full(&r, 400, "MANIFEST_INVALID")
        }
        .await,
    );
    rec.record(
        "errors/manifest-unknown",
        async {
            setup.clone()?;
            let r = ctx.http.get(&manifest(repo, "no-such-tag")).send().await?;
            error_full(&r, 404, "MANIFEST_UNKNOWN")
        }
        .await,
    );
    rec.record(
        "errors/name-invalid",
        async {
            let r = ctx.http.get(&tags(&ctx.repo("Invalid"))).send().await?;
            error_full(&r, 400, "NAME_INVALID")
        }
        .await,
    );
    rec.record(
        "errors/name-unknown",
        async {
            let r = ctx
                .http
                .get(&tags(&ctx.repo("never-pushed")))
                .send()
                .await?;
            error_full(&r, 404, "NAME_UNKNOWN")
        }
        .await,
    );
}
