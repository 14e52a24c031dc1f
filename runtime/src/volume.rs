//! Volumes under `$HOIST_HOME/volumes/<name>/`: `_data` (what containers mount) and
//! `volume.json` (name, creation time, labels, whether it is anonymous).
//!
//! Named volumes outlive containers; anonymous ones (a 64-hex name, made for an image's VOLUME
//! paths or `-v /path`) go with `rm -v`/`--rm`. Whether a volume is in use is a question for the
//! containers ([`crate::container::ContainerStore::volumes_in_use`]): this store refuses to remove
//! one the caller says is used.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error(
        "invalid volume name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least 2 characters"
    )]
    InvalidName(String),
    #[error("volume is in use: {name} is used by container(s) {containers}")]
    InUse { name: String, containers: String },
    #[error("invalid volume specification {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn ioe(what: impl Into<String>) -> impl FnOnce(io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

/// A volume's record (`volume inspect` shows it in docker's shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    /// Made for a VOLUME path or `-v /path`: removed with the container by `rm -v` and `--rm`.
    #[serde(default)]
    pub anonymous: bool,
}

/// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// One `-v` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeArg {
    /// `NAME:/dest[:ro]`
    Named {
        name: String,
        destination: String,
        read_only: bool,
    },
    /// `/host/path:/dest[:ro]`
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
    },
    /// `/dest`: a new anonymous volume.
    Anonymous { destination: String },
}

impl VolumeArg {
    pub fn destination(&self) -> &str {
        match self {
            VolumeArg::Named { destination, .. }
            | VolumeArg::Bind { destination, .. }
            | VolumeArg::Anonymous { destination } => destination,
        }
    }
}

/// What a `-v` argument's OPTS say besides `ro`/`rw`: a bind's propagation (`rshared`, ...;
/// refused on a volume) and a volume's `nocopy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeArgOptions {
    pub propagation: Option<String>,
    pub no_copy: bool,
}

/// The options of `-v SPEC` (see [`parse_volume_arg`], which validates the rest).
pub fn volume_arg_options(spec: &str) -> Result<VolumeArgOptions, VolumeError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, opts) = match parts.as_slice() {
        [s, _, o] => (Some(*s), *o),
        [s, _] => (Some(*s), ""),
        _ => (None, ""),
    };
    let bind = src.is_some_and(|s| s.starts_with('/') || s.starts_with('.'));
    let mut out = VolumeArgOptions::default();
    for o in opts.split(',') {
        match o {
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                if !bind {
                    return Err(VolumeError::InvalidSpec {
                        spec: spec.to_owned(),
                        reason: format!("propagation {o:?} is for bind mounts only"),
                    });
                }
                out.propagation = Some(o.to_owned());
            }
            "nocopy" => {
                if bind {
                    return Err(VolumeError::InvalidSpec {
                        spec: spec.to_owned(),
                        reason: "nocopy is for volumes only".to_owned(),
                    });
                }
                out.no_copy = true;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Parses `-v SRC:DEST[:OPTS]` or `-v DEST`. SRC is a volume name or an absolute host path;
/// OPTS is a comma list of `ro`/`rw`, a bind's propagation and a volume's `nocopy`
/// ([`volume_arg_options`]), and options docker ignores on a Linux host without SELinux (`z`,
/// `Z`, `consistent`, `cached`, `delegated`). Destinations must be absolute and not `/`.
pub fn parse_volume_arg(spec: &str) -> Result<VolumeArg, VolumeError> {
    let bad = |reason: &str| VolumeError::InvalidSpec {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dest, opts) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] => (Some(*s), *d, ""),
        [s, d, o] => (Some(*s), *d, *o),
        _ => return Err(bad("too many colons")),
    };
    if !dest.starts_with('/') {
        return Err(bad("the destination must be an absolute path"));
    }
    if dest == "/" {
        return Err(bad("the destination can't be '/'"));
    }
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "nocopy" | "consistent" | "cached" | "delegated" => {}
            _ => return Err(bad(&format!("unknown option {o:?}"))),
        }
    }
    let destination = dest.trim_end_matches('/').to_owned();
    Ok(match src {
        None => VolumeArg::Anonymous { destination },
        Some(s) if s.starts_with('/') => VolumeArg::Bind {
            source: PathBuf::from(s),
            destination,
            read_only,
        },
        Some(s) if valid_name(s) => VolumeArg::Named {
            name: s.to_owned(),
            destination,
            read_only,
        },
        // docker 25+: a source starting with `.` is a host path relative to the working
        // directory (`./src`, `../data`, `.`).
        Some(s) if s == "." || s == ".." || s.starts_with("./") || s.starts_with("../") => {
            let cwd = std::env::current_dir()
                .map_err(|e| bad(&format!("resolving the relative path: {e}")))?;
            VolumeArg::Bind {
                source: clean(&cwd.join(s)),
                destination,
                read_only,
            }
        }
        Some(s) if s.contains('/') || s.starts_with('.') => {
            return Err(bad(
                "bind mount sources must be absolute paths or start with . (./dir)",
            ));
        }
        Some(s) => return Err(VolumeError::InvalidName(s.to_owned())),
    })
}

/// `path` without `.` and `..` components (lexically, as Go's `filepath.Clean`).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The volumes of one hoist home.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
}

const META: &str = "volume.json";

impl VolumeStore {
    /// The store at `home/volumes` (created on first use).
    pub fn open(home: &Path) -> Self {
        VolumeStore {
            root: home.join("volumes"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the volume `name` (a random anonymous one when `None`). Creating an existing
    /// named volume returns it unchanged, as docker does.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        let (name, anonymous) = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(VolumeError::InvalidName(n.to_owned()));
                }
                (n.to_owned(), false)
            }
            None => (crate::container::new_id(), true),
        };
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        std::fs::create_dir_all(&self.root)
            .map_err(ioe(format!("creating {}", self.root.display())))?;
        // Built in a temporary directory and renamed into place: a volume exists whole or not.
        let tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&self.root)
            .map_err(ioe(format!(
                "creating a directory in {}",
                self.root.display()
            )))?;
        let data = tmp.path().join("_data");
        std::fs::create_dir(&data).map_err(ioe(format!("creating {}", data.display())))?;
        let dir = self.dir(&name);
        let v = Volume {
            name: name.clone(),
            driver: "local".to_owned(),
            mountpoint: dir.join("_data"),
            created_at: crate::container::rfc3339(std::time::SystemTime::now()),
            labels,
            scope: "local".to_owned(),
            anonymous,
        };
        let meta = serde_json::to_vec_pretty(&v).expect("a volume serialises");
        std::fs::write(tmp.path().join(META), meta)
            .map_err(ioe(format!("writing {}", tmp.path().join(META).display())))?;
        let tmp = tmp.keep();
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(v),
            Err(_) if dir.join(META).exists() => {
                // Another process made it first.
                let _ = std::fs::remove_dir_all(&tmp);
                self.get(&name)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(ioe(format!("creating {}", dir.display()))(e))
            }
        }
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let path = self.dir(name).join(META);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(ioe(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| VolumeError::Io {
            what: format!("parsing {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ioe(format!("listing {}", self.root.display()))(e)),
        };
        for e in entries {
            let e = e.map_err(ioe(format!("listing {}", self.root.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(v) = self.get(&name) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes `name`, refusing when `users` (the containers using it) is not empty.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<(), VolumeError> {
        self.get(name)?;
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                containers: users
                    .iter()
                    .map(|c| c.chars().take(12).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let dir = self.dir(name);
        // Renamed away first, so a half-removed volume is never seen by name.
        let gone = self
            .root
            .join(format!(".rm-{}", crate::container::new_id()));
        std::fs::rename(&dir, &gone).map_err(ioe(format!("removing {}", dir.display())))?;
        std::fs::remove_dir_all(&gone).map_err(ioe(format!("removing {}", gone.display())))
    }

    /// `volume prune`: removes unused anonymous volumes (every unused volume with `all`).
    /// Returns the removed names.
    pub fn prune(&self, in_use: &HashSet<String>, all: bool) -> Result<Vec<String>, VolumeError> {
        let mut out = Vec::new();
        for v in self.list()? {
            if in_use.contains(&v.name) || !(all || v.anonymous) {
                continue;
            }
            self.remove(&v.name, &[])?;
            out.push(v.name);
        }
        Ok(out)
    }

    /// Docker copies what the image has at a volume's mount point into a new, empty volume.
    /// Copies `src` (a directory of the container's rootfs) into the volume if the volume is
    /// empty; symlinks are copied as links, never followed.
    pub fn populate(&self, v: &Volume, src: &Path) -> Result<(), VolumeError> {
        let empty = std::fs::read_dir(&v.mountpoint)
            .map_err(ioe(format!("reading {}", v.mountpoint.display())))?
            .next()
            .is_none();
        // Followed: `src` is the caller's descriptor of the directory, resolved inside the
        // container's root (`/proc/self/fd/N`, a link to it).
        let meta = match std::fs::metadata(src) {
            Ok(m) if m.is_dir() => m,
            _ => return Ok(()),
        };
        if !empty {
            return Ok(());
        }
        copy_tree(src, &v.mountpoint)?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let _ = std::os::unix::fs::lchown(&v.mountpoint, Some(meta.uid()), Some(meta.gid()));
        std::fs::set_permissions(
            &v.mountpoint,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(ioe(format!(
            "setting the mode of {}",
            v.mountpoint.display()
        )))
    }
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), VolumeError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for e in std::fs::read_dir(src).map_err(ioe(format!("reading {}", src.display())))? {
        let e = e.map_err(ioe(format!("reading {}", src.display())))?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let m =
            std::fs::symlink_metadata(&from).map_err(ioe(format!("stat {}", from.display())))?;
        let ft = m.file_type();
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(ioe(format!("reading {}", from.display())))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(ioe(format!("creating {}", to.display())))?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to).map_err(ioe(format!("creating {}", to.display())))?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(ioe(format!("copying {}", from.display())))?;
        } else {
            // Devices, fifos and sockets are not copied into volumes.
            continue;
        }
        let _ = std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()));
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(ioe(format!("setting the mode of {}", to.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_options_carry_propagation_and_nocopy() {
        assert_eq!(
            volume_arg_options("/src:/app:ro,rshared").unwrap(),
            VolumeArgOptions {
                propagation: Some("rshared".into()),
                no_copy: false
            }
        );
        assert!(volume_arg_options("data:/d:nocopy").unwrap().no_copy);
        assert!(volume_arg_options("data:/d:rshared").is_err());
        assert!(volume_arg_options("/src:/d:nocopy").is_err());
        assert_eq!(
            volume_arg_options("/d").unwrap(),
            VolumeArgOptions::default()
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("my-data"));
        assert!(valid_name("a1.b_c"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-ab"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("../x"));
    }

    #[test]
    fn volume_args() {
        assert_eq!(
            parse_volume_arg("my-data:/data").unwrap(),
            VolumeArg::Named {
                name: "my-data".into(),
                destination: "/data".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse_volume_arg("my-data:/data:ro").unwrap(),
            VolumeArg::Named {
                name: "my-data".into(),
                destination: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse_volume_arg("/src:/app/src:rw,z").unwrap(),
            VolumeArg::Bind {
                source: "/src".into(),
                destination: "/app/src".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse_volume_arg("/cache/").unwrap(),
            VolumeArg::Anonymous {
                destination: "/cache".into()
            }
        );
        let cwd = std::env::current_dir().unwrap();
        for (rel, want) in [
            ("./src:/x", cwd.join("src")),
            ("../up:/x:ro", cwd.parent().unwrap_or(&cwd).join("up")),
            (".:/x", cwd.clone()),
            ("./a/../b/./c:/x", cwd.join("b/c")),
        ] {
            match parse_volume_arg(rel).unwrap() {
                VolumeArg::Bind { source, .. } => assert_eq!(source, want, "{rel}"),
                other => panic!("{rel}: {other:?}"),
            }
        }
        for bad in [
            "a/b:/x",
            ".hidden:/x",
            "a:rel",
            "a:/",
            "v1:/x:bogus",
            "a:/b:ro:x",
            "rel",
        ] {
            assert!(parse_volume_arg(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn lifecycle() {
        let home = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(home.path());
        assert!(store.list().unwrap().is_empty());
        let v = store.create(Some("data"), BTreeMap::new()).unwrap();
        assert!(v.mountpoint.is_dir());
        assert!(!v.anonymous);
        std::fs::write(v.mountpoint.join("x"), b"hi").unwrap();
        // Creating again keeps the content.
        let again = store.create(Some("data"), BTreeMap::new()).unwrap();
        assert_eq!(again, v);
        assert!(v.mountpoint.join("x").exists());
        let anon = store.create(None, BTreeMap::new()).unwrap();
        assert!(anon.anonymous);
        assert_eq!(anon.name.len(), 64);
        assert_eq!(store.list().unwrap().len(), 2);
        let err = store.remove("data", &["c1".to_owned()]).unwrap_err();
        assert!(matches!(err, VolumeError::InUse { .. }), "{err}");
        assert!(v.mountpoint.join("x").exists());
        // Prune: anonymous ones only, unless all; used ones never.
        let used = HashSet::from([anon.name.clone()]);
        assert!(store.prune(&used, false).unwrap().is_empty());
        assert_eq!(
            store.prune(&HashSet::new(), false).unwrap(),
            std::slice::from_ref(&anon.name)
        );
        assert_eq!(store.prune(&HashSet::new(), true).unwrap(), ["data"]);
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(matches!(
            store.remove("data", &[]),
            Err(VolumeError::NotFound(_))
        ));
        assert!(store.create(Some("x"), BTreeMap::new()).is_err());
    }

    #[test]
    fn populate_copies_into_empty_volumes_only() {
        let home = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(home.path());
        let src = home.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"image").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let v = store.create(Some("v1"), BTreeMap::new()).unwrap();
        store.populate(&v, &src).unwrap();
        assert_eq!(std::fs::read(v.mountpoint.join("sub/f")).unwrap(), b"image");
        assert_eq!(
            std::fs::read_link(v.mountpoint.join("link")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        std::fs::write(src.join("new"), b"x").unwrap();
        store.populate(&v, &src).unwrap();
        assert!(!v.mountpoint.join("new").exists());
    }
}
