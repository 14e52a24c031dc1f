//! Pull: the manifest or index, the platform's manifest, then config and layers in parallel,
//! streamed into the sink (which verifies), resumed with `Range` after a cut connection.

use std::collections::HashSet;
use std::io;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hoist_oci::Reference;

use super::error::TransferError;
use super::manifest::{Descriptor, ManifestRefs, Platform, choose};
use super::registry::RegistryClient;
use super::store::{BlobSink, BlobWriter};
use super::{DEFAULT_PARALLEL, Progress, ProgressFn, emit};

/// How a pull goes.
#[derive(Clone)]
pub struct PullOptions {
    /// The platform chosen from an index (default: the host's).
    pub platform: Platform,
    /// Blobs fetched at once.
    pub parallel: usize,
    pub progress: Option<ProgressFn>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            parallel: DEFAULT_PARALLEL,
            progress: None,
        }
    }
}

/// What a pull fetched. Every blob and manifest named here is committed in the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The index the reference named, if it named one.
    pub index: Option<Descriptor>,
    /// The image manifest (the platform's, when the reference named an index).
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Blobs fetched, and blobs the sink already had.
    pub fetched: usize,
    pub skipped: usize,
}

impl Pulled {
    /// The digest the reference resolved to (the index's, else the manifest's).
    pub fn digest(&self) -> &hoist_oci::Digest {
        &self.index.as_ref().unwrap_or(&self.manifest).digest
    }
}

impl RegistryClient {
    /// Pulls `reference` into `sink`: blobs first, then the manifest, then the index, so a
    /// manifest in the sink always has its blobs.
    pub async fn pull<K: BlobSink>(
        &self,
        reference: &Reference,
        sink: &K,
        options: &PullOptions,
    ) -> Result<Pulled, TransferError> {
        self.check_registry(reference)?;
        let repo = reference.repository().as_str();
        let progress = options.progress.as_ref();
        let target = reference.target();
        let (bytes, http_type, digest) =
            self.get_manifest(repo, &target, reference.digest()).await?;
        emit(
            progress,
            Progress::Manifest {
                digest: digest.clone(),
                reference: target.clone(),
            },
        );
        let refs = ManifestRefs::parse(&digest, &bytes)?;
        let top = Descriptor {
            media_type: refs.media_type.clone().unwrap_or(http_type.clone()),
            size: bytes.len() as u64,
            digest: digest.clone(),
        };
        let (index, manifest, manifest_bytes, refs) = if refs.is_index(&http_type) {
            let entry = choose(&refs.manifests, &options.platform)?;
            let child = &entry.descriptor;
            let (child_bytes, child_type, _) = self
                .get_manifest(repo, child.digest.as_str(), Some(&child.digest))
                .await?;
            if child_bytes.len() as u64 != child.size {
                return Err(TransferError::Verify {
                    digest: child.digest.clone(),
                    detail: format!(
                        "manifest has {} bytes, the index says {}",
                        child_bytes.len(),
                        child.size
                    ),
                });
            }
            emit(
                progress,
                Progress::Manifest {
                    digest: child.digest.clone(),
                    reference: child.digest.to_string(),
                },
            );
            let child_refs = ManifestRefs::parse(&child.digest, &child_bytes)?;
            if child_refs.is_index(&child_type) {
                return Err(TransferError::Manifest {
                    digest: child.digest.clone(),
                    detail: "an index inside an index is not supported".into(),
                });
            }
            let mut manifest = child.clone();
            if manifest.media_type.is_empty() {
                manifest.media_type = child_refs.media_type.clone().unwrap_or(child_type);
            }
            (Some((top, bytes)), manifest, child_bytes, child_refs)
        } else {
            (None, top, bytes, refs)
        };
        let config = refs.config.clone().ok_or_else(|| TransferError::Manifest {
            digest: manifest.digest.clone(),
            detail: "no config".into(),
        })?;

        let mut seen = HashSet::new();
        let blobs: Vec<&Descriptor> = refs
            .blobs()
            .filter(|d| seen.insert(d.digest.clone()))
            .collect();
        let fetched: Vec<bool> = futures::stream::iter(blobs)
            .map(|d| self.fetch_blob(repo, d, sink, progress))
            .buffer_unordered(options.parallel.max(1))
            .try_collect()
            .await?;

        store_bytes(sink, &manifest, manifest_bytes).await?;
        if let Some((index, bytes)) = &index {
            store_bytes(sink, index, bytes.clone()).await?;
        }
        Ok(Pulled {
            index: index.map(|(d, _)| d),
            manifest,
            config,
            layers: refs.layers.clone(),
            fetched: fetched.iter().filter(|f| **f).count(),
            skipped: fetched.iter().filter(|f| !**f).count(),
        })
    }

    /// Fetches one blob into the sink; `false` when the sink already had it.
    async fn fetch_blob<K: BlobSink>(
        &self,
        repo: &str,
        d: &Descriptor,
        sink: &K,
        progress: Option<&ProgressFn>,
    ) -> Result<bool, TransferError> {
        let digest = &d.digest;
        let sink_err = |source| TransferError::Sink {
            digest: digest.clone(),
            source,
        };
        if sink.has(digest).await.map_err(sink_err)? {
            emit(
                progress,
                Progress::Skipped {
                    digest: digest.clone(),
                    size: d.size,
                },
            );
            return Ok(false);
        }
        emit(
            progress,
            Progress::Started {
                digest: digest.clone(),
                size: d.size,
            },
        );
        let mut writer = sink.writer(digest, d.size).await.map_err(sink_err)?;
        let policy = self.retry_policy().clone();
        let mut failures = 0u32;
        loop {
            let before = writer.offset();
            if before > d.size {
                writer.discard().await.map_err(sink_err)?;
                return Err(TransferError::Verify {
                    digest: digest.clone(),
                    detail: format!("the sink held {before} bytes of a {} byte blob", d.size),
                });
            }
            if before == d.size {
                break;
            }
            match self.fetch_range(repo, d, &mut writer, progress).await {
                Ok(()) => {}
                Err(e) if e.is_retryable() && failures + 1 < policy.attempts => {
                    if writer.offset() > before {
                        failures = 0;
                    }
                    tracing::debug!(error = %e, %digest, offset = writer.offset(), "resuming download");
                    tokio::time::sleep(policy.delay(failures)).await;
                    failures += 1;
                }
                Err(e) => {
                    if matches!(e, TransferError::Verify { .. }) {
                        writer.discard().await.map_err(sink_err)?;
                    }
                    return Err(e);
                }
            }
        }
        writer.commit().await.map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                TransferError::Verify {
                    digest: digest.clone(),
                    detail: format!("rejected, nothing stored: {e}"),
                }
            } else {
                sink_err(e)
            }
        })?;
        emit(
            progress,
            Progress::Done {
                digest: digest.clone(),
                size: d.size,
            },
        );
        Ok(true)
    }

    /// One `GET` from the writer's offset to the end of the blob.
    async fn fetch_range<W: BlobWriter>(
        &self,
        repo: &str,
        d: &Descriptor,
        writer: &mut W,
        progress: Option<&ProgressFn>,
    ) -> Result<(), TransferError> {
        let digest = &d.digest;
        let offset = writer.offset();
        let (mut stream, partial) = self.open_blob(repo, digest, offset).await?;
        // A registry that ignores `Range` sends the whole blob: skip what the writer holds.
        let mut skip = if partial { 0 } else { offset };
        while let Some(item) = stream.next().await {
            let mut data: Bytes = item.map_err(|e| stream_error(digest, e))?;
            if skip > 0 {
                let n = skip.min(data.len() as u64);
                let _ = data.split_to(n as usize);
                skip -= n;
                if data.is_empty() {
                    continue;
                }
            }
            let done = writer.offset() + data.len() as u64;
            if done > d.size {
                return Err(TransferError::Verify {
                    digest: digest.clone(),
                    detail: format!("the registry sent more than {} bytes", d.size),
                });
            }
            writer.write(data).await.map_err(|source| {
                if source.kind() == io::ErrorKind::InvalidData {
                    TransferError::Verify {
                        digest: digest.clone(),
                        detail: source.to_string(),
                    }
                } else {
                    TransferError::Sink {
                        digest: digest.clone(),
                        source,
                    }
                }
            })?;
            emit(
                progress,
                Progress::Bytes {
                    digest: digest.clone(),
                    done,
                    size: d.size,
                },
            );
        }
        if writer.offset() < d.size {
            return Err(TransferError::ShortRead {
                digest: digest.clone(),
                got: writer.offset(),
                size: d.size,
            });
        }
        Ok(())
    }
}

/// A transport error inside the body stream is a connection error (retryable); anything else
/// (`oci-client` verifying a whole blob) is a verification failure.
fn stream_error(digest: &hoist_oci::Digest, e: io::Error) -> TransferError {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<reqwest::Error>() {
            Ok(source) => TransferError::Connection {
                method: "GET".into(),
                url: source.url().map(ToString::to_string).unwrap_or_default(),
                source: *source,
            },
            Err(other) => TransferError::Verify {
                digest: digest.clone(),
                detail: other.to_string().to_lowercase(),
            },
        },
        None => TransferError::Verify {
            digest: digest.clone(),
            detail: "the body stream failed".into(),
        },
    }
}

/// Writes a manifest's bytes into the sink (they were verified when fetched).
async fn store_bytes<K: BlobSink>(
    sink: &K,
    d: &Descriptor,
    bytes: Bytes,
) -> Result<(), TransferError> {
    let sink_err = |source| TransferError::Sink {
        digest: d.digest.clone(),
        source,
    };
    if sink.has(&d.digest).await.map_err(sink_err)? {
        return Ok(());
    }
    let mut writer = sink
        .writer(&d.digest, bytes.len() as u64)
        .await
        .map_err(sink_err)?;
    if writer.offset() != 0 {
        writer.discard().await.map_err(sink_err)?;
        writer = sink
            .writer(&d.digest, bytes.len() as u64)
            .await
            .map_err(sink_err)?;
    }
    writer.write(bytes).await.map_err(sink_err)?;
    writer.commit().await.map_err(sink_err)
}
