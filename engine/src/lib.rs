//! hoist-engine: the local machine's use cases, between the cli and the libraries.
//!
//! - [`Host`] opens the stores under `$HOIST_HOME` (images, unpacked layers, containers,
//!   volumes, build cache) once each, when first used.
//! - [`transfer`]: pull into and push from the local store ([`transfer_store`] is the store as the
//!   client's sink and source).
//! - [`gc`]: the cross-store rules of what an unpacked layer is kept for.
//! - [`build`]: `hoist build`, from its flags to the stored image and the other outputs.
//! - [`images`]: `rmi`, `image prune`, `save`, `load`, `import`, `history`, image `inspect`.
//! - [`usage`]: `system df`'s measuring.
//! - [`networks`]: `hoist network ...` and a new container's `--network`.
//! - [`puller`]: the builder's [`hoist_builder::build::Puller`], in process.
//!
//! The cli parses, calls this crate and formats; it opens no store itself.

pub mod build;
pub mod commit;
pub mod containers;
pub mod copy;
pub mod error;
pub mod gc;
pub mod home;
pub mod images;
pub mod inspect;
pub mod manifests;
pub mod networks;
// temporary: to become `pub mod pods;` with `pods/mod.rs` holding `pub mod spec;`
#[path = "pods/spec.rs"]
pub mod pod_spec;
pub mod puller;
pub mod sizes;
pub mod stats;
pub mod top;
pub mod transfer;
pub mod transfer_store;
pub mod usage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hoist_builder::cache::BuildCache;
use hoist_runtime::container::ContainerStore;
use hoist_runtime::layers::LayerStore;
use hoist_runtime::volume::VolumeStore;
use hoist_storage::images::ImageStore;
use tokio::sync::OnceCell;

pub use error::{EngineError, OptionExt, ResultExt};

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The local machine: `$HOIST_HOME` and its stores, each opened once, on first use.
pub struct Host {
    home: PathBuf,
    images: OnceCell<ImageStore>,
    layers: OnceLock<LayerStore>,
    containers: OnceLock<ContainerStore>,
    cache: OnceLock<Arc<BuildCache>>,
}

impl Host {
    /// The host at `$HOIST_HOME` (or its default, [`home::hoist_home`]).
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(home::hoist_home()?))
    }

    pub fn new(home: PathBuf) -> Self {
        Host {
            home,
            images: OnceCell::new(),
            layers: OnceLock::new(),
            containers: OnceLock::new(),
            cache: OnceLock::new(),
        }
    }

    /// The host at `home` whose image store is already open.
    pub fn with_images(home: PathBuf, images: ImageStore) -> Self {
        let host = Self::new(home);
        host.images.set(images).ok();
        host
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The build cache's directory.
    pub fn builder_dir(&self) -> PathBuf {
        self.home.join("builder")
    }

    /// The image store.
    pub async fn images(&self) -> Result<&ImageStore> {
        if let Some(i) = self.images.get() {
            return Ok(i);
        }
        let opened = ImageStore::open(&self.home).await.ctx(format!(
            "opening the local store in {}",
            self.home.display()
        ))?;
        // Two first uses at once: one store is kept, the other dropped.
        let _ = self.images.set(opened);
        Ok(self.images.get().expect("the image store was just set"))
    }

    /// The unpacked layers.
    pub fn layers(&self) -> Result<&LayerStore> {
        if let Some(l) = self.layers.get() {
            return Ok(l);
        }
        let l = LayerStore::open(&self.home).ctx(format!(
            "opening the layer store in {}",
            self.home.display()
        ))?;
        Ok(self.layers.get_or_init(|| l))
    }

    /// The containers.
    pub fn containers(&self) -> Result<&ContainerStore> {
        if let Some(c) = self.containers.get() {
            return Ok(c);
        }
        let c = ContainerStore::open(&self.home)
            .ctx(format!("opening the containers in {}", self.home.display()))?;
        Ok(self.containers.get_or_init(|| c))
    }

    /// The named volumes.
    pub fn volumes(&self) -> VolumeStore {
        VolumeStore::open(&self.home)
    }

    /// The build cache.
    pub fn build_cache(&self) -> Result<Arc<BuildCache>> {
        if let Some(c) = self.cache.get() {
            return Ok(c.clone());
        }
        let dir = self.builder_dir();
        let c =
            BuildCache::open(&dir).ctx(format!("opening the build cache in {}", dir.display()))?;
        Ok(self.cache.get_or_init(|| Arc::new(c)).clone())
    }
}
