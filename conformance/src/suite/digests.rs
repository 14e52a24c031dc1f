//! hoist's cases: a malformed digest is `400 DIGEST_INVALID` on every route that takes one.

use super::check::{error, status};
use super::data::{Blob, OCI_MANIFEST, OCTET, random_bytes};
use super::http::Resp;
use super::ops::{blob, manifest, open_session, push_blob, referrers, uploads};
use super::{Outcome, Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "digest-invalid/blob-get-400",
    "digest-invalid/blob-head-400",
    "digest-invalid/blob-delete-400",
    "digest-invalid/manifest-get-400",
    "digest-invalid/manifest-head-400",
    "digest-invalid/manifest-put-400",
    "digest-invalid/manifest-delete-400",
    "digest-invalid/upload-put-400",
    "digest-invalid/post-digest-400",
    "digest-invalid/mount-400",
    "digest-invalid/referrers-400",
];

/// Well-formed algorithm, hex part that is not hex (the official suite's malformed digest).
const BAD: &str = "sha256:totallywrong";

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("digests");
    let other = &ctx.repo("digests-source");
    let content = Blob::new(random_bytes(32, &format!("{}-digests", ctx.run_id)));
    // Make the repositories exist, so a 404 cannot stand for "unknown repository", and push the
    // blob the manifest below references, so only its reference is wrong.
    let mut setup: Outcome = Ok(());
    for (r, b) in [
        (repo, &content),
        (other, &content),
        (repo, &Blob::new(b"{}".to_vec())),
    ] {
        if let Err(e) = push_blob(ctx, r, b).await {
            setup = Err(format!("setup: {e}"));
        }
    }
    let bad400 = |r: Resp| error(&r, 400, "DIGEST_INVALID");
    let with_setup = |o: Result<Resp, String>| -> Outcome {
        setup.clone()?;
        bad400(o?)
    };

    rec.record(
        "digest-invalid/blob-get-400",
        with_setup(ctx.http.get(&blob(repo, BAD)).send().await),
    );
    rec.record(
        "digest-invalid/blob-head-400",
        async {
            setup.clone()?;
            // A HEAD response has no body to check.
            let r = ctx.http.head(&blob(repo, BAD)).send().await?;
            status(&r, &[400])
        }
        .await,
    );
    rec.record(
        "digest-invalid/blob-delete-400",
        with_setup(ctx.http.delete(&blob(repo, BAD)).send().await),
    );
    rec.record(
        "digest-invalid/manifest-get-400",
        with_setup(
            ctx.http
                .get(&manifest(repo, BAD))
                .header("accept", OCI_MANIFEST)
                .send()
                .await,
        ),
    );
    rec.record(
        "digest-invalid/manifest-head-400",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .head(&manifest(repo, BAD))
                .header("accept", OCI_MANIFEST)
                .send()
                .await?;
            status(&r, &[400])
        }
        .await,
    );
    rec.record(
        "digest-invalid/manifest-put-400",
        with_setup(
            ctx.http
                .put(&manifest(repo, BAD))
                .header("content-type", OCI_MANIFEST)
                .body(empty_manifest())
                .send()
                .await,
        ),
    );
    rec.record(
        "digest-invalid/manifest-delete-400",
        with_setup(ctx.http.delete(&manifest(repo, BAD)).send().await),
    );
    rec.record(
        "digest-invalid/upload-put-400",
        async {
            setup.clone()?;
            let loc = open_session(ctx, repo).await?;
            let r = ctx
                .http
                .put(&loc)
                .query("digest", BAD)
                .header("content-type", OCTET)
                .body(b"some bytes".to_vec())
                .send()
                .await?;
            bad400(r)
        }
        .await,
    );
    rec.record(
        "digest-invalid/post-digest-400",
        with_setup(
            ctx.http
                .post(&uploads(repo))
                .query("digest", BAD)
                .header("content-type", OCTET)
                .body(b"some bytes".to_vec())
                .send()
                .await,
        ),
    );
    rec.record(
        "digest-invalid/mount-400",
        with_setup(
            ctx.http
                .post(&uploads(repo))
                .query("mount", BAD)
                .query("from", other)
                .send()
                .await,
        ),
    );
    rec.record(
        "digest-invalid/referrers-400",
        with_setup(ctx.http.get(&referrers(repo, BAD)).send().await),
    );
}

/// A valid image manifest whose only blob (`{}`) is pushed in setup.
fn empty_manifest() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2
        },
        "layers": []
    }))
    .expect("json")
}
