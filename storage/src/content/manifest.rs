//! Manifests, tags and referrers.
//!
//! The bytes a client pushed are stored exactly as received and hashed as received; they are
//! parsed (with `oci-spec` types) only to validate them and to learn what they reference.

use std::collections::BTreeMap;

use bytes::Bytes;
use hoist_oci::spec::image::{Descriptor, ImageIndex, ImageManifest};
use hoist_oci::{Digest, RepoName, Tag, media_type};

use super::{ContentError, MAX_MANIFEST_SIZE, Result, Store, paths, verified};
use crate::metadata::{ManifestRecord, RefKind, now};

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference with `:` is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self> {
        if s.contains(':') {
            Digest::parse(s)
                .map(Reference::Digest)
                .map_err(|e| ContentError::DigestInvalid(e.to_string()))
        } else {
            Tag::parse(s)
                .map(Reference::Tag)
                .map_err(|e| ContentError::TagInvalid(e.to_string()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// The outcome of a manifest push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// A manifest read back.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a manifest says about itself, learnt by validating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: Option<String>,
    pub refs: Vec<(Digest, RefKind)>,
}

fn invalid(msg: impl Into<String>) -> ContentError {
    ContentError::ManifestInvalid(msg.into())
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref()).map_err(|e| invalid(format!("descriptor: {e}")))
}

fn annotations_json(a: Option<&std::collections::HashMap<String, String>>) -> Option<String> {
    a.filter(|a| !a.is_empty()).map(|a| {
        let sorted: BTreeMap<_, _> = a.iter().collect();
        serde_json::to_string(&sorted).expect("string map serialises")
    })
}

/// Layers that live elsewhere (docker foreign layers, OCI non-distributable layers with URLs) are
/// not required to be in the repository.
fn is_foreign(d: &Descriptor) -> bool {
    let mt = d.media_type().to_string();
    (mt.contains("foreign") || mt.contains("nondistributable"))
        && d.urls().as_ref().is_some_and(|u| !u.is_empty())
}

/// Validates manifest bytes: JSON, schema version, media type (from the body's `mediaType`, or
/// `content_type` when the body has none; the two must agree), and the kind's structure. Returns
/// what it references.
pub fn analyse(content_type: Option<&str>, body: &[u8]) -> Result<Analysis> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<i64>,
        media_type: Option<String>,
    }
    let head: Head =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid json: {e}")))?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty());
    let media_type = match (&head.media_type, content_type) {
        (Some(body_mt), Some(ct)) if media_type::is_manifest(ct) && body_mt != ct => {
            return Err(invalid(format!(
                "mediaType {body_mt} does not match Content-Type {ct}"
            )));
        }
        (Some(body_mt), _) => body_mt.clone(),
        (None, Some(ct)) => ct.to_owned(),
        (None, None) => return Err(invalid("no mediaType in the manifest and no Content-Type")),
    };
    if !media_type::is_manifest(&media_type) {
        return Err(invalid(format!(
            "unsupported manifest media type {media_type}"
        )));
    }
    if head.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    if media_type::is_index(&media_type) {
        let index: ImageIndex =
            serde_json::from_slice(body).map_err(|e| invalid(format!("invalid index: {e}")))?;
        let mut refs = Vec::with_capacity(index.manifests().len());
        for m in index.manifests() {
            refs.push((descriptor_digest(m)?, RefKind::Manifest));
        }
        Ok(Analysis {
            media_type,
            artifact_type: index.artifact_type().as_ref().map(ToString::to_string),
            subject: index
                .subject()
                .as_ref()
                .map(descriptor_digest)
                .transpose()?,
            annotations: annotations_json(index.annotations().as_ref()),
            refs,
        })
    } else {
        let m: ImageManifest =
            serde_json::from_slice(body).map_err(|e| invalid(format!("invalid manifest: {e}")))?;
        let mut refs = Vec::with_capacity(m.layers().len() + 1);
        refs.push((descriptor_digest(m.config())?, RefKind::Blob));
        for l in m.layers() {
            let d = descriptor_digest(l)?;
            if !is_foreign(l) {
                refs.push((d, RefKind::Blob));
            }
        }
        let artifact_type = m
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| Some(m.config().media_type().to_string()));
        Ok(Analysis {
            media_type,
            artifact_type,
            subject: m.subject().as_ref().map(descriptor_digest).transpose()?,
            annotations: annotations_json(m.annotations().as_ref()),
            refs,
        })
    }
}

impl Store {
    /// Validates and stores a manifest, pointing a tag at it when `reference` is a tag. With a
    /// digest reference the body must hash to it.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        self.put_manifest_checked(repo, reference, content_type, body, false)
            .await
    }

    /// Stores an index some of whose child manifests are not in `repo`, as a local image store
    /// keeps the index of a pull that fetched one platform (docker's and containerd's partial
    /// index). Blobs must be there; only the children present are recorded as its references,
    /// and storing it again once more children are there records those too. A registry never
    /// calls this: a pushed index must name manifests the repository holds.
    pub async fn index_put_partial(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        self.put_manifest_checked(repo, reference, content_type, body, true)
            .await
    }

    async fn put_manifest_checked(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        partial: bool,
    ) -> Result<PutManifest> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(ContentError::ManifestTooLarge(body.len()));
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if actual != *expected {
                    return Err(ContentError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let mut a = analyse(content_type, &body)?;
        if partial {
            let mut present = Vec::with_capacity(a.refs.len());
            for (d, kind) in a.refs {
                if kind == RefKind::Blob
                    || self
                        .meta
                        .manifest_by_digest(repo.as_str(), &d)
                        .await?
                        .is_some()
                {
                    present.push((d, kind));
                }
            }
            a.refs = present;
        }
        let key = paths::blob_data(&digest);
        let _commit = self.commit_lock.shared().await?;
        let present = self.bytes_present(&key, body.len() as u64).await?;
        if !present {
            self.driver.put_content(&key, body.clone()).await?;
        }
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: a.media_type,
            size: body.len() as u64,
            artifact_type: a.artifact_type,
            subject: a.subject.clone(),
            annotations: a.annotations,
            created_at: now(),
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        self.meta
            .manifest_put(repo.as_str(), &record, &a.refs, tag)
            .await?;
        self.manifests.lock().put(digest.clone(), body);
        Ok(PutManifest {
            digest,
            subject: a.subject,
        })
    }

    /// What is known of a manifest, without its bytes.
    pub async fn manifest_stat(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let found = match reference {
            Reference::Tag(t) => self.meta.manifest_by_tag(repo.as_str(), t.as_str()).await?,
            Reference::Digest(d) => self.meta.manifest_by_digest(repo.as_str(), d).await?,
        };
        match found {
            Some(r) => Ok(r),
            None if !self.meta.repo_exists(repo.as_str()).await? => {
                Err(ContentError::NameUnknown(repo.to_string()))
            }
            None => Err(ContentError::ManifestUnknown(reference.to_string())),
        }
    }

    /// A manifest with its bytes, checked against its digest when read from storage.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let record = self.manifest_stat(repo, reference).await?;
        let cached = self.manifests.lock().get(&record.digest).cloned();
        let bytes = match cached {
            Some(b) => b,
            None => {
                let raw = self
                    .driver
                    .get_content(&paths::blob_data(&record.digest))
                    .await?;
                let b = verified(&record.digest, raw)?;
                self.manifests.lock().put(record.digest.clone(), b.clone());
                b
            }
        };
        Ok(StoredManifest {
            digest: record.digest,
            media_type: record.media_type,
            bytes,
        })
    }

    /// Deletes a manifest (by digest, with the tags that point at it) or only a tag.
    pub async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let gone = match reference {
            Reference::Digest(d) => self.meta.manifest_delete(repo.as_str(), d).await?,
            Reference::Tag(t) => self.meta.tag_delete(repo.as_str(), t.as_str()).await?,
        };
        if gone {
            Ok(())
        } else {
            Err(ContentError::ManifestUnknown(reference.to_string()))
        }
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>> {
        let mut all = self.meta.referrers(repo.as_str(), subject).await?;
        if let Some(at) = artifact_type {
            all.retain(|r| r.artifact_type.as_deref() == Some(at));
        }
        Ok(all)
    }
}
