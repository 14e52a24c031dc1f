//! The shared driver test suite. Every driver runs it (`run_all`), and every case must leave no key
//! behind: each case works under `suite/` and the runner fails if anything is left there.

use std::future::Future;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{DriverError, StorageDriver};

const ROOT: &str = "suite";

async fn read_all<D: StorageDriver>(d: &D, key: &str, offset: u64) -> Vec<u8> {
    let mut r = d.reader(key, offset).await.expect("reader");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    out
}

/// How a case streams a key: `stream`, or `stream_immutable` (which a driver may map).
#[derive(Clone, Copy, Debug)]
enum Streamed {
    Plain,
    Immutable,
}

async fn stream<D: StorageDriver>(
    d: &D,
    how: Streamed,
    key: &str,
    offset: u64,
    len: Option<u64>,
) -> Result<super::ByteStream, DriverError> {
    match how {
        Streamed::Plain => d.stream(key, offset, len).await,
        Streamed::Immutable => d.stream_immutable(key, offset, len).await,
    }
}

async fn collect<D: StorageDriver>(
    d: &D,
    how: Streamed,
    key: &str,
    offset: u64,
    len: Option<u64>,
) -> std::io::Result<Vec<u8>> {
    use futures::StreamExt;
    let mut s = stream(d, how, key, offset, len).await.expect("stream");
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn content_round_trip<D: StorageDriver>(d: &D) {
    let key = "suite/a/b/c";
    assert!(d.get_content(key).await.unwrap_err().is_not_found());
    d.put_content(key, Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(&d.get_content(key).await.unwrap()[..], b"one");
    d.put_content(key, Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(&d.get_content(key).await.unwrap()[..], b"second");
    d.put_content("suite/empty", Bytes::new()).await.unwrap();
    assert_eq!(d.get_content("suite/empty").await.unwrap().len(), 0);
    d.delete(key).await.unwrap();
    d.delete("suite/empty").await.unwrap();
}

async fn stat_files_and_dirs<D: StorageDriver>(d: &D) {
    d.put_content("suite/dir/file", Bytes::from(vec![7u8; 1234]))
        .await
        .unwrap();
    let f = d.stat("suite/dir/file").await.unwrap();
    assert_eq!((f.size, f.is_dir), (1234, false));
    assert!(d.stat("suite/dir").await.unwrap().is_dir);
    assert!(d.stat("suite/nope").await.unwrap_err().is_not_found());
    d.delete("suite/dir").await.unwrap();
}

async fn streaming_writer_and_ranged_reads<D: StorageDriver>(d: &D) {
    let data = pattern(3 * 1024 * 1024 + 17, 3);
    let key = "suite/stream";
    let mut w = d.writer(key, 0).await.unwrap();
    let mut at = 0;
    let mut step = 1;
    while at < data.len() {
        let end = (at + step).min(data.len());
        w.write(Bytes::copy_from_slice(&data[at..end]))
            .await
            .unwrap();
        at = end;
        step = (step * 3 + 1) % (1 << 21) + 1;
    }
    assert_eq!(w.size(), data.len() as u64);
    w.commit().await.unwrap();
    assert_eq!(d.stat(key).await.unwrap().size, data.len() as u64);
    assert_eq!(read_all(d, key, 0).await, data);
    assert_eq!(read_all(d, key, 1_000_000).await, &data[1_000_000..]);
    assert_eq!(read_all(d, key, data.len() as u64).await, Vec::<u8>::new());
    assert!(matches!(
        d.reader(key, data.len() as u64 + 1).await.err().unwrap(),
        DriverError::InvalidOffset { .. }
    ));
    assert!(
        d.reader("suite/missing", 0)
            .await
            .err()
            .unwrap()
            .is_not_found()
    );

    // Streams: whole, from an offset, a bounded range, and a range past the end, each both
    // ways (the long ones are mapped where a driver maps).
    for how in [Streamed::Plain, Streamed::Immutable] {
        assert_eq!(
            collect(d, how, key, 0, None).await.unwrap(),
            data,
            "{how:?}"
        );
        assert_eq!(
            collect(d, how, key, 777, Some(1_500_000)).await.unwrap(),
            &data[777..777 + 1_500_000],
            "{how:?}"
        );
        let empty = collect(d, how, key, 5, Some(0)).await.unwrap();
        assert_eq!(empty, Vec::<u8>::new(), "{how:?}");
        for (at, want) in [(data.len() as u64 - 10, 20), (1_000_000, 3_000_000)] {
            let short = collect(d, how, key, at, Some(want)).await.unwrap_err();
            assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof, "{how:?}");
        }
        assert!(matches!(
            stream(d, how, key, data.len() as u64 + 1, None)
                .await
                .err()
                .unwrap(),
            DriverError::InvalidOffset { .. }
        ));
        assert!(
            stream(d, how, "suite/missing", 0, None)
                .await
                .err()
                .unwrap()
                .is_not_found()
        );
    }
    // An immutable key replaced by a rename: a stream opened before reads the old bytes whole.
    let mut before = stream(d, Streamed::Immutable, key, 0, None).await.unwrap();
    let first = {
        use futures::StreamExt;
        before.next().await.unwrap().unwrap()
    };
    d.put_content("suite/other", Bytes::from(pattern(data.len(), 9)))
        .await
        .unwrap();
    d.rename("suite/other", key).await.unwrap();
    let mut old = first.to_vec();
    {
        use futures::StreamExt;
        while let Some(chunk) = before.next().await {
            old.extend_from_slice(&chunk.unwrap());
        }
    }
    assert!(old == data, "a stream keeps the bytes it was opened on");
    let new = collect(d, Streamed::Immutable, key, 0, None).await.unwrap();
    assert!(
        new == pattern(data.len(), 9),
        "a new stream reads the new bytes"
    );
    d.delete(key).await.unwrap();
}

async fn writer_resumes_at_offset<D: StorageDriver>(d: &D) {
    let key = "suite/resume";
    let mut w = d.writer(key, 0).await.unwrap();
    w.write(Bytes::from(pattern(100, 1))).await.unwrap();
    w.commit().await.unwrap();
    // Continue at 50: the tail after 50 is dropped, as after a crash mid-chunk.
    let mut w = d.writer(key, 50).await.unwrap();
    assert_eq!(w.size(), 50);
    w.write(Bytes::from_static(b"0123456789")).await.unwrap();
    assert_eq!(w.size(), 60);
    w.commit().await.unwrap();
    let got = read_all(d, key, 0).await;
    assert_eq!(&got[..50], &pattern(100, 1)[..50]);
    assert_eq!(&got[50..], b"0123456789");
    assert!(matches!(
        d.writer(key, 61).await.err().unwrap(),
        DriverError::InvalidOffset { .. }
    ));
    // Offset 0 truncates.
    let w = d.writer(key, 0).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(d.stat(key).await.unwrap().size, 0);
    d.delete(key).await.unwrap();
}

async fn writer_cancel_removes_key<D: StorageDriver>(d: &D) {
    let key = "suite/cancel/me";
    let mut w = d.writer(key, 0).await.unwrap();
    w.write(Bytes::from(pattern(5000, 9))).await.unwrap();
    w.cancel().await.unwrap();
    assert!(d.stat(key).await.unwrap_err().is_not_found());
    if d.stat("suite/cancel").await.is_ok() {
        d.delete("suite/cancel").await.unwrap();
    }
}

async fn list_direct_children<D: StorageDriver>(d: &D) {
    for k in ["suite/l/b", "suite/l/a/x", "suite/l/a/y", "suite/l/c/z/w"] {
        d.put_content(k, Bytes::from_static(b"x")).await.unwrap();
    }
    assert_eq!(
        d.list("suite/l").await.unwrap(),
        vec!["suite/l/a", "suite/l/b", "suite/l/c"]
    );
    assert_eq!(
        d.list("suite/l/a").await.unwrap(),
        vec!["suite/l/a/x", "suite/l/a/y"]
    );
    assert!(d.list("suite/absent").await.unwrap().is_empty());
    d.delete("suite/l").await.unwrap();
    assert!(d.list("suite/l").await.unwrap().is_empty());
}

async fn rename_files_and_dirs<D: StorageDriver>(d: &D) {
    d.put_content("suite/r/src", Bytes::from_static(b"new"))
        .await
        .unwrap();
    d.put_content("suite/r/dst", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.rename("suite/r/src", "suite/r/dst").await.unwrap();
    assert_eq!(&d.get_content("suite/r/dst").await.unwrap()[..], b"new");
    assert!(d.stat("suite/r/src").await.unwrap_err().is_not_found());

    d.put_content("suite/r/dir/a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    d.put_content("suite/r/dir/sub/b", Bytes::from_static(b"b"))
        .await
        .unwrap();
    d.rename("suite/r/dir", "suite/r/moved/here").await.unwrap();
    assert_eq!(
        &d.get_content("suite/r/moved/here/a").await.unwrap()[..],
        b"a"
    );
    assert_eq!(
        &d.get_content("suite/r/moved/here/sub/b").await.unwrap()[..],
        b"b"
    );
    assert!(d.stat("suite/r/dir").await.unwrap_err().is_not_found());

    assert!(
        d.rename("suite/r/none", "suite/r/x")
            .await
            .unwrap_err()
            .is_not_found()
    );
    d.delete("suite/r").await.unwrap();
}

async fn delete_files_and_trees<D: StorageDriver>(d: &D) {
    d.put_content("suite/d/a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    d.put_content("suite/d/t/b", Bytes::from_static(b"b"))
        .await
        .unwrap();
    d.delete("suite/d/a").await.unwrap();
    assert!(d.get_content("suite/d/a").await.unwrap_err().is_not_found());
    assert_eq!(&d.get_content("suite/d/t/b").await.unwrap()[..], b"b");
    d.delete("suite/d").await.unwrap();
    assert!(d.stat("suite/d/t/b").await.unwrap_err().is_not_found());
    assert!(d.delete("suite/d").await.unwrap_err().is_not_found());
}

async fn invalid_keys_are_refused<D: StorageDriver>(d: &D) {
    for bad in [
        "",
        "/abs",
        "suite/../x",
        "suite//x",
        "suite/./x",
        "suite/x/",
    ] {
        let refused = |e: DriverError| matches!(e, DriverError::InvalidKey(_));
        assert!(refused(d.get_content(bad).await.unwrap_err()), "{bad}");
        assert!(
            refused(d.put_content(bad, Bytes::new()).await.unwrap_err()),
            "{bad}"
        );
        assert!(refused(d.stat(bad).await.unwrap_err()), "{bad}");
        assert!(refused(d.delete(bad).await.unwrap_err()), "{bad}");
        assert!(refused(d.writer(bad, 0).await.err().unwrap()), "{bad}");
        assert!(refused(d.reader(bad, 0).await.err().unwrap()), "{bad}");
        assert!(
            refused(d.rename(bad, "suite/ok").await.unwrap_err()),
            "{bad}"
        );
    }
}

async fn concurrent_puts_are_atomic<D: StorageDriver + Clone>(d: &D) {
    let key = "suite/race";
    let a = Bytes::from(vec![b'a'; 300_000]);
    let b = Bytes::from(vec![b'b'; 200_000]);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let d = d.clone();
        let data = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { d.put_content(key, data).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let got = d.get_content(key).await.unwrap();
    assert!(got == a || got == b, "a torn write: {} bytes", got.len());
    d.delete(key).await.unwrap();
}

/// Creating under a directory while another key under the same parent is deleted (which may prune
/// the parent once it is empty) never fails: every kind of creation, many rounds.
async fn creation_races_deletes_of_siblings<D: StorageDriver + Clone>(d: &D) {
    const ROUNDS: usize = 300;
    let deleter = {
        let d = d.clone();
        tokio::spawn(async move {
            for i in 0..ROUNDS {
                let key = format!("suite/shared/del/{i}/data");
                d.put_content(&key, Bytes::from_static(b"x")).await?;
                d.delete(&format!("suite/shared/del/{i}")).await?;
            }
            Ok::<_, DriverError>(())
        })
    };
    let creators: Vec<_> = (0..3)
        .map(|kind| {
            let d = d.clone();
            tokio::spawn(async move {
                for i in 0..ROUNDS {
                    let key = format!("suite/shared/new{kind}/{i}/data");
                    match kind {
                        0 => d.put_content(&key, Bytes::from_static(b"y")).await?,
                        1 => {
                            let mut w = d.writer(&key, 0).await?;
                            w.write(Bytes::from_static(b"z")).await?;
                            w.commit().await?;
                        }
                        _ => {
                            let from = format!("suite/from{i}");
                            d.put_content(&from, Bytes::from_static(b"w")).await?;
                            d.rename(&from, &key).await?;
                        }
                    }
                    d.delete(&format!("suite/shared/new{kind}/{i}")).await?;
                }
                Ok::<_, DriverError>(())
            })
        })
        .collect();
    deleter.await.unwrap().expect("deleting");
    for (kind, c) in creators.into_iter().enumerate() {
        c.await
            .unwrap()
            .unwrap_or_else(|e| panic!("creation kind {kind} failed beside a delete: {e}"));
    }
}

/// Runs every case against fresh drivers from `make`, checking after each that nothing is left.
pub async fn run_all<D, F, Fut>(make: F)
where
    D: StorageDriver + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = D>,
{
    macro_rules! case {
        ($name:ident) => {{
            let d = make().await;
            $name(&d).await;
            let left = d.list(ROOT).await.unwrap();
            assert!(
                left.is_empty(),
                "{} left keys behind on {}: {left:?}",
                stringify!($name),
                d.name()
            );
        }};
    }
    case!(content_round_trip);
    case!(stat_files_and_dirs);
    case!(streaming_writer_and_ranged_reads);
    case!(writer_resumes_at_offset);
    case!(writer_cancel_removes_key);
    case!(list_direct_children);
    case!(rename_files_and_dirs);
    case!(delete_files_and_trees);
    case!(invalid_keys_are_refused);
    case!(concurrent_puts_are_atomic);
    case!(creation_races_deletes_of_siblings);
}
