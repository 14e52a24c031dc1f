//! Named network namespaces: a namespace kept alive by a bind mount of it on a file (as
//! `ip netns add` keeps them under `/run/netns`), so it can be set up before the container's
//! first process joins it by path, and outlives no container by accident: `remove` unmounts it.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::NetError;

/// Where hoist keeps its namespaces.
pub const NETNS_DIR: &str = "/run/hoist/netns";

/// The namespace file of container `id`.
pub fn path_for(id: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(id)
}

/// Which home each namespace belongs to: a file per namespace naming its `HOIST_HOME`, so that
/// any home's reconcile removes the namespaces of homes that are gone (see
/// [`orphans`]), as the bridges have theirs in `store::BRIDGES_DIR`.
pub const OWNERS_DIR: &str = "/run/hoist/netns-owners";

/// Notes that the namespace of container (or pod) `id` belongs to `home`.
pub fn note_owner(id: &str, home: &Path) -> Result<(), NetError> {
    let dir = Path::new(OWNERS_DIR);
    std::fs::create_dir_all(dir).map_err(|source| NetError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    // Absolute: the reaper may run with another working directory.
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_owned());
    let owner = dir.join(id);
    std::fs::write(&owner, home.to_string_lossy().as_bytes()).map_err(|source| NetError::Io {
        what: format!("writing {}", owner.display()),
        source,
    })
}

/// The namespaces whose container (or pod) is gone from the home that made them: a home
/// deleted while its containers ran, as a test or CI runner that died leaves them.
pub fn orphans() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(OWNERS_DIR) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let home = PathBuf::from(std::fs::read_to_string(e.path()).ok()?.trim());
            let gone = ["containers", "pods"]
                .iter()
                .all(|kind| !home.join(kind).join(&id).is_dir());
            gone.then(|| path_for(&id))
        })
        .collect()
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> NetError {
    let what = what.into();
    move |e| NetError::Io {
        what,
        source: std::io::Error::from(e),
    }
}

/// Creates a new network namespace held by a bind mount on `path` (replacing a stale one).
pub fn create(path: &Path) -> Result<(), NetError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|source| NetError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    if path.exists() {
        remove(path)?;
    }
    File::create(path).map_err(|source| NetError::Io {
        what: format!("creating {}", path.display()),
        source,
    })?;
    let target = path.to_path_buf();
    // A thread of its own: unshare changes the calling thread's namespace only.
    let made = std::thread::spawn(move || -> Result<(), NetError> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(sys("unsharing a network namespace"))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!(
            "binding the namespace on {}",
            target.display()
        )))
    })
    .join()
    .map_err(|_| NetError::Invalid("the namespace thread panicked".into()))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unmounts and removes the namespace file and its owner note (gone already: nothing to do).
pub fn remove(path: &Path) -> Result<(), NetError> {
    if let Some(id) = path.file_name() {
        let _ = std::fs::remove_file(Path::new(OWNERS_DIR).join(id));
    }
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys(format!("unmounting {}", path.display()))(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::Io {
            what: format!("removing {}", path.display()),
            source,
        }),
    }
}

/// Runs `f` on a thread inside the namespace at `path` (sockets it opens stay in it).
pub fn run_in<R: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetError> {
    let ns = File::open(path).map_err(|source| NetError::Io {
        what: format!("opening the namespace {}", path.display()),
        source,
    })?;
    let what = format!("entering the namespace {}", path.display());
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys(what))?;
        Ok(f())
    })
    .join()
    .map_err(|_| NetError::Invalid("the namespace thread panicked".into()))?
}
