//! hoist's blob cases: GET/HEAD headers, ranged GET, DELETE.

use super::check::{body_eq, content_length, ensure, error, header_eq, status};
use super::data::{Blob, random_bytes};
use super::ops::{blob, push_blob};
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "blobs/get-headers-200",
    "blobs/head-headers-200",
    "blobs/range/partial-206",
    "blobs/range/unsatisfiable-416",
    "blobs/delete/202-then-404",
];

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("blobs");
    let b = Blob::new(random_bytes(1000, &format!("{}-blobs", ctx.run_id)));
    let setup = push_blob(ctx, repo, &b)
        .await
        .map_err(|e| format!("setup: {e}"));
    let path = blob(repo, &b.digest);

    rec.record(
        "blobs/get-headers-200",
        async {
            setup.clone()?;
            let r = ctx.http.get(&path).send().await?;
            status(&r, &[200])?;
            content_length(&r, b.len())?;
            header_eq(&r, "docker-content-digest", &b.digest)?;
            body_eq(&r, &b.content)
        }
        .await,
    );
    rec.record(
        "blobs/head-headers-200",
        async {
            setup.clone()?;
            let r = ctx.http.head(&path).send().await?;
            status(&r, &[200])?;
            content_length(&r, b.len())?;
            header_eq(&r, "docker-content-digest", &b.digest)?;
            ensure(r.body.is_empty(), || {
                format!("{}: HEAD returned a body", r.desc)
            })
        }
        .await,
    );
    rec.record(
        "blobs/range/partial-206",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .get(&path)
                .header("range", "bytes=100-199")
                .send()
                .await?;
            status(&r, &[206])?;
            header_eq(&r, "content-range", &format!("bytes 100-199/{}", b.len()))?;
            content_length(&r, 100)?;
            body_eq(&r, &b.content[100..200])
        }
        .await,
    );
    rec.record(
        "blobs/range/unsatisfiable-416",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .get(&path)
                .header("range", "bytes=5000-5999")
                .send()
                .await?;
            status(&r, &[416])
        }
        .await,
    );
    rec.record(
        "blobs/delete/202-then-404",
        async {
            let d = Blob::new(random_bytes(100, &format!("{}-blob-delete", ctx.run_id)));
            push_blob(ctx, repo, &d).await?;
            let p = blob(repo, &d.digest);
            let r = ctx.http.delete(&p).send().await?;
            status(&r, &[202])?;
            let r = ctx.http.get(&p).send().await?;
            error(&r, 404, "BLOB_UNKNOWN")?;
            let r = ctx.http.head(&p).send().await?;
            status(&r, &[404])?;
            let r = ctx.http.delete(&p).send().await?;
            error(&r, 404, "BLOB_UNKNOWN")
        }
        .await,
    );
}
