//! The builder's escape corpus: Dockerfiles and contexts that try to make `hoist build` write or
//! read outside the build's own root through symlinks (absolute, relative, `../` chains, dangling)
//! that a base image, an earlier step or an earlier source of the same instruction planted.
//!
//! Every case points its symlinks at a sentinel directory on the host (outside the context and
//! `HOIST_HOME`), snapshots it before the build and asserts it is untouched afterwards, whether
//! the build succeeded or not; then it checks that the image got what BuildKit gives: the symlink
//! resolved inside the image's root (the sentinel's path *inside* the image), never the host's.
//!
//! Needs root (the builder mounts overlays and runs containers), as CI runs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hoist_testsupport::text;

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

/// What goes into a context (or an imported rootfs).
enum Src<'a> {
    File(&'a str),
    Dir,
    Link(String),
    /// A plain tar holding these files.
    Tar(Vec<(&'a str, &'a str)>),
}

/// A directory on the host that the corpus's symlinks point at, with files a leak would read
/// (`passwd`, `group` with other ids than the images') and places a leak would write.
struct Sentinel {
    dir: tempfile::TempDir,
    before: BTreeMap<String, String>,
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("hoist-sentinel-")
            .tempdir()
            .unwrap();
        let p = dir.path();
        std::fs::write(p.join("keep"), "host\n").unwrap();
        std::fs::write(p.join("file"), "host file\n").unwrap();
        std::fs::write(p.join("passwd"), "root:x:777:777:root:/root:/bin/sh\n").unwrap();
        std::fs::write(p.join("group"), "root:x:777:\ngrp:x:555:\n").unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(p.join("sub/inner"), "host\n").unwrap();
        // Empty: what a mount-stub cleanup would remove if it followed a symlink.
        std::fs::create_dir(p.join("x")).unwrap();
        std::fs::write(p.join("empty"), "").unwrap();
        let before = snapshot(p);
        Sentinel { dir, before }
    }

    /// The sentinel's absolute path (also used as a path inside images).
    fn h(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// `{H}` in `s` replaced by the sentinel's path.
    fn fill(&self, s: &str) -> String {
        s.replace("{H}", &self.h())
    }

    /// The same path from `/` as a relative link from `depth` directories down, climbing through
    /// far more `..` than there are directories.
    fn climbing(&self) -> String {
        format!("../../../../../../../../../..{}", self.h())
    }

    fn assert_untouched(&self) {
        let now = snapshot(self.dir.path());
        assert_eq!(
            self.before,
            now,
            "the build changed the host directory {} outside its root",
            self.dir.path().display()
        );
    }
}

/// Every entry under `root` (not following symlinks): type, mode, owner, content or target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else if md.is_dir() {
                stack.push(r.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(e.path()).unwrap())
            };
            out.insert(
                r.display().to_string(),
                format!(
                    "{what} mode={:o} owner={}:{} mtime={}",
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.mtime()
                ),
            );
        }
    }
    out
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

hoist_testsupport::home_type!();

impl Home {
    fn new() -> Home {
        Home(hoist_testsupport::Home::busybox(HOIST))
    }

    /// Imports a rootfs of `entries` (no busybox in it) as `tag`.
    fn import(&self, tag: &str, entries: &[(&str, Src<'_>)]) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, src) in entries {
            let mut h = tar::Header::new_ustar();
            match src {
                Src::File(c) => {
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    h.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut h, name, c.as_bytes()).unwrap();
                }
                Src::Dir => {
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
                Src::Link(t) => {
                    h.set_size(0);
                    h.set_mode(0o777);
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, name, t).unwrap();
                }
                Src::Tar(_) => unreachable!("no tars inside an imported rootfs"),
            }
        }
        let n = self.next();
        let path = self.dir.path().join(format!("rootfs{n}.tar"));
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let o = self
            .cmd(&["import", path.to_str().unwrap(), tag])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }

    /// A fresh context directory holding `dockerfile` and `files`.
    fn context(&self, dockerfile: &str, files: &[(&str, Src<'_>)]) -> PathBuf {
        let n = self.next();
        let ctx = self.dir.path().join(format!("ctx{n}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (p, src) in files {
            let p = ctx.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match src {
                Src::File(c) => std::fs::write(p, c).unwrap(),
                Src::Dir => std::fs::create_dir_all(p).unwrap(),
                Src::Link(t) => std::os::unix::fs::symlink(t, p).unwrap(),
                Src::Tar(files) => std::fs::write(p, tar_of(files)).unwrap(),
            }
        }
        ctx
    }

    /// `hoist build --progress plain -o type=local,dest=CTX/out CTX`: the image's files, or the
    /// build's output when it failed.
    fn try_build(&self, ctx: &Path) -> Result<PathBuf, String> {
        let dest = format!("type=local,dest={}", ctx.join("out").display());
        let o = self
            .cmd(&[
                "build",
                "--progress",
                "plain",
                "-o",
                &dest,
                ctx.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        if o.status.success() {
            Ok(ctx.join("out"))
        } else {
            Err(text(&o))
        }
    }
}

/// Builds `dockerfile` (`{H}` = the sentinel) with `files`, asserts the sentinel is untouched
/// (before looking at the result), and returns the image's files.
fn build(h: &Home, s: &Sentinel, dockerfile: &str, files: &[(&str, Src<'_>)]) -> PathBuf {
    let ctx = h.context(&s.fill(dockerfile), files);
    let r = h.try_build(&ctx);
    s.assert_untouched();
    r.unwrap_or_else(|e| panic!("build failed:\n{e}"))
}

/// Builds `dockerfile` as [`build`] does, expecting a refusal: the sentinel untouched and the
/// build failed with `why` in its output.
fn refused(h: &Home, s: &Sentinel, dockerfile: &str, files: &[(&str, Src<'_>)], why: &str) {
    let ctx = h.context(&s.fill(dockerfile), files);
    let r = h.try_build(&ctx);
    s.assert_untouched();
    match r {
        Ok(_) => panic!("the build succeeded; expected it to fail with {why:?}"),
        Err(e) => assert!(e.contains(why), "expected {why:?} in:\n{e}"),
    }
}

/// `out` + the absolute image path `p` (`{H}` filled in).
fn at(out: &Path, s: &Sentinel, p: &str) -> PathBuf {
    out.join(s.fill(p).trim_start_matches('/'))
}

fn read(p: &Path) -> String {
    // Never through a symlink: the image's files are checked as they are.
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        md.is_file(),
        "{} is not a regular file: {md:?}",
        p.display()
    );
    std::fs::read_to_string(p).unwrap()
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .display()
        .to_string()
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (md.uid(), md.gid())
}

fn absent(p: &Path) {
    assert!(
        std::fs::symlink_metadata(p).is_err(),
        "{} should not exist",
        p.display()
    );
}

// ----- multi-source COPY: one source plants a symlink, a later one lands on it -----

#[test]
fn multi_source_copy_from_a_stage_onto_its_own_absolute_symlink_is_refused() {
    let (h, s) = (Home::new(), Sentinel::new());
    // A directory of a later source landing on the symlink an earlier one wrote: refused, as
    // BuildKit refuses it ("cannot copy to non-directory"), never written through.
    refused(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p /o /p/s && ln -s {H} /o/s && echo inside > /p/s/f\n\
         FROM busybox\n\
         COPY --from=s1 /o/ /p/ /d/\n",
        &[],
        "cannot copy to non-directory: /d/s",
    );
}

#[test]
fn multi_source_copy_of_two_context_dirs_onto_an_absolute_symlink_is_refused() {
    let (h, s) = (Home::new(), Sentinel::new());
    refused(
        &h,
        &s,
        "FROM busybox\nCOPY a/ b/ /d/\n",
        &[("a/s", Src::Link(s.h())), ("b/s/f", Src::File("ctx\n"))],
        "cannot copy to non-directory: /d/s",
    );
}

#[test]
fn multi_source_copy_onto_a_relative_symlink_climbing_with_dotdot_is_refused() {
    let (h, s) = (Home::new(), Sentinel::new());
    refused(
        &h,
        &s,
        "FROM busybox\nCOPY a/ b/ /d/\n",
        &[
            ("a/s", Src::Link(s.climbing())),
            ("b/s/sub/f", Src::File("ctx\n")),
        ],
        "cannot copy to non-directory: /d/s",
    );
}

#[test]
fn multi_source_copy_of_a_file_over_a_symlink_to_a_host_file_replaces_the_link() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\nCOPY a/ b/ /d/\n",
        &[
            ("a/file", Src::Link(format!("{}/file", s.h()))),
            ("b/file", Src::File("new\n")),
        ],
    );
    assert_eq!(read(&out.join("d/file")), "new\n");
}

#[test]
fn multi_source_copy_from_a_stage_of_a_file_over_its_symlink_replaces_the_link() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p /o /p && ln -s {H}/file /o/file && echo new > /p/file\n\
         FROM busybox\n\
         COPY --from=s1 /o/ /p/ /d/\n",
        &[],
    );
    assert_eq!(read(&out.join("d/file")), "new\n");
}

#[test]
fn copy_link_multi_source_onto_its_own_symlink_is_refused() {
    let (h, s) = (Home::new(), Sentinel::new());
    refused(
        &h,
        &s,
        "FROM busybox\nCOPY --link a/ b/ /d/\n",
        &[("a/s", Src::Link(s.h())), ("b/s/f", Src::File("ctx\n"))],
        "cannot copy to non-directory: /d/s",
    );
}

#[test]
fn copy_parents_into_a_symlinked_parent_of_the_base_resolves_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN mkdir /d && ln -s {H} /d/s\n\
         COPY --parents s/f /d/\n",
        &[("s/f", Src::File("ctx\n"))],
    );
    assert_eq!(link(&out.join("d/s")), s.h());
    assert_eq!(read(&at(&out, &s, "{H}/f")), "ctx\n");
}

#[test]
fn copy_heredoc_onto_a_symlink_to_a_host_file_writes_the_image_file() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H}/file /hd\n\
         COPY <<EOF /hd\nnew\nEOF\n",
        &[],
    );
    assert_eq!(read(&at(&out, &s, "{H}/file")), "new\n");
}

// ----- COPY --from: sources read through symlinked parents -----

#[test]
fn copy_from_a_stage_through_an_absolute_symlinked_parent_reads_the_stage() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p {H} && echo inside > {H}/keep && ln -s {H} /o\n\
         FROM busybox\n\
         COPY --from=s1 /o/keep /got\n",
        &[],
    );
    assert_eq!(read(&out.join("got")), "inside\n");
}

#[test]
fn copy_from_a_stage_through_a_relative_symlinked_parent_reads_the_stage() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        &format!(
            "FROM busybox AS s1\n\
             RUN mkdir -p {{H}} /l && echo inside > {{H}}/keep && ln -s {} /l/o\n\
             FROM busybox\n\
             COPY --from=s1 /l/o/keep /got\n",
            s.climbing()
        ),
        &[],
    );
    assert_eq!(read(&out.join("got")), "inside\n");
}

#[test]
fn copy_from_a_stage_of_a_directory_behind_a_symlink_copies_the_stage_dir() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p {H}/sub && echo inside > {H}/sub/only-inside && ln -s {H} /o\n\
         FROM busybox\n\
         COPY --from=s1 /o/sub/ /d/\n",
        &[],
    );
    assert_eq!(read(&out.join("d/only-inside")), "inside\n");
    absent(&out.join("d/inner"));
}

// ----- user and group names: /etc/passwd and /etc/group behind symlinks -----

const SHADOW_AS_PASSWD: &str = "FROM busybox\n\
    RUN echo 'root:x:4242:4242:root:/root:/bin/sh' > /etc/shadow && rm /etc/passwd \
    && ln -s /etc/shadow /etc/passwd\n";

#[test]
fn user_root_with_passwd_linked_to_shadow_uses_the_images_shadow() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        &format!("{SHADOW_AS_PASSWD}USER root\nRUN id -u > /tmp/uid && id -g > /tmp/gid\n"),
        &[],
    );
    assert_eq!(read(&out.join("tmp/uid")), "4242\n");
    assert_eq!(read(&out.join("tmp/gid")), "4242\n");
}

#[test]
fn chown_root_with_passwd_linked_to_shadow_uses_the_images_shadow() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        &format!("{SHADOW_AS_PASSWD}COPY --chown=root f /f\n"),
        &[("f", Src::File("x"))],
    );
    assert_eq!(owner(&out.join("f")), (4242, 4242));
}

#[test]
fn chown_group_with_group_linked_to_a_host_file_uses_the_images_file() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN mkdir -p {H} && echo 'grp:x:4343:' > {H}/group && rm /etc/group \
         && ln -s {H}/group /etc/group\n\
         COPY --chown=0:grp f /f\n",
        &[("f", Src::File("x"))],
    );
    assert_eq!(owner(&out.join("f")), (0, 4343));
}

#[test]
fn user_with_group_linked_to_a_host_file_uses_the_images_file() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN mkdir -p {H} && echo 'grp:x:4343:' > {H}/group && rm /etc/group \
         && ln -s {H}/group /etc/group\n\
         USER root:grp\n\
         RUN id -g > /tmp/gid\n",
        &[],
    );
    assert_eq!(read(&out.join("tmp/gid")), "4343\n");
}

#[test]
fn chown_with_etc_itself_linked_to_a_host_dir_uses_the_images_files() {
    let (h, s) = (Home::new(), Sentinel::new());
    let hp = format!("{}/passwd", s.h());
    let hg = format!("{}/group", s.h());
    let hd = s.h();
    let mut entries: Vec<(&str, Src<'_>)> = Vec::new();
    let parts: Vec<&str> = hd.trim_start_matches('/').split('/').collect();
    let prefixes: Vec<String> = (0..parts.len()).map(|i| parts[..=i].join("/")).collect();
    for p in &prefixes {
        entries.push((p.as_str(), Src::Dir));
    }
    entries.push((
        hp.trim_start_matches('/'),
        Src::File("app:x:4242:4343::/:/bin/sh\n"),
    ));
    entries.push((hg.trim_start_matches('/'), Src::File("grp:x:4344:\n")));
    entries.push(("etc", Src::Link(hd.clone())));
    h.import("linked-etc:latest", &entries);
    let out = build(
        &h,
        &s,
        "FROM linked-etc\nCOPY --chown=app f /f\nCOPY --chown=app:grp f /g\n",
        &[("f", Src::File("x"))],
    );
    assert_eq!(owner(&out.join("f")), (4242, 4343));
    assert_eq!(owner(&out.join("g")), (4242, 4344));
}

#[test]
fn chown_with_passwd_as_a_climbing_relative_link_uses_the_images_file() {
    let (h, s) = (Home::new(), Sentinel::new());
    let hd = s.h();
    let parts: Vec<&str> = hd.trim_start_matches('/').split('/').collect();
    let mut prefixes = Vec::new();
    for i in 0..parts.len() {
        prefixes.push(parts[..=i].join("/"));
    }
    let hp = format!("{}/passwd", hd.trim_start_matches('/'));
    let target = format!("{}/passwd", s.climbing());
    let mut entries: Vec<(&str, Src<'_>)> = vec![("etc", Src::Dir)];
    for p in &prefixes {
        entries.push((p.as_str(), Src::Dir));
    }
    entries.push((hp.as_str(), Src::File("app:x:4242:4343::/:/bin/sh\n")));
    entries.push(("etc/passwd", Src::Link(target)));
    h.import("climbing-passwd:latest", &entries);
    let out = build(
        &h,
        &s,
        "FROM climbing-passwd\nCOPY --chown=app f /f\n",
        &[("f", Src::File("x"))],
    );
    assert_eq!(owner(&out.join("f")), (4242, 4343));
}

// ----- WORKDIR: the directory RUN needs is made inside the root -----

#[test]
fn workdir_through_an_absolute_symlink_is_made_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H} /w\n\
         WORKDIR /w/new/deep\n\
         RUN pwd > /tmp/pwd\n",
        &[],
    );
    assert!(at(&out, &s, "{H}/new/deep").is_dir());
    // The process starts in the directory inside the image (pwd prints the physical path).
    assert_eq!(read(&out.join("tmp/pwd")), s.fill("{H}/new/deep\n"));
}

#[test]
fn workdir_through_a_climbing_relative_symlink_is_made_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        &format!(
            "FROM busybox\n\
             RUN mkdir /l && ln -s {} /l/w\n\
             WORKDIR /l/w/new\n\
             RUN true\n",
            s.climbing()
        ),
        &[],
    );
    assert!(at(&out, &s, "{H}/new").is_dir());
}

#[test]
fn workdir_that_is_a_dangling_symlink_to_a_host_path_is_made_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H}/made /w\n\
         WORKDIR /w\n\
         RUN true\n",
        &[],
    );
    assert!(at(&out, &s, "{H}/made").is_dir());
}

// ----- ADD of a tar -----

#[test]
fn add_tar_into_a_symlinked_directory_of_the_base_extracts_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\nRUN ln -s {H} /t\nADD x.tar /t/\n",
        &[(
            "x.tar",
            Src::Tar(vec![("f", "tar\n"), ("sub/inner", "tar\n")]),
        )],
    );
    assert_eq!(read(&at(&out, &s, "{H}/f")), "tar\n");
    assert_eq!(read(&at(&out, &s, "{H}/sub/inner")), "tar\n");
}

#[test]
fn add_tar_after_a_source_that_made_a_symlink_extracts_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let inside = format!("a{}/.keep", s.h());
    let out = build(
        &h,
        &s,
        "FROM busybox\nADD a/ x.tar /d/\n",
        &[
            ("a/s", Src::Link(s.h())),
            (inside.as_str(), Src::File("")),
            ("x.tar", Src::Tar(vec![("s/f", "tar\n")])),
        ],
    );
    assert_eq!(link(&out.join("d/s")), s.h());
    // As docker's chrooted untar: the tar's symlinks resolve inside the destination directory.
    assert_eq!(read(&at(&out, &s, "/d{H}/f")), "tar\n");
}

#[test]
fn add_tar_through_a_dangling_symlink_an_earlier_source_made_is_refused() {
    let (h, s) = (Home::new(), Sentinel::new());
    let ctx = h.context(
        "FROM busybox\nADD a/ x.tar /d/\n",
        &[
            ("a/s", Src::Link(s.h())),
            ("x.tar", Src::Tar(vec![("s/f", "tar\n")])),
        ],
    );
    let r = h.try_build(&ctx);
    s.assert_untouched();
    let e = r.expect_err("the build should fail");
    assert!(e.contains("\"s\" is a dangling symlink"), "{e}");
}

// ----- RUN mounts -----

#[test]
fn bind_mount_target_behind_a_symlink_is_mounted_inside_and_its_stub_removed() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H} /b\n\
         RUN --mount=type=bind,source=f,target=/b/m cat /b/m > /tmp/seen\n",
        &[("f", Src::File("ctx\n"))],
    );
    assert_eq!(read(&out.join("tmp/seen")), "ctx\n");
    absent(&at(&out, &s, "{H}/m"));
}

#[test]
fn cache_mount_target_behind_a_symlink_is_mounted_inside() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H} /c\n\
         RUN --mount=type=cache,id=c1,target=/c/cache echo hi > /c/cache/f\n\
         RUN --mount=type=cache,id=c1,target=/m cat /m/f > /tmp/seen\n",
        &[],
    );
    assert_eq!(read(&out.join("tmp/seen")), "hi\n");
    absent(&at(&out, &s, "{H}/cache"));
}

#[test]
fn mount_stub_cleanup_does_not_follow_a_symlink_the_run_planted() {
    let (h, s) = (Home::new(), Sentinel::new());
    // The RUN moves the directory holding its mount point away and puts a symlink to the host
    // in its place: the stub the builder cleans up after the step is `/c/x`, now a host path.
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN --mount=type=cache,id=c2,target=/c/x mv /c /c2 && ln -s {H} /c\n",
        &[],
    );
    assert_eq!(link(&out.join("c")), s.h());
}

#[test]
fn bind_mount_from_a_stage_through_a_symlinked_source_reads_the_stage() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p {H} && echo inside > {H}/keep && ln -s {H} /o\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=s1,source=/o/keep,target=/m cat /m > /tmp/seen\n",
        &[],
    );
    assert_eq!(read(&out.join("tmp/seen")), "inside\n");
}

#[test]
fn cache_mount_seeded_from_a_stage_through_a_symlinked_source_reads_the_stage() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox AS s1\n\
         RUN mkdir -p {H}/sub && echo inside > {H}/sub/only-inside && ln -s {H} /o\n\
         FROM busybox\n\
         RUN --mount=type=cache,id=seeded,from=s1,source=/o/sub,target=/m \
         cat /m/only-inside > /tmp/seen && ls /m > /tmp/list\n",
        &[],
    );
    assert_eq!(read(&out.join("tmp/seen")), "inside\n");
    assert_eq!(read(&out.join("tmp/list")), "only-inside\n");
}

// ----- export -----

#[test]
fn local_export_of_a_layer_over_an_earlier_symlink_stays_in_the_destination() {
    let (h, s) = (Home::new(), Sentinel::new());
    let out = build(
        &h,
        &s,
        "FROM busybox\n\
         RUN ln -s {H} /e\n\
         RUN rm /e && mkdir /e && echo x > /e/f && echo y > /e/keep\n",
        &[],
    );
    assert_eq!(read(&out.join("e/f")), "x\n");
    assert_eq!(read(&out.join("e/keep")), "y\n");
}
