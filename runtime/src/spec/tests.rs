use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::image::{Config as ImageConfig, ConfigBuilder};
use serde_json::Value;

use super::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
    app:x:1000:1000:app:/home/app:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str =
    "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\nnogroup:x:65534:\n";

fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut b = ConfigBuilder::default();
    if let Some(e) = entrypoint {
        b = b.entrypoint(v(e));
    }
    if let Some(c) = cmd {
        b = b.cmd(v(c));
    }
    b.build().unwrap()
}

struct Fixture {
    limits: BTreeMap<&'static str, u64>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            limits: BTreeMap::from([("RLIMIT_NOFILE", 20000)]),
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            rootfs: Path::new("/c/rootfs"),
            hosts_path: Path::new("/c/hosts"),
            hostname_path: Path::new("/c/hostname"),
            resolv_conf_path: Path::new("/c/resolv.conf"),
            passwd: Some(PASSWD),
            group: Some(GROUP),
            host_hard_limits: &self.limits,
            host_hostname: "thehost",
            cap_last_cap: 40,
            cgroups_path: "/hoist/0123".to_owned(),
        }
    }
}

fn build_json(image: Option<&ImageConfig>, opts: &RunOptions) -> Value {
    let f = Fixture::new();
    let spec = build(image, opts, &f.ctx()).unwrap();
    serde_json::to_value(&spec).unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Capability sets come back in any order.
fn sorted(v: &Value) -> Vec<String> {
    let mut s = strs(v);
    s.sort();
    s
}

fn sh() -> ImageConfig {
    image(None, Some(&["sh"]))
}

#[test]
fn docker_defaults() {
    let j = build_json(Some(&sh()), &RunOptions::default());
    assert_eq!(strs(&j["process"]["args"]), ["sh"]);
    assert_eq!(j["process"]["cwd"], "/");
    assert_eq!(j["process"]["user"]["uid"], 0);
    // docker's default: no_new_privs only with --security-opt no-new-privileges.
    assert_eq!(j["process"]["noNewPrivileges"], false);
    assert_eq!(j["process"]["terminal"], false);
    let caps = sorted(&j["process"]["capabilities"]["effective"]);
    let mut want: Vec<String> = DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    want.sort();
    assert_eq!(caps, want);
    assert_eq!(sorted(&j["process"]["capabilities"]["bounding"]), caps);
    assert_eq!(sorted(&j["process"]["capabilities"]["permitted"]), caps);
    assert!(strs(&j["process"]["capabilities"]["inheritable"]).is_empty());
    assert_eq!(j["hostname"], "0123456789ab");
    assert_eq!(strs(&j["linux"]["maskedPaths"]), MASKED_PATHS);
    assert_eq!(strs(&j["linux"]["readonlyPaths"]), READONLY_PATHS);
    assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(j["root"]["path"], "/c/rootfs");
    assert_eq!(j["root"]["readonly"], false);
    assert_eq!(j["linux"]["cgroupsPath"], "/hoist/0123");
    let ns: Vec<&str> = j["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
    let mounts: BTreeMap<&str, &Value> = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["destination"].as_str().unwrap(), m))
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(mounts.contains_key(d), "no {d} mount");
    }
    assert!(strs(&mounts["/sys"]["options"]).contains(&"ro".to_owned()));
    assert_eq!(mounts["/etc/hosts"]["source"], "/c/hosts");
    assert_eq!(mounts["/etc/resolv.conf"]["source"], "/c/resolv.conf");
    let env = strs(&j["process"]["env"]);
    assert_eq!(
        env,
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=0123456789ab".to_owned(),
            "HOME=/root".to_owned()
        ]
    );
}

#[test]
fn entrypoint_and_cmd_combine_as_docker_does() {
    let img = image(Some(&["/ep", "-x"]), Some(&["a", "b"]));
    let run = |o: RunOptions| command(Some(&img), &o).unwrap();
    assert_eq!(run(RunOptions::default()), ["/ep", "-x", "a", "b"]);
    let args = RunOptions {
        args: vec!["c".into()],
        ..Default::default()
    };
    assert_eq!(run(args), ["/ep", "-x", "c"]);
    // --entrypoint drops the image's Cmd too.
    let ep = RunOptions {
        entrypoint: Some("/other".into()),
        ..Default::default()
    };
    assert_eq!(run(ep), ["/other"]);
    let ep_args = RunOptions {
        entrypoint: Some("/other".into()),
        args: vec!["z".into()],
        ..Default::default()
    };
    assert_eq!(run(ep_args), ["/other", "z"]);
    // --entrypoint "" clears it; arguments are then the whole command.
    let cleared = RunOptions {
        entrypoint: Some(String::new()),
        args: vec!["echo".into(), "hi".into()],
        ..Default::default()
    };
    assert_eq!(run(cleared), ["echo", "hi"]);
    assert!(matches!(
        command(Some(&image(None, None)), &RunOptions::default()),
        Err(SpecError::NoCommand)
    ));
    assert!(matches!(
        command(None, &RunOptions::default()),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn env_image_then_flags_later_wins() {
    let img = ConfigBuilder::default()
        .env(vec![
            "PATH=/opt/bin".to_owned(),
            "A=image".to_owned(),
            "B=image".to_owned(),
        ])
        .cmd(vec!["sh".to_owned()])
        .build()
        .unwrap();
    let opts = RunOptions {
        env: vec![
            "A=flag".into(),
            "C=3".into(),
            "A=last".into(),
            "HOME=/h".into(),
        ],
        tty: true,
        hostname: Some("web".into()),
        ..Default::default()
    };
    let j = build_json(Some(&img), &opts);
    assert_eq!(
        strs(&j["process"]["env"]),
        [
            "PATH=/opt/bin",
            "HOSTNAME=web",
            "A=last",
            "B=image",
            "TERM=xterm",
            "C=3",
            "HOME=/h"
        ]
    );
    assert_eq!(j["hostname"], "web");
    assert_eq!(j["process"]["terminal"], true);
}

#[test]
fn env_entries_and_files() {
    let lookup = |k: &str| (k == "FROM_HOST").then(|| "h".to_owned());
    assert_eq!(env_entry("A=1=2", lookup).unwrap(), Some("A=1=2".into()));
    assert_eq!(
        env_entry("FROM_HOST", lookup).unwrap(),
        Some("FROM_HOST=h".into())
    );
    assert_eq!(env_entry("UNSET", lookup).unwrap(), None);
    assert!(env_entry("=x", lookup).is_err());
    let text = "# comment\n\nA=1\n  B=two words\nFROM_HOST\nUNSET\n";
    assert_eq!(
        parse_env_file(text, "f.env", lookup).unwrap(),
        ["A=1", "B=two words", "FROM_HOST=h"]
    );
    let err = parse_env_file("A=1\nBAD KEY\n", "f.env", lookup).unwrap_err();
    assert!(err.to_string().contains("f.env:2"), "{err}");
}

#[test]
fn users_resolve_through_the_image_files() {
    let r = |s: &str| resolve_user(s, Some(PASSWD), Some(GROUP));
    let root = r("").unwrap();
    assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
    let app = r("app").unwrap();
    assert_eq!((app.uid, app.gid), (1000, 1000));
    assert_eq!(app.additional_gids, [1000, 10, 29]);
    assert_eq!(app.home, "/home/app");
    // A uid found in passwd takes its entry.
    assert_eq!(r("1000").unwrap(), app);
    // An explicit group: no supplementary groups but the primary one.
    let g = r("app:wheel").unwrap();
    assert_eq!((g.uid, g.gid), (1000, 10));
    assert_eq!(g.additional_gids, [10]);
    // BuildKit's RUN: only the groups /etc/group names.
    let bare = |s: &str| super::user::resolve_user_as(s, Some(PASSWD), Some(GROUP), false);
    assert_eq!(bare("app").unwrap().additional_gids, [10, 29]);
    assert_eq!(
        bare("app:wheel").unwrap().additional_gids,
        Vec::<u32>::new()
    );
    // Numeric ids need no entries.
    let n = r("4242:4343").unwrap();
    assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 4343, "/"));
    let n = r("4242").unwrap();
    assert_eq!((n.uid, n.gid), (4242, 0));
    assert!(matches!(r("ghost"), Err(SpecError::UnknownUser(u)) if u == "ghost"));
    assert!(matches!(r("app:ghosts"), Err(SpecError::UnknownGroup(g)) if g == "ghosts"));
    // No passwd file at all: names fail, numbers work.
    assert!(resolve_user("app", None, None).is_err());
    assert_eq!(resolve_user("7:8", None, None).unwrap().uid, 7);
}

#[test]
fn non_root_users_only_keep_the_bounding_set() {
    let opts = RunOptions {
        user: Some("1000:1000".into()),
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    assert_eq!(j["process"]["user"]["uid"], 1000);
    assert_eq!(j["process"]["user"]["gid"], 1000);
    assert_eq!(strs(&j["process"]["capabilities"]["bounding"]).len(), 14);
    assert!(strs(&j["process"]["capabilities"]["effective"]).is_empty());
    assert!(strs(&j["process"]["capabilities"]["permitted"]).is_empty());
    assert!(strs(&j["process"]["env"]).contains(&"HOME=/home/app".to_owned()));
    // The image's User applies when no --user is given.
    let img = ConfigBuilder::default()
        .user("app".to_owned())
        .cmd(vec!["sh".to_owned()])
        .build()
        .unwrap();
    let j = build_json(Some(&img), &RunOptions::default());
    assert_eq!(j["process"]["user"]["uid"], 1000);
    assert_eq!(
        j["process"]["user"]["additionalGids"],
        serde_json::json!([1000, 10, 29])
    );
}

#[test]
fn capability_flags() {
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let caps = capabilities(&s(&["net_admin"]), &s(&["CAP_CHOWN", "mknod"]), false, 40).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
    assert!(!caps.contains(&"CAP_CHOWN".to_owned()));
    assert!(!caps.contains(&"CAP_MKNOD".to_owned()));
    assert_eq!(caps.len(), 13);
    let none = capabilities(&[], &s(&["ALL"]), false, 40).unwrap();
    assert!(none.is_empty());
    let one = capabilities(&s(&["KILL"]), &s(&["all"]), false, 40).unwrap();
    assert_eq!(one, ["CAP_KILL"]);
    let all = capabilities(&s(&["ALL"]), &s(&["SYS_ADMIN"]), false, 40).unwrap();
    assert_eq!(all.len(), 40);
    assert!(!all.contains(&"CAP_SYS_ADMIN".to_owned()));
    assert_eq!(capabilities(&[], &[], true, 37).unwrap().len(), 38);
    assert!(capabilities(&s(&["FLY"]), &[], false, 40).is_err());
}

#[test]
fn privileged_lifts_the_isolation() {
    let opts = RunOptions {
        privileged: true,
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    assert_eq!(strs(&j["process"]["capabilities"]["effective"]).len(), 41);
    assert_eq!(j["process"]["noNewPrivileges"], false);
    assert!(j["linux"].get("seccomp").is_none());
    assert!(j["linux"].get("maskedPaths").is_none());
    assert!(j["linux"].get("readonlyPaths").is_none());
    let sys = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(!strs(&sys["options"]).contains(&"ro".to_owned()));
}

#[test]
fn seccomp_rules_follow_capabilities_and_architecture() {
    let names = |p: &Value, action: &str| -> Vec<String> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action && r.get("args").is_none())
            .flat_map(|r| strs(&r["names"]))
            .collect()
    };
    let default: Vec<&str> = DEFAULT_CAPS.to_vec();
    let p = default_profile(&default, "x86_64");
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        strs(&p["architectures"]),
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    let allowed = names(&p, "SCMP_ACT_ALLOW");
    // clone only without namespace flags; clone3 answers ENOSYS so libc falls back to clone.
    let rules = p["syscalls"].as_array().unwrap();
    let clone = rules
        .iter()
        .find(|r| strs(&r["names"]) == ["clone"] && r["action"] == "SCMP_ACT_ALLOW")
        .unwrap();
    assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
    let clone3 = rules
        .iter()
        .find(|r| strs(&r["names"]) == ["clone3"])
        .unwrap();
    assert_eq!(
        (clone3["action"].as_str(), clone3["errnoRet"].as_u64()),
        (Some("SCMP_ACT_ERRNO"), Some(38))
    );
    for s in ["read", "write", "execve", "arch_prctl", "chroot"] {
        assert!(allowed.contains(&s.to_owned()), "{s} not allowed");
    }
    for s in [
        "mount",
        "umount2",
        "bpf",
        "init_module",
        "kexec_load",
        "reboot",
        "unshare",
        "setns",
        "keyctl",
        "pivot_root",
    ] {
        assert!(!allowed.contains(&s.to_owned()), "{s} allowed by default");
    }
    let denied = names(&p, "SCMP_ACT_ERRNO");
    assert!(denied.contains(&"bpf".to_owned()));
    // CAP_SYS_ADMIN brings mount and friends, and no longer denies bpf explicitly.
    let mut admin = default.clone();
    admin.push("CAP_SYS_ADMIN");
    let p = default_profile(&admin, "x86_64");
    let allowed = names(&p, "SCMP_ACT_ALLOW");
    assert!(allowed.contains(&"mount".to_owned()));
    assert!(allowed.contains(&"bpf".to_owned()));
    assert!(!names(&p, "SCMP_ACT_ERRNO").contains(&"bpf".to_owned()));
    // Architecture-only rules: arch_prctl is x86's.
    let arm = default_profile(&default, "aarch64");
    assert_eq!(strs(&arm["architectures"])[0], "SCMP_ARCH_AARCH64");
    assert!(!names(&arm, "SCMP_ACT_ALLOW").contains(&"arch_prctl".to_owned()));
    // The result is a valid OCI seccomp object.
    let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
}

#[test]
fn limits_become_cgroup_resources() {
    let opts = RunOptions {
        memory: Some(parse_memory("64m").unwrap()),
        nano_cpus: Some(parse_cpus("0.5").unwrap()),
        pids_limit: Some(64),
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    let r = &j["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    assert_eq!(r["pids"]["limit"], 64);
    assert_eq!(r["devices"][0]["allow"], false);
}

#[test]
fn sizes_and_cpus_parse() {
    assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
    assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
    assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
    assert_eq!(parse_memory("8192k").unwrap(), 8 << 20);
    assert_eq!(parse_memory("10485760").unwrap(), 10 << 20);
    assert!(parse_memory("1m").is_err());
    assert!(parse_memory("64x").is_err());
    assert!(parse_memory("-5m").is_err());
    assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
    assert!(parse_cpus("0").is_err());
    assert!(parse_cpus("abc").is_err());
}

#[test]
fn ulimits_are_held_to_the_host_hard_limits() {
    let host = BTreeMap::from([("RLIMIT_NOFILE", 20000u64)]);
    let u = parse_ulimit("nofile=1024:4096", &host).unwrap();
    assert_eq!(
        (u.kind.as_str(), u.soft, u.hard),
        ("RLIMIT_NOFILE", 1024, 4096)
    );
    let u = parse_ulimit("nproc=100", &host).unwrap();
    assert_eq!((u.soft, u.hard), (100, 100));
    let e = parse_ulimit("nofile=1024:1048576", &host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("20000"), "{e}");
    assert!(parse_ulimit("nofile=10:5", &host).is_err());
    assert!(parse_ulimit("bogus=1", &host).is_err());
    let opts = RunOptions {
        ulimits: vec![parse_ulimit("nofile=512:1024", &host).unwrap()],
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    assert_eq!(j["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(j["process"]["rlimits"][0]["soft"], 512);
}

#[test]
fn read_only_workdir_and_mounts() {
    let opts = RunOptions {
        read_only: true,
        workdir: Some("/app".into()),
        mounts: vec![
            BindMount {
                source: "/v/data/_data".into(),
                destination: "/data".into(),
                read_only: true,
                options: Default::default(),
            },
            BindMount {
                source: "/src".into(),
                destination: "/app/src".into(),
                read_only: false,
                options: crate::spec::BindOptions {
                    propagation: Some("rshared".into()),
                    non_recursive: true,
                },
            },
        ],
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    assert_eq!(j["root"]["readonly"], true);
    assert_eq!(j["process"]["cwd"], "/app");
    let m = j["mounts"].as_array().unwrap();
    let data = m.iter().find(|m| m["destination"] == "/data").unwrap();
    assert_eq!(data["source"], "/v/data/_data");
    assert!(strs(&data["options"]).contains(&"ro".to_owned()));
    assert_eq!(strs(&data["options"])[..2], ["rbind", "rprivate"]);
    // bind-nonrecursive and bind-propagation, as runc reads them.
    let src = m.iter().find(|m| m["destination"] == "/app/src").unwrap();
    assert_eq!(strs(&src["options"]), ["bind", "rshared"]);
    let hosts = m.iter().find(|m| m["destination"] == "/etc/hosts").unwrap();
    assert!(strs(&hosts["options"]).contains(&"ro".to_owned()));
    let bad = RunOptions {
        workdir: Some("rel".into()),
        ..Default::default()
    };
    let f = Fixture::new();
    assert!(build(Some(&sh()), &bad, &f.ctx()).is_err());
    // The image's WorkingDir applies without -w.
    let img = ConfigBuilder::default()
        .working_dir("/srv".to_owned())
        .cmd(vec!["sh".to_owned()])
        .build()
        .unwrap();
    assert_eq!(
        build_json(Some(&img), &RunOptions::default())["process"]["cwd"],
        "/srv"
    );
}

#[test]
fn network_modes() {
    let ns = |n: Network| {
        let j = build_json(
            Some(&sh()),
            &RunOptions {
                network: n,
                ..Default::default()
            },
        );
        (
            j["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .cloned(),
            j["hostname"].as_str().unwrap().to_owned(),
        )
    };
    let (none, _) = ns(Network::None);
    assert!(none.unwrap().get("path").is_none());
    let (host, hostname) = ns(Network::Host);
    assert!(host.is_none());
    assert_eq!(hostname, "thehost");
    let (other, _) = ns(Network::Container("/proc/42/ns/net".into()));
    assert_eq!(other.unwrap()["path"], "/proc/42/ns/net");
    assert_eq!(Network::parse("none").unwrap(), Ok(Network::None));
    assert_eq!(
        Network::parse("container:web").unwrap(),
        Err("web".to_owned())
    );
    assert!(Network::parse("weird").is_err());
    assert!(Network::parse("container:").is_err());
}

#[test]
fn security_opts_tmpfs_shm_devices_init() {
    let opts = RunOptions {
        no_new_privileges: true,
        seccomp: crate::spec::SeccompChoice::Unconfined,
        tmpfs: vec![crate::spec::TmpfsMount {
            destination: "/t".into(),
            options: vec!["size=1m".into()],
        }],
        shm_size: Some(16 << 20),
        devices: vec![crate::spec::DeviceMapping {
            path: "/dev/mynull".into(),
            kind: "c".into(),
            major: 1,
            minor: 3,
            file_mode: 0o666,
            permissions: "rw".into(),
        }],
        init: true,
        ..Default::default()
    };
    let j = build_json(Some(&sh()), &opts);
    assert_eq!(j["process"]["noNewPrivileges"], true);
    assert!(j["linux"].get("seccomp").is_none());
    let mounts = j["mounts"].as_array().unwrap();
    let t = mounts.iter().find(|m| m["destination"] == "/t").unwrap();
    assert_eq!(t["type"], "tmpfs");
    assert_eq!(
        strs(&t["options"]),
        ["nosuid", "nodev", "noexec", "size=1m"]
    );
    let shm = mounts
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert!(strs(&shm["options"]).contains(&"size=16777216".to_owned()));
    assert_eq!(j["linux"]["devices"][0]["path"], "/dev/mynull");
    let rules = j["linux"]["resources"]["devices"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["major"] == 1 && r["minor"] == 3 && r["access"] == "rw")
    );
    assert_eq!(j["annotations"][crate::spec::INIT_ANNOTATION], "true");
}
