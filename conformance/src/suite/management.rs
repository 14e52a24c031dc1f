//! The official suite's Content Management workflow (`04_management_test.go`).

use super::check::{ensure, error_codes, status};
use super::data::{Data, OCI_MANIFEST, TEST_TAG};
use super::ops::{blob, manifest, push_blob, push_manifest, tag_list, tags};
use super::{Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "management/setup/populate-config",
    "management/setup/populate-layer",
    "management/setup/populate-tag",
    "management/setup/count-tags",
    "management/manifests/delete-tag-202",
    "management/manifests/delete-digest-202",
    "management/manifests/get-deleted-404",
    "management/manifests/tags-reflect-deletion",
    "management/blobs/delete-202",
    "management/blobs/get-deleted-404",
];

pub(crate) async fn run(ctx: &RunContext, d: &Data, rec: &mut Recorder) {
    let repo = &ctx.repo("official");
    let config = &d.configs[3];
    let man = &d.manifests[3];

    rec.record(
        "management/setup/populate-config",
        push_blob(ctx, repo, config).await,
    );
    rec.record(
        "management/setup/populate-layer",
        push_blob(ctx, repo, &d.layer).await,
    );
    rec.record(
        "management/setup/populate-tag",
        push_manifest(ctx, repo, TEST_TAG, OCI_MANIFEST, &man.content).await,
    );
    let mut num_tags: Option<usize> = None;
    rec.record(
        "management/setup/count-tags",
        async {
            let r = ctx.http.get(&tags(repo)).send().await?;
            status(&r, &[200])?;
            num_tags = Some(tag_list(&r)?.len());
            Ok(())
        }
        .await,
    );

    rec.record(
        "management/manifests/delete-tag-202",
        async {
            let r = ctx.http.delete(&manifest(repo, TEST_TAG)).send().await?;
            status(&r, &[400, 202, 405])?;
            if r.status == 400 {
                let codes = error_codes(&r)?;
                ensure(
                    codes.first().map(String::as_str) == Some("UNSUPPORTED"),
                    || format!("{}: 400 with code {codes:?}, expected UNSUPPORTED", r.desc),
                )?;
            }
            Ok(())
        }
        .await,
    );
    rec.record(
        "management/manifests/delete-digest-202",
        async {
            let r = ctx.http.delete(&manifest(repo, &man.digest)).send().await?;
            status(&r, &[202, 404])
        }
        .await,
    );
    rec.record(
        "management/manifests/get-deleted-404",
        async {
            let r = ctx.http.get(&manifest(repo, &man.digest)).send().await?;
            status(&r, &[404, 200])
        }
        .await,
    );
    rec.record(
        "management/manifests/tags-reflect-deletion",
        async {
            let before = num_tags.ok_or("the tag count before deletion is unknown")?;
            let r = ctx.http.get(&tags(repo)).send().await?;
            status(&r, &[200])?;
            let now = tag_list(&r)?;
            ensure(now.len() < before, || {
                format!(
                    "{}: {} tags after deleting, {before} before: {now:?}",
                    r.desc,
                    now.len()
                )
            })
        }
        .await,
    );

    let mut blob_delete_allowed = true;
    rec.record(
        "management/blobs/delete-202",
        async {
            let r = ctx.http.delete(&blob(repo, &config.digest)).send().await?;
            status(&r, &[202, 404, 405])?;
            let r = ctx.http.delete(&blob(repo, &d.layer.digest)).send().await?;
            status(&r, &[202, 404, 405])?;
            blob_delete_allowed = r.status != 405;
            Ok(())
        }
        .await,
    );
    rec.record(
        "management/blobs/get-deleted-404",
        async {
            if !blob_delete_allowed {
                // The official case is skipped when the registry disables blob deletion.
                return Ok(());
            }
            let r = ctx.http.get(&blob(repo, &config.digest)).send().await?;
            status(&r, &[404])
        }
        .await,
    );
}
