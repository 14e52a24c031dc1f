//! `hoist cp` and `hoist export` against `docker cp` and `docker export`: the same busybox image
//! in a private dockerd and a hoist home, the same fixture made in a container of each (and on
//! the host for each), then every case of `CASES` runs through both CLIs; the exit status, the
//! normalised stderr, stdout (a tar's listing when it is one) and the resulting trees (the host
//! directory, or the container's exported filesystem: type, mode, owner, size, content, link
//! target, mtime of non-directories) must be the same. Differences kept on purpose are listed in
//! `diff_cp_expected.txt` with their reason; a listed case that no longer differs fails too.
//!
//! `symlinks_in_a_container_never_reach_the_host` is the escape corpus: symlinks planted in a
//! container (absolute, `../../..`, as a parent component, as the last component, dangling) and
//! tar streams on stdin that try to leave, in both directions, on a stopped and a running
//! container; the host's files must be untouched.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use hoist_conformance::fixtures;

fn hoist(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.env("HOIST_HOME", home);
    cmd
}

/// Removes hoist's containers of a home when dropped, so no supervisor outlives the test.
struct Cleanup(PathBuf, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = hoist(&self.0).args(["rm", "-f"]).args(&self.1).output();
    }
}

/// What a container holds before a case: files, a directory tree, owners, modes, symlinks (to
/// a file, to a directory, dangling), a hard link, a deleted image file; every mtime fixed.
const SETUP: &str = "set -e; mkdir -p /data/dir/sub /data/empty; \
echo hello > /data/file; echo inner > /data/dir/inner; echo deep > /data/dir/sub/deep; \
chmod 640 /data/dir/inner; chmod 4755 /data/dir/sub/deep; chown 1234:5678 /data/dir/sub/deep; \
chown 42:43 /data/file; ln -s file /data/link; ln -s /data/dir /data/dirlink; \
ln -s nowhere /data/dangling; ln /data/file /data/hard; echo x > /data/.wh.lit; \
echo v > /vol/inv; rm /bin/vi; find /data /vol -exec touch -h -d '2020-09-13 12:26:40' {} +";

/// The host's side of every case: the same tree for docker and for hoist.
fn host_fixture(d: &Path) {
    let w = |p: &str, s: &str| std::fs::write(d.join(p), s).unwrap();
    for p in ["hdir/sub", "existing_dir", "conf/dir", "emptyd"] {
        std::fs::create_dir_all(d.join(p)).unwrap();
    }
    w("hfile", "host file\n");
    w("hdir/.wh.a", "a file, not a whiteout\n");
    w("hdir/a", "a\n");
    w("hdir/sub/b", "bb\n");
    w("existing_file", "old\n");
    std::fs::remove_dir(d.join("conf/dir")).unwrap();
    w("conf/dir", "a file where the copy puts a directory\n");
    std::fs::set_permissions(d.join("hdir/a"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(d.join("hfile"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(d.join("hdir/sub/b"), Some(7), Some(8)).unwrap();
    std::os::unix::fs::symlink("hfile", d.join("hlink")).unwrap();
    std::os::unix::fs::symlink("hdir", d.join("hdirlink")).unwrap();
    std::fs::create_dir(d.join("esc")).unwrap();
    std::os::unix::fs::symlink("../../x", d.join("esc/up")).unwrap();
    let t = |p: &Path| {
        let _ = Command::new("touch")
            .args(["-h", "-d", "2021-01-02 03:04:05"])
            .arg(p)
            .status();
    };
    for e in walk(d) {
        t(&d.join(e));
    }
}

/// Every path under `d`, relative, sorted.
fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn go(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(base.join(rel)) else {
            return;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            out.push(r.clone());
            if std::fs::symlink_metadata(base.join(&r)).is_ok_and(|m| m.is_dir()) {
                go(base, &r, out);
            }
        }
    }
    go(d, Path::new(""), &mut out);
    out
}

/// A host tree as lines: path, type, mode, owner, size, content, link target, mtime.
fn host_listing(d: &Path) -> Vec<String> {
    walk(d)
        .into_iter()
        .map(|r| {
            let p = d.join(&r);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let (kind, extra) = if ft.is_dir() {
                ("d", String::new())
            } else if ft.is_symlink() {
                (
                    "l",
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                )
            } else {
                ("f", content(&std::fs::read(&p).unwrap()))
            };
            let mtime = if ft.is_dir() { 0 } else { md.mtime() };
            format!(
                "{} {kind} {:o} {}:{} {} {extra} {mtime}",
                r.display(),
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                if ft.is_dir() { 0 } else { md.size() }
            )
        })
        .collect()
}

/// File content for a listing: short text as it is, anything else as its length and hash.
fn content(b: &[u8]) -> String {
    if b.len() <= 64
        && b.iter()
            .all(|c| c.is_ascii_graphic() || *c == b' ' || *c == b'\n')
    {
        return format!("{:?}", String::from_utf8_lossy(b));
    }
    // FNV-1a: enough to tell contents apart in a listing.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in b {
        h = (h ^ u64::from(*c)).wrapping_mul(0x100_0000_01b3);
    }
    format!("<{} bytes {h:016x}>", b.len())
}

/// A tar stream as lines: name, type, mode, owner, size, content, link target, mtime of
/// non-directories.
fn tar_listing(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        let kind = h.entry_type();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| e.to_string())?;
        // A directory's mtime moves with any write; `/.dockerenv` is made when its container is.
        let mtime = if kind.is_dir() || name.ends_with(".dockerenv") {
            0
        } else {
            h.mtime().unwrap_or(0)
        };
        out.push(format!(
            "{name} {:?} {:o} {}:{} ({}:{}) {} {} {link} {mtime}",
            kind,
            h.mode().unwrap_or(0),
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.username().ok().flatten().unwrap_or(""),
            h.groupname().ok().flatten().unwrap_or(""),
            data.len(),
            content(&data),
        ));
    }
    Ok(out)
}

/// An export's listing: what the two engines' own mount points hold (the
/// `/etc/hostname`-like files they bind over, `/dev` stubs) is what they make at run time, not
/// the container's, and directories' mtimes change with any write: left out.
fn export_listing(bytes: &[u8]) -> Vec<String> {
    let mut l = tar_listing(bytes).expect("an export is a tar");
    l.retain(|e| {
        !e.starts_with("dev/")
            && !e.starts_with("etc/hostname ")
            && !e.starts_with("etc/hosts ")
            && !e.starts_with("etc/resolv.conf ")
            && !e.starts_with("etc/mtab ")
    });
    l
}

#[derive(Debug, PartialEq)]
struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run_io(mut cmd: Command, stdin: Option<&[u8]>) -> (bool, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let mut input = child.stdin.take().expect("piped");
    let data = stdin.map(<[u8]>::to_vec);
    let feeder = std::thread::spawn(move || {
        if let Some(d) = data {
            let _ = input.write_all(&d);
        }
    });
    let mut out = child.stdout.take().expect("piped");
    let err = drain(child.stderr.take().expect("piped"));
    let mut o = Vec::new();
    out.read_to_end(&mut o).expect("reading stdout");
    let status = child.wait().expect("waiting");
    let _ = feeder.join();
    (status.success(), o, err.join().unwrap_or_default())
}

/// docker's and hoist's error lines made comparable: the engines' own prefixes
/// (`Error response from daemon: `, `hoist: `, the chroot helper's `Error processing tar
/// file(exit status 1): `), logrus noise, host paths of the case and of dockerd's overlay mounts
/// replaced, case folded (docker's daemon capitalises some messages, hoist's are lowercase).
fn normalise_err(s: &str, host: &Path, merged_prefix: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("time=\""))
        .map(|l| {
            let mut l = l.to_owned();
            for p in [
                "Error response from daemon: ",
                "hoist: ",
                "Error processing tar file(exit status 1): ",
            ] {
                l = l.replace(p, "");
            }
            let h = host.display().to_string();
            l = l.replace(&h, "<HOST>");
            // dockerd's `<data>/overlay2/<id>/merged` in front of a container path.
            while let Some(i) = l.find(merged_prefix) {
                let rest = &l[i..];
                let end = rest
                    .find("/merged")
                    .map_or(rest.len(), |j| j + "/merged".len());
                l.replace_range(i..i + end, "");
            }
            l.to_lowercase()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One case: `cp` arguments with `{C}` (the container) and `{H}` (the case's host dir); which
/// container (`stopped` or `running`); the tar on stdin, if any.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    running: bool,
    stdin: Option<fn() -> Vec<u8>>,
    /// The container's tree to compare is `cp {C}:THIS -` (a volume, which an export leaves
    /// out), not its export.
    tree: Option<&'static str>,
    /// The container runs as `nobody` (and has no fixture): what `-a` gives.
    user: bool,
}

const fn case(name: &'static str, args: &'static [&'static str]) -> Case {
    Case {
        name,
        args,
        running: false,
        stdin: None,
        tree: None,
        user: false,
    }
}

const fn running(name: &'static str, args: &'static [&'static str]) -> Case {
    Case {
        name,
        args,
        running: true,
        stdin: None,
        tree: None,
        user: false,
    }
}

/// A tar for `cp -`: a directory, a file with an owner and mode, a symlink, a hard link.
fn stdin_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(321);
        h.set_gid(654);
        h.set_mtime(1_500_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("t/", tar::EntryType::Directory, 0o750, b"", None);
    add("t/f", tar::EntryType::Regular, 0o604, b"from stdin\n", None);
    add("t/l", tar::EntryType::Symlink, 0o777, b"", Some("f"));
    add("t/h", tar::EntryType::Link, 0o604, b"", Some("t/f"));
    b.into_inner().unwrap()
}

/// A tar for `cp -` that puts a file where the container has a directory.
fn stdin_conflict_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(2);
    h.set_path("dir").unwrap();
    h.set_cksum();
    b.append(&h, &b"x\n"[..]).unwrap();
    b.into_inner().unwrap()
}

const CASES: &[Case] = &[
    // From the container to the host.
    case(
        "from-file-into-dir",
        &["{C}:/data/file", "{H}/existing_dir"],
    ),
    case("from-file-new-name", &["{C}:/data/file", "{H}/newfile"]),
    case(
        "from-file-over-file",
        &["{C}:/data/file", "{H}/existing_file"],
    ),
    case(
        "from-file-to-missing-dir-slash",
        &["{C}:/data/file", "{H}/nodir/"],
    ),
    case(
        "from-file-missing-parent",
        &["{C}:/data/file", "{H}/missing/x"],
    ),
    case(
        "from-file-onto-file-slash",
        &["{C}:/data/file", "{H}/existing_file/"],
    ),
    case("from-dir-into-dir", &["{C}:/data/dir", "{H}/existing_dir"]),
    case("from-dir-new", &["{C}:/data/dir", "{H}/newdir"]),
    case("from-dir-slash-new", &["{C}:/data/dir/", "{H}/newdir2"]),
    case(
        "from-dir-dot-into-dir",
        &["{C}:/data/dir/.", "{H}/existing_dir"],
    ),
    case("from-dir-dot-new", &["{C}:/data/dir/.", "{H}/fresh"]),
    case(
        "from-dir-onto-file",
        &["{C}:/data/dir", "{H}/existing_file"],
    ),
    case("from-dir-conflict-inside", &["{C}:/data/dir", "{H}/conf"]),
    case("from-missing", &["{C}:/data/nope", "{H}"]),
    case("from-file-slash", &["{C}:/data/file/", "{H}"]),
    case("from-symlink", &["{C}:/data/link", "{H}/"]),
    case("from-symlink-follow", &["-L", "{C}:/data/link", "{H}/"]),
    case(
        "from-dir-symlink-follow",
        &["-L", "{C}:/data/dirlink", "{H}/dl"],
    ),
    case(
        "from-dir-symlink-slash",
        &["{C}:/data/dirlink/", "{H}/viaslash"],
    ),
    case("from-dangling-follow", &["-L", "{C}:/data/dangling", "{H}"]),
    case("from-whole-data", &["{C}:/data", "{H}/all"]),
    case("from-dir-stdout", &["{C}:/data/dir", "-"]),
    case("from-dir-dot-stdout", &["{C}:/data/dir/.", "-"]),
    case("from-symlink-stdout", &["{C}:/data/link", "-"]),
    case("from-symlink-follow-stdout", &["-L", "{C}:/data/link", "-"]),
    case("from-archive-flag", &["-a", "{C}:/data/dir", "{H}/arch"]),
    running("from-running", &["{C}:/data/dir", "{H}/run"]),
    // From the host into the container.
    case("to-file-into-dir", &["{H}/hfile", "{C}:/data"]),
    case("to-file-new-name", &["{H}/hfile", "{C}:/data/newname"]),
    case("to-file-over-file", &["{H}/hfile", "{C}:/data/file"]),
    case("to-file-missing-parent", &["{H}/hfile", "{C}:/nodir/x"]),
    case("to-file-new-dir-slash", &["{H}/hfile", "{C}:/data/newdir/"]),
    case("to-file-slash", &["{H}/hfile/", "{C}:/data"]),
    case("to-dir-into-dir", &["{H}/hdir", "{C}:/data"]),
    case("to-dir-new", &["{H}/hdir", "{C}:/data/newdir"]),
    case("to-dir-dot-into-dir", &["{H}/hdir/.", "{C}:/data/empty"]),
    case("to-dir-onto-file", &["{H}/hdir", "{C}:/data/file"]),
    case(
        "to-dir-onto-file-inside",
        &["{H}/conf/dir", "{C}:/data/empty"],
    ),
    case("to-missing", &["{H}/nope", "{C}:/data"]),
    case("to-archive", &["-a", "{H}/hdir", "{C}:/data/arch"]),
    case("to-symlink", &["{H}/hlink", "{C}:/data"]),
    case("to-symlink-follow", &["-L", "{H}/hlink", "{C}:/data"]),
    case(
        "to-dir-symlink-slash",
        &["{H}/hdirlink/", "{C}:/data/viaslash"],
    ),
    case(
        "to-through-dest-symlink",
        &["{H}/hfile", "{C}:/data/dirlink"],
    ),
    case("to-escaping-symlink", &["{H}/esc", "{C}:/tmp"]),
    running("to-running", &["{H}/hdir", "{C}:/data/live"]),
    Case {
        name: "to-stdin-tar",
        args: &["-", "{C}:/data/empty"],
        running: false,
        tree: None,
        user: false,
        stdin: Some(stdin_tar),
    },
    Case {
        name: "to-stdin-not-dir",
        args: &["-", "{C}:/data/file"],
        running: false,
        tree: None,
        user: false,
        stdin: Some(stdin_tar),
    },
    Case {
        name: "to-stdin-conflict",
        args: &["-", "{C}:/data"],
        running: false,
        tree: None,
        user: false,
        stdin: Some(stdin_conflict_tar),
    },
    // Volumes: the volume's files, not what the rootfs has under its mount point.
    case("from-volume", &["{C}:/vol/inv", "{H}/"]),
    Case {
        name: "to-volume",
        args: &["{H}/hdir", "{C}:/vol"],
        running: false,
        stdin: None,
        tree: Some("/vol"),
        user: false,
    },
    Case {
        name: "to-volume-running",
        args: &["{H}/hfile", "{C}:/vol/x"],
        running: true,
        stdin: None,
        tree: Some("/vol"),
        user: false,
    },
    case("to-read-only-volume", &["{H}/hfile", "{C}:/rovol"]),
    // A container with a user: `-a` gives it every file (looked up in the container; docker
    // looks on the host, where nobody is 65534:65534 too), without `-a` the owners stay.
    Case {
        user: true,
        ..case("to-user-archive", &["-a", "{H}/hdir", "{C}:/tmp"])
    },
    Case {
        user: true,
        ..case("to-user-no-archive", &["{H}/hdir", "{C}:/tmp"])
    },
    Case {
        user: true,
        stdin: Some(stdin_tar),
        ..case("to-user-archive-stdin", &["-a", "-", "{C}:/tmp"])
    },
    // Usage errors.
    case("no-container", &["{H}/a", "{H}/b"]),
    case("two-containers", &["{C}:/a", "{C}:/b"]),
    case("missing-container", &["nosuchcontainer:/a", "{H}"]),
];

fn expected() -> BTreeMap<String, String> {
    let text = include_str!("diff_cp_expected.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (n, r) = l.split_once(':').expect("NAME: REASON");
            (n.trim().to_owned(), r.trim().to_owned())
        })
        .collect()
}

/// The same image in a private dockerd and a hoist home.
fn images(dockerd: &Dockerd, home: &Path, work: &Path) {
    let rootfs = work.join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    run(dockerd
        .docker()
        .args(["import", "--change", r#"CMD ["sh"]"#])
        .arg(&rootfs)
        .arg("busybox:latest"));
    let archive = work.join("images.tar");
    run(dockerd
        .docker()
        .args(["save", "-o"])
        .arg(&archive)
        .arg("busybox:latest"));
    run(hoist(home).arg("load").arg("-i").arg(&archive));
}

/// A container named `name` with the fixture, in both: exited, or running `sleep`.
fn containers(dockerd: &Dockerd, home: &Path, name: &str, running: bool) {
    let script = if running {
        format!("{SETUP}; exec sleep 1000")
    } else {
        SETUP.to_owned()
    };
    let mut args = vec![
        "run",
        "--network",
        "none",
        "-v",
        "/vol",
        "-v",
        "rovol:/rovol:ro",
        "--name",
        name,
    ];
    if running {
        args.push("-d");
    }
    args.extend(["busybox", "sh", "-c", &script]);
    run(dockerd.docker().args(&args));
    run(hoist(home).args(&args));
    if running {
        // The fixture is made before `sleep`: wait until it is.
        for _ in 0..100 {
            let (ok, _, _) =
                run_status(hoist(home).args(["exec", name, "test", "-e", "/data/.wh.lit"]));
            let (dok, _, _) =
                run_status(
                    dockerd
                        .docker()
                        .args(["exec", name, "test", "-e", "/data/.wh.lit"]),
                );
            if ok && dok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the fixture of {name} was not made");
    }
}

fn export_of(cmd: Command) -> Vec<String> {
    let (ok, out, err) = run_io(cmd, None);
    assert!(ok, "export failed: {err}");
    export_listing(&out)
}

#[test]
fn cp_and_export_match_docker() {
    require_root();
    let dockerd = Dockerd::start();
    let work = tmp();
    let home = work.path().join("home");
    images(&dockerd, &home, work.path());
    let data_root = format!("{}/", dockerd.config_dir().parent().unwrap().display());
    let mut names: Vec<String> = vec!["src".into(), "live".into()];
    for c in CASES {
        names.push(format!("c-{}", c.name));
    }
    let _cleanup = Cleanup(home.clone(), names);
    containers(&dockerd, &home, "src", false);
    containers(&dockerd, &home, "live", true);

    // export: the same tree from both, a deleted file absent, on a stopped and a running one.
    for c in ["src", "live"] {
        let d = export_of({
            let mut x = dockerd.docker();
            x.args(["export", c]);
            x
        });
        let h = export_of({
            let mut x = hoist(&home);
            x.args(["export", c]);
            x
        });
        assert!(
            !h.iter().any(|l| l.starts_with("bin/vi ")),
            "a deleted file is exported"
        );
        assert!(h.iter().any(|l| l.starts_with("data/dir/sub/deep ")));
        let (ds, hs): (BTreeSet<_>, BTreeSet<_>) = (d.iter().collect(), h.iter().collect());
        assert_eq!(
            d,
            h,
            "export of {c}: docker only {:?}, hoist only {:?}",
            ds.difference(&hs).collect::<Vec<_>>(),
            hs.difference(&ds).collect::<Vec<_>>()
        );
    }
    let out = work.path().join("export.tar");
    run(hoist(&home)
        .args(["container", "export", "-o"])
        .arg(&out)
        .arg("src"));
    assert_eq!(
        export_listing(&std::fs::read(&out).unwrap()),
        export_of({
            let mut x = dockerd.docker();
            x.args(["export", "src"]);
            x
        }),
        "hoist container export -o"
    );

    let expected = expected();
    let mut differ = BTreeMap::new();
    for c in CASES {
        let to = c.args.last().is_some_and(|a| a.starts_with("{C}:"));
        // A case that writes into a container gets its own pair.
        let ctr = if c.running {
            "live".to_owned()
        } else if c.user {
            let n = format!("c-{}", c.name);
            let args = [
                "run",
                "--network",
                "none",
                "-u",
                "nobody",
                "--name",
                &n,
                "busybox",
                "true",
            ];
            run(dockerd.docker().args(args));
            run(hoist(&home).args(args));
            n
        } else if to {
            let n = format!("c-{}", c.name);
            containers(&dockerd, &home, &n, false);
            n
        } else {
            "src".to_owned()
        };
        let mut results = Vec::new();
        for engine in ["docker", "hoist"] {
            let host = work.path().join(engine).join(c.name);
            std::fs::create_dir_all(&host).unwrap();
            host_fixture(&host);
            let args: Vec<String> = c
                .args
                .iter()
                .map(|a| {
                    a.replace("{C}", &ctr)
                        .replace("{H}", &host.display().to_string())
                })
                .collect();
            let mut cmd = if engine == "docker" {
                dockerd.docker()
            } else {
                hoist(&home)
            };
            cmd.arg("cp").args(&args);
            let stdin = c.stdin.map(|f| f());
            let (ok, out, err) = run_io(cmd, stdin.as_deref());
            let stdout = if out.is_empty() {
                String::new()
            } else {
                tar_listing(&out).map_or_else(
                    |_| String::from_utf8_lossy(&out).into_owned(),
                    |l| l.join("\n"),
                )
            };
            let tree = if let (true, Some(path)) = (to, c.tree) {
                let mut x = if engine == "docker" {
                    dockerd.docker()
                } else {
                    hoist(&home)
                };
                x.arg("cp").arg(format!("{ctr}:{path}")).arg("-");
                let (ok, out, err) = run_io(x, None);
                assert!(ok, "{}: cp {path} -: {err}", c.name);
                tar_listing(&out).expect("a tar")
            } else if to {
                let mut x = if engine == "docker" {
                    dockerd.docker()
                } else {
                    hoist(&home)
                };
                x.args(["export", &ctr]);
                export_of(x)
            } else {
                host_listing(&host)
            };
            results.push((
                Outcome {
                    ok,
                    stdout,
                    stderr: normalise_err(&err, &host, &data_root),
                },
                tree,
            ));
        }
        let (h, d) = (results.pop().unwrap(), results.pop().unwrap());
        let mut why = Vec::new();
        if d.0 != h.0 {
            why.push(format!(
                "outcome: docker {:?}\n       hoist  {:?}",
                d.0, h.0
            ));
        }
        if d.1 != h.1 {
            let ds: BTreeSet<_> = d.1.iter().collect();
            let hs: BTreeSet<_> = h.1.iter().collect();
            why.push(format!(
                "tree: docker only {:?}\n      hoist only {:?}",
                ds.difference(&hs).collect::<Vec<_>>(),
                hs.difference(&ds).collect::<Vec<_>>()
            ));
        }
        if !why.is_empty() {
            differ.insert(c.name.to_owned(), why.join("\n"));
        }
    }
    assert!(CASES.len() >= 25);
    // `container cp` is `cp`.
    let group = |mut x: Command| {
        x.args(["container", "cp", "src:/data/dir", "-"]);
        let (ok, out, err) = run_io(x, None);
        assert!(ok, "container cp: {err}");
        tar_listing(&out).unwrap()
    };
    assert_eq!(group(dockerd.docker()), group(hoist(&home)), "container cp");
    let mut failures = Vec::new();
    for (n, why) in &differ {
        if !expected.contains_key(n) {
            failures.push(format!("{n}: differs from docker:\n{why}"));
        }
    }
    for n in expected.keys() {
        if !differ.contains_key(n) {
            failures.push(format!(
                "{n}: listed in diff_cp_expected.txt but no longer differs"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A host directory with a secret, and a snapshot of it (and of /etc/shadow) to compare with.
struct HostSecret {
    dir: tempfile::TempDir,
    before: Vec<String>,
    shadow: Vec<u8>,
}

impl HostSecret {
    fn new() -> HostSecret {
        let dir = tempfile::Builder::new()
            .prefix("hoist-cp-secret-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("secret"), "host secret\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let before = host_listing(dir.path());
        HostSecret {
            dir,
            before,
            shadow: std::fs::read("/etc/shadow").unwrap_or_default(),
        }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            host_listing(self.dir.path()),
            self.before,
            "{what}: the host directory changed"
        );
        assert_eq!(
            std::fs::read("/etc/shadow").unwrap_or_default(),
            self.shadow,
            "{what}: /etc/shadow changed"
        );
    }
}

#[test]
fn symlinks_in_a_container_never_reach_the_host() {
    require_root();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    run(hoist(&home)
        .arg("import")
        .arg(&rootfs)
        .arg("busybox:latest"));
    let secret = HostSecret::new();
    let s = secret.path();
    // Every kind of link out: absolute (to the host dir, to /etc/shadow), relative with more
    // `..` than the tree is deep, as a parent component, as the last component, dangling
    // into the host dir.
    let plant = format!(
        "mkdir -p /esc && ln -s {s} /esc/abs && ln -s /etc/shadow /esc/shadow && \
         ln -s ../../../../../../../..{s} /esc/rel && ln -s {s}/secret /esc/file && \
         ln -s {s}/newfile /esc/dangling && ln -s ../../../../../../../../etc /esc/etc"
    );
    let _cleanup = Cleanup(
        home.clone(),
        vec!["esc-stopped".into(), "esc-running".into()],
    );
    run(hoist(&home).args([
        "run",
        "--network",
        "none",
        "--name",
        "esc-stopped",
        "busybox",
        "sh",
        "-c",
        &plant,
    ]));
    run(hoist(&home).args([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "esc-running",
        "busybox",
        "sh",
        "-c",
        &format!("{plant} && exec sleep 1000"),
    ]));
    for _ in 0..100 {
        if run_status(hoist(&home).args(["exec", "esc-running", "test", "-L", "/esc/etc"])).0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let payload = work.path().join("payload");
    std::fs::write(&payload, "from the host\n").unwrap();
    let pdir = work.path().join("pdir");
    std::fs::create_dir(&pdir).unwrap();
    std::fs::write(pdir.join("secret"), "overwrite\n").unwrap();

    for c in ["esc-stopped", "esc-running"] {
        // Reads: never the host's bytes.
        for src in [
            "/esc/abs/secret",
            "/esc/rel/secret",
            "/esc/file",
            "/esc/shadow",
            "/esc/etc/shadow",
            "/esc/abs/",
            "/esc/rel/.",
        ] {
            for follow in [false, true] {
                let mut cmd = hoist(&home);
                cmd.arg("cp");
                if follow {
                    cmd.arg("-L");
                }
                cmd.arg(format!("{c}:{src}")).arg("-");
                let (_, out, _) = run_io(cmd, None);
                let listing = tar_listing(&out).unwrap_or_default().join("\n");
                assert!(
                    !listing.contains("host secret"),
                    "{c}: cp {src} read the host's file:\n{listing}"
                );
                if let Ok(shadow) = std::fs::read_to_string("/etc/shadow")
                    && let Some(line) = shadow.lines().next()
                {
                    assert!(
                        !listing.contains(line),
                        "{c}: cp {src} read the host's /etc/shadow"
                    );
                }
            }
        }
        // Writes: a file, a directory and a tar stream through every link.
        for dest in [
            "/esc/abs",
            "/esc/abs/",
            "/esc/rel",
            "/esc/rel/sub",
            "/esc/file",
            "/esc/dangling",
            "/esc/shadow",
            "/esc/etc",
            "/esc/etc/shadow",
        ] {
            for src in [&payload, &pdir.join("secret"), &pdir] {
                let (_, _, _) = run_io(
                    {
                        let mut x = hoist(&home);
                        x.arg("cp").arg(src).arg(format!("{c}:{dest}"));
                        x
                    },
                    None,
                );
                secret.assert_untouched(&format!("{c}: cp {} {dest}", src.display()));
            }
            let (_, _, _) = run_io(
                {
                    let mut x = hoist(&home);
                    x.arg("cp").arg("-").arg(format!("{c}:{dest}"));
                    x
                },
                Some(&escaping_tar(&s)),
            );
            secret.assert_untouched(&format!("{c}: cp - {dest}"));
        }
        // What was written through the links is inside the container.
        let (ok, out, err) = run_io(
            {
                let mut x = hoist(&home);
                x.args(["export", c]);
                x
            },
            None,
        );
        assert!(ok, "{err}");
        let l = tar_listing(&out).unwrap().join("\n");
        let inside = s.trim_start_matches('/');
        assert!(
            l.contains(&format!("{inside}/payload ")) || l.contains(&format!("{inside}/secret ")),
            "{c}: the writes through /esc/abs are not in the container:\n{l}"
        );
    }
}

/// A tar stream that tries to leave the directory it is extracted into: a `..` name, an
/// absolute name, a symlink to the host's secret directory and a file through it, a hard link
/// to the host's /etc/shadow.
fn escaping_tar(secret: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = tar::Builder::new(&mut out);
    let mut raw = |name: &[u8], kind: tar::EntryType, data: &[u8], link: Option<&[u8]>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l);
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    raw(
        b"lnk",
        tar::EntryType::Symlink,
        b"",
        Some(secret.as_bytes()),
    );
    raw(b"lnk/secret", tar::EntryType::Regular, b"pwned\n", None);
    raw(b"lnk/new", tar::EntryType::Regular, b"pwned\n", None);
    raw(
        format!("{secret}/abs-name").as_bytes(),
        tar::EntryType::Regular,
        b"pwned\n",
        None,
    );
    raw(
        b"hl",
        tar::EntryType::Link,
        b"",
        Some(b"../../../../../../etc/shadow"),
    );
    raw(
        b"../../../../../../../../tmp/dotdot",
        tar::EntryType::Regular,
        b"pwned\n",
        None,
    );
    b.finish().unwrap();
    drop(b);
    out
}

/// Where overlay is unavailable a container's rootfs is a copy (`HOIST_ROOTFS_COPY=1`): `cp`
/// writes into it, running or stopped, and what it wrote into a stopped one is among the
/// container's changes (`diff`), as for an overlay rootfs.
#[test]
fn copy_rootfs_containers_take_copies() {
    require_root();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    let h = || {
        let mut c = hoist(&home);
        c.env("HOIST_ROOTFS_COPY", "1");
        c
    };
    run(h().arg("import").arg(&rootfs).arg("busybox:latest"));
    let _cleanup = Cleanup(home.clone(), vec!["kopy".into(), "kopy-up".into()]);
    run(h().args([
        "run",
        "--network",
        "none",
        "--name",
        "kopy",
        "busybox",
        "sh",
        "-c",
        "echo a > /a",
    ]));
    let f = work.path().join("f");
    std::fs::write(&f, "copied\n").unwrap();
    run(h().arg("cp").arg(&f).arg("kopy:/b"));
    let diff = run(h().args(["diff", "kopy"]));
    assert!(diff.lines().any(|l| l == "A /b"), "diff after cp:\n{diff}");
    assert!(diff.lines().any(|l| l == "A /a"), "diff after cp:\n{diff}");
    let (ok, out, err) = run_io(
        {
            let mut c = h();
            c.args(["cp", "kopy:/b", "-"]);
            c
        },
        None,
    );
    assert!(ok, "{err}");
    assert!(tar_listing(&out).unwrap()[0].contains("\"copied\\n\""));
    run(h().args([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "kopy-up",
        "busybox",
        "sleep",
        "1000",
    ]));
    run(h().arg("cp").arg(&f).arg("kopy-up:/c"));
    assert_eq!(run(h().args(["exec", "kopy-up", "cat", "/c"])), "copied\n");
}
