//! `hoist rename`: a container's new name, with docker's rules.
//!
//! The new name is reserved the way `run --name` reserves one (an exclusive symlink in
//! `.names`), so of a rename and a `run --name` racing for a name exactly one wins. The
//! container's directory is flocked for the change, so two renames of one container do not
//! leave it owning two names.

use std::io;
use std::path::Path;

use super::{CONFIG, ContainerConfig, ContainerError, ContainerStore, ioe, write_atomic};

/// Why a rename failed.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    /// docker's "Neither old nor new names may be empty".
    #[error("neither old nor new names may be empty")]
    Empty,
    #[error("renaming a container with the same name as its current name")]
    SameName,
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl ContainerStore {
    /// Renames `name_or_id` (running or not) to `new_name` (a leading `/` allowed, as docker's).
    /// Returns the container's id.
    pub fn rename(&self, name_or_id: &str, new_name: &str) -> Result<String, RenameError> {
        let new = new_name.strip_prefix('/').unwrap_or(new_name);
        if name_or_id.is_empty() || new.is_empty() {
            return Err(RenameError::Empty);
        }
        let id = self.resolve(name_or_id)?;
        let dir = self.root.join(&id);
        let _lock = lock_dir(&dir)?;
        // Read again under the lock: another rename may have just changed it.
        let mut config: ContainerConfig = match self.read_json(&dir.join(CONFIG)) {
            Err(ContainerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(name_or_id.to_owned()).into());
            }
            other => other?,
        };
        if config.name == new {
            return Err(RenameError::SameName);
        }
        let reserved = self.reserve_name(Some(new), &id)?;
        let old = std::mem::replace(&mut config.name, reserved.clone());
        let bytes = serde_json::to_vec_pretty(&config).expect("a container config serialises");
        if let Err(e) = write_atomic(&dir.join(CONFIG), &bytes) {
            let _ = std::fs::remove_file(self.names_dir().join(&reserved));
            return Err(e.into());
        }
        let link = self.names_dir().join(&old);
        if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(&id)) {
            std::fs::remove_file(&link).map_err(ioe(format!("releasing the name {old}")))?;
        }
        Ok(id)
    }
}

/// An exclusive flock of a container's directory, held until dropped.
fn lock_dir(dir: &Path) -> Result<std::fs::File, ContainerError> {
    let f = std::fs::File::open(dir).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            ContainerError::NotFound(dir.display().to_string())
        } else {
            ioe(format!("opening {}", dir.display()))(e)
        }
    })?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| ioe(format!("locking {}", dir.display()))(e.into()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::tests::config;

    fn store() -> (tempfile::TempDir, ContainerStore) {
        let d = tempfile::tempdir().unwrap();
        let s = ContainerStore::open(d.path()).unwrap();
        (d, s)
    }

    fn make(s: &ContainerStore, name: &str) -> String {
        let id = crate::container::new_id();
        s.reserve_name(Some(name), &id).unwrap();
        s.create(&config(&id, name)).unwrap();
        id
    }

    #[test]
    fn renames_by_name_and_id_and_frees_the_old_name() {
        let (_d, s) = store();
        let id = make(&s, "one");
        assert_eq!(s.rename("one", "two").unwrap(), id);
        assert_eq!(s.get("two").unwrap().name(), "two");
        assert!(matches!(s.get("one"), Err(ContainerError::NotFound(_))));
        // The old name is free for another container.
        let other = make(&s, "one");
        assert_ne!(other, id);
        // By id prefix, with docker's leading slash.
        s.rename(&id[..12], "/three").unwrap();
        assert_eq!(s.load(&id).unwrap().name(), "three");
        assert!(std::fs::symlink_metadata(s.names_dir().join("two")).is_err());
    }

    #[test]
    fn refuses_as_docker_does() {
        let (_d, s) = store();
        let a = make(&s, "a");
        let b = make(&s, "b");
        assert!(matches!(s.rename("a", "a"), Err(RenameError::SameName)));
        assert!(matches!(s.rename("a", "/a"), Err(RenameError::SameName)));
        match s.rename("a", "b") {
            Err(RenameError::Container(ContainerError::NameInUse { name, id })) => {
                assert_eq!((name.as_str(), id.as_str()), ("b", b.as_str()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.rename("a", "no spaces"),
            Err(RenameError::Container(ContainerError::InvalidName(_)))
        ));
        assert!(matches!(s.rename("a", ""), Err(RenameError::Empty)));
        assert!(matches!(
            s.rename("nope", "c"),
            Err(RenameError::Container(ContainerError::NotFound(_)))
        ));
        // Nothing changed.
        assert_eq!(s.load(&a).unwrap().name(), "a");
        assert_eq!(s.resolve("a").unwrap(), a);
    }

    /// A name `run --name` has reserved but whose container it has not created yet is taken:
    /// neither a rename nor another `run` may reclaim it as a stale link.
    #[test]
    fn a_reservation_in_progress_stays_taken() {
        let (_d, s) = store();
        let a = make(&s, "a");
        let pending = crate::container::new_id();
        s.reserve_name(Some("soon"), &pending).unwrap();
        assert!(matches!(
            s.rename(&a, "soon"),
            Err(RenameError::Container(ContainerError::NameInUse { .. }))
        ));
        assert!(
            s.reserve_name(Some("soon"), &crate::container::new_id())
                .is_err()
        );
        s.create(&config(&pending, "soon")).unwrap();
        assert_eq!(s.resolve("soon").unwrap(), pending);
    }

    /// Removing a container through a copy loaded before its rename frees the new name (what a
    /// `--rm` supervisor holds).
    #[test]
    fn removal_after_a_rename_frees_the_new_name() {
        let (_d, s) = store();
        let id = make(&s, "before");
        let stale = s.load(&id).unwrap();
        s.rename("before", "after").unwrap();
        s.remove(&stale).unwrap();
        assert!(
            std::fs::symlink_metadata(s.names_dir().join("after")).is_err(),
            "the new name's link outlived its container"
        );
        make(&s, "after");
    }

    /// Renames racing each other and `run --name`'s reservation for one name: exactly one
    /// wins, and every container ends with exactly one name that resolves to it.
    #[test]
    fn one_winner_per_name() {
        let (_d, s) = store();
        let ids: Vec<String> = (0..6).map(|i| make(&s, &format!("c{i}"))).collect();
        let newcomer = crate::container::new_id();
        let results: Vec<bool> = std::thread::scope(|sc| {
            let mut hs: Vec<_> = ids
                .iter()
                .map(|id| {
                    let s = &s;
                    sc.spawn(move || s.rename(id, "prize").is_ok())
                })
                .collect();
            let s = &s;
            let n = &newcomer;
            hs.push(sc.spawn(move || s.reserve_name(Some("prize"), n).is_ok()));
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|w| **w).count(), 1, "{results:?}");
        let links = std::fs::read_dir(s.names_dir()).unwrap().count();
        let reserved_by_newcomer = *results.last().unwrap();
        assert_eq!(links, ids.len() + usize::from(reserved_by_newcomer));
        for id in &ids {
            let c = s.load(id).unwrap();
            assert_eq!(&s.resolve(c.name()).unwrap(), id);
        }
    }
}
