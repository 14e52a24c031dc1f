//! The local image commands end to end: the `hoist` binary against its own store in a temporary
//! `HOIST_HOME`, with a real busybox rootfs (`hoist_conformance::fixtures`). skopeo reads what
//! `save` writes; a missing skopeo is a failure naming its package.

use std::path::{Path, PathBuf};
use std::process::Command;

use hoist_testsupport::peers::skopeo;
use serde_json::Value;

hoist_testsupport::home_type!(
    /// A temporary `HOIST_HOME` with the busybox rootfs tar beside it.
);

impl Home {
    fn new() -> Home {
        Home(hoist_testsupport::Home::new(env!("CARGO_BIN_EXE_hoist")))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs hoist expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run_in("home", args, None);
        assert_eq!(out.status.code(), Some(1), "hoist {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Imports the busybox rootfs as `reference` with a CMD; returns the printed image id.
    fn import(&self, reference: &str) -> String {
        let id = self.0.import(reference, &[r#"CMD ["/bin/sh"]"#]);
        assert!(
            id.starts_with("sha256:") && id.len() == 71,
            "import printed {id:?}"
        );
        id
    }
}

/// The data rows of a table, each split on runs of 3+ spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn skopeo_inspect(transport: &str, file: &Path) -> Value {
    let out = skopeo()
        .args(["--insecure-policy", "inspect"])
        .arg(format!("{transport}:{}", file.display()))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {transport} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn import_images_inspect_history_tag_rmi() {
    let h = Home::new();
    let id = h.import("busybox:1.0");
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let out = h.ok(&["images"]);
    assert!(
        out.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{out}"
    );
    assert!(out.lines().next().unwrap().ends_with("SIZE"), "{out}");
    let r = rows(&out);
    assert_eq!(r.len(), 1, "{out}");
    assert_eq!(r[0][..3], ["busybox", "1.0", short]);
    assert!(r[0][3].ends_with(" ago"), "{out}");
    assert!(r[0][4].ends_with("MB") || r[0][4].ends_with("kB"), "{out}");

    // --digests adds the manifest digest; -q prints the id once.
    let out = h.ok(&["images", "--digests"]);
    assert!(out.lines().next().unwrap().contains("TAG       DIGEST"));
    assert!(rows(&out)[0][2].starts_with("sha256:"), "{out}");

    let inspect: Value = serde_json::from_str(&h.ok(&["inspect", "busybox:1.0"])).unwrap();
    let image = &inspect.as_array().expect("an array")[0];
    assert_eq!(image["Id"], id.as_str());
    assert_eq!(image["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(image["RepoTags"], serde_json::json!(["busybox:1.0"]));
    assert_eq!(image["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(
        image["ManifestDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // By short id too, through the `image` group.
    let by_id: Value = serde_json::from_str(&h.ok(&["image", "inspect", short])).unwrap();
    assert_eq!(by_id[0]["Id"], id.as_str());

    let out = h.ok(&["history", "busybox:1.0"]);
    assert!(out.starts_with("IMAGE          CREATED"), "{out}");
    for col in ["CREATED BY", "SIZE", "COMMENT"] {
        assert!(out.lines().next().unwrap().contains(col), "{out}");
    }
    let r = rows(&out);
    assert_eq!(r.len(), 1, "{out}");
    assert_eq!(r[0][0], short);
    assert_eq!(r[0][2], "hoist import");
    assert_eq!(
        h.ok(&["history", "-q", "busybox:1.0"]),
        format!("{short}\n")
    );

    h.ok(&["tag", "busybox:1.0", "localhost:5000/team/busybox:2"]);
    h.ok(&["image", "tag", "busybox:1.0", "busybox:latest"]);
    let out = h.ok(&["images"]);
    assert_eq!(rows(&out).len(), 3, "{out}");
    // One id a row, as docker prints them (an image with three tags: three times).
    assert_eq!(h.ok(&["images", "-q"]), format!("{short}\n").repeat(3));
    assert_eq!(rows(&h.ok(&["images", "busybox"])).len(), 2);
    assert_eq!(rows(&h.ok(&["image", "ls", "busybox:latest"])).len(), 1);

    // By id with several tags: refused unless forced, in one line.
    let err = h.fails(&["rmi", short]);
    assert!(err.contains("must be forced"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    assert_eq!(
        h.ok(&["rmi", "busybox:latest"]),
        "Untagged: busybox:latest\n"
    );
    assert_eq!(
        h.ok(&["image", "rm", "localhost:5000/team/busybox:2"]),
        "Untagged: localhost:5000/team/busybox:2\n"
    );
    let out = h.ok(&["rmi", "busybox:1.0"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Untagged: busybox:1.0");
    assert!(lines[1].starts_with("Deleted: sha256:"), "{out}");
    assert_eq!(rows(&h.ok(&["images"])).len(), 0);
}

#[test]
fn save_load_keeps_tags_and_id_and_skopeo_reads_both_formats() {
    let h = Home::new();
    let id = h.import("busybox:1.0");
    h.ok(&["tag", "busybox:1.0", "example.com/app:v2"]);

    let docker = h.path("docker.tar");
    h.ok(&[
        "save",
        "-o",
        docker.to_str().unwrap(),
        "busybox:1.0",
        "example.com/app:v2",
    ]);
    let out = h.ok_in("other", &["load", "-i", docker.to_str().unwrap()]);
    let mut loaded: Vec<&str> = out.lines().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "Loaded image: busybox:1.0",
            "Loaded image: example.com/app:v2"
        ]
    );
    let ids = |home: &str| {
        let inspect: Value =
            serde_json::from_str(&h.ok_in(home, &["inspect", "busybox:1.0", "example.com/app:v2"]))
                .unwrap();
        inspect
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["Id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("other"), [id.clone(), id.clone()]);
    let skopeo = skopeo_inspect("docker-archive", &docker);
    assert_eq!(skopeo["Layers"].as_array().unwrap().len(), 1);

    // An OCI layout, through stdout and stdin.
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["save", "--format", "oci", "busybox:1.0"])
        .env("HOIST_HOME", h.path("home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oci = h.path("oci.tar");
    std::fs::write(&oci, &out.stdout).unwrap();
    let skopeo = skopeo_inspect("oci-archive", &oci);
    assert_eq!(
        skopeo["Digest"].as_str().map(|s| s.starts_with("sha256:")),
        Some(true)
    );
    let third = h.run_in("third", &["load"], Some(&out.stdout));
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(
        String::from_utf8(third.stdout).unwrap(),
        "Loaded image: busybox:1.0\n"
    );
    assert_eq!(ids("home"), [id.clone(), id]);
}

#[test]
fn prune_all_empties_the_store_and_df_shows_it() {
    let h = Home::new();
    h.import("busybox:1.0");
    h.ok(&["tag", "busybox:1.0", "busybox:2"]);

    let df = h.ok(&["system", "df"]);
    assert!(
        df.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"),
        "{df}"
    );
    let images = rows(&df).into_iter().find(|r| r[0] == "Images").unwrap();
    assert_eq!(images[1..3], ["1", "0"]);
    assert!(images[4].ends_with("(100%)"), "{df}");

    // Nothing dangling: a plain prune removes nothing.
    let out = h.ok(&["image", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");

    let out = h.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    assert!(out.contains("untagged: busybox:1.0\n"), "{out}");
    assert!(out.contains("untagged: busybox:2\n"), "{out}");
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert_eq!(rows(&h.ok(&["images"])).len(), 0);

    let df = h.ok(&["system", "df"]);
    let images = rows(&df).into_iter().find(|r| r[0] == "Images").unwrap();
    assert_eq!(images[1..], ["0", "0", "0B", "0B"]);
}

#[test]
fn errors_are_one_line() {
    let h = Home::new();
    let out_tar = h.path("out.tar");
    let out_tar = out_tar.to_str().unwrap();
    for args in [
        &["inspect", "nosuch:1"][..],
        &["history", "nosuch"],
        &["rmi", "nosuch"],
        &["save", "-o", out_tar, "nosuch"],
    ] {
        let err = h.fails(args);
        assert!(err.starts_with("hoist: "), "{args:?}: {err}");
        assert!(err.contains("nosuch"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert!(!Path::new(out_tar).exists());
    let rootfs = h.path("rootfs.tar");
    let err = h.fails(&[
        "import",
        "--change",
        "FROBNICATE now",
        rootfs.to_str().unwrap(),
        "x:1",
    ]);
    assert!(err.contains("FROBNICATE now"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing was imported.
    assert_eq!(rows(&h.ok(&["images"])).len(), 0);
}
