//! Shared by the transfer tests: registry processes on loopback ports the OS picks, an in-memory
//! blob source, a directory blob sink, and image builders.
#![allow(dead_code)]

pub mod fake;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use hoist_client::transfer::{
    BlobSink, BlobSource, BlobWriter, ByteStream, Descriptor, Progress, ProgressFn,
};
use hoist_oci::{Digest, Digester};

// ---------------------------------------------------------------------------------------------
// Registry processes

/// A registry process, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    _data: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The CNCF registry (`docker-registry`), anonymous, or with htpasswd Basic auth for
/// `(user, password)`.
pub fn distribution(htpasswd: Option<(&str, &str)>) -> Registry {
    let data = tempfile::tempdir().unwrap();
    let mut auth = String::new();
    if let Some((user, password)) = htpasswd {
        let out =
            Command::new(which("htpasswd").expect("htpasswd (apache2-utils) is not installed"))
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
        assert!(out.status.success(), "htpasswd failed");
        let file = data.path().join("htpasswd");
        std::fs::write(&file, &out.stdout).unwrap();
        auth = format!(
            "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
            file.display()
        );
    }
    let config = data.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{auth}",
            data.path().join("store").display()
        ),
    )
    .unwrap();
    let bin = which("docker-registry")
        .expect("docker-registry is not installed (apt-get install docker-registry)");
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&config);
    spawn(cmd, data)
}

/// `hoist serve` from this workspace's `target/debug/hoist`.
pub fn hoist_serve() -> Registry {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/hoist");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p hoist` first",
        bin.display()
    );
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("RUST_LOG", "info");
    spawn(cmd, data)
}

fn spawn(mut cmd: Command, data: tempfile::TempDir) -> Registry {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting the registry");
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
            }
        });
    }
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("the registry did not report its address");
    };
    Registry {
        child,
        addr,
        _data: data,
    }
}

fn listening_addr(line: &str) -> Option<String> {
    let at = line.find("listening on ")? + "listening on ".len();
    let rest = &line[at..];
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    let port = addr.rsplit_once(':')?.1;
    (!port.is_empty() && port != "0" && port.bytes().all(|b| b.is_ascii_digit())).then_some(addr)
}

// ---------------------------------------------------------------------------------------------
// Source and sink

/// Blobs in memory; records every `open` (digest, offset).
#[derive(Clone, Default)]
pub struct MemSource {
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
    pub opens: Arc<Mutex<Vec<(Digest, u64)>>>,
}

impl MemSource {
    pub fn add(&self, bytes: impl Into<Bytes>) -> Digest {
        let bytes = bytes.into();
        let d = Digest::sha256_of(&bytes);
        self.blobs.lock().unwrap().insert(d.clone(), bytes);
        d
    }

    pub fn get(&self, d: &Digest) -> Bytes {
        self.blobs.lock().unwrap()[d].clone()
    }
}

impl BlobSource for MemSource {
    async fn size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        Ok(self
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .map(|b| b.len() as u64))
    }

    async fn open(&self, digest: &Digest, offset: u64) -> io::Result<ByteStream> {
        self.opens.lock().unwrap().push((digest.clone(), offset));
        let bytes = self
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or(io::ErrorKind::NotFound)?;
        let mut rest = bytes.slice(offset as usize..);
        // Stream in 64 KiB pieces, as a file would.
        let mut pieces = Vec::new();
        while !rest.is_empty() {
            pieces.push(Ok(rest.split_to(rest.len().min(64 << 10))));
        }
        Ok(Box::pin(futures::stream::iter(pieces)))
    }
}

/// Blobs in a directory: `blobs/<algo>-<hex>` once verified, `partial/<algo>-<hex>` while
/// arriving (kept for a resume when a writer is dropped).
pub struct DirSink {
    pub dir: tempfile::TempDir,
}

impl DirSink {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        std::fs::create_dir(dir.path().join("partial")).unwrap();
        Self { dir }
    }

    fn name(d: &Digest) -> String {
        format!("{}-{}", d.algorithm(), d.hex())
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.path().join("blobs").join(Self::name(d))
    }

    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.dir.path().join("partial").join(Self::name(d))
    }

    pub fn read(&self, d: &Digest) -> Vec<u8> {
        std::fs::read(self.blob_path(d)).unwrap()
    }

    /// Every file name under `blobs/` and `partial/`.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["blobs", "partial"] {
            for e in std::fs::read_dir(self.dir.path().join(sub)).unwrap() {
                out.push(format!(
                    "{sub}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        out
    }
}

pub struct DirWriter {
    file: std::fs::File,
    digester: Digester,
    expected: Digest,
    size: u64,
    partial: PathBuf,
    target: PathBuf,
}

impl BlobSink for DirSink {
    type Writer = DirWriter;

    async fn has(&self, digest: &Digest) -> io::Result<bool> {
        Ok(self.blob_path(digest).is_file())
    }

    async fn writer(&self, digest: &Digest, size: u64) -> io::Result<DirWriter> {
        let partial = self.partial_path(digest);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&partial)?;
        // Resume: hash what an earlier transfer left.
        let mut digester = Digester::new(digest.algorithm());
        file.seek(SeekFrom::Start(0))?;
        io::copy(&mut file, &mut digester)?;
        Ok(DirWriter {
            file,
            digester,
            expected: digest.clone(),
            size,
            partial,
            target: self.blob_path(digest),
        })
    }
}

impl BlobWriter for DirWriter {
    fn offset(&self) -> u64 {
        self.digester.len()
    }

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if self.digester.len() + data.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than the blob's size",
            ));
        }
        io::Write::write_all(&mut self.file, &data)?;
        self.digester.update(&data);
        Ok(())
    }

    async fn commit(self) -> io::Result<()> {
        self.file.sync_all()?;
        let len = self.digester.len();
        let actual = self.digester.finish();
        if len != self.size || actual != self.expected {
            std::fs::remove_file(&self.partial)?;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("got {len} bytes with digest {actual}"),
            ));
        }
        std::fs::rename(&self.partial, &self.target)
    }

    async fn discard(self) -> io::Result<()> {
        std::fs::remove_file(&self.partial)
    }
}

// ---------------------------------------------------------------------------------------------
// Images

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn desc_json(media_type: &str, d: &Digest, size: usize) -> String {
    format!(r#"{{"mediaType":"{media_type}","digest":"{d}","size":{size}}}"#)
}

/// An image with these layers for `linux/<arch>`, its blobs and manifest in `src`.
pub fn image(src: &MemSource, layers: &[Vec<u8>], arch: &str) -> Descriptor {
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{}}}}"#
    );
    let config_d = src.add(config.clone().into_bytes());
    let layer_json: Vec<String> = layers
        .iter()
        .map(|l| {
            let d = src.add(l.clone());
            desc_json("application/vnd.oci.image.layer.v1.tar", &d, l.len())
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
        desc_json(
            "application/vnd.oci.image.config.v1+json",
            &config_d,
            config.len()
        ),
        layer_json.join(",")
    );
    let size = manifest.len() as u64;
    Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: src.add(manifest.into_bytes()),
        size,
    }
}

/// An index of `(manifest, arch)` entries.
pub fn index(src: &MemSource, entries: &[(Descriptor, &str)]) -> Descriptor {
    let manifests: Vec<String> = entries
        .iter()
        .map(|(d, arch)| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
                d.media_type, d.digest, d.size
            )
        })
        .collect();
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        manifests.join(",")
    );
    let size = json.len() as u64;
    Descriptor {
        media_type: OCI_INDEX.into(),
        digest: src.add(json.into_bytes()),
        size,
    }
}

/// A progress callback recording every event.
pub fn recorder() -> (ProgressFn, Arc<Mutex<Vec<Progress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    (
        Arc::new(move |p: &Progress| e.lock().unwrap().push(p.clone())),
        events,
    )
}

/// Fast retries for tests.
pub fn fast_retry() -> hoist_client::ClientOptions {
    hoist_client::ClientOptions {
        retry: hoist_client::RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        connect_timeout: Some(Duration::from_secs(5)),
    }
}
