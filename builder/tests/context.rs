//! Build context: ignore-file precedence, COPY source resolution, content checksums, stdin.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use hoist_builder::context::{Context, ContextError, ContextFile, FileKind, destination_paths};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// A context like the book's: web/, data/, sample files, node_modules, a .dockerignore.
fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "Dockerfile", "FROM busybox\nCOPY . /app\n");
    write(r, "sample.txt", "sample\n");
    write(r, "sample2.txt", "sample two\n");
    write(r, "web/index.html", "<h1>hi</h1>\n");
    write(r, "web/css/site.css", "body{}\n");
    write(r, "data/files1", "1\n");
    write(r, "data/files2", "2\n");
    write(r, "data/other", "o\n");
    write(r, "node_modules/x/index.js", "x\n");
    write(r, "node_modules/keep/index.js", "k\n");
    write(r, "secret.env", "TOKEN=1\n");
    write(
        r,
        ".dockerignore",
        "node_modules\n!node_modules/keep\n*.env\n",
    );
    d
}

fn dests(files: &[ContextFile]) -> Vec<String> {
    files.iter().map(|f| f.dest.clone()).collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn copy_dot_copies_everything_not_ignored() {
    let d = project();
    let ctx = Context::from_dir(d.path(), None).unwrap();
    let files = ctx.resolve(&s(&["."]), &[], false).unwrap();
    assert_eq!(
        dests(&files),
        [
            "",
            ".dockerignore",
            "Dockerfile",
            "data",
            "data/files1",
            "data/files2",
            "data/other",
            "node_modules",
            "node_modules/keep",
            "node_modules/keep/index.js",
            "sample.txt",
            "sample2.txt",
            "web",
            "web/css",
            "web/css/site.css",
            "web/index.html",
        ]
    );
    assert!(files[0].top_level && files[0].kind == FileKind::Dir);
    assert!(files[1..].iter().all(|f| !f.top_level));
}

#[test]
fn named_sources_follow_docker_rules() {
    let d = project();
    let ctx = Context::from_dir(d.path(), None).unwrap();
    // a directory copies its contents
    let web = ctx.resolve(&s(&["./web"]), &[], false).unwrap();
    assert_eq!(dests(&web), ["", "css", "css/site.css", "index.html"]);
    assert_eq!(
        destination_paths(&web, "/app/web", false).unwrap(),
        [
            "/app/web",
            "/app/web/css",
            "/app/web/css/site.css",
            "/app/web/index.html"
        ]
    );
    // a single file may be renamed
    let one = ctx.resolve(&s(&["sample.txt"]), &[], false).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        destination_paths(&one, "/data/my-sample.txt", false).unwrap(),
        ["/data/my-sample.txt"]
    );
    assert_eq!(
        destination_paths(&one, "/data", true).unwrap(),
        ["/data/sample.txt"]
    );
    // wildcards; several sources need a directory destination
    let wild = ctx.resolve(&s(&["./sample*"]), &[], false).unwrap();
    assert_eq!(dests(&wild), ["sample.txt", "sample2.txt"]);
    assert_eq!(
        destination_paths(&wild, "/mydir", true).unwrap(),
        ["/mydir/sample.txt", "/mydir/sample2.txt"]
    );
    // several matches go into the destination as a directory, whatever its spelling
    assert_eq!(
        destination_paths(&wild, "/mydir", false).unwrap(),
        ["/mydir/sample.txt", "/mydir/sample2.txt"]
    );
    let files = ctx.resolve(&s(&["./data/files*"]), &[], false).unwrap();
    assert_eq!(
        files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["data/files1", "data/files2"]
    );
    // a wildcard that matches nothing is not an error; a missing name is
    assert!(
        ctx.resolve(&s(&["nothing*"]), &[], false)
            .unwrap()
            .is_empty()
    );
    let e = ctx.resolve(&s(&["missing.txt"]), &[], false).unwrap_err();
    assert!(
        matches!(&e, ContextError::NotFound { ignored: false, .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "\"missing.txt\" not found in the build context"
    );
    // ignored files are invisible
    let e = ctx.resolve(&s(&["secret.env"]), &[], false).unwrap_err();
    assert!(
        matches!(&e, ContextError::NotFound { ignored: true, .. }),
        "{e}"
    );
    assert!(ctx.resolve(&s(&["*.env"]), &[], false).unwrap().is_empty());
    assert!(
        ctx.resolve(&s(&["node_modules/x/index.js"]), &[], false)
            .is_err()
    );
    assert_eq!(
        ctx.resolve(&s(&["node_modules/keep/index.js"]), &[], false)
            .unwrap()
            .len(),
        1
    );
    // `..` and `/` cannot leave the context
    let up = ctx
        .resolve(&s(&["../../sample.txt", "/web/index.html"]), &[], false)
        .unwrap();
    assert_eq!(
        up.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["sample.txt", "web/index.html"]
    );
}

#[test]
fn excludes_and_parents() {
    let d = project();
    let ctx = Context::from_dir(d.path(), None).unwrap();
    let files = ctx.resolve(&s(&["web"]), &s(&["*.html"]), false).unwrap();
    assert_eq!(dests(&files), ["", "css", "css/site.css"]);
    let files = ctx
        .resolve(&s(&["."]), &s(&["**/*.css", "data", "!data/other"]), false)
        .unwrap();
    let d2 = dests(&files);
    assert!(
        !d2.iter().any(|p| p.ends_with(".css") || p == "data/files1"),
        "{d2:?}"
    );
    assert!(
        d2.contains(&"data".to_string()) && d2.contains(&"data/other".to_string()),
        "{d2:?}"
    );
    let files = ctx
        .resolve(&s(&["sample*"]), &s(&["*2.txt"]), false)
        .unwrap();
    assert_eq!(dests(&files), ["sample.txt"]);
    // --parents keeps the directories, or those after a /./ pivot
    let files = ctx
        .resolve(&s(&["./web/css/site.css", "data/./files1"]), &[], true)
        .unwrap();
    assert_eq!(dests(&files), ["web/css/site.css", "files1"]);
    assert_eq!(
        destination_paths(&files, "/dst/", true).unwrap(),
        ["/dst/web/css/site.css", "/dst/files1"]
    );
}

#[test]
fn symlinks_resolve_inside_the_context() {
    let d = project();
    let r = d.path();
    symlink("web/index.html", r.join("link.html")).unwrap();
    symlink("/sample.txt", r.join("abs-link")).unwrap();
    symlink("../../../../etc/passwd", r.join("web/escape")).unwrap();
    let ctx = Context::from_dir(r, None).unwrap();
    // a top-level symlink is followed (an absolute target is relative to the context root)
    let f = ctx
        .resolve(&s(&["link.html", "abs-link"]), &[], false)
        .unwrap();
    assert_eq!(f[0].kind, FileKind::File);
    assert_eq!(
        f[0].host_path,
        fs::canonicalize(r).unwrap().join("web/index.html")
    );
    assert_eq!(f[0].dest, "link.html");
    assert_eq!(
        f[1].host_path,
        fs::canonicalize(r).unwrap().join("sample.txt")
    );
    // a symlink escaping the root is clamped to it: /etc/passwd is not in the context
    assert!(matches!(
        ctx.resolve(&s(&["web/escape"]), &[], false),
        Err(ContextError::NotFound { .. })
    ));
    // below a copied directory, symlinks are copied as links
    let w = ctx.resolve(&s(&["web"]), &[], false).unwrap();
    let esc = w.iter().find(|f| f.dest == "escape").unwrap();
    assert_eq!(esc.kind, FileKind::Symlink);
    assert_eq!(esc.link_target.as_deref(), Some("../../../../etc/passwd"));
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let d = project();
    let r = d.path();
    write(r, "build/app.Dockerfile", "FROM busybox\n");
    write(r, "build/app.Dockerfile.dockerignore", "web\n");
    let ctx = Context::from_dir(r, Some(&r.join("build/app.Dockerfile"))).unwrap();
    assert_eq!(
        ctx.ignore_file().unwrap(),
        r.join("build/app.Dockerfile.dockerignore")
    );
    assert!(ctx.resolve(&s(&["web"]), &[], false).is_err());
    // the generic file no longer applies
    assert!(ctx.resolve(&s(&["secret.env"]), &[], false).is_ok());
    // without its own ignore file, a custom Dockerfile uses the context's .dockerignore
    let ctx = Context::from_dir(r, Some(&r.join("Dockerfile"))).unwrap();
    assert_eq!(
        ctx.ignore_file().unwrap(),
        fs::canonicalize(r).unwrap().join(".dockerignore")
    );
    // a broken ignore file names itself
    write(r, ".dockerignore", "[oops\n");
    let e = Context::from_dir(r, None).unwrap_err();
    assert!(
        e.to_string().contains(".dockerignore") && e.to_string().contains("line 1"),
        "{e}"
    );
}

#[test]
fn checksum_is_content_not_mtime() {
    let d = project();
    let r = d.path();
    let ctx = Context::from_dir(r, None).unwrap();
    let sum = |ctx: &Context, srcs: &[&str]| {
        ctx.checksum(&ctx.resolve(&s(srcs), &[], false).unwrap())
            .unwrap()
    };
    let base = sum(&ctx, &["."]);
    assert!(base.starts_with("sha256:") && base.len() == 71);
    // the package.json rule: a COPY of one file is not affected by edits elsewhere
    let pkg = sum(&ctx, &["sample.txt"]);
    // mtime only: same key
    let f = fs::File::options()
        .write(true)
        .open(r.join("web/index.html"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let ctx = Context::from_dir(r, None).unwrap();
    assert_eq!(sum(&ctx, &["."]), base);
    // content: new key for `.`, same key for the untouched file
    write(r, "web/index.html", "<h1>ho</h1>\n");
    let ctx = Context::from_dir(r, None).unwrap();
    let edited = sum(&ctx, &["."]);
    assert_ne!(edited, base);
    assert_eq!(sum(&ctx, &["sample.txt"]), pkg);
    // mode bits count
    fs::set_permissions(r.join("sample.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = Context::from_dir(r, None).unwrap();
    assert_ne!(sum(&ctx, &["sample.txt"]), pkg);
    // the destination name counts (same content copied under another name)
    fs::copy(r.join("sample.txt"), r.join("renamed.txt")).unwrap();
    let ctx = Context::from_dir(r, None).unwrap();
    assert_ne!(sum(&ctx, &["sample.txt"]), sum(&ctx, &["renamed.txt"]));
    // ignored files do not: editing one leaves the key alone
    let before = sum(&ctx, &["."]);
    write(r, "node_modules/x/index.js", "changed\n");
    write(r, "secret.env", "TOKEN=2\n");
    let ctx = Context::from_dir(r, None).unwrap();
    assert_eq!(sum(&ctx, &["."]), before);
}

#[test]
fn hash_cache_persists_and_detects_same_size_edits() {
    let d = project();
    let r = d.path();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_dir.path().join("hashes.json");
    // make the files old enough to be cached (entries hashed within 1s of a change are not saved)
    for rel in ["sample.txt", "web/index.html"] {
        let f = fs::File::options().write(true).open(r.join(rel)).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ctx = Context::from_dir(r, None)
        .unwrap()
        .with_hash_cache(cache.clone());
    let files = ctx.resolve(&s(&["sample.txt"]), &[], false).unwrap();
    let first = ctx.checksum(&files).unwrap();
    ctx.save_hash_cache().unwrap();
    let saved = fs::read_to_string(&cache).unwrap();
    assert!(saved.contains("sample.txt"), "{saved}");
    // a second context reads the cache and agrees
    let ctx2 = Context::from_dir(r, None)
        .unwrap()
        .with_hash_cache(cache.clone());
    assert_eq!(
        ctx2.checksum(&ctx2.resolve(&s(&["sample.txt"]), &[], false).unwrap())
            .unwrap(),
        first
    );
    // same size, new content: ctime moves, the cache is bypassed
    write(r, "sample.txt", "SAMPLE\n");
    let ctx3 = Context::from_dir(r, None).unwrap().with_hash_cache(cache);
    let third = ctx3
        .checksum(&ctx3.resolve(&s(&["sample.txt"]), &[], false).unwrap())
        .unwrap();
    assert_ne!(third, first);
    let direct = Context::from_dir(r, None).unwrap();
    assert_eq!(
        direct
            .checksum(&direct.resolve(&s(&["sample.txt"]), &[], false).unwrap())
            .unwrap(),
        third
    );
}

fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn stdin_tar_gzip_or_dockerfile() {
    let scratch = tempfile::tempdir().unwrap();
    let t = tar_of(&[
        ("Dockerfile", "FROM busybox\nCOPY a.txt /\n"),
        ("a.txt", "A\n"),
        ("b.log", "B\n"),
        (".dockerignore", "*.log\n"),
    ]);
    let sc = Context::from_stdin(&t[..], scratch.path(), None).unwrap();
    assert!(sc.dockerfile.is_none());
    let ctx = sc.context;
    assert_eq!(
        ctx.read_to_string("Dockerfile").unwrap(),
        "FROM busybox\nCOPY a.txt /\n"
    );
    assert_eq!(
        dests(&ctx.resolve(&s(&["."]), &[], false).unwrap()),
        ["", ".dockerignore", "Dockerfile", "a.txt"]
    );
    let root = ctx.root().to_path_buf();
    assert!(root.starts_with(scratch.path()));
    drop(ctx);
    assert!(
        !root.exists(),
        "the extracted context is removed with the Context"
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &t).unwrap();
    let gz = gz.finish().unwrap();
    let sc = Context::from_stdin(&gz[..], scratch.path(), None).unwrap();
    assert_eq!(sc.context.read_to_string("a.txt").unwrap(), "A\n");

    let sc = Context::from_stdin(&b"FROM busybox\nRUN true\n"[..], scratch.path(), None).unwrap();
    assert_eq!(sc.dockerfile.as_deref(), Some("FROM busybox\nRUN true\n"));
    assert_eq!(sc.context.resolve(&s(&["."]), &[], false).unwrap().len(), 1);
    assert!(matches!(
        sc.context.resolve(&s(&["a.txt"]), &[], false),
        Err(ContextError::NotFound { .. })
    ));
}

#[test]
fn tar_entries_cannot_escape() {
    let scratch = tempfile::tempdir().unwrap();
    let outside = scratch.path().join("escaped");
    // hand-written header: tar::Builder refuses `..` itself
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..10].copy_from_slice(b"../escaped");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[b'x'; 512]);
    bytes.extend_from_slice(&[0; 1024]);
    let _ = Context::from_tar(&bytes[..], scratch.path(), None);
    assert!(!outside.exists());
}
