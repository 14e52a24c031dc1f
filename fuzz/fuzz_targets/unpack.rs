//! Layer unpack on arbitrary tar input into `<tmp>/root`, beside a sentinel file `<tmp>/outside`.
//! Whatever the tar holds, afterwards `<tmp>` holds exactly `root` and the sentinel, and the
//! sentinel is untouched: same content, mode and link count (no hard link was made to it).
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;

use hoist_runtime::unpack::{UnpackOptions, Whiteouts, unpack_layer};
use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"outside the root\n";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, tar)) = data.split_first() else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("hoist-fuzz-unpack")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir");
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, SENTINEL).unwrap();
    let before = fs::symlink_metadata(&outside).unwrap();
    let opts = UnpackOptions {
        whiteouts: if flags & 1 == 0 {
            Whiteouts::Overlay
        } else {
            Whiteouts::Apply
        },
        max_size: 4 << 20,
        chown: flags & 2 != 0,
    };
    let _ = unpack_layer(tar, &root, &opts);

    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["outside", "root"],
        "something was created outside the root"
    );
    let after = fs::symlink_metadata(&outside).unwrap();
    assert!(after.file_type().is_file(), "the sentinel was replaced");
    assert_eq!(after.ino(), before.ino(), "the sentinel was replaced");
    assert_eq!(after.nlink(), 1, "a hard link to the sentinel was made");
    assert_eq!(after.mode(), before.mode(), "the sentinel's mode changed");
    assert_eq!(after.uid(), before.uid(), "the sentinel's owner changed");
    assert_eq!(
        fs::read(&outside).unwrap(),
        SENTINEL,
        "the sentinel was written"
    );
    let root_meta = fs::symlink_metadata(&root).unwrap();
    assert!(root_meta.is_dir(), "the root was replaced");
    // The root directory itself stays a directory we can clean up (its mode may be set by the
    // layer's "./" entry, as docker does).
});
