//! `hoist manifest` against `docker manifest` (the docker 20.10 CLI, which talks to registries
//! itself): the same two images (linux/amd64 and linux/arm64, pushed by podman as docker v2
//! schema 2) in a registry (hoist's and the CNCF registry), lists made, annotated, inspected and
//! pushed by both. The pushed lists must have the same digest (docker's list JSON byte for
//! byte), the printed output must be the same, and the refusals must carry docker's text.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use hoist_conformance::fixtures;
use hoist_conformance::harness::Server;

struct Env {
    server: Server,
    work: tempfile::TempDir,
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Env {
    fn new(server: Server) -> Env {
        let work = tmp();
        let store = Storage::new();
        let rootfs = work.path().join("rootfs.tar");
        fixtures::write_busybox_rootfs_tar(&rootfs).expect("rootfs tar");
        for arch in ["amd64", "arm64"] {
            run(store
                .podman()
                .args(["import", "--arch", arch])
                .arg(&rootfs)
                .arg(format!("localhost/img-{arch}:1")));
            run(store.podman().args([
                "push",
                "--tls-verify=false",
                "--format",
                "v2s2",
                &format!("localhost/img-{arch}:1"),
                &format!("docker://{}/multi/app:{arch}", server.addr),
            ]));
        }
        Env { server, work }
    }

    fn r(&self, path: &str) -> String {
        format!("{}/{path}", self.server.addr)
    }

    fn docker(&self, args: &[&str]) -> Output {
        let mut c = Command::new(tool("docker", "docker.io"));
        c.args(["manifest"])
            .args(args)
            .env("DOCKER_CONFIG", self.work.path().join("docker-config"))
            // No daemon: the manifest commands talk to the registry themselves.
            .env("DOCKER_HOST", "unix:///nonexistent.sock");
        c.output().expect("running docker")
    }

    fn hoist(&self, args: &[&str]) -> Output {
        hoist(&self.work.path().join("home"))
            .args(["manifest"])
            .args(args)
            .output()
            .expect("running hoist")
    }

    /// Both succeed with the same stdout once `d` (docker's names) is replaced by `h`.
    fn same(&self, dargs: &[&str], hargs: &[&str], d: &str, h: &str) -> String {
        let (dout, hout) = (self.docker(dargs), self.hoist(hargs));
        assert!(dout.status.success(), "docker {dargs:?}: {}", text(&dout));
        assert!(hout.status.success(), "hoist {hargs:?}: {}", text(&hout));
        let dtext = String::from_utf8_lossy(&dout.stdout).replace(d, h);
        let htext = String::from_utf8_lossy(&hout.stdout).into_owned();
        assert_eq!(htext, dtext, "hoist {hargs:?} / docker {dargs:?}");
        htext
    }

    /// Both fail, their messages carry `msg`.
    fn both_refuse(&self, dargs: &[&str], hargs: &[&str], msg: &str) {
        let (dout, hout) = (self.docker(dargs), self.hoist(hargs));
        assert!(!dout.status.success(), "docker {dargs:?}: {}", text(&dout));
        assert!(!hout.status.success(), "hoist {hargs:?}: {}", text(&hout));
        assert_eq!(
            dout.status.code(),
            hout.status.code(),
            "{}\n{}",
            text(&dout),
            text(&hout)
        );
        let (de, he) = (
            String::from_utf8_lossy(&dout.stderr),
            String::from_utf8_lossy(&hout.stderr),
        );
        assert!(de.contains(msg), "docker: {de}");
        assert!(he.contains(msg), "hoist: {he}");
    }
}

fn hoist(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.env("HOIST_HOME", home);
    cmd
}

fn lists_match_docker(server: Server) {
    require_root();
    let e = Env::new(server);
    let (amd, arm) = (e.r("multi/app:amd64"), e.r("multi/app:arm64"));
    let (dl, hl) = (e.r("multi/list:d"), e.r("multi/list:h"));

    // create
    e.same(
        &["create", "--insecure", &dl, &amd, &arm],
        &["create", "--insecure", &hl, &amd, &arm],
        &dl,
        &hl,
    );
    // The local list, as each prints it.
    let local = e.same(&["inspect", &dl], &["inspect", &hl], &dl, &hl);
    assert!(
        local.contains("linux") && local.contains("arm64"),
        "{local}"
    );
    // One image of a local list, and -v's forms of both.
    e.same(&["inspect", &dl, &arm], &["inspect", &hl, &arm], &dl, &hl);
    e.same(&["inspect", "-v", &dl], &["inspect", "-v", &hl], &dl, &hl);
    e.same(
        &["inspect", "-v", &dl, &arm],
        &["inspect", "-v", &hl, &arm],
        &dl,
        &hl,
    );
    // push: the same bytes, so the same digest.
    let pushed = e.same(
        &["push", "--insecure", &dl],
        &["push", "--insecure", &hl],
        &dl,
        &hl,
    );
    // docker's lines: each image pushed into the list's repository by digest, then the list's
    // digest.
    let lines: Vec<&str> = pushed.lines().collect();
    assert_eq!(lines.len(), 3, "{pushed}");
    assert!(lines[0].starts_with("Pushed ref "), "{pushed}");
    assert!(lines[2].starts_with("sha256:"), "{pushed}");

    // The pushed lists from the registry, and an image there.
    e.same(
        &["inspect", "--insecure", &hl],
        &["inspect", "--insecure", &dl],
        &hl,
        &dl,
    );
    e.same(
        &["inspect", "--insecure", &amd],
        &["inspect", "--insecure", &amd],
        "",
        "",
    );
    e.same(
        &["inspect", "--insecure", "-v", &amd],
        &["inspect", "--insecure", "-v", &amd],
        "",
        "",
    );
    e.same(
        &["inspect", "--insecure", "-v", &hl],
        &["inspect", "--insecure", "-v", &dl],
        &hl,
        &dl,
    );

    // annotate, then push again: still the same digest.
    for (who, list) in [("docker", &dl), ("hoist", &hl)] {
        let args = [
            "annotate",
            "--variant",
            "v8",
            "--os-features",
            "a,b",
            list,
            &arm,
        ];
        let o = if who == "docker" {
            e.docker(&args)
        } else {
            e.hoist(&args)
        };
        assert!(o.status.success(), "{who} annotate: {}", text(&o));
    }
    e.same(&["inspect", &dl], &["inspect", &hl], &dl, &hl);
    e.same(
        &["push", "--insecure", &dl],
        &["push", "--insecure", &hl],
        &dl,
        &hl,
    );

    // A list in another repository of the registry: pushing copies the images into it, and
    // hoist pulls the list's arm64 image from there.
    let (dx, hx) = (e.r("other/list:d"), e.r("other/list:h"));
    e.same(
        &["create", "--insecure", &dx, &amd, &arm],
        &["create", "--insecure", &hx, &amd, &arm],
        &dx,
        &hx,
    );
    e.same(
        &["push", "--purge", "--insecure", &dx],
        &["push", "--purge", "--insecure", &hx],
        &dx,
        &hx,
    );
    let pull_home = e.work.path().join("pull-home");
    run(hoist(&pull_home)
        .args([
            "pull",
            "--insecure-registry",
            &e.server.addr,
            "--platform",
            "linux/arm64",
        ])
        .arg(&hx));
    let arch = run(hoist(&pull_home).args(["inspect", "--format", "{{.Architecture}}", &hx]));
    assert_eq!(arch.trim(), "arm64");

    // Refusals, with docker's words.
    e.both_refuse(
        &["create", "--insecure", &dl, &amd],
        &["create", "--insecure", &hl, &amd],
        "refusing to amend an existing manifest list with no --amend flag",
    );
    e.same(
        &["create", "--amend", "--insecure", &dl, &amd],
        &["create", "--amend", "--insecure", &hl, &amd],
        &dl,
        &hl,
    );
    // An image of another registry: docker refuses it when it pushes (after fetching it from
    // there); hoist refuses it at once, with docker's words and no connection made (the other
    // "registry" is a loopback address nothing listens on).
    let o = e.hoist(&[
        "create",
        "--insecure",
        &e.r("multi/x:1"),
        "127.0.0.2:9/a/b:1",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("cannot use source images from a different registry than the target image"),
        "{}",
        text(&o)
    );
    e.both_refuse(
        &["annotate", "--arch", "bogus", &dl, &arm],
        &["annotate", "--arch", "bogus", &hl, &arm],
        "manifest entry for image has unsupported os/arch combination",
    );
    e.both_refuse(
        &[
            "create",
            "--insecure",
            &e.r("multi/y:1"),
            &e.r("multi/list:d"),
        ],
        &[
            "create",
            "--insecure",
            &e.r("multi/y:1"),
            &e.r("multi/list:d"),
        ],
        "is a manifest list",
    );
    // rm, then it is gone.
    let (d, h) = (e.docker(&["rm", &dl]), e.hoist(&["rm", &hl]));
    assert!(
        d.status.success() && h.status.success(),
        "{}\n{}",
        text(&d),
        text(&h)
    );
    e.both_refuse(&["rm", &dl], &["rm", &hl], "No such manifest");
}

#[test]
fn manifest_lists_match_docker_on_hoist() {
    require_root();
    lists_match_docker(Server::hoist(Path::new(env!("CARGO_BIN_EXE_hoist"))).expect("hoist serve"));
}

#[test]
fn manifest_lists_match_docker_on_the_cncf_registry() {
    require_root();
    lists_match_docker(Server::distribution().expect("the CNCF registry"));
}
