//! `system df`: what the images, containers, volumes and build cache hold on disk, measured as
//! docker measures it. The cli lays the numbers out.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use hoist_builder::cache::RecordInfo;
use hoist_oci::Digest;
use hoist_runtime::container::Container;
use hoist_storage::images::{ImageSummary, Platform};

use crate::images::{parse_reference, row_reference};
use crate::{Host, Result, ResultExt, sizes};

/// The bytes of the files under `p` (`p`'s own size when it is no directory; 0 when it is gone).
pub fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.size();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The images: unpacked sizes, each layer counted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesUsage {
    /// Distinct image ids.
    pub images: usize,
    /// Images containers use.
    pub active: usize,
    pub size: u64,
    /// What only images no container uses hold.
    pub reclaimable: u64,
    /// One per row of the store's list.
    pub rows: Vec<ImageUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub image: ImageSummary,
    pub size: u64,
    /// The bytes of the layers more than one image holds.
    pub shared: u64,
    /// How many containers (any state) use the image.
    pub containers: usize,
}

impl ImageUsage {
    /// The bytes of the layers only this image holds.
    pub fn unique(&self) -> u64 {
        self.size - self.shared
    }
}

/// The containers and their writable layers.
#[derive(Debug)]
pub struct ContainersUsage {
    pub containers: Vec<ContainerUsage>,
    pub running: usize,
    pub size: u64,
    /// What the stopped ones hold.
    pub reclaimable: u64,
}

#[derive(Debug)]
pub struct ContainerUsage {
    pub container: Container,
    /// The bytes of its writable layer.
    pub size: u64,
    /// Its volume mounts.
    pub volumes: usize,
}

/// The named volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesUsage {
    pub volumes: Vec<VolumeUsage>,
    /// Volumes some container uses.
    pub active: usize,
    pub size: u64,
    /// What the unused ones hold.
    pub reclaimable: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUsage {
    pub name: String,
    /// How many containers use it.
    pub links: usize,
    pub size: u64,
}

/// The build cache: its records and the bytes of its blobs (none in use outside a build, so
/// all reclaimable), as `hoist builder du` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildCacheUsage {
    pub records: u64,
    pub bytes: u64,
}

/// The images' usage from what was measured: `layers_of` each image id's layers, `sizes` each
/// layer's unpacked size, `users` how many containers use each image id.
fn images_usage(
    list: Vec<ImageSummary>,
    layers_of: &HashMap<Digest, Vec<Digest>>,
    sizes: &HashMap<Digest, u64>,
    in_use: &HashSet<Digest>,
    users: &HashMap<String, usize>,
    (images, active): (usize, usize),
) -> ImagesUsage {
    let used: BTreeSet<&Digest> = layers_of
        .iter()
        .filter(|(id, _)| in_use.contains(*id))
        .flat_map(|(_, ls)| ls)
        .collect();
    let size = sizes.values().sum();
    let reclaimable = sizes
        .iter()
        .filter(|(d, _)| !used.contains(d))
        .map(|(_, s)| s)
        .sum();
    // A layer more than one image holds is shared.
    let mut holders: HashMap<&Digest, usize> = HashMap::new();
    for ls in layers_of.values() {
        for d in ls.iter().collect::<BTreeSet<_>>() {
            *holders.entry(d).or_default() += 1;
        }
    }
    let size_of = |d: &Digest| sizes.get(d).copied().unwrap_or(0);
    let rows = list
        .into_iter()
        .map(|image| {
            let ls = layers_of.get(&image.id).map_or(&[][..], Vec::as_slice);
            let size = ls.iter().map(size_of).sum();
            let shared = ls
                .iter()
                .filter(|d| holders.get(d).is_some_and(|n| *n > 1))
                .map(size_of)
                .sum();
            let containers = users.get(&image.id.to_string()).copied().unwrap_or(0);
            ImageUsage {
                image,
                size,
                shared,
                containers,
            }
        })
        .collect();
    ImagesUsage {
        images,
        active,
        size,
        reclaimable,
        rows,
    }
}

impl Host {
    /// The images' usage.
    pub async fn images_usage(&self) -> Result<ImagesUsage> {
        let store = self.images().await?;
        let in_use = self.images_in_use()?;
        let u = store.disk_usage(&in_use).await.ctx("measuring images")?;
        let list = store.list().await.ctx("listing images")?;
        let mut sizes = HashMap::new();
        let mut layers_of: HashMap<Digest, Vec<Digest>> = HashMap::new();
        let mut seen = BTreeSet::new();
        for r in &list {
            if !seen.insert(r.id.clone()) {
                continue;
            }
            let image = store
                .image(&parse_reference(&row_reference(r))?, &Platform::host())
                .await
                .with_ctx(|| format!("reading {}", r.repository))?;
            for l in image.manifest.layers() {
                let Ok(d) = Digest::parse(l.digest().as_ref()) else {
                    continue;
                };
                if !sizes.contains_key(&d) {
                    let size = sizes::layer_size(store, &image.repo, &d).await?;
                    sizes.insert(d.clone(), size);
                }
                layers_of.entry(r.id.clone()).or_default().push(d);
            }
        }
        let mut users: HashMap<String, usize> = HashMap::new();
        for c in self.containers()?.list()? {
            *users.entry(c.config.image_id).or_default() += 1;
        }
        Ok(images_usage(
            list,
            &layers_of,
            &sizes,
            &in_use,
            &users,
            (u.images, u.active),
        ))
    }

    /// The containers' writable layers.
    pub fn containers_usage(&self) -> Result<ContainersUsage> {
        let containers: Vec<ContainerUsage> = self
            .containers()?
            .list()?
            .into_iter()
            .map(|c| ContainerUsage {
                size: dir_size(&c.upper()),
                volumes: c
                    .config
                    .mounts
                    .iter()
                    .filter(|m| m.kind == "volume")
                    .count(),
                container: c,
            })
            .collect();
        let running = containers
            .iter()
            .filter(|c| c.container.state.running())
            .count();
        let size = containers.iter().map(|c| c.size).sum();
        let reclaimable = containers
            .iter()
            .filter(|c| !c.container.state.running())
            .map(|c| c.size)
            .sum();
        Ok(ContainersUsage {
            containers,
            running,
            size,
            reclaimable,
        })
    }

    /// The named volumes' usage.
    pub fn volumes_usage(&self) -> Result<VolumesUsage> {
        let used = self.containers()?.volumes_in_use()?;
        let volumes: Vec<VolumeUsage> = self
            .volumes()
            .list()?
            .into_iter()
            .map(|v| VolumeUsage {
                links: used.get(&v.name).map_or(0, Vec::len),
                size: dir_size(&v.mountpoint),
                name: v.name,
            })
            .collect();
        let active = volumes.iter().filter(|v| v.links > 0).count();
        let size = volumes.iter().map(|v| v.size).sum();
        let reclaimable = volumes
            .iter()
            .filter(|v| v.links == 0)
            .map(|v| v.size)
            .sum();
        Ok(VolumesUsage {
            volumes,
            active,
            size,
            reclaimable,
        })
    }

    /// The build cache's usage (none when there is no cache yet).
    pub fn build_cache_usage(&self) -> Result<BuildCacheUsage> {
        if !self.builder_dir().exists() {
            return Ok(BuildCacheUsage::default());
        }
        let u = self
            .build_cache()?
            .usage()
            .ctx("measuring the build cache")?;
        Ok(BuildCacheUsage {
            records: u.records,
            bytes: u.bytes,
        })
    }

    /// The build cache's records (none when there is no cache yet).
    pub fn build_cache_records(&self) -> Result<Vec<RecordInfo>> {
        if !self.builder_dir().exists() {
            return Ok(Vec::new());
        }
        self.build_cache()?.records().ctx("listing the build cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn row(id: char) -> ImageSummary {
        ImageSummary {
            repository: format!("repo{id}"),
            tag: Some("latest".to_owned()),
            id: digest(id),
            digest: digest(id),
            created: None,
            created_unix: None,
            size: 0,
        }
    }

    #[test]
    fn layers_count_once_and_shared_ones_are_split_out() {
        // Images a and b share layer 1; a also holds 2, b holds 3. Only b is in use.
        let (a, b) = (digest('a'), digest('b'));
        let (l1, l2, l3) = (digest('1'), digest('2'), digest('3'));
        let layers_of = HashMap::from([
            (a, vec![l1.clone(), l2.clone()]),
            (b.clone(), vec![l1.clone(), l3.clone()]),
        ]);
        let sizes = HashMap::from([(l1, 100), (l2, 20), (l3, 3)]);
        let in_use = HashSet::from([b.clone()]);
        let users = HashMap::from([(b.to_string(), 2)]);
        let u = images_usage(
            vec![row('a'), row('b'), row('b')],
            &layers_of,
            &sizes,
            &in_use,
            &users,
            (2, 1),
        );
        assert_eq!((u.images, u.active, u.size, u.reclaimable), (2, 1, 123, 20));
        let rows: Vec<_> = u
            .rows
            .iter()
            .map(|r| (r.size, r.shared, r.unique(), r.containers))
            .collect();
        assert_eq!(
            rows,
            [(120, 100, 20, 0), (103, 100, 3, 2), (103, 100, 3, 2)]
        );
    }

    #[test]
    fn a_layer_repeated_in_one_image_is_not_shared() {
        let a = digest('a');
        let l1 = digest('1');
        let layers_of = HashMap::from([(a, vec![l1.clone(), l1.clone()])]);
        let sizes = HashMap::from([(l1, 5)]);
        let u = images_usage(
            vec![row('a')],
            &layers_of,
            &sizes,
            &HashSet::new(),
            &HashMap::new(),
            (1, 0),
        );
        assert_eq!((u.size, u.reclaimable), (5, 5));
        assert_eq!((u.rows[0].size, u.rows[0].shared), (10, 0));
    }

    #[test]
    fn dir_size_adds_files_below() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_size(dir.path()), 15);
        assert_eq!(dir_size(&dir.path().join("a")), 10);
        assert_eq!(dir_size(&dir.path().join("gone")), 0);
    }
}
