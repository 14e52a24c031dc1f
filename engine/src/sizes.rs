//! The unpacked size of layers, as docker counts it (the bytes of the files a layer holds, each
//! hard link once, a symlink as its target's length), for the SIZE of `images` and `history`
//! and inspect's `Size`. Measured once per layer blob by reading its tar, then recorded in
//! `$HOIST_HOME/layer-sizes.json` (compressed digest to bytes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use hoist_oci::{Digest, Reference, RepoName};
use hoist_storage::images::{ImageStore, Platform};

use crate::{EngineError, Result, ResultExt, home};

/// The recorded sizes, loaded once per process.
static CACHE: Mutex<Option<BTreeMap<String, u64>>> = Mutex::new(None);

fn cache_path() -> Result<PathBuf> {
    Ok(home::hoist_home()?.join("layer-sizes.json"))
}

fn recorded(digest: &Digest) -> Result<Option<u64>> {
    let mut cache = CACHE.lock().expect("layer size cache");
    if cache.is_none() {
        let path = cache_path()?;
        let map = match std::fs::read(&path) {
            // A damaged record is measured again, not an error.
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_ctx(|| format!("reading {}", path.display())),
        };
        *cache = Some(map);
    }
    Ok(cache.as_ref().and_then(|m| m.get(digest.as_str()).copied()))
}

/// Records a measured size: the file is rewritten whole (a temporary file renamed over it), so
/// a reader never sees half of it; two writers at once lose at most a measurement.
fn record(digest: &Digest, size: u64) -> Result<()> {
    let path = cache_path()?;
    let mut cache = CACHE.lock().expect("layer size cache");
    let map = cache.get_or_insert_with(BTreeMap::new);
    // Whatever another process recorded meanwhile is kept.
    if let Ok(b) = std::fs::read(&path)
        && let Ok(theirs) = serde_json::from_slice::<BTreeMap<String, u64>>(&b)
    {
        for (k, v) in theirs {
            map.entry(k).or_insert(v);
        }
    }
    map.insert(digest.to_string(), size);
    let bytes = serde_json::to_vec(map).ctx("encoding the layer sizes")?;
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_ctx(|| format!("creating a file in {}", dir.display()))?;
    std::fs::write(tmp.path(), bytes).with_ctx(|| format!("writing {}", path.display()))?;
    tmp.persist(&path)
        .with_ctx(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// docker's size of the files in an uncompressed layer tar.
pub fn tar_content_size(r: impl std::io::Read) -> std::io::Result<u64> {
    let mut archive = tar::Archive::new(r);
    let mut total = 0u64;
    for entry in archive.entries()? {
        let entry = entry?;
        let h = entry.header();
        total += match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                entry.size()
            }
            tar::EntryType::Symlink => entry.link_name_bytes().map_or(0, |l| l.len() as u64),
            _ => 0,
        };
    }
    Ok(total)
}

/// The unpacked size of the layer blob `digest` of `repo`.
pub async fn layer_size(store: &ImageStore, repo: &RepoName, digest: &Digest) -> Result<u64> {
    if let Some(n) = recorded(digest)? {
        return Ok(n);
    }
    let blob = store
        .store()
        .blob_open(repo, digest, 0)
        .await
        .with_ctx(|| format!("opening layer {digest}"))?;
    let reader = tokio_util::io::SyncIoBridge::new(blob.reader);
    let size = tokio::task::spawn_blocking(move || {
        let plain = hoist_runtime::unpack::decompress(reader)?;
        tar_content_size(plain).map_err(EngineError::from)
    })
    .await
    .ctx("measuring a layer")?
    .with_ctx(|| format!("reading layer {digest}"))?;
    record(digest, size)?;
    Ok(size)
}

/// The unpacked size of an image: its layers' sizes added.
pub async fn image_size(store: &ImageStore, r: &Reference, platform: &Platform) -> Result<u64> {
    let image = store
        .image(r, platform)
        .await
        .with_ctx(|| format!("reading {}", r.familiar()))?;
    let mut total = 0;
    for l in image.manifest.layers() {
        let d = Digest::parse(l.digest().as_ref())
            .with_ctx(|| format!("invalid layer digest {}", l.digest()))?;
        total += layer_size(store, &image.repo, &d).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_size_counts_files_and_link_targets() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        b.append_data(&mut h, "bin/busybox", &[0u8; 1000][..])
            .unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "bin/sh", "busybox").unwrap();
        let mut hl = tar::Header::new_gnu();
        hl.set_entry_type(tar::EntryType::Link);
        hl.set_size(0);
        b.append_link(&mut hl, "bin/hard", "bin/busybox").unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_size(0);
        b.append_data(&mut d, "etc/", &[][..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(bytes.len() > 2000, "the tar is larger than its content");
        assert_eq!(super::tar_content_size(&bytes[..]).unwrap(), 1000 + 7);
    }
}
