//! The object driver against two real S3 servers on loopback, each started by its test on a free
//! port with its own data directory: `s3s-fs` (crates.io) and moto's server (PyPI). Both are
//! installed by `.ci/peers.sh` into `target/peers/`; a missing one fails the test.

use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use tokio::io::AsyncReadExt;

use super::*;
use crate::driver::testsuite;

const PREFIX: &str = "registry";
const MIB: usize = 1 << 20;

use hoist_testsupport::s3::{ACCESS_KEY, BUCKET, S3Server as Server, SECRET_KEY};

/// What the tests build on a server.
trait Driven {
    fn config(&self, redirect: bool) -> S3Config;
    fn driver(&self) -> ObjectDriver {
        ObjectDriver::s3(&self.config(false)).unwrap()
    }
}

impl Driven for Server {
    fn config(&self, redirect: bool) -> S3Config {
        S3Config {
            bucket: BUCKET.to_owned(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
            prefix: PREFIX.to_owned(),
            allow_http: true,
            redirect,
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

async fn read_all(d: &ObjectDriver, key: &str, offset: u64) -> Vec<u8> {
    let mut r = d.reader(key, offset).await.expect("reader");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    out
}

/// Every object under the driver's prefix, its own state included.
async fn objects(d: &ObjectDriver) -> Vec<String> {
    d.inner
        .store
        .list(Some(&Path::from(PREFIX)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// Writes `data` in `chunk`-sized writes, flushing every `flush_every` writes.
async fn write_chunks(w: &mut dyn DriverWriter, data: &[u8], chunk: usize, flush_every: usize) {
    for (i, c) in data.chunks(chunk).enumerate() {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
        if (i + 1) % flush_every == 0 {
            w.flush().await.unwrap();
        }
    }
}

/// An upload in three PATCH-like requests, each on a new driver (another replica): writer at
/// the upload's offset, chunks with flushes between, commit. A fourth request that breaks off
/// (flush, then dropped without commit) changes nothing. Then the rename to a blob key, and the
/// bytes read back.
async fn upload_continues_on_another_replica(server: &Server) {
    let data = pattern(21 * MIB + 12_345, 5);
    let key = "extra/uploads/u1/data";
    let steps = [0, 3 * MIB + 7, 14 * MIB + 1];
    for (i, &start) in steps.iter().enumerate() {
        let end = steps.get(i + 1).copied().unwrap_or(data.len());
        let d = server.driver();
        let mut w = d.writer(key, start as u64).await.unwrap();
        assert_eq!(w.size(), start as u64);
        write_chunks(w.as_mut(), &data[start..end], 300_000, 3).await;
        w.flush().await.unwrap();
        assert_eq!(w.size(), end as u64);
        w.commit().await.unwrap();
        let info = server.driver().stat(key).await.unwrap();
        assert_eq!((info.size, info.is_dir), (end as u64, false));

        // A request that dies after uploading a whole part: the checkpoint stands.
        let d = server.driver();
        let mut w = d.writer(key, end as u64).await.unwrap();
        write_chunks(w.as_mut(), &pattern(9 * MIB, 77), MIB, 2).await;
        w.flush().await.unwrap();
        drop(w);
        assert_eq!(server.driver().stat(key).await.unwrap().size, end as u64);
    }
    let d = server.driver();
    d.rename(key, "extra/blobs/b1/data").await.unwrap();
    assert!(d.stat(key).await.unwrap_err().is_not_found());
    let fresh = server.driver();
    assert_eq!(
        fresh.stat("extra/blobs/b1/data").await.unwrap().size,
        data.len() as u64
    );
    assert!(read_all(&fresh, "extra/blobs/b1/data", 0).await == data);
    assert!(read_all(&fresh, "extra/blobs/b1/data", 9 * MIB as u64).await == data[9 * MIB..]);
    fresh.delete("extra").await.unwrap();
}

/// A writer dropped without commit leaves nothing at its key, and a delete of the parent removes
/// what it persisted.
async fn dropped_writer_leaves_nothing(server: &Server) {
    let d = server.driver();
    let key = "extra/dropped/data";
    let mut w = d.writer(key, 0).await.unwrap();
    write_chunks(w.as_mut(), &pattern(10 * MIB, 1), MIB, 1).await;
    w.flush().await.unwrap();
    drop(w);
    assert!(d.stat(key).await.unwrap_err().is_not_found());
    assert!(d.get_content(key).await.unwrap_err().is_not_found());
    assert!(d.list("extra/dropped").await.unwrap().is_empty());
    assert!(d.stat("extra/dropped").await.unwrap_err().is_not_found());
    // Its tail segment is the driver's own state, removed with the key's tree.
    assert!(d.delete("extra/dropped").await.unwrap_err().is_not_found());
}

/// Atomic writers (a blob the client named by digest, written straight to its key): nothing is
/// seen until a commit, which shows the whole object at once; two on one key keep to their own
/// parts and segments; a cancelled or dropped one leaves the key as it was.
async fn atomic_writes_appear_whole_on_commit(server: &Server) {
    let d = server.driver();
    let key = "extra/atomic/data";
    d.put_content(key, Bytes::from_static(b"old"))
        .await
        .unwrap();
    let data = pattern(17 * MIB + 5, 7);
    let mut first = d.atomic_writer(key).await.unwrap().expect("atomic writes");
    let mut second = d.atomic_writer(key).await.unwrap().expect("atomic writes");
    let half = 9 * MIB + 3;
    write_chunks(first.as_mut(), &data[..half], MIB, 2).await;
    first.flush().await.unwrap();
    write_chunks(second.as_mut(), &data, MIB, 2).await;
    second.flush().await.unwrap();
    assert_eq!(&d.get_content(key).await.unwrap()[..], b"old");
    second.commit().await.unwrap();
    assert!(
        read_all(&d, key, 0).await == data,
        "the second writer's object"
    );
    write_chunks(first.as_mut(), &data[half..], MIB, 2).await;
    first.commit().await.unwrap();
    assert!(
        read_all(&d, key, 0).await == data,
        "the first writer's segments survived"
    );
    for keep in [true, false] {
        let mut w = d.atomic_writer(key).await.unwrap().unwrap();
        write_chunks(w.as_mut(), &pattern(10 * MIB, 9), MIB, 1).await;
        w.flush().await.unwrap();
        if keep {
            drop(w);
        } else {
            w.cancel().await.unwrap();
        }
        assert!(
            read_all(&d, key, 0).await == data,
            "dropped {keep}: key changed"
        );
    }
    let one_part = pattern(PART_SIZE, 3);
    let mut w = d.atomic_writer(key).await.unwrap().unwrap();
    write_chunks(w.as_mut(), &one_part, MIB, 3).await;
    w.commit().await.unwrap();
    assert!(read_all(&d, key, 0).await == one_part, "exactly one part");
    let mut small = d.atomic_writer(key).await.unwrap().unwrap();
    small.write(Bytes::from_static(b"small")).await.unwrap();
    small.commit().await.unwrap();
    assert_eq!(&d.get_content(key).await.unwrap()[..], b"small");
    d.delete("extra/atomic").await.unwrap();
    let left: Vec<String> = objects(&d)
        .await
        .into_iter()
        .filter(|o| o.contains("extra/atomic"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A presigned redirect URL serves the key's bytes to a plain GET.
async fn redirect_url_serves_the_bytes(server: &Server) {
    let plain = server.driver();
    assert_eq!(plain.redirect_url("extra/r/blob").await, None);
    let d = ObjectDriver::s3(&server.config(true)).unwrap();
    let data = Bytes::from(pattern(100_000, 3));
    d.put_content("extra/r/blob", data.clone()).await.unwrap();
    let url = d
        .redirect_url("extra/r/blob")
        .await
        .expect("a redirect url");
    assert!(url.starts_with(&server.endpoint()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let got = client.get(&url).send().await.unwrap();
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.unwrap(), data);
    d.delete("extra/r").await.unwrap();
}

/// A 64 MiB streamed write never buffers more than one part.
async fn memory_stays_bounded(server: &Server) {
    let d = server.driver();
    // A flush writes out FLUSH_MIN or more; less stays in memory.
    let mut w = d.open_writer("extra/flush/data", 0).await.unwrap();
    w.write(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(w.buffered(), 100_000);
    w.write(Bytes::from(vec![2u8; FLUSH_MIN])).await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(w.buffered(), 0);
    Box::new(w).cancel().await.unwrap();
    assert!(d.stat("extra/flush/data").await.unwrap_err().is_not_found());

    let key = "extra/big/data";
    let chunk = 256 * 1024;
    let mut w = d.open_writer(key, 0).await.unwrap();
    let total = 64 * MIB;
    for i in 0..total / chunk {
        w.write(Bytes::from(pattern(chunk, i as u8))).await.unwrap();
        assert!(w.buffered() < PART_SIZE, "{} bytes buffered", w.buffered());
    }
    assert!(w.max_buffered() <= PART_SIZE, "{}", w.max_buffered());
    w.flush().await.unwrap();
    assert_eq!(w.buffered(), 0);
    Box::new(w).commit().await.unwrap();
    assert_eq!(d.stat(key).await.unwrap().size, total as u64);
    let mut r = d.reader(key, 0).await.unwrap();
    let mut buf = vec![0u8; chunk];
    for i in 0..total / chunk {
        r.read_exact(&mut buf).await.unwrap();
        assert!(buf == pattern(chunk, i as u8), "chunk {i} differs");
    }
    assert_eq!(r.read(&mut buf).await.unwrap(), 0);
    d.delete("extra/big").await.unwrap();
}

/// The paths big objects take: a rename above the single-copy limit (a multipart copy), and
/// continuing a multipart upload inside its tail and inside its parts.
async fn big_objects(server: &Server) {
    let d = server.driver().with_sizes(PART_SIZE, MIB as u64);
    let data = pattern(20 * MIB + 99, 8);
    let key = "extra/large/data";
    let mut w = d.writer(key, 0).await.unwrap();
    write_chunks(w.as_mut(), &data, MIB, 4).await;
    w.commit().await.unwrap();

    // Inside the tail (parts: 16 MiB): the parts stay.
    let at = 18 * MIB;
    let mut w = d.writer(key, at as u64).await.unwrap();
    w.write(Bytes::from_static(b"tail end")).await.unwrap();
    w.commit().await.unwrap();
    let mut want = data[..at].to_vec();
    want.extend_from_slice(b"tail end");
    assert_eq!(d.stat(key).await.unwrap().size, want.len() as u64);

    // Inside the parts: completed, then its prefix streamed into a new upload.
    let at = 10 * MIB + 3;
    let mut w = d.writer(key, at as u64).await.unwrap();
    w.write(Bytes::from_static(b"parts end")).await.unwrap();
    w.commit().await.unwrap();
    let mut want = data[..at].to_vec();
    want.extend_from_slice(b"parts end");
    assert!(read_all(&d, key, 0).await == want);

    // Above the copy limit: copied through a multipart upload at the destination.
    d.put_content("extra/large/dst", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.rename(key, "extra/large/dst").await.unwrap();
    assert!(d.stat(key).await.unwrap_err().is_not_found());
    assert!(read_all(&d, "extra/large/dst", 0).await == want);
    d.delete("extra/large").await.unwrap();
}

/// The content layer on the driver: a chunked upload over three requests, each on a new store
/// (another replica sharing the bucket and the metadata), completed and read back.
async fn content_layer_uploads(server: &Server) {
    use crate::content::Store;
    use hoist_oci::{Digest, RepoName};
    let meta = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("library/object").unwrap();
    let data = pattern(17 * MIB + 5, 4);
    let digest = Digest::sha256_of(&data);
    let id = {
        let store = Store::open_object(server.driver(), meta.path())
            .await
            .unwrap();
        store.upload_start(&repo).await.unwrap().id
    };
    let cuts = [0, 6 * MIB, 12 * MIB + 1, data.len()];
    for w in cuts.windows(2) {
        let store = Store::open_object(server.driver(), meta.path())
            .await
            .unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = data[w[0]..w[1]]
            .chunks(MIB)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let st = store
            .upload_append(&repo, &id, Some(w[0] as u64), futures::stream::iter(chunks))
            .await
            .unwrap();
        assert_eq!(st.offset, w[1] as u64);
    }
    let store = Store::open_object(server.driver(), meta.path())
        .await
        .unwrap();
    let none: Option<futures::stream::Empty<Result<Bytes, std::io::Error>>> = None;
    let size = store
        .upload_complete(&repo, &id, &digest, none)
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    let mut blob = store.blob_open(&repo, &digest, 0).await.unwrap();
    let mut got = Vec::new();
    blob.reader.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    store.blob_delete(&repo, &digest).await.unwrap();

    // A whole blob in one request (monolithic, and POST then PUT) goes straight to its key:
    // nothing is left under uploads, and a wrong digest stores nothing.
    let body = |data: Vec<u8>| {
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(MIB)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    };
    let one = pattern(9 * MIB + 1, 5);
    let one_digest = Digest::sha256_of(&one);
    let size = store
        .blob_put(&repo, &one_digest, body(one.clone()))
        .await
        .unwrap();
    assert_eq!(size, one.len() as u64);
    let two = pattern(3 * MIB, 6);
    let two_digest = Digest::sha256_of(&two);
    let id = store.upload_start(&repo).await.unwrap().id;
    store
        .upload_complete(&repo, &id, &two_digest, Some(body(two.clone())))
        .await
        .unwrap();
    for (digest, data) in [(&one_digest, &one), (&two_digest, &two)] {
        let mut blob = store.blob_open(&repo, digest, 0).await.unwrap();
        let mut got = Vec::new();
        blob.reader.read_to_end(&mut got).await.unwrap();
        assert!(got == *data, "{digest}");
    }
    let wrong = Digest::sha256_of(b"something else");
    let e = store
        .blob_put(&repo, &wrong, body(one.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, crate::content::ContentError::DigestMismatch { .. }),
        "{e}"
    );
    let id = store.upload_start(&repo).await.unwrap().id;
    let e = store
        .upload_complete(&repo, &id, &wrong, Some(body(two.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(e, crate::content::ContentError::DigestMismatch { .. }),
        "{e}"
    );
    let key = crate::content::paths::blob_data(&wrong);
    assert!(server.driver().stat(&key).await.unwrap_err().is_not_found());
    let d = server.driver();
    assert!(
        d.list(crate::content::paths::UPLOADS)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    for digest in [&one_digest, &two_digest] {
        store.blob_delete(&repo, digest).await.unwrap();
    }
    server
        .driver()
        .delete(crate::content::paths::BLOBS)
        .await
        .unwrap();
}

/// A store that lost a multipart upload another replica was completing (s3s-fs removes the
/// upload before it writes the object; a replica killed then leaves neither): completing the
/// session answers "upload unknown", the session and its state are gone, and the same bytes
/// upload again in a new session.
async fn a_lost_multipart_upload_closes_its_session(server: &Server) {
    use crate::content::{ContentError, Store, paths};
    use hoist_oci::{Digest, RepoName};
    let meta = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("library/lost").unwrap();
    let data = pattern(10 * MIB + 3, 6);
    let digest = Digest::sha256_of(&data);
    let chunks = || {
        futures::stream::iter(
            data.chunks(MIB)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
    };
    let store = Store::open_object(server.driver(), meta.path())
        .await
        .unwrap();
    let id = store.upload_start(&repo).await.unwrap().id;
    store
        .upload_append(&repo, &id, Some(0), chunks())
        .await
        .unwrap();
    // Behind the store's back, the multipart upload goes.
    let d = server.driver();
    let key = paths::upload_data(&id);
    let (state, _) = d
        .load_pending(&key)
        .await
        .unwrap()
        .expect("a pending upload");
    d.inner
        .store
        .abort_multipart(&d.path(&key), &state.upload_id)
        .await
        .unwrap();
    let none: Option<futures::stream::Empty<Result<Bytes, std::io::Error>>> = None;
    let err = store
        .upload_complete(&repo, &id, &digest, none)
        .await
        .unwrap_err();
    assert!(matches!(err, ContentError::UploadUnknown(_)), "{err}");
    assert!(matches!(
        store.upload_status(&repo, &id).await,
        Err(ContentError::UploadUnknown(_))
    ));
    let left: Vec<String> = objects(&d)
        .await
        .into_iter()
        .filter(|o| o.contains(&id))
        .collect();
    assert!(left.is_empty(), "the lost upload left {left:?}");
    // The client starts again.
    let again = store.upload_start(&repo).await.unwrap().id;
    store
        .upload_append(&repo, &again, Some(0), chunks())
        .await
        .unwrap();
    let none: Option<futures::stream::Empty<Result<Bytes, std::io::Error>>> = None;
    store
        .upload_complete(&repo, &again, &digest, none)
        .await
        .unwrap();
    store.blob_delete(&repo, &digest).await.unwrap();
    d.delete(paths::BLOBS).await.unwrap();
}

async fn passes_everything(server: Server) {
    let start = Instant::now();
    testsuite::run_all(|| async { server.driver() }).await;
    let suite = start.elapsed();
    let start = Instant::now();
    upload_continues_on_another_replica(&server).await;
    dropped_writer_leaves_nothing(&server).await;
    redirect_url_serves_the_bytes(&server).await;
    atomic_writes_appear_whole_on_commit(&server).await;
    memory_stays_bounded(&server).await;
    big_objects(&server).await;
    content_layer_uploads(&server).await;
    a_lost_multipart_upload_closes_its_session(&server).await;
    let extras = start.elapsed();
    let left = objects(&server.driver()).await;
    assert!(
        left.is_empty(),
        "{} left objects behind: {left:?}",
        server.name
    );
    eprintln!(
        "object driver on {}: shared suite {:.1}s, extra cases {:.1}s",
        server.name,
        suite.as_secs_f64(),
        extras.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_driver_on_s3s_fs() {
    passes_everything(Server::s3s_fs()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_driver_on_moto() {
    passes_everything(Server::moto()).await;
}

#[test]
fn the_secret_stays_out_of_debug_output() {
    let config = S3Config {
        secret_access_key: "very-secret".to_owned(),
        ..Default::default()
    };
    assert!(!format!("{config:?}").contains("very-secret"));
}

#[test]
fn reserved_keys_are_refused() {
    for bad in [".hoist-pending/x", ".hoist-tail", ".hoist-anything/y"] {
        assert!(matches!(
            ObjectDriver::check(bad),
            Err(DriverError::InvalidKey(_))
        ));
    }
    for ok in ["some/x/data", "a/.hoist-pending", "hoist-x"] {
        ObjectDriver::check(ok).unwrap();
    }
}
