//! Base images that take minutes to make (BASE-IMAGES.md), made once per machine and kept under
//! the tests' target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::text;

/// Debian minbase (bookworm) with gcc and libc6-dev as a rootfs tar, made by debootstrap the
/// first time (a few minutes) in `tmpdir/hoist-build-bases/`, under a lock so test binaries
/// running at once make it once. `hoist import` it under the name a test wants.
pub fn debian_gcc_tar(tmpdir: &Path) -> PathBuf {
    let dir = tmpdir.join("hoist-build-bases");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join("debian-gcc.tar");
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    lock.lock().unwrap();
    if !tar.exists() {
        let root = dir.join("debian-gcc.root");
        let _ = std::fs::remove_dir_all(&root);
        let out = Command::new("debootstrap")
            .args(["--variant=minbase", "--include=gcc,libc6-dev", "bookworm"])
            .arg(&root)
            .arg("http://deb.debian.org/debian")
            .output()
            .expect("debootstrap is not installed: apt-get install debootstrap");
        assert!(out.status.success(), "debootstrap: {}", text(&out));
        for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            for e in std::fs::read_dir(root.join(d)).unwrap().flatten() {
                if e.path().is_file() {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        let tmp = dir.join("debian-gcc.tar.tmp");
        assert!(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .args(["-cf"])
                .arg(&tmp)
                .arg(".")
                .status()
                .unwrap()
                .success()
        );
        std::fs::rename(&tmp, &tar).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
    drop(lock);
    tar
}
