//! Pull into the local store and push from it.
//!
//! A pull streams every blob into the store ([`StoreSink`]), then records the manifests, the
//! index last, and points the tag at the top one. A push sends what the store holds
//! ([`StoreSource`]), asking the registry to mount blobs from the other local repositories of
//! the same host.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use bytes::Bytes;
use hoist_client::credentials::DockerConfig;
use hoist_client::{
    ClientOptions, Descriptor, Endpoints, PullOptions, PushOptions, PushReport, RegistryClient,
};
use hoist_oci::{Digest, Reference, RepoName};
use hoist_storage::content::Reference as ContentRef;
use hoist_storage::images::naming::split_repo;
use hoist_storage::images::{ImageError, ImageStore, Resolved, repo_name};

use crate::error::TransferFailure;
use crate::transfer_store::{StoreSink, StoreSource};
use crate::{EngineError, Host, Result, ResultExt};

/// The part of `$HOIST_HOME/config.toml` the registry commands read.
#[derive(serde::Deserialize, Default)]
struct HomeConfig {
    #[serde(default)]
    insecure_registries: Vec<String>,
}

/// Endpoints from `insecure` (the flags), `$HOIST_HOME/config.toml` and the certs.d
/// directories.
pub fn endpoints(insecure: &[String], home: &Path) -> Result<Endpoints> {
    let path = home.join("config.toml");
    let config: HomeConfig = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).ctx(format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HomeConfig::default(),
        Err(e) => return Err(e).ctx(format!("reading {}", path.display())),
    };
    let insecure = insecure.iter().chain(&config.insecure_registries);
    Ok(Endpoints::new()
        .with_insecure(insecure)
        .ctx("invalid insecure registry")?
        .with_certs_dirs([
            Path::new("/etc/docker/certs.d").to_path_buf(),
            home.join("certs.d"),
        ]))
}

/// A client for the registry of `reference`, with docker's stored credentials; `what` (`pull`,
/// `push`) names the operation in errors.
pub async fn connect(
    reference: &Reference,
    endpoints: &Endpoints,
    what: &'static str,
) -> Result<RegistryClient> {
    let config = DockerConfig::from_env().ctx("reading the docker config")?;
    RegistryClient::connect(
        reference.registry(),
        endpoints,
        &config,
        ClientOptions::default(),
    )
    .await
    .map_err(|source| failure(what, reference, source))
}

fn failure(
    what: &'static str,
    reference: &Reference,
    source: hoist_client::TransferError,
) -> EngineError {
    EngineError::Transfer(Box::new(TransferFailure {
        what,
        reference: reference.clone(),
        source,
    }))
}

/// Local repositories, other than `except`, with their tags.
async fn local_repos(store: &ImageStore, except: &RepoName) -> Result<Vec<RepoName>> {
    let tags = store.store().all_tags().await.ctx("listing local images")?;
    let names: BTreeSet<String> = tags
        .into_iter()
        .map(|t| t.repo)
        .filter(|r| r != except.as_str())
        .collect();
    Ok(names
        .into_iter()
        .filter_map(|r| RepoName::parse(&r).ok())
        .collect())
}

/// What a pull did.
pub struct Pulled {
    /// The digest the reference named locally before the pull.
    pub before: Option<Digest>,
    /// The digest of what was pulled (the index, for a multi-platform image).
    pub digest: Digest,
    /// The pulled image's config blob.
    pub config: Digest,
}

impl Host {
    /// Pulls `reference` with `client` into the local store: the platform of `options`, and the
    /// index when there is one.
    pub async fn pull(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        options: &PullOptions,
    ) -> Result<Pulled> {
        let store = self.images().await?;
        let repo = repo_name(reference).ctx("invalid repository")?;
        let before = match store.resolve(reference).await {
            Ok(r) => Some(r.digest),
            Err(ImageError::NotFound(_)) => None,
            Err(e) => return Err(e).ctx("reading the local store"),
        };
        let others = local_repos(store, &repo).await?;
        let sink = StoreSink::new(store.clone(), repo.clone(), others);
        let pulled = client
            .pull(reference, &sink, options)
            .await
            .map_err(|e| failure("pull", reference, e))?;
        let tag = reference.tag().filter(|_| reference.digest().is_none());
        let manifest_tag = if pulled.index.is_none() { tag } else { None };
        record_manifest(store, &repo, &pulled.manifest, manifest_tag).await?;
        if let Some(index) = &pulled.index {
            record_manifest(store, &repo, index, tag).await?;
        }
        Ok(Pulled {
            before,
            digest: pulled.digest().clone(),
            config: pulled.config.digest.clone(),
        })
    }

    /// What pushing `reference` sends: it must be in the local store.
    pub async fn push_plan(&self, reference: &Reference) -> Result<PushPlan> {
        let store = self.images().await?;
        let resolved = match store.resolve(reference).await {
            Ok(r) => r,
            Err(ImageError::NotFound(_)) => {
                return Err(EngineError::NotLocal(reference.familiar()));
            }
            Err(e) => return Err(e).ctx("reading the local store"),
        };
        let (root, root_bytes, partial) = push_root(store, &resolved).await?;
        let blobs = blobs_of(store, &resolved.repo, &root_bytes).await?;
        let mount_from =
            mount_candidates(store, &resolved.repo, reference.registry(), &blobs).await?;
        Ok(PushPlan {
            resolved,
            root,
            partial,
            mount_from,
        })
    }

    /// Pushes `plan` to `reference` with `client`; `options.mount_from` is the plan's.
    pub async fn push(
        &self,
        client: &RegistryClient,
        reference: &Reference,
        plan: &PushPlan,
        mut options: PushOptions,
    ) -> Result<PushReport> {
        let store = self.images().await?;
        options.mount_from = plan.mount_from.clone();
        let source = StoreSource::new(store.clone(), plan.resolved.repo.clone());
        client
            .push(reference, &plan.root, &source, &options)
            .await
            .map_err(|e| failure("push", reference, e))
    }
}

/// What a push sends.
pub struct PushPlan {
    /// The local image the reference names.
    pub resolved: Resolved,
    /// The manifest sent: the resolved one, or one platform of a partly stored index.
    pub root: Descriptor,
    /// The index's digest when only one of its platforms is pushed.
    pub partial: Option<Digest>,
    /// Repositories of the same registry to mount blobs from.
    pub mount_from: Vec<String>,
}

async fn record_manifest(
    store: &ImageStore,
    repo: &RepoName,
    d: &Descriptor,
    tag: Option<&hoist_oci::Tag>,
) -> Result<()> {
    let bytes = store
        .read_blob(repo, &d.digest, hoist_client::transfer::MAX_MANIFEST_SIZE)
        .await
        .ctx(format!("reading the pulled manifest {}", d.digest))?;
    store
        .put_manifest(repo, &d.media_type, bytes, tag)
        .await
        .ctx(format!("storing manifest {}", d.digest))?;
    Ok(())
}
/// What a push sends for `resolved`: itself, unless it is an index some of whose platforms are
/// not stored locally (a one-platform pull keeps the whole index). Then, as docker does with a
/// partial index, the single-platform image that is there (the host's, else the first stored)
/// is pushed, and the index's digest is returned to say so. Docker's classic store and podman
/// keep only the pulled platform, so they push the same manifest.
async fn push_root(
    store: &ImageStore,
    resolved: &Resolved,
) -> Result<(Descriptor, Bytes, Option<Digest>)> {
    let whole = Descriptor {
        media_type: resolved.media_type.clone(),
        digest: resolved.digest.clone(),
        size: resolved.bytes.len() as u64,
    };
    if !hoist_oci::media_type::is_index(&resolved.media_type) {
        return Ok((whole, resolved.bytes.clone(), None));
    }
    let index: serde_json::Value =
        serde_json::from_slice(&resolved.bytes).ctx("parsing the local index")?;
    let mut stored = Vec::new();
    let mut missing = false;
    for m in index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let Some(d) = m
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| Digest::parse(d).ok())
        else {
            continue;
        };
        match store
            .store()
            .manifest_get(&resolved.repo, &ContentRef::Digest(d.clone()))
            .await
        {
            Ok(child) => stored.push((m.get("platform").cloned(), child)),
            Err(_) => missing = true,
        }
    }
    if !missing {
        return Ok((whole, resolved.bytes.clone(), None));
    }
    let host = hoist_storage::images::platform::Platform::host();
    let is_host = |p: &Option<serde_json::Value>| {
        p.as_ref().is_some_and(|p| {
            p.get("os").and_then(|v| v.as_str()) == Some(host.os.as_str())
                && p.get("architecture").and_then(|v| v.as_str())
                    == Some(host.architecture.as_str())
        })
    };
    let pick = stored
        .iter()
        .position(|(p, _)| is_host(p))
        .or_else(|| (!stored.is_empty()).then_some(0));
    let Some(i) = pick else {
        return Err(EngineError::Invalid(format!(
            "{}: no platform of this multi-platform image is stored locally",
            resolved.digest
        )));
    };
    let child = stored.swap_remove(i).1;
    let root = Descriptor {
        media_type: child.media_type,
        digest: child.digest,
        size: child.bytes.len() as u64,
    };
    Ok((root, child.bytes, Some(resolved.digest.clone())))
}

/// A stored manifest and, for an index, every child manifest stored locally, parsed.
pub async fn stored_manifests(
    store: &ImageStore,
    repo: &RepoName,
    bytes: &Bytes,
) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut pending = vec![bytes.clone()];
    while let Some(b) = pending.pop() {
        let v: serde_json::Value = serde_json::from_slice(&b).ctx("parsing a manifest")?;
        for m in v
            .get("manifests")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            let Some(d) = descriptor_digest(m) else {
                continue;
            };
            if let Ok(child) = store
                .store()
                .manifest_get(repo, &ContentRef::Digest(d))
                .await
            {
                pending.push(child.bytes);
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// The digest a descriptor names, when it is a valid one.
pub fn descriptor_digest(d: &serde_json::Value) -> Option<Digest> {
    d.get("digest")
        .and_then(|d| d.as_str())
        .and_then(|d| Digest::parse(d).ok())
}

/// The blobs a stored manifest names (for an index, those of the children stored locally).
async fn blobs_of(store: &ImageStore, repo: &RepoName, bytes: &Bytes) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for v in stored_manifests(store, repo, bytes).await? {
        out.extend(v.get("config").and_then(descriptor_digest));
        for l in v
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            out.extend(descriptor_digest(l));
        }
    }
    Ok(out)
}

/// Repositories of the registry `host` (other local tags) holding some of `blobs`, most shared
/// first: the registry is asked to mount from them.
async fn mount_candidates(
    store: &ImageStore,
    repo: &RepoName,
    host: &str,
    blobs: &[Digest],
) -> Result<Vec<String>> {
    let mut shared: HashMap<String, usize> = HashMap::new();
    for other in local_repos(store, repo).await? {
        let Some((h, path)) = split_repo(other.as_str()) else {
            continue;
        };
        if h != host {
            continue;
        }
        let mut n = 0;
        for b in blobs {
            if store
                .store()
                .blob_stat(&other, b)
                .await
                .ctx("reading the local store")?
                .is_some()
            {
                n += 1;
            }
        }
        if n > 0 {
            shared.insert(path.to_owned(), n);
        }
    }
    let mut ranked: Vec<(String, usize)> = shared.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(ranked.into_iter().take(3).map(|(r, _)| r).collect())
}
