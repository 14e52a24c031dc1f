//! Interoperability: real peer tools (skopeo, podman, buildah, the docker engine) push to and
//! pull from `hoist serve`, and what comes back is bit-for-bit what went in; and the docker engine
//! loads the archives `hoist save` writes, and `hoist load` the ones `docker save` writes.
//!
//! Every registry case runs against hoist (the required tests, `hoist::<case>`) and against the
//! CNCF registry (`distribution::<case>`), which checks the test itself; the archive cases need
//! no registry and are `hoist::<case>` only. `cargo test -p hoist --test interop hoist::` runs
//! only the required tests. Images are made locally (no network) by `hoist_conformance::fixtures`.
//!
//! These tests need root and the peer tools; `.ci/peers.sh` installs them. A missing tool is a
//! failure naming its apt package, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use hoist_conformance::fixtures::{self, Image, Layout};
use hoist_conformance::harness::Server;
use serde_json::Value;

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Servers, tools, commands
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Hoist,
    Distribution,
}

fn start(kind: Kind) -> Server {
    require_root();
    match kind {
        Kind::Hoist => {
            Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist"))).expect("starting hoist serve")
        }
        Kind::Distribution => Server::distribution().expect("starting the CNCF registry"),
    }
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A directory whose whole path is a valid lowercase repository name (`/tmp/hoist-interop-PID-N`),
/// removed on drop. podman and buildah name an image pulled from `oci:PATH:TAG` after PATH and
/// refuse paths with capitals or components that start with a dot, like tempfile's names.
struct NameableDir(PathBuf);

impl NameableDir {
    fn new() -> NameableDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = PathBuf::from(format!("/tmp/hoist-interop-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return NameableDir(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("creating {}: {e}", path.display()),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for NameableDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A busybox image in a fresh OCI layout.
fn busybox_layout(dir: &Path, tag: &str) -> (Layout, Image) {
    let layout = Layout::create(dir).expect("creating layout");
    let image = fixtures::busybox_image(&layout, tag).expect("making the busybox image");
    (layout, image)
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

/// skopeo: OCI layout -> registry -> OCI layout, and registry repo -> registry repo, bit for bit.
fn skopeo_roundtrip(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let src_dir = work.path().join("src");
    let (src, busybox) = busybox_layout(&src_dir, "1");
    // A second image with several larger, incompressible layers, so uploads are more than one
    // read buffer and several blobs travel per image.
    let big = fixtures::random_image(&src, "big", 3, 24 << 20, 1).expect("random image");

    for (image, repo) in [(&busybox, "interop/busybox"), (&big, "interop/big")] {
        let tag = &image.tag;
        let remote = format!("docker://{}/{repo}:{tag}", server.addr);
        // In: OCI layout -> registry.
        run(skopeo()
            .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
            .arg(src.reference(tag))
            .arg(&remote));

        // Out: registry -> new OCI layout. Same manifest digest, same blob bytes.
        let out_dir = work.path().join(format!("out-{tag}"));
        run(skopeo()
            .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
            .arg(&remote)
            .arg(format!("oci:{}:{tag}", out_dir.display())));
        let out = Layout::open(&out_dir).expect("skopeo wrote a layout");
        assert_eq!(
            out.manifest_for(tag).expect("tag in index.json").digest,
            image.manifest.digest,
            "{}: manifest digest changed on the way through {repo}",
            server.kind
        );
        assert_same_image_blobs(&src, &out, image);

        // Between two repositories of the same registry (skopeo may mount blobs across repos).
        let copy = format!("docker://{}/interop/copy-{tag}:2", server.addr);
        run(skopeo()
            .args([
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(&remote)
            .arg(&copy));
        let out2_dir = work.path().join(format!("out2-{tag}"));
        run(skopeo()
            .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
            .arg(&copy)
            .arg(format!("oci:{}:2", out2_dir.display())));
        let out2 = Layout::open(&out2_dir).expect("skopeo wrote a layout");
        assert_eq!(
            out2.manifest_for("2").expect("tag in index.json").digest,
            image.manifest.digest,
            "{}: manifest digest changed when copying {repo} to interop/copy-{tag}",
            server.kind
        );
        assert_same_image_blobs(&src, &out2, image);
    }
}

/// Every blob of `image` is in `out` with exactly the bytes it has in `src`, and `out` has no
/// other blobs.
fn assert_same_image_blobs(src: &Layout, out: &Layout, image: &Image) {
    out.verify()
        .expect("every blob in the copied layout matches its digest");
    let mut want: Vec<String> = image.blobs().iter().map(|d| d.digest.to_string()).collect();
    want.sort();
    let got: Vec<String> = out
        .blob_files()
        .expect("listing blobs")
        .into_keys()
        .collect();
    assert_eq!(got, want, "blob set of the copied layout");
    for d in image.blobs() {
        assert!(
            src.read_blob(&d.digest).unwrap() == out.read_blob(&d.digest).unwrap(),
            "blob {} differs",
            d.digest
        );
    }
}

/// skopeo inspect (manifest, raw manifest, raw config, by tag and by digest) and list-tags.
fn skopeo_inspect_list_tags(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let (src, image) = busybox_layout(work.path(), "1");
    let repo = format!("{}/interop/tags", server.addr);
    for tag in ["1", "2", "latest"] {
        run(skopeo()
            .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
            .arg(src.reference("1"))
            .arg(format!("docker://{repo}:{tag}")));
    }

    let tags = json(&run(skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repo}"))));
    let mut got: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags in {tags}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    got.sort_unstable();
    assert_eq!(got, ["1", "2", "latest"], "{}: list-tags", server.kind);

    let info = json(&run(skopeo()
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{repo}:2"))));
    assert_eq!(
        info["Digest"],
        image.manifest.digest.as_str(),
        "{}: inspect Digest",
        server.kind
    );
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Architecture"], fixtures::oci_arch());
    assert_eq!(info["Layers"][0], image.layers[0].digest.as_str());
    let mut inspected_tags: Vec<&str> = info["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    inspected_tags.sort_unstable();
    assert_eq!(
        inspected_tags,
        ["1", "2", "latest"],
        "{}: inspect RepoTags",
        server.kind
    );

    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{repo}:latest")));
    assert_eq!(
        raw.as_bytes(),
        src.read_blob(&image.manifest.digest).unwrap(),
        "{}: inspect --raw returns the manifest bytes",
        server.kind
    );
    let config = run(skopeo()
        .args(["inspect", "--raw", "--config", "--tls-verify=false"])
        .arg(format!("docker://{repo}@{}", image.manifest.digest)));
    assert_eq!(
        config.as_bytes(),
        src.read_blob(&image.config.digest).unwrap(),
        "{}: inspect --config --raw by digest returns the config bytes",
        server.kind
    );

    // An unknown tag is an error, not an empty answer.
    let (ok, _, err) = run_status(
        skopeo()
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{repo}:missing")),
    );
    assert!(!ok, "{}: inspecting a missing tag succeeded", server.kind);
    assert!(
        err.contains("manifest unknown")
            || err.contains("not found")
            || err.contains("MANIFEST_UNKNOWN"),
        "{}: unexpected error for a missing tag: {err}",
        server.kind
    );
}

/// skopeo delete by digest removes the manifest (and every tag naming it).
fn skopeo_delete(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let (src, image) = busybox_layout(work.path(), "1");
    let remote = format!("docker://{}/interop/delete:1", server.addr);
    run(skopeo()
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(src.reference("1"))
        .arg(&remote));
    let by_digest = format!(
        "docker://{}/interop/delete@{}",
        server.addr, image.manifest.digest
    );
    run(skopeo()
        .args(["delete", "--tls-verify=false"])
        .arg(&by_digest));
    let (ok, out, _) = run_status(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&remote),
    );
    assert!(
        !ok,
        "{}: the tag still resolves after delete: {out}",
        server.kind
    );
    let (ok, out, _) = run_status(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&by_digest),
    );
    assert!(
        !ok,
        "{}: the manifest is still there after delete: {out}",
        server.kind
    );
}

// ---------------------------------------------------------------------------------------------
// podman and buildah (private storage, no daemon)
// ---------------------------------------------------------------------------------------------

fn read_digestfile(path: &Path) -> String {
    let s = std::fs::read_to_string(path).expect("digest file written");
    let s = s.trim().to_owned();
    assert!(
        s.starts_with("sha256:") && s.len() == 71,
        "not a digest: {s:?}"
    );
    s
}

/// The manifest digest the registry answers for `reference` (a `docker://` reference).
fn remote_digest(reference: &str) -> String {
    let info = json(&run(skopeo()
        .args(["inspect", "--tls-verify=false"])
        .arg(reference)));
    info["Digest"].as_str().expect("Digest").to_owned()
}

/// podman pushes an image it pulled from an OCI layout (as OCI) and one it imported from a rootfs
/// tar (as docker v2s2), then fresh stores pull them back by tag and by digest; digests match what
/// the push reported.
fn podman_push_pull(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let store = Storage::new();
    let nameable = NameableDir::new();
    let (src, _) = busybox_layout(&nameable.path().join("layout"), "1");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");

    let id = run(store.podman().args(["pull", "-q"]).arg(src.reference("1")));
    let pulled_ref = format!("{}/interop/podman:1", server.addr);
    run(store.podman().arg("tag").arg(id.trim()).arg(&pulled_ref));
    let imported_ref = format!("{}/interop/podman-import:1", server.addr);
    run(store.podman().arg("import").arg(&rootfs).arg(&imported_ref));

    for (reference, format) in [(&pulled_ref, "oci"), (&imported_ref, "v2s2")] {
        let digestfile = work.path().join("digest");
        run(store
            .podman()
            .args([
                "push",
                "--tls-verify=false",
                "--format",
                format,
                "--digestfile",
            ])
            .arg(&digestfile)
            .arg(reference));
        let pushed = read_digestfile(&digestfile);
        assert_eq!(
            remote_digest(&format!("docker://{reference}")),
            pushed,
            "{}: the registry's digest for {reference} differs from what podman pushed",
            server.kind
        );

        // Pull back into fresh stores (the pushing store still has the image under other
        // names, so removing it there would only untag it), by tag and by digest.
        let repo = reference.rsplit_once(':').expect("tagged").0;
        let by_digest = format!("{repo}@{pushed}");
        for pull in [reference.as_str(), by_digest.as_str()] {
            let fresh = Storage::new();
            run(fresh
                .podman()
                .args(["pull", "--tls-verify=false"])
                .arg(pull));
            let got = run(fresh
                .podman()
                .args(["image", "inspect", "--format", "{{.Digest}}"])
                .arg(pull));
            assert_eq!(
                got.trim(),
                pushed,
                "{}: digest of {pull} pulled back",
                server.kind
            );
        }
    }
}

/// An index pushed by `podman manifest push --all` (linux/amd64 + linux/arm64 of one busybox
/// rootfs): hoist pulls the chosen platform into a fresh store and records the index, as docker
/// and containerd do; no `<none>` image is left; `run` uses the host's platform; a later pull of
/// the other platform adds it; a store that holds only one platform pushes what it has.
fn podman_manifest_push_all(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let store = Storage::new();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
    for arch in ["amd64", "arm64"] {
        run(store
            .podman()
            .args(["import", "--arch", arch])
            .arg(&rootfs)
            .arg(format!("localhost/multi-{arch}:1")));
    }
    run(store
        .podman()
        .args(["manifest", "create", "localhost/multi-list:1"]));
    for arch in ["amd64", "arm64"] {
        run(store.podman().args([
            "manifest",
            "add",
            "localhost/multi-list:1",
            &format!("containers-storage:localhost/multi-{arch}:1"),
        ]));
    }
    let reference = format!("{}/multi/app:1", server.addr);
    run(store.podman().args([
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "localhost/multi-list:1",
        &format!("docker://{reference}"),
    ]));
    let raw = json(&run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))));
    assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2), "{raw}");

    let images = |home: &Path| run(hoist(home).args(["images"]));
    let arch_of = |home: &Path| {
        inspect_one(&run(hoist(home).args(["inspect", &reference])))["Architecture"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // The other platform, into a fresh store.
    let arm = work.path().join("home-arm");
    run(hoist(&arm).args(["pull", "--platform", "linux/arm64", &reference]));
    assert_eq!(arch_of(&arm), "arm64", "{}", server.kind);
    let listed = images(&arm);
    assert!(listed.contains("multi/app"), "{listed}");
    assert!(
        !listed.contains("<none>"),
        "a <none> image is left:\n{listed}"
    );

    // The host's platform, into another fresh store, and run.
    let host = work.path().join("home-host");
    run(hoist(&host).args(["pull", &reference]));
    assert_eq!(arch_of(&host), "amd64", "{}", server.kind);
    let out = run(hoist(&host).args(["run", "--rm", &reference, "echo", "ran"]));
    assert_eq!(out.trim(), "ran");
    // The default network's bridge this home made goes with it.
    run(hoist(&host).args(["network", "prune", "-f"]));
    // A later pull of the other platform adds it, and still leaves no <none> image.
    run(hoist(&host).args(["pull", "--platform", "linux/arm64", &reference]));
    let listed = images(&host);
    assert!(
        !listed.contains("<none>"),
        "a <none> image is left:\n{listed}"
    );
    assert_eq!(
        arch_of(&host),
        "amd64",
        "the tag still runs the host's platform"
    );

    // The store holding arm64 only pushes what it has; a fresh store pulls that back.
    let partial = format!("{}/multi/partial:1", server.addr);
    run(hoist(&arm).args(["tag", &reference, &partial]));
    run(hoist(&arm).args(["push", &partial]));
    let back = work.path().join("home-back");
    run(hoist(&back).args(["pull", "--platform", "linux/arm64", &partial]));
    let got = inspect_one(&run(hoist(&back).args(["inspect", &partial])));
    assert_eq!(got["Architecture"], "arm64", "{got}");
}

/// buildah builds a new layer on top of the busybox image (no RUN, so no runtime needed), pushes it
/// as a docker v2s2 image, and the registry serves exactly those bytes back.
fn buildah_push_pull(kind: Kind) {
    let server = start(kind);
    let work = tmp();
    let store = Storage::new();
    let nameable = NameableDir::new();
    let (src, base) = busybox_layout(&nameable.path().join("layout"), "1");
    let hello = work.path().join("hello.txt");
    std::fs::write(&hello, "hello from buildah\n").unwrap();

    let ctr = run(store.buildah().args(["from", "-q"]).arg(src.reference("1")));
    let ctr = ctr.trim();
    run(store
        .buildah()
        .arg("copy")
        .arg(ctr)
        .arg(&hello)
        .arg("/hello.txt"));
    run(store
        .buildah()
        .args([
            "config",
            "--cmd",
            "cat /hello.txt",
            "--label",
            "interop=buildah",
        ])
        .arg(ctr));
    run(store
        .buildah()
        .args(["commit", "-q", ctr, "interop-buildah"]));

    let reference = format!("{}/interop/buildah:1", server.addr);
    let digestfile = work.path().join("digest");
    run(store
        .buildah()
        .args(["push", "--tls-verify=false", "-f", "v2s2", "--digestfile"])
        .arg(&digestfile)
        .arg("interop-buildah")
        .arg(format!("docker://{reference}")));
    let pushed = read_digestfile(&digestfile);

    // Copy it out with skopeo: the manifest the registry serves hashes to the pushed digest and
    // has the base layer (unchanged) plus the new one.
    let out_dir = work.path().join("out");
    run(skopeo()
        .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:1", out_dir.display())));
    let out = Layout::open(&out_dir).unwrap();
    out.verify().expect("blobs match their digests");
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    assert_eq!(
        hoist_oci::Digest::sha256_of(raw.as_bytes()).as_str(),
        pushed,
        "{}: the manifest served does not hash to the pushed digest",
        server.kind
    );
    let manifest = json(&raw);
    assert_eq!(
        manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "{}: buildah pushed v2s2",
        server.kind
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{}: base layer + new layer", server.kind);
    // buildah recompresses the base layer (it stores layers uncompressed), so its blob digest may
    // change, but its diff id (the digest of the tar) must not.
    let base_config =
        json(&String::from_utf8(src.read_blob(&base.config.digest).unwrap()).unwrap());
    let config = run(skopeo()
        .args(["inspect", "--raw", "--config", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    let config = json(&config);
    assert_eq!(
        config["rootfs"]["diff_ids"][0], base_config["rootfs"]["diff_ids"][0],
        "{}: the base layer's diff id changed",
        server.kind
    );
    assert_eq!(config["config"]["Labels"]["interop"], "buildah");

    // Pull it back into a fresh buildah store.
    let store2 = Storage::new();
    run(store2
        .buildah()
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(&reference));
    let got = run(store2
        .buildah()
        .args(["images", "--digests", "--format", "{{.Digest}}"]));
    assert_eq!(
        got.trim(),
        pushed,
        "{}: digest pulled back by buildah",
        server.kind
    );
}

// ---------------------------------------------------------------------------------------------
// docker engine
// ---------------------------------------------------------------------------------------------

fn repo_digests(dockerd: &Dockerd, reference: &str) -> Vec<String> {
    let out = run(dockerd.docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        reference,
    ]));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("RepoDigests ({e}): {out}"))
}

/// docker imports a rootfs tar, pushes it, forgets it, pulls it back: same digest. It also pulls
/// the OCI image skopeo pushed, by tag and by digest.
fn docker_push_pull(kind: Kind) {
    let server = start(kind);
    let dockerd = Dockerd::start();
    let work = tmp();
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");

    let reference = format!("{}/interop/docker:1", server.addr);
    run(dockerd.docker().arg("import").arg(&rootfs).arg(&reference));
    let out = run(dockerd.docker().arg("push").arg(&reference));
    let pushed = pushed_digest(&out);
    assert_eq!(
        remote_digest(&format!("docker://{reference}")),
        pushed,
        "{}: the registry's digest differs from what docker pushed",
        server.kind
    );
    run(dockerd.docker().args(["image", "rm", &reference]));
    let (ok, _, _) = run_status(dockerd.docker().args(["image", "inspect", &reference]));
    assert!(
        !ok,
        "the image is still in the engine after docker image rm"
    );
    run(dockerd.docker().args(["pull", &reference]));
    let repo = format!("{}/interop/docker", server.addr);
    assert_eq!(
        repo_digests(&dockerd, &reference),
        [format!("{repo}@{pushed}")],
        "{}: RepoDigests after docker pull",
        server.kind
    );

    // An OCI image (pushed by skopeo) pulled by docker, by tag and by digest.
    let (src, image) = busybox_layout(&work.path().join("layout"), "1");
    let oci_ref = format!("{}/interop/docker-oci:1", server.addr);
    run(skopeo()
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(src.reference("1"))
        .arg(format!("docker://{oci_ref}")));
    run(dockerd.docker().args(["pull", &oci_ref]));
    let oci_repo = format!("{}/interop/docker-oci", server.addr);
    let want = format!("{oci_repo}@{}", image.manifest.digest);
    assert_eq!(
        repo_digests(&dockerd, &oci_ref),
        std::slice::from_ref(&want),
        "{}: RepoDigests of the OCI image",
        server.kind
    );
    run(dockerd.docker().args(["image", "rm", &oci_ref]));
    run(dockerd.docker().args(["pull", &want]));
    assert_eq!(
        repo_digests(&dockerd, &want),
        std::slice::from_ref(&want),
        "{}: pulled by digest",
        server.kind
    );
}

// ---------------------------------------------------------------------------------------------
// docker engine <-> hoist's local store (image archives; no registry)
// ---------------------------------------------------------------------------------------------

/// The hoist CLI with its local store in `home`.
fn hoist(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.env("HOIST_HOME", home);
    cmd
}

/// The single object `inspect` (docker's or hoist's) prints for one image.
fn inspect_one(out: &str) -> Value {
    let mut all = json(out);
    let list = all.as_array_mut().expect("inspect prints a JSON array");
    assert_eq!(list.len(), 1, "inspect of one image: {out}");
    list.remove(0)
}

/// `REPOSITORY:TAG` of every image the engine lists, sorted.
fn docker_repo_tags(dockerd: &Dockerd) -> Vec<String> {
    let out = run(dockerd
        .docker()
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut tags: Vec<String> = out.lines().map(str::to_owned).collect();
    tags.sort();
    tags
}

/// hoist imports the busybox rootfs with a CMD, tags it twice and saves both tags as a
/// docker-archive; `docker load` lists both tags, with hoist's image id (config digest), Cmd and
/// diff ids; `docker save` of it loads back into hoist as the same image. An OCI layout archive
/// (`hoist save --format oci`) is not tried: docker 20.10's `docker load` only reads
/// docker-archives (it needs `manifest.json`).
fn docker_loads_what_hoist_saves() {
    require_root();
    let dockerd = Dockerd::start();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");

    let imported = run(hoist(&home)
        .args(["import", "--change", r#"CMD ["/bin/echo","hello"]"#])
        .arg(&rootfs)
        .arg("interop/saved:1"));
    run(hoist(&home).args(["tag", "interop/saved:1", "interop/saved:2"]));
    let want = inspect_one(&run(hoist(&home).args(["inspect", "interop/saved:2"])));
    let id = want["Id"].as_str().expect("hoist inspect Id");
    assert_eq!(imported.trim(), id, "hoist import prints the image id");
    assert_eq!(
        want["Config"]["Cmd"],
        serde_json::json!(["/bin/echo", "hello"])
    );

    let archive = work.path().join("saved.tar");
    run(hoist(&home)
        .args(["save", "-o"])
        .arg(&archive)
        .args(["interop/saved:1", "interop/saved:2"]));
    let out = run(dockerd.docker().arg("load").arg("-i").arg(&archive));
    for tag in ["interop/saved:1", "interop/saved:2"] {
        assert!(
            out.contains(&format!("Loaded image: {tag}")),
            "docker load did not report {tag}:\n{out}"
        );
    }
    assert_eq!(
        docker_repo_tags(&dockerd),
        ["interop/saved:1", "interop/saved:2"],
        "docker images after loading hoist's archive"
    );
    for tag in ["interop/saved:1", "interop/saved:2"] {
        let got = inspect_one(&run(dockerd.docker().args(["image", "inspect", tag])));
        assert_eq!(got["Id"], id, "{tag}: docker's image id is hoist's");
        assert_eq!(got["Config"]["Cmd"], want["Config"]["Cmd"], "{tag}: Cmd");
        assert_eq!(got["RootFS"]["Type"], "layers", "{tag}: RootFS type");
        assert_eq!(
            got["RootFS"]["Layers"], want["RootFS"]["Layers"],
            "{tag}: diff ids"
        );
        assert_eq!(got["Os"], want["Os"], "{tag}: Os");
        assert_eq!(
            got["Architecture"], want["Architecture"],
            "{tag}: Architecture"
        );
    }

    // And back: what docker saves of it loads into a fresh hoist store as the same image.
    let resaved = work.path().join("resaved.tar");
    run(dockerd
        .docker()
        .args(["save", "-o"])
        .arg(&resaved)
        .arg("interop/saved:2"));
    let fresh = work.path().join("fresh");
    run(hoist(&fresh).arg("load").arg("-i").arg(&resaved));
    let back = inspect_one(&run(hoist(&fresh).args(["inspect", "interop/saved:2"])));
    assert_eq!(
        back["Id"], id,
        "image id after hoist save | docker load/save | hoist load"
    );
    assert_eq!(
        back["RootFS"]["Layers"], want["RootFS"]["Layers"],
        "diff ids after the round trip"
    );
}

/// docker imports the busybox rootfs and `docker save`s it; `hoist load` (into an empty store)
/// lists the tag with docker's image id, Cmd and diff ids.
fn hoist_loads_what_docker_saves() {
    require_root();
    let dockerd = Dockerd::start();
    let work = tmp();
    let home = work.path().join("home");
    let rootfs = work.path().join("rootfs.tar");
    fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");

    let tag = "interop/docker-saved:1";
    run(dockerd
        .docker()
        .args(["import", "--change", r#"CMD ["/bin/echo","hello"]"#])
        .arg(&rootfs)
        .arg(tag));
    let want = inspect_one(&run(dockerd.docker().args(["image", "inspect", tag])));
    let id = want["Id"].as_str().expect("docker inspect Id");
    let archive = work.path().join("docker.tar");
    run(dockerd
        .docker()
        .arg("save")
        .arg("-o")
        .arg(&archive)
        .arg(tag));

    let out = run(hoist(&home).arg("load").arg("-i").arg(&archive));
    assert_eq!(out, format!("Loaded image: {tag}\n"), "hoist load output");
    let images = run(hoist(&home).args(["images", "--no-trunc"]));
    let rows: Vec<Vec<&str>> = images
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "hoist images after the load:\n{images}");
    assert_eq!(
        rows[0][..3],
        ["interop/docker-saved", "1", id],
        "hoist images after the load:\n{images}"
    );
    let got = inspect_one(&run(hoist(&home).args(["inspect", tag])));
    assert_eq!(got["Id"], id, "hoist's image id is docker's");
    assert_eq!(got["RepoTags"], serde_json::json!([tag]), "RepoTags");
    assert_eq!(got["Config"]["Cmd"], want["Config"]["Cmd"], "Cmd");
    assert_eq!(
        got["RootFS"]["Layers"], want["RootFS"]["Layers"],
        "diff ids"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests: every registry case against hoist (required) and against the CNCF registry
// (reference); the local cases (no registry) against hoist only.
// ---------------------------------------------------------------------------------------------

macro_rules! interop {
    ($($case:ident),* $(,)?; local: $($local:ident),* $(,)?) => {
        mod hoist {
            $( #[test] fn $case() { super::$case(super::Kind::Hoist) } )*
            $( #[test] fn $local() { super::$local() } )*
        }
        mod distribution {
            $( #[test] fn $case() { super::$case(super::Kind::Distribution) } )*
        }
    };
}

interop!(
    skopeo_roundtrip,
    skopeo_inspect_list_tags,
    skopeo_delete,
    podman_push_pull,
    podman_manifest_push_all,
    buildah_push_pull,
    docker_push_pull;
    local: docker_loads_what_hoist_saves,
    hoist_loads_what_docker_saves,
);
