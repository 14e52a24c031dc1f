//! hoist's referrers cases, stricter than the official ones.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::check::{ensure, header_eq, status};
use super::data::{
    Blob, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, random_bytes,
};
use super::http::Resp;
use super::manifests::desc;
use super::ops::{index_manifests, manifest, push_blob, put_manifest, referrers};
use super::{Outcome, Recorder, RunContext};

pub(crate) const CASES: &[&str] = &[
    "referrers/empty-index-for-unknown-digest",
    "referrers/descriptors",
    "referrers/filter-applied",
    "referrers/deleted-referrer-removed",
];

const TYPE_SBOM: &str = "application/vnd.example.sbom.v1";
const TYPE_SIG_CONFIG: &str = "application/vnd.example.signature.config.v1+json";
const TYPE_BUNDLE: &str = "application/vnd.example.bundle.v1";

/// What a referrers descriptor must say about one pushed referrer.
struct Expected {
    blob: Blob,
    media_type: &'static str,
    artifact_type: Option<&'static str>,
    annotations: BTreeMap<String, String>,
}

pub(crate) async fn run(ctx: &RunContext, rec: &mut Recorder) {
    let repo = &ctx.repo("referrers");
    let seed = |s: &str| format!("{}-{s}", ctx.run_id);

    rec.record(
        "referrers/empty-index-for-unknown-digest",
        async {
            push_blob(ctx, repo, &Blob::new(b"{}".to_vec())).await?;
            let unknown = Blob::new(random_bytes(32, &seed("no-subject")));
            let r = ctx
                .http
                .get(&referrers(repo, &unknown.digest))
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let v = r.json()?;
            ensure(v.get("schemaVersion") == Some(&json!(2)), || {
                format!("{}: schemaVersion is not 2", r.desc)
            })?;
            ensure(v.get("mediaType") == Some(&json!(OCI_INDEX)), || {
                format!("{}: mediaType is not {OCI_INDEX}", r.desc)
            })?;
            ensure(v.get("manifests") == Some(&json!([])), || {
                format!(
                    "{}: manifests is not an empty array: {}",
                    r.desc,
                    r.snippet()
                )
            })
        }
        .await,
    );

    // A subject image and three referrers: a manifest with artifactType, a manifest whose type
    // comes from its config, an index with artifactType.
    let mut expected: Vec<Expected> = Vec::new();
    let mut subject_digest = String::new();
    let setup: Outcome = async {
        let empty = Blob::new(b"{}".to_vec());
        let config = Blob::new(
            serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "author": seed("referrers"),
                "rootfs": {"type": "layers", "diff_ids": []}}))
            .expect("json"),
        );
        let layer = Blob::new(random_bytes(128, &seed("referrers-layer")));
        let sig = Blob::new(random_bytes(64, &seed("referrers-sig")));
        for b in [&empty, &config, &layer, &sig] {
            push_blob(ctx, repo, b).await?;
        }
        let subject = to_blob(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, &config), "layers": [desc(OCI_LAYER_GZIP, &layer)],
        }));
        let r = put_manifest(ctx, repo, "subject", OCI_MANIFEST, &subject.content).await?;
        status(&r, &[201])?;
        let subject_desc = desc(OCI_MANIFEST, &subject);
        let sbom = to_blob(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": TYPE_SBOM,
            "config": desc(OCI_EMPTY, &empty), "layers": [desc(OCI_EMPTY, &empty)],
            "subject": subject_desc, "annotations": {"org.example.kind": "sbom", "org.example.n": "1"},
        }));
        let signature = to_blob(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc(TYPE_SIG_CONFIG, &sig), "layers": [desc(OCI_EMPTY, &empty)],
            "subject": subject_desc, "annotations": {"org.example.kind": "signature"},
        }));
        let bundle = to_blob(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": TYPE_BUNDLE,
            "manifests": [desc(OCI_MANIFEST, &sbom)],
            "subject": subject_desc, "annotations": {"org.example.kind": "bundle"},
        }));
        for (b, mt, at, notes) in [
            (sbom, OCI_MANIFEST, Some(TYPE_SBOM), vec![("org.example.kind", "sbom"), ("org.example.n", "1")]),
            (signature, OCI_MANIFEST, Some(TYPE_SIG_CONFIG), vec![("org.example.kind", "signature")]),
            (bundle, OCI_INDEX, Some(TYPE_BUNDLE), vec![("org.example.kind", "bundle")]),
        ] {
            let r = put_manifest(ctx, repo, &b.digest, mt, &b.content).await?;
            status(&r, &[201])?;
            expected.push(Expected {
                blob: b,
                media_type: mt,
                artifact_type: at,
                annotations: notes.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            });
        }
        subject_digest = subject.digest;
        Ok(())
    }
    .await;
    let setup = setup.map_err(|e| format!("setup: {e}"));

    rec.record(
        "referrers/descriptors",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .get(&referrers(repo, &subject_digest))
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            let list = index_manifests(&r)?;
            ensure(list.len() == expected.len(), || {
                format!(
                    "{}: {} referrers, expected {}",
                    r.desc,
                    list.len(),
                    expected.len()
                )
            })?;
            for e in &expected {
                check_descriptor(&r, &list, e)?;
            }
            Ok(())
        }
        .await,
    );
    rec.record(
        "referrers/filter-applied",
        async {
            setup.clone()?;
            let r = ctx
                .http
                .get(&referrers(repo, &subject_digest))
                .query("artifactType", TYPE_SIG_CONFIG)
                .send()
                .await?;
            status(&r, &[200])?;
            header_eq(&r, "content-type", OCI_INDEX)?;
            header_eq(&r, "oci-filters-applied", "artifactType")?;
            let list = index_manifests(&r)?;
            ensure(list.len() == 1, || {
                format!("{}: {} referrers, expected 1", r.desc, list.len())
            })?;
            check_descriptor(&r, &list, &expected[1])
        }
        .await,
    );
    rec.record(
        "referrers/deleted-referrer-removed",
        async {
            setup.clone()?;
            let gone = &expected[0].blob.digest;
            let r = ctx.http.delete(&manifest(repo, gone)).send().await?;
            status(&r, &[202])?;
            let r = ctx
                .http
                .get(&referrers(repo, &subject_digest))
                .send()
                .await?;
            status(&r, &[200])?;
            let list = index_manifests(&r)?;
            let digests: Vec<&str> = list
                .iter()
                .filter_map(|d| d.get("digest").and_then(Value::as_str))
                .collect();
            ensure(
                !digests.contains(&gone.as_str()) && digests.len() == expected.len() - 1,
                || {
                    format!(
                        "{}: after deleting {gone} the referrers are {digests:?}",
                        r.desc
                    )
                },
            )
        }
        .await,
    );
}

fn to_blob(v: &Value) -> Blob {
    Blob::new(serde_json::to_vec(v).expect("json"))
}

/// The descriptor for `e` is in `list` with the right mediaType, size, artifactType and
/// annotations.
fn check_descriptor(r: &Resp, list: &[Value], e: &Expected) -> Outcome {
    let digest = &e.blob.digest;
    let d = list
        .iter()
        .find(|d| d.get("digest").and_then(Value::as_str) == Some(digest))
        .ok_or_else(|| format!("{}: referrer {digest} is missing", r.desc))?;
    let field = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
    ensure(field("mediaType") == json!(e.media_type), || {
        format!(
            "{}: referrer {digest} mediaType is {}, expected {}",
            r.desc,
            field("mediaType"),
            e.media_type
        )
    })?;
    ensure(field("size") == json!(e.blob.len()), || {
        format!(
            "{}: referrer {digest} size is {}, expected {}",
            r.desc,
            field("size"),
            e.blob.len()
        )
    })?;
    let want_type = e.artifact_type.map_or(Value::Null, |t| json!(t));
    ensure(field("artifactType") == want_type, || {
        format!(
            "{}: referrer {digest} artifactType is {}, expected {want_type}",
            r.desc,
            field("artifactType")
        )
    })?;
    let want_notes = json!(e.annotations);
    ensure(field("annotations") == want_notes, || {
        format!(
            "{}: referrer {digest} annotations are {}, expected {want_notes}",
            r.desc,
            field("annotations")
        )
    })
}
