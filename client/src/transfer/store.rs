//! What the engine reads blobs from (push) and writes blobs to (pull). The local store implements
//! these; tests implement them over memory and temporary directories.

use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use hoist_oci::Digest;

/// A stream of a blob's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where push reads blobs (manifests are blobs too: they are read by their digest).
pub trait BlobSource: Send + Sync {
    /// The size of the blob, or `None` when the source does not have it.
    fn size(&self, digest: &Digest) -> impl Future<Output = io::Result<Option<u64>>> + Send;

    /// Whether the source has the blob.
    fn has(&self, digest: &Digest) -> impl Future<Output = io::Result<bool>> + Send {
        async move { Ok(self.size(digest).await?.is_some()) }
    }

    /// The blob's bytes from `offset` to its end (an upload resumes at the offset a registry
    /// reports).
    fn open(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> impl Future<Output = io::Result<ByteStream>> + Send;
}

/// Where pull writes blobs (and the manifests it fetched, by their digest).
pub trait BlobSink: Send + Sync {
    type Writer: BlobWriter;

    /// Whether the sink already holds the blob (committed, verified).
    fn has(&self, digest: &Digest) -> impl Future<Output = io::Result<bool>> + Send;

    /// A writer for the blob. If an earlier transfer of the same blob was interrupted, the sink
    /// may keep its bytes and return a writer whose [`BlobWriter::offset`] is where it stopped:
    /// the engine then asks the registry for the rest only.
    fn writer(
        &self,
        digest: &Digest,
        size: u64,
    ) -> impl Future<Output = io::Result<Self::Writer>> + Send;
}

/// One blob being written. Dropping it without [`commit`](BlobWriter::commit) or
/// [`discard`](BlobWriter::discard) keeps the bytes written so far for a later resume, and makes
/// nothing visible.
pub trait BlobWriter: Send {
    /// How many bytes the writer holds.
    fn offset(&self) -> u64;

    /// Append bytes. A writer must refuse to grow past the size it was created for.
    fn write(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Make the blob visible, only if its bytes have the digest and size the writer was created
    /// for. On a mismatch the writer removes what it holds (nothing is stored) and returns an
    /// error of kind [`io::ErrorKind::InvalidData`].
    fn commit(self) -> impl Future<Output = io::Result<()>> + Send;

    /// Remove the bytes written so far.
    fn discard(self) -> impl Future<Output = io::Result<()>> + Send;
}
