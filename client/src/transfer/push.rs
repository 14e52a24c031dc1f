//! Push: blobs in parallel, then child manifests, then the top manifest or index.

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use hoist_oci::{Digest, Reference};
use reqwest::Url;

use super::auth::Scope;
use super::error::TransferError;
use super::manifest::{Descriptor, MAX_MANIFEST_SIZE, ManifestRefs};
use super::registry::{Mount, RegistryClient};
use super::store::{BlobSource, ByteStream};
use super::{DEFAULT_PARALLEL, Progress, ProgressFn, emit};

/// How a push goes.
#[derive(Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub parallel: usize,
    /// Blobs smaller than this go in one `PUT`; larger ones in chunks.
    pub monolithic_max: u64,
    /// The size of a `PATCH` chunk.
    pub chunk_size: u64,
    /// Repositories of the same registry that may hold the blobs already: the registry is asked
    /// to mount from them before anything is uploaded.
    pub mount_from: Vec<String>,
    pub progress: Option<ProgressFn>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            parallel: DEFAULT_PARALLEL,
            monolithic_max: 8 << 20,
            chunk_size: 8 << 20,
            mount_from: Vec::new(),
            progress: None,
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// The digest of the top manifest or index.
    pub digest: Digest,
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
    /// Manifests pushed, the top one included.
    pub manifests: usize,
}

enum Outcome {
    Uploaded,
    Skipped,
    Mounted,
}

impl RegistryClient {
    pub(crate) fn check_registry(&self, reference: &Reference) -> Result<(), TransferError> {
        let host = self.endpoint().host();
        if reference.registry() != host {
            return Err(TransferError::WrongRegistry {
                reference: reference.to_string(),
                registry: reference.registry().to_owned(),
                expected: host.to_owned(),
            });
        }
        Ok(())
    }

    /// Pushes the image or index `root` from `source` to `reference` (its tag, else its digest).
    pub async fn push<S: BlobSource>(
        &self,
        reference: &Reference,
        root: &Descriptor,
        source: &S,
        options: &PushOptions,
    ) -> Result<PushReport, TransferError> {
        self.check_registry(reference)?;
        if let Some(d) = reference.digest()
            && d != &root.digest
        {
            return Err(TransferError::Verify {
                digest: d.clone(),
                detail: format!(
                    "the reference names {d} but the manifest is {}",
                    root.digest
                ),
            });
        }
        let repo = reference.repository().as_str();
        let progress = options.progress.as_ref();

        let root_bytes = read_manifest(source, &root.digest).await?;
        let root_refs = ManifestRefs::parse(&root.digest, &root_bytes)?;
        let root_type = media_type_of(root, &root_refs)?;
        let mut children: Vec<(Descriptor, Bytes)> = Vec::new();
        let mut blobs: Vec<Descriptor> = Vec::new();
        let mut seen = HashSet::new();
        let mut add_blobs = |refs: &ManifestRefs| {
            for b in refs.blobs() {
                if seen.insert(b.digest.clone()) {
                    blobs.push(b.clone());
                }
            }
        };
        if root_refs.is_index(&root_type) {
            for entry in &root_refs.manifests {
                let child = &entry.descriptor;
                let bytes = read_manifest(source, &child.digest).await?;
                let refs = ManifestRefs::parse(&child.digest, &bytes)?;
                if refs.is_index(&child.media_type) {
                    return Err(TransferError::Manifest {
                        digest: child.digest.clone(),
                        detail: "an index inside an index is not supported".into(),
                    });
                }
                add_blobs(&refs);
                let mut child = child.clone();
                child.media_type = media_type_of(&child, &refs)?;
                children.push((child, bytes));
            }
        } else {
            add_blobs(&root_refs);
        }

        let outcomes: Vec<Outcome> = futures::stream::iter(blobs.iter())
            .map(|d| self.push_blob(repo, d, source, options))
            .buffer_unordered(options.parallel.max(1))
            .try_collect()
            .await?;
        let mut report = PushReport {
            digest: root.digest.clone(),
            uploaded: 0,
            skipped: 0,
            mounted: 0,
            manifests: 0,
        };
        for o in outcomes {
            match o {
                Outcome::Uploaded => report.uploaded += 1,
                Outcome::Skipped => report.skipped += 1,
                Outcome::Mounted => report.mounted += 1,
            }
        }

        for (child, bytes) in children {
            let target = child.digest.to_string();
            self.put_manifest(repo, &target, &child.media_type, bytes)
                .await?;
            report.manifests += 1;
            emit(
                progress,
                Progress::Manifest {
                    digest: child.digest,
                    reference: target,
                },
            );
        }
        let target = match reference.tag() {
            Some(t) => t.to_string(),
            None => root.digest.to_string(),
        };
        self.put_manifest(repo, &target, &root_type, root_bytes)
            .await?;
        report.manifests += 1;
        emit(
            progress,
            Progress::Manifest {
                digest: root.digest.clone(),
                reference: target,
            },
        );
        Ok(report)
    }

    async fn push_blob<S: BlobSource>(
        &self,
        repo: &str,
        d: &Descriptor,
        source: &S,
        options: &PushOptions,
    ) -> Result<Outcome, TransferError> {
        let progress = options.progress.as_ref();
        let digest = &d.digest;
        emit(
            progress,
            Progress::Started {
                digest: digest.clone(),
                size: d.size,
            },
        );
        if self.blob_exists(repo, digest, &Scope::push(repo)).await? {
            emit(
                progress,
                Progress::Skipped {
                    digest: digest.clone(),
                    size: d.size,
                },
            );
            return Ok(Outcome::Skipped);
        }
        let mut session = None;
        for from in options.mount_from.iter().filter(|f| f.as_str() != repo) {
            match self.mount(repo, from, digest).await? {
                Mount::Mounted => {
                    emit(
                        progress,
                        Progress::Mounted {
                            digest: digest.clone(),
                            from: from.clone(),
                        },
                    );
                    return Ok(Outcome::Mounted);
                }
                Mount::Session(url) => {
                    session.get_or_insert(url);
                }
                Mount::Refused => {}
            }
        }
        let source_err = |source| TransferError::Source {
            digest: digest.clone(),
            source,
        };
        match source.size(digest).await.map_err(source_err)? {
            Some(n) if n == d.size => {}
            Some(n) => {
                return Err(source_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the source has {n} bytes, the manifest says {}", d.size),
                )));
            }
            None => return Err(source_err(io::ErrorKind::NotFound.into())),
        }
        if d.size < options.monolithic_max {
            self.upload_monolithic(repo, d, source, session).await?;
        } else {
            self.upload_chunked(repo, d, source, session, options)
                .await?;
        }
        emit(
            progress,
            Progress::Done {
                digest: digest.clone(),
                size: d.size,
            },
        );
        Ok(Outcome::Uploaded)
    }

    async fn upload_monolithic<S: BlobSource>(
        &self,
        repo: &str,
        d: &Descriptor,
        source: &S,
        session: Option<Url>,
    ) -> Result<(), TransferError> {
        let source_err = |source| TransferError::Source {
            digest: d.digest.clone(),
            source,
        };
        let mut stream = source.open(&d.digest, 0).await.map_err(source_err)?;
        let body = read_chunk(&mut stream, &mut Bytes::new(), d.size as usize)
            .await
            .map_err(source_err)?;
        if body.len() as u64 != d.size || stream.next().await.is_some() {
            return Err(source_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the source's bytes are not {} long", d.size),
            )));
        }
        let session = Mutex::new(session);
        self.retrying(|| {
            let open = session.lock().expect("session").take();
            let body = body.clone();
            async move {
                let url = match open {
                    Some(url) => url,
                    None => self.start_upload(repo).await?,
                };
                self.put_blob(repo, &url, &d.digest, body).await
            }
        })
        .await
    }

    /// A chunked upload, started again from the first byte in a new session when the registry
    /// lost the session (`404` on a PATCH or the closing PUT: behind a load balancer, a replica
    /// that died while completing it on a store whose completion is not atomic), at most as
    /// many times as the retry policy tries.
    async fn upload_chunked<S: BlobSource>(
        &self,
        repo: &str,
        d: &Descriptor,
        source: &S,
        session: Option<Url>,
        options: &PushOptions,
    ) -> Result<(), TransferError> {
        let attempts = self.retry_policy().attempts.max(1);
        let mut session = session;
        let mut restarts = 0;
        loop {
            match self
                .upload_chunked_once(repo, d, source, session.take(), options)
                .await
            {
                Err(TransferError::NotFound { url }) if restarts + 1 < attempts => {
                    tracing::debug!(%url, digest = %d.digest, "upload session lost, starting again");
                    tokio::time::sleep(self.retry_policy().delay(restarts)).await;
                    restarts += 1;
                }
                other => return other,
            }
        }
    }

    async fn upload_chunked_once<S: BlobSource>(
        &self,
        repo: &str,
        d: &Descriptor,
        source: &S,
        session: Option<Url>,
        options: &PushOptions,
    ) -> Result<(), TransferError> {
        let progress = options.progress.as_ref();
        let digest = &d.digest;
        let source_err = |source| TransferError::Source {
            digest: digest.clone(),
            source,
        };
        let mut session = match session {
            Some(url) => url,
            None => self.start_upload(repo).await?,
        };
        let mut offset = 0u64;
        let mut stream: ByteStream = source.open(digest, 0).await.map_err(source_err)?;
        let mut leftover = Bytes::new();
        let mut failures = 0u32;
        let policy = self.retry_policy().clone();
        while offset < d.size {
            let want = options.chunk_size.max(1).min(d.size - offset) as usize;
            let chunk = read_chunk(&mut stream, &mut leftover, want)
                .await
                .map_err(source_err)?;
            if chunk.len() < want {
                return Err(source_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the source ended at {} of {} bytes",
                        offset + chunk.len() as u64,
                        d.size
                    ),
                )));
            }
            let end = offset + chunk.len() as u64;
            let resume_at = match self.patch_chunk(repo, &session, offset, chunk).await {
                Ok((next, held)) => {
                    session = next;
                    failures = 0;
                    if held == end {
                        offset = end;
                        None
                    } else {
                        Some(held)
                    }
                }
                Err(e) if e.is_retryable() && failures + 1 < policy.attempts => {
                    tracing::debug!(error = %e, %digest, offset, "chunk failed, resuming");
                    tokio::time::sleep(policy.delay(failures)).await;
                    failures += 1;
                    match self.upload_status(repo, &session).await? {
                        Some((url, held)) => {
                            session = url;
                            Some(held)
                        }
                        None => {
                            session = self.start_upload(repo).await?;
                            Some(0)
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            if let Some(held) = resume_at {
                if held > d.size {
                    return Err(TransferError::Protocol(format!(
                        "the registry holds {held} bytes of {digest}, which has {}",
                        d.size
                    )));
                }
                offset = held;
                stream = source.open(digest, offset).await.map_err(source_err)?;
                leftover = Bytes::new();
            }
            emit(
                progress,
                Progress::Bytes {
                    digest: digest.clone(),
                    done: offset,
                    size: d.size,
                },
            );
        }
        // Closing the session is retried too: behind a load balancer the replica that was
        // completing it may die half-way, and another one completes the same session.
        self.retrying(|| async {
            match self.finish_upload(repo, &session, digest).await {
                Ok(()) => Ok(()),
                // The registry may have committed before the answer was lost.
                Err(e) if self.blob_exists(repo, digest, &Scope::push(repo)).await? => {
                    tracing::debug!(error = %e, %digest, "upload committed despite the error");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .await
    }
}

fn media_type_of(d: &Descriptor, refs: &ManifestRefs) -> Result<String, TransferError> {
    if !d.media_type.is_empty() {
        return Ok(d.media_type.clone());
    }
    refs.media_type
        .clone()
        .ok_or_else(|| TransferError::Manifest {
            digest: d.digest.clone(),
            detail: "no media type in the descriptor or the manifest".into(),
        })
}

/// Reads a whole manifest from the source, verified against its digest.
async fn read_manifest<S: BlobSource>(source: &S, digest: &Digest) -> Result<Bytes, TransferError> {
    let source_err = |source| TransferError::Source {
        digest: digest.clone(),
        source,
    };
    let mut stream = source.open(digest, 0).await.map_err(source_err)?;
    let mut buf = BytesMut::new();
    while let Some(b) = stream.next().await {
        buf.extend_from_slice(&b.map_err(source_err)?);
        if buf.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(TransferError::Manifest {
                digest: digest.clone(),
                detail: format!("larger than {MAX_MANIFEST_SIZE} bytes"),
            });
        }
    }
    let bytes = buf.freeze();
    if !digest.matches(&bytes) {
        return Err(TransferError::Verify {
            digest: digest.clone(),
            detail: "the source's manifest bytes do not match the digest".into(),
        });
    }
    Ok(bytes)
}

/// Up to `want` bytes from `leftover` then `stream` (fewer only at the end of the stream).
async fn read_chunk(
    stream: &mut ByteStream,
    leftover: &mut Bytes,
    want: usize,
) -> io::Result<Bytes> {
    if leftover.len() >= want {
        return Ok(leftover.split_to(want));
    }
    let mut buf = BytesMut::with_capacity(want);
    loop {
        let take = (want - buf.len()).min(leftover.len());
        buf.extend_from_slice(&leftover.split_to(take));
        if buf.len() == want {
            break;
        }
        match stream.next().await {
            Some(Ok(b)) => *leftover = b,
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(buf.freeze())
}
