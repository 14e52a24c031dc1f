//! hoist's listing cases: tag list order and pagination (`n`, `last`, `Link`), `_catalog`.

use super::check::{ensure, next_link, status};
use super::data::{Blob, OCI_MANIFEST, random_bytes};
use super::manifests::desc;
use super::ops::{push_blob, push_manifest, string_list, tag_list, tags};
use super::{Outcome, Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "tags/list-sorted-200",
    "tags/pagination/n-limit-link",
    "tags/pagination/follow-link",
    "tags/pagination/last",
    "tags/pagination/n-zero",
    "catalog/pagination",
];

/// Pushed in this (unsorted) order.
const TAGS: [&str; 5] = ["t3", "t0", "t4", "t1", "t2"];

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("tags");
    let setup = populate(ctx, repo, &TAGS)
        .await
        .map_err(|e| format!("setup: {e}"));
    let mut sorted: Vec<String> = TAGS.iter().map(|t| (*t).to_owned()).collect();
    sorted.sort();

    rec.record(
        "tags/list-sorted-200",
        async {
            setup.clone()?;
            let r = ctx.http.get(&tags(repo)).send().await?;
            status(&r, &[200])?;
            let name = r
                .json()?
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned);
            ensure(name.as_deref() == Some(repo.as_str()), || {
                format!("{}: name is {name:?}, expected {repo:?}", r.desc)
            })?;
            let list = tag_list(&r)?;
            ensure(list == sorted, || {
                format!("{}: tags are {list:?}, expected {sorted:?}", r.desc)
            })
        }
        .await,
    );
    rec.record(
        "tags/pagination/n-limit-link",
        async {
            setup.clone()?;
            let r = ctx.http.get(&tags(repo)).query("n", "2").send().await?;
            status(&r, &[200])?;
            let list = tag_list(&r)?;
            ensure(list == sorted[..2], || {
                format!("{}: tags are {list:?}, expected {:?}", r.desc, &sorted[..2])
            })?;
            let link = next_link(&r)?;
            ensure(link.is_some(), || {
                format!(
                    "{}: no Link header with rel=\"next\" while more tags remain",
                    r.desc
                )
            })
        }
        .await,
    );
    rec.record(
        "tags/pagination/follow-link",
        async {
            setup.clone()?;
            let mut r = ctx.http.get(&tags(repo)).query("n", "2").send().await?;
            let mut seen = Vec::new();
            for _ in 0..10 {
                status(&r, &[200])?;
                let page = tag_list(&r)?;
                ensure(page.len() <= 2, || {
                    format!("{}: {} tags on a page of n=2", r.desc, page.len())
                })?;
                seen.extend(page);
                match next_link(&r)? {
                    Some(url) => r = ctx.http.get(&url).send().await?,
                    None => break,
                }
            }
            ensure(seen == sorted, || {
                format!("following Link gave {seen:?}, expected {sorted:?}")
            })
        }
        .await,
    );
    rec.record(
        "tags/pagination/last",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .get(&tags(repo))
                .query("n", "2")
                .query("last", "t1")
                .send()
                .await?;
            status(&r, &[200])?;
            let list = tag_list(&r)?;
            ensure(list == ["t2", "t3"], || {
                format!("{}: tags are {list:?}, expected [\"t2\", \"t3\"]", r.desc)
            })
        }
        .await,
    );
    rec.record(
        "tags/pagination/n-zero",
        async {
            setup.clone()?;
            let r = ctx.http.get(&tags(repo)).query("n", "0").send().await?;
            status(&r, &[200])?;
            let list = tag_list(&r)?;
            ensure(list.is_empty(), || {
                format!("{}: n=0 returned {list:?}", r.desc)
            })?;
            ensure(r.header("link").is_none(), || {
                format!("{}: n=0 returned a Link header", r.desc)
            })
        }
        .await,
    );

    rec.record(
        "catalog/pagination",
        async {
            let a = ctx.repo("catalog-a");
            let b = ctx.repo("catalog-b");
            for repo in [&a, &b] {
                populate(ctx, repo, &["latest"]).await?;
            }
            let r = ctx.http.get("/v2/_catalog").query("n", "1").send().await?;
            status(&r, &[200])?;
            let page = string_list(&r, "repositories")?;
            ensure(page.len() == 1, || {
                format!("{}: {} repositories for n=1", r.desc, page.len())
            })?;
            ensure(next_link(&r)?.is_some(), || {
                format!(
                    "{}: no Link header with rel=\"next\" while more repositories remain",
                    r.desc
                )
            })?;
            let r = ctx
                .http
                .get("/v2/_catalog")
                .query("n", "1")
                .query("last", &a)
                .send()
                .await?;
            status(&r, &[200])?;
            let page = string_list(&r, "repositories")?;
            ensure(page == [b.clone()], || {
                format!("{}: repositories are {page:?}, expected [{b:?}]", r.desc)
            })
        }
        .await,
    );
}

/// Pushes one small image and tags it with each of `tags`.
async fn populate(ctx: &RunContext, repo: &str, tags: &[&str]) -> Outcome {
    let config = Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "author": format!("{}-{repo}", ctx.run_id),
        }))
        .expect("json"),
    );
    let layer = Blob::new(random_bytes(64, &format!("{}-{repo}-layer", ctx.run_id)));
    push_blob(ctx, repo, &config).await?;
    push_blob(ctx, repo, &layer).await?;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(super::data::OCI_CONFIG, &config),
        "layers": [desc(super::data::OCI_LAYER_GZIP, &layer)],
    }))
    .expect("json");
    for tag in tags {
        push_manifest(ctx, repo, tag, OCI_MANIFEST, &m).await?;
    }
    Ok(())
}
