//! The official suite's Content Discovery workflow (`03_discovery_test.go`).

use serde_json::Value;

use super::check::{ensure, header_eq, status, success_or};
use super::data::{ANNOTATION_KEY, Blob, Data, OCI_INDEX, OCI_MANIFEST, REF_TYPE_A, TEST_TAG};
use super::http::Resp;
use super::ops::{
    blob, index_manifests, manifest, push_blob, put_manifest, referrers, tag_list, tags,
};
use super::{Outcome, Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "discovery/setup/populate-config",
    "discovery/setup/populate-layer",
    "discovery/setup/populate-tags",
    "discovery/setup/referrers",
    "discovery/tags/list-200",
    "discovery/tags/n-limit",
    "discovery/tags/last",
    "discovery/referrers/nonexistent-empty-200",
    "discovery/referrers/existing-200",
    "discovery/referrers/filter-200",
    "discovery/referrers/missing-subject-200",
    "discovery/teardown/delete-manifests",
    "discovery/teardown/delete-config",
    "discovery/teardown/delete-layer",
    "discovery/teardown/referrers",
];

pub(crate) async fn run(ctx: &RunContext, d: &Data, rec: &mut Recorder) {
    let repo = &ctx.repo("official");
    let m = &d.manifests;

    rec.record(
        "discovery/setup/populate-config",
        push_blob(ctx, repo, &d.configs[2]).await,
    );
    rec.record(
        "discovery/setup/populate-layer",
        push_blob(ctx, repo, &d.layer).await,
    );
    rec.record(
        "discovery/setup/populate-tags",
        async {
            for i in 0..4 {
                let r = put_manifest(ctx, repo, &format!("test{i}"), OCI_MANIFEST, &m[2].content)
                    .await?;
                super::check::success(&r)?;
            }
            Ok(())
        }
        .await,
    );
    rec.record(
        "discovery/setup/referrers",
        referrers_setup(ctx, repo, d).await,
    );

    // Listing tags.
    let mut num_tags = 0usize;
    rec.record(
        "discovery/tags/list-200",
        async {
            let r = ctx.http.get(&tags(repo)).send().await?;
            status(&r, &[200])?;
            num_tags = tag_list(&r)?.len();
            Ok(())
        }
        .await,
    );
    rec.record(
        "discovery/tags/n-limit",
        async {
            let n = num_tags / 2;
            let r = ctx
                .http
                .get(&tags(repo))
                .query("n", &n.to_string())
                .send()
                .await?;
            status(&r, &[200])?;
            let list = tag_list(&r)?;
            ensure(list.len() == n, || {
                format!(
                    "{}: returned {} tags, expected {n}: {list:?}",
                    r.desc,
                    list.len()
                )
            })
        }
        .await,
    );
    // The official case reads back the first page by mistake; this checks the second response:
    // up to `n` tags, all after `last`, `last` itself excluded.
    rec.record(
        "discovery/tags/last",
        async {
            let n = num_tags / 2;
            ensure(n > 0, || "too few tags to page through".to_owned())?;
            let r = ctx
                .http
                .get(&tags(repo))
                .query("n", &n.to_string())
                .send()
                .await?;
            status(&r, &[200])?;
            let page = tag_list(&r)?;
            let last = page
                .get(n - 1)
                .cloned()
                .ok_or_else(|| format!("{}: returned {} tags, expected {n}", r.desc, page.len()))?;
            let r = ctx
                .http
                .get(&tags(repo))
                .query("n", &n.to_string())
                .query("last", &last)
                .send()
                .await?;
            status(&r, &[200])?;
            let next = tag_list(&r)?;
            ensure(next.len() <= n, || {
                format!("{}: returned {} tags, more than n={n}", r.desc, next.len())
            })?;
            ensure(next.iter().all(|t| t.as_str() > last.as_str()), || {
                format!(
                    "{}: returned {next:?}, expected only tags after {last:?}",
                    r.desc
                )
            })
        }
        .await,
    );

    // Listing referrers.
    rec.record(
        "discovery/referrers/nonexistent-empty-200",
        async {
            let r = ctx
                .http
                .get(&referrers(repo, &d.dummy_digest))
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let list = index_manifests(&r)?;
            ensure(list.is_empty(), || {
                format!("{}: expected no referrers, got {}", r.desc, list.len())
            })
        }
        .await,
    );
    rec.record(
        "discovery/referrers/existing-200",
        async {
            let r = ctx.http.get(&referrers(repo, &m[4].digest)).send().await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let list = index_manifests(&r)?;
            ensure(list.len() == 5, || {
                format!("{}: expected 5 referrers, got {}", r.desc, list.len())
            })?;
            ensure(list[0].get("digest") != list[1].get("digest"), || {
                format!("{}: the first two referrers are the same", r.desc)
            })?;
            check_annotations(&r, d, &list)
        }
        .await,
    );
    rec.record(
        "discovery/referrers/filter-200",
        async {
            let r = ctx
                .http
                .get(&referrers(repo, &m[4].digest))
                .query("artifactType", REF_TYPE_A)
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let list = index_manifests(&r)?;
            // The official case accepts an unfiltered answer when OCI-Filters-Applied is absent.
            if r.header("oci-filters-applied")
                .is_some_and(|v| !v.is_empty())
            {
                ensure(list.len() == 2, || {
                    format!(
                        "{}: expected 2 filtered referrers, got {}",
                        r.desc,
                        list.len()
                    )
                })?;
                header_eq(&r, "oci-filters-applied", "artifactType")?;
            } else {
                ensure(list.len() == 5, || {
                    format!("{}: expected 5 referrers, got {}", r.desc, list.len())
                })?;
            }
            check_annotations(&r, d, &list)
        }
        .await,
    );
    rec.record(
        "discovery/referrers/missing-subject-200",
        async {
            let r = ctx.http.get(&referrers(repo, &m[3].digest)).send().await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let list = index_manifests(&r)?;
            ensure(list.len() == 1, || {
                format!("{}: expected 1 referrer, got {}", r.desc, list.len())
            })?;
            let got = list[0]
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or_default();
            ensure(got == d.refs_c_layer.digest, || {
                format!(
                    "{}: referrer is {got}, expected {}",
                    r.desc, d.refs_c_layer.digest
                )
            })
        }
        .await,
    );

    // Teardown.
    rec.record(
        "discovery/teardown/delete-manifests",
        async {
            let refs = [
                d.refs_index.digest.as_str(),
                m[2].digest.as_str(),
                m[4].digest.as_str(),
                d.refs_a_config.digest.as_str(),
                d.refs_a_layer.digest.as_str(),
                TEST_TAG,
                d.refs_b_config.digest.as_str(),
                d.refs_b_layer.digest.as_str(),
                d.refs_c_layer.digest.as_str(),
            ];
            for reference in refs {
                let r = ctx.http.delete(&manifest(repo, reference)).send().await?;
                success_or(&r, &[404, 405])?;
            }
            Ok(())
        }
        .await,
    );
    rec.record(
        "discovery/teardown/delete-config",
        async {
            let r = ctx
                .http
                .delete(&blob(repo, &d.configs[2].digest))
                .send()
                .await?;
            success_or(&r, &[405])
        }
        .await,
    );
    rec.record(
        "discovery/teardown/delete-layer",
        async {
            let r = ctx.http.delete(&blob(repo, &d.layer.digest)).send().await?;
            success_or(&r, &[405])
        }
        .await,
    );
    rec.record(
        "discovery/teardown/referrers",
        async {
            for digest in [
                &d.configs[4].digest,
                &d.ref_blob_a.digest,
                &d.ref_blob_b.digest,
                &d.empty_json.digest,
            ] {
                let r = ctx.http.delete(&blob(repo, digest)).send().await?;
                success_or(&r, &[404, 405])?;
            }
            Ok(())
        }
        .await,
    );
}

/// The official "References setup": blobs, then referrers of `manifests[4]` before and after
/// it is pushed, an index referrer, and a referrer of `manifests[3]`, which is never pushed.
/// Every push is attempted; the first failure is reported.
async fn referrers_setup(ctx: &RunContext, repo: &str, d: &Data) -> Outcome {
    let m = &d.manifests;
    let mut first_err: Option<String> = None;
    let mut note = |o: Outcome| {
        if let Err(e) = o
            && first_err.is_none()
        {
            first_err = Some(e);
        }
    };

    note(push_blob(ctx, repo, &d.empty_json).await);
    note(push_blob(ctx, repo, &d.ref_blob_a).await);
    for (artifact, media_type) in [
        (&d.refs_a_config, OCI_MANIFEST),
        (&d.refs_a_layer, OCI_MANIFEST),
        (&d.refs_index, OCI_INDEX),
    ] {
        note(put_subject(ctx, repo, artifact, media_type, &m[4]).await);
    }
    note(push_blob(ctx, repo, &d.configs[4]).await);
    note(push_blob(ctx, repo, &d.layer).await);
    note(super::ops::push_manifest(ctx, repo, TEST_TAG, OCI_MANIFEST, &m[4].content).await);
    note(push_blob(ctx, repo, &d.ref_blob_b).await);
    note(put_subject(ctx, repo, &d.refs_b_config, OCI_MANIFEST, &m[4]).await);
    note(put_subject(ctx, repo, &d.refs_b_layer, OCI_MANIFEST, &m[4]).await);
    note(put_subject(ctx, repo, &d.refs_c_layer, OCI_MANIFEST, &m[3]).await);
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// PUT a manifest with a subject by its digest; require 2xx and `OCI-Subject: <subject digest>`.
async fn put_subject(
    ctx: &RunContext,
    repo: &str,
    artifact: &Blob,
    media_type: &str,
    subject: &Blob,
) -> Outcome {
    let r = put_manifest(ctx, repo, &artifact.digest, media_type, &artifact.content).await?;
    super::check::success(&r)?;
    header_eq(&r, "oci-subject", &subject.digest)
}

/// Each descriptor has exactly one annotation, the value its manifest carries.
fn check_annotations(r: &Resp, d: &Data, list: &[Value]) -> Outcome {
    for desc in list {
        let digest = desc
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let annotations = desc.get("annotations").and_then(Value::as_object);
        let count = annotations.map_or(0, |a| a.len());
        ensure(count == 1, || {
            format!(
                "{}: referrer {digest} has {count} annotations, expected 1",
                r.desc
            )
        })?;
        let got = annotations
            .and_then(|a| a.get(ANNOTATION_KEY))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let want = d
            .annotations
            .get(digest)
            .map(String::as_str)
            .unwrap_or_default();
        ensure(got == want, || {
            format!(
                "{}: referrer {digest} annotation is {got:?}, expected {want:?}",
                r.desc
            )
        })?;
    }
    Ok(())
}
