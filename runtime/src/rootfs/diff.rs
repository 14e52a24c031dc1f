//! What changed in an overlay upper dir relative to its lower dirs (`hoist diff`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{Result, RootfsError, is_overlay_opaque, is_overlay_whiteout};

/// The kind of a change, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// `A`: the path is new.
    Added,
    /// `C`: the path existed in a lower layer and was changed (or something under it was).
    Modified,
    /// `D`: the path existed in a lower layer and was deleted.
    Deleted,
}

impl ChangeKind {
    /// `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute inside the container (`/etc/passwd`).
    pub path: PathBuf,
}

/// The changes recorded in the overlay upper dir `upper` over `lowers` (bottom..top, overlay
/// form as the layer store keeps them), sorted by path. A whiteout is `D`; a path also present
/// in the lowers is `C`, else `A`; the lower contents an opaque directory hides are `D`.
pub fn diff(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, &mut out)?;
    out.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<()> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(|e| RootfsError::io(dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| RootfsError::io(dir, e))?;
    names.sort();
    for name in &names {
        let full = dir.join(name);
        let r = rel.join(name);
        let md = fs::symlink_metadata(&full).map_err(|e| RootfsError::io(&full, e))?;
        let abs = Path::new("/").join(&r);
        if is_overlay_whiteout(&md) {
            out.push(Change {
                kind: ChangeKind::Deleted,
                path: abs,
            });
            continue;
        }
        let kind = if in_lowers(lowers, &r) {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        out.push(Change { kind, path: abs });
        if md.is_dir() {
            if is_overlay_opaque(&full) {
                let present: BTreeSet<OsString> = fs::read_dir(&full)
                    .map_err(|e| RootfsError::io(&full, e))?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                for hidden in lower_children(lowers, &r) {
                    if !present.contains(&hidden) {
                        out.push(Change {
                            kind: ChangeKind::Deleted,
                            path: Path::new("/").join(&r).join(&hidden),
                        });
                    }
                }
            }
            walk(&full, &r, lowers, out)?;
        }
    }
    Ok(())
}

/// Whether `rel` exists in the union of `lowers` (bottom..top, overlay form). Never follows a
/// symlink: a non-directory ancestor hides what is below it.
pub(crate) fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    let comps: Vec<_> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        return true;
    }
    for lower in lowers.iter().rev() {
        let mut p = lower.clone();
        let mut hides_below = false;
        let mut found_in_this = None;
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            let Ok(md) = fs::symlink_metadata(&p) else {
                break;
            };
            if is_overlay_whiteout(&md) {
                found_in_this = Some(false);
                break;
            }
            if i + 1 == comps.len() {
                found_in_this = Some(true);
                break;
            }
            if !md.is_dir() {
                found_in_this = Some(false);
                break;
            }
            if is_overlay_opaque(&p) {
                hides_below = true;
            }
        }
        match found_in_this {
            Some(found) => return found,
            None if hides_below => return false,
            None => {}
        }
    }
    false
}

/// The names visible under the directory `rel` in the union of `lowers`.
fn lower_children(lowers: &[PathBuf], rel: &Path) -> BTreeSet<OsString> {
    let mut candidates = BTreeSet::new();
    for lower in lowers {
        if let Ok(rd) = fs::read_dir(lower.join(rel)) {
            candidates.extend(rd.filter_map(|e| e.ok().map(|e| e.file_name())));
        }
    }
    candidates
        .into_iter()
        .filter(|n| in_lowers(lowers, &rel.join(n)))
        .collect()
}
