//! hoist's upload cases: chunked-upload edge cases, digest checks, cross-repository mounts.

use super::check::{ensure, error, header, header_eq, status};
use super::data::{Blob, Chunked, OCTET, random_bytes};
use super::ops::{blob, expect_blob, location, location_path, open_session, push_blob, uploads};
use super::push::patch_chunk;
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "upload/chunked/overlapping-416",
    "upload/chunked/get-status-204",
    "upload/chunked/streamed-patches",
    "upload/chunked/final-chunk-in-put",
    "upload/chunked/cancel-then-404",
    "upload/chunked/wrong-digest-400",
    "upload/monolithic/wrong-digest-400",
    "upload/monolithic/location-pullable",
    "upload/mount/success-201",
    "upload/mount/unknown-blob-202",
];

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("uploads");
    let seed = |s: &str| format!("{}-{s}", ctx.run_id);

    rec.record(
        "upload/chunked/overlapping-416",
        async {
            let b = Chunked::random(64, &seed("overlap"));
            let loc = open_session(ctx, repo).await?;
            let r = patch_chunk(ctx, &loc, &b.chunk1, &b.range1).await?;
            status(&r, &[202])?;
            let loc = location(&r)?;
            // Starts inside the bytes already received: 16-48 overlaps 0-32.
            let r = patch_chunk(ctx, &loc, &b.blob.content[16..49], "16-48").await?;
            status(&r, &[416])
        }
        .await,
    );

    rec.record(
        "upload/chunked/get-status-204",
        async {
            let b = Chunked::random(64, &seed("status"));
            let loc = open_session(ctx, repo).await?;
            let r = patch_chunk(ctx, &loc, &b.chunk1, &b.range1).await?;
            status(&r, &[202])?;
            let r = patch_chunk(ctx, &location(&r)?, &b.chunk2, &b.range2).await?;
            status(&r, &[202])?;
            header_eq(&r, "range", "0-63")?;
            let r = ctx.http.get(&location(&r)?).send().await?;
            status(&r, &[204])?;
            header_eq(&r, "range", "0-63")?;
            let loc = location(&r)?;
            // The location it gives must still finish the upload.
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &b.blob.digest)
                .header("content-type", OCTET)
                .send()
                .await?;
            status(&r, &[201])?;
            expect_blob(ctx, repo, &b.blob).await
        }
        .await,
    );

    rec.record(
        "upload/chunked/streamed-patches",
        async {
            // PATCH without Content-Range or Content-Length (chunked transfer encoding), twice.
            let b = Blob::new(random_bytes(3000, &seed("stream")));
            let loc = open_session(ctx, repo).await?;
            let (first, second) = b.content.split_at(1000);
            let r = ctx
                .http
                .patch(&loc)
                .header("content-type", OCTET)
                .stream(vec![first[..400].to_vec(), first[400..].to_vec()])
                .send()
                .await?;
            status(&r, &[202])?;
            header_eq(&r, "range", "0-999")?;
            let r = ctx
                .http
                .patch(&location(&r)?)
                .header("content-type", OCTET)
                .stream(vec![second[..1000].to_vec(), second[1000..].to_vec()])
                .send()
                .await?;
            status(&r, &[202])?;
            header_eq(&r, "range", "0-2999")?;
            let r = ctx
                .http
                .put(&location(&r)?)
                .query("digest", &b.digest)
                .send()
                .await?;
            status(&r, &[201])?;
            expect_blob(ctx, repo, &b).await
        }
        .await,
    );

    rec.record(
        "upload/chunked/final-chunk-in-put",
        async {
            let b = Chunked::random(64, &seed("final"));
            let loc = open_session(ctx, repo).await?;
            let r = patch_chunk(ctx, &loc, &b.chunk1, &b.range1).await?;
            status(&r, &[202])?;
            let r = ctx
                .http
                .put(&location(&r)?)
                .query("digest", &b.blob.digest)
                .header("content-type", OCTET)
                .header("content-range", &b.range2)
                .body(b.chunk2.clone())
                .send()
                .await?;
            status(&r, &[201])?;
            header(&r, "location")?;
            expect_blob(ctx, repo, &b.blob).await
        }
        .await,
    );

    rec.record(
        "upload/chunked/cancel-then-404",
        async {
            let b = Chunked::random(64, &seed("cancel"));
            let loc = open_session(ctx, repo).await?;
            let r = patch_chunk(ctx, &loc, &b.chunk1, &b.range1).await?;
            status(&r, &[202])?;
            let loc = location(&r)?;
            let r = ctx.http.delete(&loc).send().await?;
            status(&r, &[204])?;
            let r = ctx.http.get(&loc).send().await?;
            error(&r, 404, "BLOB_UPLOAD_UNKNOWN")
        }
        .await,
    );

    rec.record(
        "upload/chunked/wrong-digest-400",
        async {
            let b = Chunked::random(64, &seed("wrong-chunked"));
            let other = Blob::new(random_bytes(64, &seed("wrong-chunked-other")));
            let loc = open_session(ctx, repo).await?;
            let r = patch_chunk(ctx, &loc, &b.blob.content, "0-63").await?;
            status(&r, &[202])?;
            let r = ctx
                .http
                .put(&location(&r)?)
                .query("digest", &other.digest)
                .header("content-type", OCTET)
                .send()
                .await?;
            error(&r, 400, "DIGEST_INVALID")?;
            for digest in [&other.digest, &b.blob.digest] {
                let r = ctx.http.head(&blob(repo, digest)).send().await?;
                status(&r, &[404])?;
            }
            Ok(())
        }
        .await,
    );

    rec.record(
        "upload/monolithic/wrong-digest-400",
        async {
            let b = Blob::new(random_bytes(64, &seed("wrong-mono")));
            let other = Blob::new(random_bytes(64, &seed("wrong-mono-other")));
            let loc = open_session(ctx, repo).await?;
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &other.digest)
                .header("content-type", OCTET)
                .body(b.content.clone())
                .send()
                .await?;
            error(&r, 400, "DIGEST_INVALID")?;
            let r = ctx.http.head(&blob(repo, &other.digest)).send().await?;
            status(&r, &[404])
        }
        .await,
    );

    rec.record(
        "upload/monolithic/location-pullable",
        async {
            let b = Blob::new(random_bytes(100, &seed("pullable")));
            let loc = open_session(ctx, repo).await?;
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &b.digest)
                .header("content-type", OCTET)
                .body(b.content.clone())
                .send()
                .await?;
            status(&r, &[201])?;
            let r = ctx.http.get(&location(&r)?).send().await?;
            status(&r, &[200])?;
            ensure(r.body.as_ref() == b.content.as_slice(), || {
                format!("{}: body differs from the uploaded blob", r.desc)
            })
        }
        .await,
    );

    let source = &ctx.repo("mount-source");
    let target = &ctx.repo("mount-target");
    rec.record(
        "upload/mount/success-201",
        async {
            let b = Blob::new(random_bytes(100, &seed("mount")));
            push_blob(ctx, source, &b).await?;
            let r = ctx
                .http
                .post(&uploads(target))
                .query("mount", &b.digest)
                .query("from", source)
                .send()
                .await?;
            status(&r, &[201])?;
            header_eq(&r, "docker-content-digest", &b.digest)?;
            let loc = location(&r)?;
            let path = location_path(ctx, &loc);
            let want = blob(target, &b.digest);
            ensure(path == want, || {
                format!("{}: location is {path}, expected {want}", r.desc)
            })?;
            let r = ctx.http.get(&loc).send().await?;
            status(&r, &[200])?;
            ensure(r.body.as_ref() == b.content.as_slice(), || {
                format!("{}: mounted blob differs from the source", r.desc)
            })
        }
        .await,
    );

    rec.record(
        "upload/mount/unknown-blob-202",
        async {
            let known = Blob::new(random_bytes(100, &seed("mount-known")));
            push_blob(ctx, source, &known).await?;
            let b = Blob::new(random_bytes(100, &seed("mount-unknown")));
            let r = ctx
                .http
                .post(&uploads(target))
                .query("mount", &b.digest)
                .query("from", source)
                .send()
                .await?;
            status(&r, &[202])?;
            let loc = location(&r)?;
            let path = location_path(ctx, &loc);
            let want = uploads(target);
            ensure(path.starts_with(&want), || {
                format!("{}: location {path} is not under {want}", r.desc)
            })?;
            // The session it opened must take the upload.
            let r = ctx
                .http
                .put(&loc)
                .query("digest", &b.digest)
                .header("content-type", OCTET)
                .body(b.content.clone())
                .send()
                .await?;
            status(&r, &[201])?;
            expect_blob(ctx, target, &b).await
        }
        .await,
    );
}
