//! The official suite's Push workflow (`02_push_test.go`).

use super::check::{ensure, header, header_eq, status, success_or};
use super::data::{Chunked, Data, EMPTY_LAYER_TAG, NONEXISTENT_MANIFEST, OCI_MANIFEST, OCTET};
use super::http::Resp;
use super::ops::{blob, location, location_path, manifest, put_manifest, start_upload, uploads};
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "push/streamed/patch-202",
    "push/streamed/put-201",
    "push/monolithic/get-nonexistent-404",
    "push/monolithic/post-digest-201-or-202",
    "push/monolithic/get-after-post-200-or-404",
    "push/monolithic/post-session-202",
    "push/monolithic/put-201",
    "push/monolithic/get-existing-200",
    "push/monolithic/put-layer-201",
    "push/monolithic/get-layer-200",
    "push/chunked/out-of-order-416",
    "push/chunked/patch-first-chunk-202",
    "push/chunked/retry-chunk-416",
    "push/chunked/get-stale-upload-204",
    "push/chunked/patch-second-chunk-202",
    "push/chunked/put-digest-201",
    "push/mount/without-from-202",
    "push/mount/from-201-or-202",
    "push/mount/result-location",
    "push/mount/automatic-without-from",
    "push/manifests/get-nonexistent-404",
    "push/manifests/put-tags-201",
    "push/manifests/put-no-layers-201",
    "push/manifests/get-digest-200",
    "push/teardown/delete-manifests",
    "push/teardown/delete-config",
    "push/teardown/delete-layer",
];

const NO_PREVIOUS: &str = "no upload location: an earlier case failed";

pub(crate) async fn run(ctx: &RunContext, d: &Data, rec: &mut Recorder) {
    let repo = &ctx.repo("official");
    let cross = &ctx.repo("crossmount");
    let config = &d.configs[1];
    let man = &d.manifests[1];

    // Blob Upload Streamed.
    let mut streamed: Option<String> = None;
    rec.record(
        "push/streamed/patch-202",
        async {
            let r = ctx.http.post(&uploads(repo)).send().await?;
            let loc = location(&r)?;
            let r = ctx
                .http
                .patch(&loc)
                .header("content-type", OCTET)
                .body(d.blob_a.content.clone())
                .send()
                .await?;
            status(&r, &[202])?;
            streamed = Some(location(&r)?);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/streamed/put-201",
        async {
            let loc = streamed.as_deref().ok_or(NO_PREVIOUS)?;
            let r = ctx
                .http
                .put(loc)
                .query("digest", &d.blob_a.digest)
                .header("content-type", OCTET)
                .send()
                .await?;
            status(&r, &[201])?;
            header(&r, "location").map(drop)
        }
        .await,
    );

    // Blob Upload Monolithic.
    rec.record(
        "push/monolithic/get-nonexistent-404",
        async {
            let r = ctx.http.get(&blob(repo, &d.dummy_digest)).send().await?;
            status(&r, &[404])
        }
        .await,
    );
    let mut post_status: Option<u16> = None;
    rec.record(
        "push/monolithic/post-digest-201-or-202",
        async {
            let r = ctx
                .http
                .post(&uploads(repo))
                .query("digest", &config.digest)
                .header("content-type", OCTET)
                .body(config.content.clone())
                .send()
                .await?;
            header(&r, "location")?;
            status(&r, &[201, 202])?;
            post_status = Some(r.status);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/monolithic/get-after-post-200-or-404",
        async {
            let posted = post_status.ok_or("the single-post upload failed")?;
            let r = ctx.http.get(&blob(repo, &config.digest)).send().await?;
            if posted == 202 {
                status(&r, &[404])
            } else {
                status(&r, &[200])
            }
        }
        .await,
    );
    let mut session: Option<String> = None;
    rec.record(
        "push/monolithic/post-session-202",
        async {
            let r = ctx.http.post(&uploads(repo)).send().await?;
            status(&r, &[202])?;
            session = Some(location(&r)?);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/monolithic/put-201",
        async {
            let loc = session.as_deref().ok_or(NO_PREVIOUS)?;
            let r = ctx
                .http
                .put(loc)
                .query("digest", &config.digest)
                .header("content-type", OCTET)
                .body(config.content.clone())
                .send()
                .await?;
            header(&r, "location")?;
            status(&r, &[201])
        }
        .await,
    );
    rec.record(
        "push/monolithic/get-existing-200",
        async {
            let r = ctx.http.get(&blob(repo, &config.digest)).send().await?;
            status(&r, &[200])
        }
        .await,
    );
    rec.record(
        "push/monolithic/put-layer-201",
        async {
            let r = ctx.http.post(&uploads(repo)).send().await?;
            let loc = location(&r)?;
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &d.layer.digest)
                .header("content-type", OCTET)
                .body(d.layer.content.clone())
                .send()
                .await?;
            header(&r, "location")?;
            status(&r, &[201])
        }
        .await,
    );
    rec.record(
        "push/monolithic/get-layer-200",
        async {
            let r = ctx.http.get(&blob(repo, &d.layer.digest)).send().await?;
            status(&r, &[200])
        }
        .await,
    );

    // Blob Upload Chunked.
    let mut blob_b: Chunked = d.chunked.clone();
    rec.record(
        "push/chunked/out-of-order-416",
        async {
            let r = start_upload(ctx, repo).await?;
            let loc = location(&r)?;
            // Honour a minimum chunk size, as the official suite does.
            if let Some(min) = r
                .header("oci-chunk-min-length")
                .and_then(|v| v.parse::<usize>().ok())
                && min > blob_b.chunk1.len()
            {
                blob_b = Chunked::random(min * 2 - 2, &format!("{}-b-min", ctx.run_id));
            }
            let r = patch_chunk(ctx, &loc, &blob_b.chunk2, &blob_b.range2).await?;
            status(&r, &[416])
        }
        .await,
    );
    let mut first: Option<String> = None;
    let mut last: Option<String> = None;
    rec.record(
        "push/chunked/patch-first-chunk-202",
        async {
            let r = start_upload(ctx, repo).await?;
            let loc = location(&r)?;
            first = Some(loc.clone());
            let r = patch_chunk(ctx, &loc, &blob_b.chunk1, &blob_b.range1).await?;
            status(&r, &[202])?;
            header_eq(&r, "range", &blob_b.range1)?;
            last = Some(location(&r)?);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/chunked/retry-chunk-416",
        async {
            let loc = first.as_deref().ok_or(NO_PREVIOUS)?;
            let r = patch_chunk(ctx, loc, &blob_b.chunk1, &blob_b.range1).await?;
            status(&r, &[416])
        }
        .await,
    );
    rec.record(
        "push/chunked/get-stale-upload-204",
        async {
            let loc = first.as_deref().ok_or(NO_PREVIOUS)?;
            let r = ctx.http.get(loc).send().await?;
            status(&r, &[204])?;
            let next = location(&r)?;
            header_eq(&r, "range", &blob_b.range1)?;
            last = Some(next);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/chunked/patch-second-chunk-202",
        async {
            let loc = last.clone().ok_or(NO_PREVIOUS)?;
            let r = patch_chunk(ctx, &loc, &blob_b.chunk2, &blob_b.range2).await?;
            status(&r, &[202])?;
            last = Some(location(&r)?);
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/chunked/put-digest-201",
        async {
            let loc = last.as_deref().ok_or(NO_PREVIOUS)?;
            let r = ctx
                .http
                .put(loc)
                .query("digest", &blob_b.blob.digest)
                .header("content-length", "0")
                .header("content-type", OCTET)
                .send()
                .await?;
            status(&r, &[201])?;
            header(&r, "location").map(drop)
        }
        .await,
    );

    // Cross-Repository Blob Mount.
    rec.record(
        "push/mount/without-from-202",
        async {
            let r = ctx
                .http
                .post(&uploads(cross))
                .query("mount", &d.dummy_digest)
                .send()
                .await?;
            status(&r, &[202])?;
            header(&r, "location").map(drop)
        }
        .await,
    );
    let mut mounted: Option<Resp> = None;
    rec.record(
        "push/mount/from-201-or-202",
        async {
            let r = ctx
                .http
                .post(&uploads(cross))
                .query("mount", &d.blob_a.digest)
                .query("from", repo)
                .send()
                .await?;
            status(&r, &[201, 202])?;
            mounted = Some(r);
            Ok(())
        }
        .await,
    );
    // The official suite's two conditional cases ("GET request to test digest within cross-mount
    // namespace should return 200" when the mount gave 201, "Cross-mounting of nonexistent blob
    // should yield session id" when it gave 202), as one case.
    rec.record(
        "push/mount/result-location",
        async {
            let prev = mounted.as_ref().ok_or("the mount request failed")?;
            let loc = location(prev)?;
            let path = location_path(ctx, &loc);
            if prev.status == 201 {
                let want = blob(cross, &d.blob_a.digest);
                ensure(path == want, || {
                    format!("{}: location is {path}, expected {want}", prev.desc)
                })?;
                let r = ctx.http.get(&loc).send().await?;
                status(&r, &[200])
            } else {
                let want = uploads(cross);
                ensure(path.starts_with(&want), || {
                    format!("{}: location {path} is not under {want}", prev.desc)
                })
            }
        }
        .await,
    );
    if let (Some(enabled), Some(prev)) = (ctx.automatic_crossmount, &mounted)
        && prev.status == 201
    {
        rec.record(
            "push/mount/automatic-without-from",
            async {
                let r = ctx
                    .http
                    .post(&uploads(cross))
                    .query("mount", &d.blob_a.digest)
                    .send()
                    .await?;
                status(&r, &[if enabled { 201 } else { 202 }])
            }
            .await,
        );
    }

    // Manifest Upload.
    rec.record(
        "push/manifests/get-nonexistent-404",
        async {
            let r = ctx
                .http
                .get(&manifest(repo, NONEXISTENT_MANIFEST))
                .send()
                .await?;
            status(&r, &[404])
        }
        .await,
    );
    rec.record(
        "push/manifests/put-tags-201",
        async {
            for i in 0..4 {
                let r = put_manifest(ctx, repo, &format!("test{i}"), OCI_MANIFEST, &man.content)
                    .await?;
                header(&r, "location")?;
                status(&r, &[201])?;
            }
            Ok(())
        }
        .await,
    );
    // The official case only warns when this is refused; the spec says "the list of blobs MAY be
    // empty", so a registry must accept it.
    let mut empty_pushed = false;
    rec.record(
        "push/manifests/put-no-layers-201",
        async {
            let r = put_manifest(
                ctx,
                repo,
                EMPTY_LAYER_TAG,
                OCI_MANIFEST,
                &d.empty_layer_manifest.content,
            )
            .await?;
            status(&r, &[201])?;
            header(&r, "location")?;
            empty_pushed = true;
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/manifests/get-digest-200",
        async {
            let r = ctx
                .http
                .get(&manifest(repo, &man.digest))
                .header("accept", OCI_MANIFEST)
                .send()
                .await?;
            status(&r, &[200])
        }
        .await,
    );

    // Teardown.
    rec.record(
        "push/teardown/delete-manifests",
        async {
            let r = ctx.http.delete(&manifest(repo, &man.digest)).send().await?;
            success_or(&r, &[405])?;
            if empty_pushed {
                let r = ctx
                    .http
                    .delete(&manifest(repo, &d.empty_layer_manifest.digest))
                    .send()
                    .await?;
                success_or(&r, &[405])?;
            }
            Ok(())
        }
        .await,
    );
    rec.record(
        "push/teardown/delete-config",
        async {
            let r = ctx.http.delete(&blob(repo, &config.digest)).send().await?;
            success_or(&r, &[404, 405])
        }
        .await,
    );
    rec.record(
        "push/teardown/delete-layer",
        async {
            let r = ctx.http.delete(&blob(repo, &d.layer.digest)).send().await?;
            success_or(&r, &[404, 405])
        }
        .await,
    );
}

/// PATCH one chunk with its `Content-Range`.
pub(crate) async fn patch_chunk(
    ctx: &RunContext,
    loc: &str,
    chunk: &[u8],
    range: &str,
) -> Result<Resp, String> {
    ctx.http
        .patch(loc)
        .header("content-type", OCTET)
        .header("content-range", range)
        .body(chunk.to_vec())
        .send()
        .await
}
