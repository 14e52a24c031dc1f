//! The official suite's Pull workflow (`01_pull_test.go`).

use super::check::{
    OFFICIAL_ERROR_CODES, ensure, error_codes, header_eq_if_present, status, success_or,
};
use super::data::{Data, INVALID_MANIFEST, NONEXISTENT_MANIFEST, OCI_MANIFEST, TEST_TAG};
use super::ops::{blob, manifest, push_blob, push_manifest};
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "pull/setup/populate-config-0",
    "pull/setup/populate-config-1",
    "pull/setup/populate-layer",
    "pull/setup/populate-manifest-tag",
    "pull/setup/populate-manifest-digest",
    "pull/blobs/head-nonexistent-404",
    "pull/blobs/head-existing-200",
    "pull/blobs/get-nonexistent-404",
    "pull/blobs/get-existing-200",
    "pull/manifests/head-nonexistent-404",
    "pull/manifests/head-digest-0-200",
    "pull/manifests/head-digest-1-200",
    "pull/manifests/head-tag-200",
    "pull/manifests/get-nonexistent-404",
    "pull/manifests/get-digest-0-200",
    "pull/manifests/get-digest-1-200",
    "pull/manifests/get-tag-200",
    "pull/errors/400-body-oci-json",
    "pull/teardown/delete-manifest-0",
    "pull/teardown/delete-manifest-1",
    "pull/teardown/delete-config-0",
    "pull/teardown/delete-config-1",
    "pull/teardown/delete-layer",
];

pub(crate) async fn run(ctx: &RunContext, d: &Data, rec: &mut Recorder) {
    let repo = &ctx.repo("official");
    let m = &d.manifests;

    rec.record(
        "pull/setup/populate-config-0",
        push_blob(ctx, repo, &d.configs[0]).await,
    );
    rec.record(
        "pull/setup/populate-config-1",
        push_blob(ctx, repo, &d.configs[1]).await,
    );
    rec.record(
        "pull/setup/populate-layer",
        push_blob(ctx, repo, &d.layer).await,
    );
    rec.record(
        "pull/setup/populate-manifest-tag",
        push_manifest(ctx, repo, TEST_TAG, OCI_MANIFEST, &m[0].content).await,
    );
    rec.record(
        "pull/setup/populate-manifest-digest",
        push_manifest(ctx, repo, &m[1].digest, OCI_MANIFEST, &m[1].content).await,
    );

    // Pull blobs.
    rec.record(
        "pull/blobs/head-nonexistent-404",
        async {
            let r = ctx.http.head(&blob(repo, &d.dummy_digest)).send().await?;
            status(&r, &[404])
        }
        .await,
    );
    rec.record(
        "pull/blobs/head-existing-200",
        async {
            let r = ctx
                .http
                .head(&blob(repo, &d.configs[0].digest))
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq_if_present(&r, "docker-content-digest", &d.configs[0].digest)
        }
        .await,
    );
    rec.record(
        "pull/blobs/get-nonexistent-404",
        async {
            let r = ctx.http.get(&blob(repo, &d.dummy_digest)).send().await?;
            status(&r, &[404])
        }
        .await,
    );
    rec.record(
        "pull/blobs/get-existing-200",
        async {
            let r = ctx
                .http
                .get(&blob(repo, &d.configs[0].digest))
                .send()
                .await?;
            status(&r, &[200])
        }
        .await,
    );

    // Pull manifests.
    let head = |reference: String, digest: Option<String>| async move {
        let r = ctx
            .http
            .head(&manifest(repo, &reference))
            .header("accept", OCI_MANIFEST)
            .send()
            .await?;
        if digest.is_none() {
            return status(&r, &[404]);
        }
        status(&r, &[200])?;
        header_eq_if_present(
            &r,
            "docker-content-digest",
            digest.as_deref().unwrap_or_default(),
        )
    };
    rec.record(
        "pull/manifests/head-nonexistent-404",
        head(NONEXISTENT_MANIFEST.into(), None).await,
    );
    rec.record(
        "pull/manifests/head-digest-0-200",
        head(m[0].digest.clone(), Some(m[0].digest.clone())).await,
    );
    rec.record(
        "pull/manifests/head-digest-1-200",
        head(m[1].digest.clone(), Some(m[1].digest.clone())).await,
    );
    rec.record(
        "pull/manifests/head-tag-200",
        head(TEST_TAG.into(), Some(m[0].digest.clone())).await,
    );

    let get = |reference: String, want: u16| async move {
        let r = ctx
            .http
            .get(&manifest(repo, &reference))
            .header("accept", OCI_MANIFEST)
            .send()
            .await?;
        status(&r, &[want])
    };
    rec.record(
        "pull/manifests/get-nonexistent-404",
        get(NONEXISTENT_MANIFEST.into(), 404).await,
    );
    rec.record(
        "pull/manifests/get-digest-0-200",
        get(m[0].digest.clone(), 200).await,
    );
    rec.record(
        "pull/manifests/get-digest-1-200",
        get(m[1].digest.clone(), 200).await,
    );
    rec.record(
        "pull/manifests/get-tag-200",
        get(TEST_TAG.into(), 200).await,
    );

    // Error codes: the official case sends this GET with a body, as here.
    rec.record(
        "pull/errors/400-body-oci-json",
        async {
            let r = ctx
                .http
                .get(&manifest(repo, "sha256:totallywrong"))
                .header("content-type", OCI_MANIFEST)
                .body(INVALID_MANIFEST)
                .send()
                .await?;
            status(&r, &[400, 404])?;
            if r.status == 400 {
                let codes = error_codes(&r)?;
                ensure(!codes.is_empty(), || {
                    format!("{}: errors array is empty", r.desc)
                })?;
                ensure(OFFICIAL_ERROR_CODES.contains(&codes[0].as_str()), || {
                    format!("{}: error code {:?} is not a spec code", r.desc, codes[0])
                })?;
            }
            Ok(())
        }
        .await,
    );

    // Teardown (manifests before blobs, the official default).
    let delete = |path: String, also: &'static [u16]| async move {
        let r = ctx.http.delete(&path).send().await?;
        success_or(&r, also)
    };
    rec.record(
        "pull/teardown/delete-manifest-0",
        delete(manifest(repo, &m[0].digest), &[405]).await,
    );
    rec.record(
        "pull/teardown/delete-manifest-1",
        delete(manifest(repo, &m[1].digest), &[405]).await,
    );
    rec.record(
        "pull/teardown/delete-config-0",
        delete(blob(repo, &d.configs[0].digest), &[404, 405]).await,
    );
    rec.record(
        "pull/teardown/delete-config-1",
        delete(blob(repo, &d.configs[1].digest), &[404, 405]).await,
    );
    rec.record(
        "pull/teardown/delete-layer",
        delete(blob(repo, &d.layer.digest), &[404, 405]).await,
    );
}
