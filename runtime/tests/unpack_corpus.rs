//! A corpus of hand-made malicious layers. Each is built with the tar crate's low-level header
//! API (so the bad names survive) and unpacked; each test asserts that nothing outside the
//! destination changed and that a refusal names the entry.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hoist_runtime::unpack::{UnpackError, UnpackOptions, Whiteouts, decompress, unpack_layer};

/// Appends one raw entry: the name and link name bytes go into the header as given.
fn raw(tar: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    raw_sized(tar, name, kind, link, data, data.len() as u64);
}

fn raw_sized(
    tar: &mut Vec<u8>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
    size: u64,
) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h.set_size(size);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

fn device(tar: &mut Vec<u8>, name: &[u8], major: u32, minor: u32) {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_size(0);
    h.set_mtime(1_000_000);
    h.set_device_major(major).unwrap();
    h.set_device_minor(minor).unwrap();
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
}

fn end(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// A test area: `base/outside/sentinel` (what must never change) next to the destination
/// `base/root`.
struct Area {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

fn area() -> Area {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    fs::create_dir_all(base.join("outside/etc")).unwrap();
    fs::write(base.join("outside/sentinel"), b"sentinel").unwrap();
    fs::write(
        base.join("outside/etc/passwd"),
        b"root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    fs::create_dir(base.join("root")).unwrap();
    let root = base.join("root");
    Area {
        _dir: dir,
        base,
        root,
    }
}

/// Everything outside the destination: path -> (inode, mode, size, mtime, links, content).
type Snapshot = BTreeMap<PathBuf, (u64, u32, u64, i64, u64, Vec<u8>)>;

fn snapshot(a: &Area) -> Snapshot {
    fn walk(p: &Path, skip: &Path, out: &mut Snapshot) {
        for e in fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path == skip {
                continue;
            }
            let md = fs::symlink_metadata(&path).unwrap();
            let content = if md.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.insert(
                path.clone(),
                (
                    md.ino(),
                    md.mode(),
                    md.size(),
                    md.mtime(),
                    md.nlink(),
                    content,
                ),
            );
            if md.is_dir() {
                walk(&path, skip, out);
            }
        }
    }
    let mut out = Snapshot::new();
    walk(&a.base, &a.root, &mut out);
    // The parent of the area too: nothing may appear next to it.
    let parent = a.base.parent().unwrap();
    let names: Vec<u8> = fs::read_dir(parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("outside"))
        .flat_map(|e| e.file_name().into_encoded_bytes())
        .collect();
    out.insert(parent.join("<names with outside>"), (0, 0, 0, 0, 0, names));
    out
}

fn opts(w: Whiteouts) -> UnpackOptions {
    UnpackOptions {
        whiteouts: w,
        ..UnpackOptions::default()
    }
}

/// Unpacks `tar` in both whiteout modes into fresh areas; checks the outside is untouched and
/// returns the results (with the areas, for further checks).
fn run(
    tar: &[u8],
) -> Vec<(
    Area,
    Result<hoist_runtime::unpack::UnpackStats, UnpackError>,
)> {
    [Whiteouts::Overlay, Whiteouts::Apply]
        .into_iter()
        .map(|w| {
            let a = area();
            let before = snapshot(&a);
            let r = unpack_layer(tar, &a.root, &opts(w));
            assert_eq!(
                before,
                snapshot(&a),
                "{w:?}: something outside the root changed"
            );
            (a, r)
        })
        .collect()
}

fn assert_refused_naming(r: &Result<hoist_runtime::unpack::UnpackStats, UnpackError>, entry: &str) {
    match r {
        Ok(_) => panic!("entry {entry:?} was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(entry),
                "the error {msg:?} does not name {entry:?}"
            );
        }
    }
}

#[test]
fn dotdot_components_are_refused() {
    for name in [
        "../outside/sentinel",
        "a/../../outside/sentinel",
        "./../outside/new",
    ] {
        let mut t = Vec::new();
        raw(&mut t, b"a/", tar::EntryType::Directory, b"", b"");
        raw(
            &mut t,
            name.as_bytes(),
            tar::EntryType::Regular,
            b"",
            b"pwned",
        );
        for (_a, r) in run(&end(t)) {
            assert_refused_naming(&r, name);
        }
    }
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let probe = area();
    let abs = probe.base.join("outside/sentinel");
    let mut t = Vec::new();
    raw(
        &mut t,
        abs.as_os_str().as_encoded_bytes(),
        tar::EntryType::Regular,
        b"",
        b"pwned",
    );
    raw(
        &mut t,
        b"/etc/passwd",
        tar::EntryType::Regular,
        b"",
        b"root::0:0::/:/bin/sh\n",
    );
    for (a, r) in run(&end(t)) {
        r.unwrap();
        // The entry was taken relative to the root.
        let inside = a.root.join(abs.strip_prefix("/").unwrap());
        assert_eq!(fs::read(inside).unwrap(), b"pwned");
        assert_eq!(
            fs::read(a.root.join("etc/passwd")).unwrap(),
            b"root::0:0::/:/bin/sh\n"
        );
    }
}

#[test]
fn symlink_pointing_outside_then_a_file_written_through_it() {
    let probe = area();
    let outside = probe.base.join("outside");
    for target in [
        outside.as_os_str().as_encoded_bytes(),
        b"../outside",
        b"../../../../outside",
    ] {
        let mut t = Vec::new();
        raw(&mut t, b"escape", tar::EntryType::Symlink, target, b"");
        raw(
            &mut t,
            b"escape/sentinel",
            tar::EntryType::Regular,
            b"",
            b"pwned",
        );
        for (a, r) in run(&end(t)) {
            // Resolved inside the root, where the target does not exist: refused.
            assert_refused_naming(&r, "escape/sentinel");
            assert!(
                fs::symlink_metadata(a.root.join("escape"))
                    .unwrap()
                    .is_symlink()
            );
        }
        // When the target exists inside the root, the file goes there.
        let mut t = Vec::new();
        raw(&mut t, b"outside/", tar::EntryType::Directory, b"", b"");
        raw(
            &mut t,
            b"escape",
            tar::EntryType::Symlink,
            b"../../outside",
            b"",
        );
        raw(
            &mut t,
            b"escape/sentinel",
            tar::EntryType::Regular,
            b"",
            b"pwned",
        );
        for (a, r) in run(&end(t)) {
            r.unwrap();
            assert_eq!(fs::read(a.root.join("outside/sentinel")).unwrap(), b"pwned");
        }
    }
}

#[test]
fn hard_links_to_outside_are_refused() {
    let probe = area();
    let abs = probe.base.join("outside/etc/passwd");
    let abs = abs.as_os_str().as_encoded_bytes();
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"pw".to_vec(), abs.to_vec()),
        (b"pw2".to_vec(), b"../outside/etc/passwd".to_vec()),
        (b"pw3".to_vec(), b"/etc/passwd".to_vec()),
    ];
    for (name, target) in cases {
        let mut t = Vec::new();
        raw(&mut t, &name, tar::EntryType::Link, &target, b"");
        // A write through the link, had it been made.
        raw(&mut t, &name, tar::EntryType::Regular, b"", b"pwned");
        for (_a, r) in run(&end(t)) {
            assert_refused_naming(&r, std::str::from_utf8(&name).unwrap());
        }
    }
    // Through a symlinked directory.
    let outside = probe.base.join("outside/etc");
    let mut t = Vec::new();
    raw(
        &mut t,
        b"lnk",
        tar::EntryType::Symlink,
        outside.as_os_str().as_encoded_bytes(),
        b"",
    );
    raw(&mut t, b"pw", tar::EntryType::Link, b"lnk/passwd", b"");
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "pw");
    }
    // A hard link to a file inside the root is fine and stays inside.
    let mut t = Vec::new();
    raw(&mut t, b"etc/", tar::EntryType::Directory, b"", b"");
    raw(
        &mut t,
        b"etc/passwd",
        tar::EntryType::Regular,
        b"",
        b"inner",
    );
    raw(&mut t, b"pw", tar::EntryType::Link, b"/etc/passwd", b"");
    for (a, r) in run(&end(t)) {
        r.unwrap();
        let md = fs::metadata(a.root.join("pw")).unwrap();
        assert_eq!(
            md.ino(),
            fs::metadata(a.root.join("etc/passwd")).unwrap().ino()
        );
        assert_eq!(md.nlink(), 2);
    }
}

#[test]
fn symlinked_parent_directories_resolve_inside_the_root() {
    let probe = area();
    let outside = probe.base.join("outside");
    let mut t = Vec::new();
    raw(&mut t, b"etc/", tar::EntryType::Directory, b"", b"");
    // `etc/sub` points at the host's directory; the file must not land there.
    raw(
        &mut t,
        b"etc/sub",
        tar::EntryType::Symlink,
        outside.as_os_str().as_encoded_bytes(),
        b"",
    );
    raw(
        &mut t,
        b"etc/sub/sentinel",
        tar::EntryType::Regular,
        b"",
        b"pwned",
    );
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "etc/sub/sentinel");
    }
    // A symlinked parent to an existing directory of the root is followed inside it.
    let mut t = Vec::new();
    raw(&mut t, b"data/", tar::EntryType::Directory, b"", b"");
    raw(&mut t, b"link", tar::EntryType::Symlink, b"/data", b"");
    raw(
        &mut t,
        b"link/file",
        tar::EntryType::Regular,
        b"",
        b"inside",
    );
    raw(&mut t, b"up", tar::EntryType::Symlink, b"../../../..", b"");
    raw(
        &mut t,
        b"up/data/file2",
        tar::EntryType::Regular,
        b"",
        b"inside too",
    );
    for (a, r) in run(&end(t)) {
        r.unwrap();
        assert_eq!(fs::read(a.root.join("data/file")).unwrap(), b"inside");
        assert_eq!(fs::read(a.root.join("data/file2")).unwrap(), b"inside too");
    }
    // A symlink replacing a directory, then an entry below it: also inside.
    let mut t = Vec::new();
    raw(&mut t, b"d/", tar::EntryType::Directory, b"", b"");
    raw(
        &mut t,
        b"d",
        tar::EntryType::Symlink,
        outside.as_os_str().as_encoded_bytes(),
        b"",
    );
    raw(
        &mut t,
        b"d/sentinel",
        tar::EntryType::Regular,
        b"",
        b"pwned",
    );
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "d/sentinel");
    }
}

#[test]
fn whiteouts_naming_dotdot_or_dot_are_refused() {
    for name in [&b"sub/.wh..."[..], b".wh...", b"sub/.wh..", b".wh."] {
        let mut t = Vec::new();
        raw(&mut t, b"sub/", tar::EntryType::Directory, b"", b"");
        raw(&mut t, name, tar::EntryType::Regular, b"", b"");
        for (a, r) in run(&end(t)) {
            assert_refused_naming(&r, std::str::from_utf8(name).unwrap());
            assert!(a.root.is_dir());
            assert!(a.base.join("outside/sentinel").is_file());
        }
    }
    // A whiteout of `../outside` is a `..` path.
    let mut t = Vec::new();
    raw(&mut t, b"../.wh.outside", tar::EntryType::Regular, b"", b"");
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "../.wh.outside");
    }
    // A whiteout through a symlink to outside: resolved inside the root.
    let probe = area();
    let outside = probe.base.join("outside");
    let mut t = Vec::new();
    raw(
        &mut t,
        b"l",
        tar::EntryType::Symlink,
        outside.as_os_str().as_encoded_bytes(),
        b"",
    );
    raw(&mut t, b"l/.wh.sentinel", tar::EntryType::Regular, b"", b"");
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "l/.wh.sentinel");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

#[test]
fn decompression_is_bounded() {
    // One entry claiming 64 MiB of zeros: refused by its header before anything is written.
    let mut t = Vec::new();
    raw(
        &mut t,
        b"bomb",
        tar::EntryType::Regular,
        b"",
        &vec![0u8; 64 << 20],
    );
    let gz = gzip(&end(t));
    assert!(gz.len() < 200_000, "{} bytes", gz.len());
    let limit = 8 << 20;
    let o = UnpackOptions {
        max_size: limit,
        ..UnpackOptions::default()
    };
    let a = area();
    let before = snapshot(&a);
    let r = unpack_layer(decompress(&gz[..]).unwrap(), &a.root, &o);
    assert_eq!(before, snapshot(&a));
    assert!(matches!(r, Err(UnpackError::TooLarge { .. })), "{r:?}");
    assert_refused_naming(&r, "bomb");
    assert!(!a.root.join("bomb").exists());

    // Many entries, each small, together over the limit: stopped while reading.
    let mut t = Vec::new();
    for i in 0..20 {
        raw(
            &mut t,
            format!("part{i:02}").as_bytes(),
            tar::EntryType::Regular,
            b"",
            &vec![0u8; 1 << 20],
        );
    }
    let gz = gzip(&end(t));
    let a = area();
    let r = unpack_layer(decompress(&gz[..]).unwrap(), &a.root, &o);
    assert!(matches!(r, Err(UnpackError::TooLarge { .. })), "{r:?}");
    assert_refused_naming(&r, "part0");
    let written: u64 = fs::read_dir(&a.root)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(written <= limit, "{written} bytes written");

    // Within the limit, the same layer unpacks.
    let a = area();
    let o = UnpackOptions {
        max_size: 64 << 20,
        ..UnpackOptions::default()
    };
    let stats = unpack_layer(decompress(&gz[..]).unwrap(), &a.root, &o).unwrap();
    assert_eq!(stats.entries, 20);
    let mut plain = Vec::new();
    decompress(&gz[..])
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(stats.diff_id, hoist_oci::Digest::sha256_of(&plain));
    assert_eq!(stats.size, plain.len() as u64);
}

#[test]
fn huge_size_headers_are_refused_before_writing() {
    let mut t = Vec::new();
    raw_sized(&mut t, b"huge", tar::EntryType::Regular, b"", b"", 1 << 50);
    for (a, r) in run(&end(t)) {
        assert!(matches!(r, Err(UnpackError::TooLarge { .. })), "{r:?}");
        assert_refused_naming(&r, "huge");
        assert!(!a.root.join("huge").exists());
    }
    // A size the stream does not hold: an error naming the entry, no hang.
    let mut t = Vec::new();
    raw_sized(
        &mut t,
        b"short",
        tar::EntryType::Regular,
        b"",
        b"abc",
        1 << 20,
    );
    for (_a, r) in run(&t) {
        assert_refused_naming(&r, "short");
    }
}

#[test]
fn device_nodes_are_created_inside_the_root_only() {
    let host_null = fs::metadata("/dev/null").unwrap();
    let mut t = Vec::new();
    raw(&mut t, b"dev/", tar::EntryType::Directory, b"", b"");
    device(&mut t, b"dev/sda", 8, 0);
    device(&mut t, b"/dev/null", 1, 3);
    for (a, r) in run(&end(t)) {
        r.unwrap();
        let md = fs::symlink_metadata(a.root.join("dev/sda")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &md.file_type()
        ));
        assert_eq!(md.rdev(), rustix::fs::makedev(8, 0));
        assert_eq!(md.mode() & 0o7777, 0o666);
        assert!(a.root.join("dev/null").exists());
    }
    // A device through a symlinked /dev: resolved inside the root (a loop here), never the host's.
    let mut t = Vec::new();
    raw(&mut t, b"dev", tar::EntryType::Symlink, b"/dev", b"");
    device(&mut t, b"dev/null", 1, 7);
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "dev/null");
    }
    let after = fs::metadata("/dev/null").unwrap();
    assert_eq!(
        (after.ino(), after.rdev()),
        (host_null.ino(), host_null.rdev())
    );
    // A device named with `..`.
    let mut t = Vec::new();
    device(&mut t, b"../outside/dev", 1, 3);
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "../outside/dev");
    }
}

#[test]
fn long_name_extensions_get_the_same_checks() {
    // A PAX `path` record and a GNU long name, each naming `../outside/...` behind an innocent
    // ustar name.
    let record = |k: &str, v: &str| {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while len != body.len() + len.to_string().len() {
            len = body.len() + len.to_string().len();
        }
        format!("{len}{body}")
    };
    let mut t = Vec::new();
    let pax = record("path", "../outside/pax-escape");
    raw(
        &mut t,
        b"PaxHeaders/x",
        tar::EntryType::XHeader,
        b"",
        pax.as_bytes(),
    );
    raw(&mut t, b"innocent", tar::EntryType::Regular, b"", b"pwned");
    for (a, r) in run(&end(t)) {
        assert_refused_naming(&r, "../outside/pax-escape");
        assert!(!a.root.join("innocent").exists());
    }
    let mut t = Vec::new();
    let long = format!("{}/../../outside/gnu-escape", "d".repeat(120));
    let mut name = long.into_bytes();
    name.push(0);
    raw(
        &mut t,
        b"././@LongLink",
        tar::EntryType::GNULongName,
        b"",
        &name,
    );
    raw(&mut t, b"innocent", tar::EntryType::Regular, b"", b"pwned");
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "outside/gnu-escape");
    }
    // A PAX `linkpath` to outside for a hard link.
    let mut t = Vec::new();
    let pax = record("linkpath", "../outside/sentinel");
    raw(
        &mut t,
        b"PaxHeaders/y",
        tar::EntryType::XHeader,
        b"",
        pax.as_bytes(),
    );
    raw(&mut t, b"link", tar::EntryType::Link, b"harmless", b"");
    for (_a, r) in run(&end(t)) {
        assert_refused_naming(&r, "link");
    }
}
