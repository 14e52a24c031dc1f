//! Layer throughput: `write_layer` (gzip on every core, zstd, plain) and `unpack_layer` (gzip),
//! against GNU tar + gzip doing the same, and the layer store's first use of a layer (verify +
//! unpack + tree digest). Median of several runs each.
//!
//! `cargo bench -p hoist-runtime --bench unpack` (as root: ownership and devices).
//! `UNPACK_BENCH_MIB` sets the synthetic tree's size (default 256); `UNPACK_BENCH_SRC=DIR` uses a
//! real directory instead (e.g. `/usr/share`); `UNPACK_BENCH_RUNS` the runs (default 5).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hoist_runtime::layers::LayerStore;
use hoist_runtime::rootfs::{Compression, LayerOptions, write_layer};
use hoist_runtime::unpack::{UnpackOptions, decompress, unpack_layer};

fn runs() -> usize {
    std::env::var("UNPACK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// A tree of `mib` MiB: many small files (config-like text) and some large ones (binary-like).
fn make_tree(root: &Path, mib: usize) {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words = [
        "usr", "lib", "share", "config", "value", "enable", "true", "false", "path", "/etc/",
        "0x1f", "name", "= ", "\n", "  ", "#", "version", "3.14",
    ];
    let total = mib << 20;
    let mut written = 0usize;
    let mut i = 0;
    while written < total {
        let dir = root.join(format!("d{:03}", i % 97));
        fs::create_dir_all(&dir).unwrap();
        let big = i % 50 == 0;
        let size = if big {
            4 << 20
        } else {
            (next() % 32_768) as usize + 100
        };
        let mut data = Vec::with_capacity(size);
        if big {
            // Machine code is partly compressible: runs of random bytes and repeated patterns.
            while data.len() < size {
                let r = next();
                if r % 3 == 0 {
                    data.extend_from_slice(&r.to_le_bytes());
                } else {
                    data.extend_from_slice(&[(r >> 8) as u8; 8]);
                }
            }
        } else {
            while data.len() < size {
                data.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
            }
        }
        data.truncate(size);
        fs::write(dir.join(format!("f{i:06}")), &data).unwrap();
        written += size;
        i += 1;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..runs())
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn rate(bytes: u64, d: Duration) -> String {
    format!(
        "{:>8.1} ms  {:>7.1} MiB/s",
        d.as_secs_f64() * 1e3,
        bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
    )
}

fn main() {
    let mib: usize = std::env::var("UNPACK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let base = tempfile::tempdir_in(std::env::var("UNPACK_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .unwrap();
    let src = match std::env::var_os("UNPACK_BENCH_SRC") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let src = base.path().join("src");
            make_tree(&src, mib);
            src
        }
    };
    let opts = |c| LayerOptions {
        compression: c,
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    };
    let tar_bytes = {
        let mut v = Vec::new();
        write_layer(&src, &mut v, &opts(Compression::None)).unwrap();
        v
    };
    let n = tar_bytes.len() as u64;
    println!(
        "tree: {}, tar {} MiB, {} cores",
        src.display(),
        n >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let mut gz = Vec::new();
    for (name, c) in [
        ("write_layer gzip-6 (parallel members)", Compression::Gzip),
        ("write_layer zstd-3", Compression::Zstd),
        ("write_layer plain tar", Compression::None),
    ] {
        let mut out = Vec::new();
        let d = time(|| {
            out.clear();
            write_layer(&src, &mut out, &opts(c)).unwrap();
        });
        println!("{name:<44} {}  -> {} MiB", rate(n, d), out.len() >> 20);
        if c == Compression::Gzip {
            gz = out;
        }
    }
    let gz_path = base.path().join("layer.tar.gz");
    fs::write(&gz_path, &gz).unwrap();
    let d = time(|| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar --numeric-owner --sort=name -C {} -cf - . | gzip -6 > {}",
                src.display(),
                base.path().join("gnu.tar.gz").display()
            ))
            .status()
            .unwrap();
        assert!(st.success());
    });
    println!("{:<44} {}", "GNU tar | gzip -6 (reference)", rate(n, d));

    let mut k = 0;
    let d = time(|| {
        k += 1;
        let dst = base.path().join(format!("u{k}"));
        fs::create_dir(&dst).unwrap();
        unpack_layer(
            decompress(&gz[..]).unwrap(),
            &dst,
            &UnpackOptions::default(),
        )
        .unwrap();
    });
    println!("{:<44} {}", "unpack_layer from gzip", rate(n, d));
    let d = time(|| {
        k += 1;
        let dst = base.path().join(format!("u{k}"));
        fs::create_dir(&dst).unwrap();
        let st = Command::new("tar")
            .args(["-xzf", gz_path.to_str().unwrap(), "--numeric-owner", "-C"])
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success());
    });
    println!(
        "{:<44} {}",
        "GNU tar -xzf (reference, no containment)",
        rate(n, d)
    );

    // The layer store's first use: hash, decompress, unpack, verify, tree digest, publish.
    let info = {
        let mut sink = Vec::new();
        write_layer(&src, &mut sink, &opts(Compression::Gzip)).unwrap()
    };
    let d = time(|| {
        k += 1;
        let home = base.path().join(format!("home{k}"));
        let store = LayerStore::open(&home).unwrap();
        store
            .ensure(&gz[..], &info.digest, info.size, &info.diff_id)
            .unwrap();
    });
    println!("{:<44} {}", "LayerStore::ensure (first use)", rate(n, d));
    let home = base.path().join(format!("home{k}"));
    let store = LayerStore::open(&home).unwrap();
    let d = time(|| {
        assert!(store.verify_tree(&info.diff_id).is_ok());
    });
    println!("{:<44} {}", "LayerStore::verify_tree", rate(n, d));
    let mut buf = Vec::new();
    decompress(&gz[..]).unwrap().read_to_end(&mut buf).unwrap();
    assert_eq!(buf.len() as u64, n);
}
