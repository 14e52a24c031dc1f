//! hoist's networks against docker's: each scenario runs the same commands through the docker
//! CLI on a private dockerd with a bridge of its own (`Dockerd::start_with_bridge`: no iptables,
//! published ports through docker-proxy) and through hoist, on the same busybox rootfs, and
//! compares what each prints. Where the values legitimately differ (ids, subnets from different
//! pools, ephemeral host ports) the outputs are normalised or the relation is compared instead
//! ("the first container gets .2", "the same JSON keys at each level").
//!
//! The differences hoist keeps are asserted as such, each with a `KEPT:` comment saying why,
//! so a change on either side shows here.
//!
//! Traffic goes only to 127.0.0.1 and to addresses inside namespaces docker and hoist made.
//! One dockerd serves every scenario (its user networks share one pool); the scenarios run at
//! once, each on names of its own, and a failing one does not stop the others.

mod common;
mod run_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Dockerd;
use run_support::Home;
use serde_json::Value;

const PATH_ENV: &str = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const WEB: &str = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www";

/// What one command did.
#[derive(Debug, Clone)]
struct Out {
    code: i32,
    out: String,
    err: String,
}

/// docker and hoist side by side. Dropped: docker's containers and networks are removed
/// (hoist's go with its `Home`), then dockerd stops and its bridges are deleted.
struct Env {
    h: Home,
    d: Dockerd,
}

impl Env {
    fn docker(&self, args: &[&str]) -> Out {
        run_cmd(self.d.docker().args(args))
    }

    fn hoist(&self, args: &[&str]) -> Out {
        run_cmd(&mut self.h.cmd(args))
    }

    /// `args` through both: (docker's, hoist's).
    fn both(&self, args: &[&str]) -> (Out, Out) {
        (self.docker(args), self.hoist(args))
    }

    /// `args` through `engine` (`"docker"` or `"hoist"`).
    fn on(&self, engine: &str, args: &[&str]) -> Out {
        if engine == "docker" {
            self.docker(args)
        } else {
            self.hoist(args)
        }
    }

    /// Like [`Env::on`], failing the test on a non-zero exit; returns stdout.
    fn ok(&self, engine: &str, args: &[&str]) -> String {
        let o = self.on(engine, args);
        assert_eq!(o.code, 0, "{engine} {args:?} failed: {o:?}");
        o.out
    }

    /// `inspect NAME` (a container) as JSON.
    fn inspect(&self, engine: &str, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(engine, &["inspect", name])).unwrap();
        v[0].clone()
    }

    fn network_inspect(&self, engine: &str, name: &str) -> Value {
        let v: Value =
            serde_json::from_str(&self.ok(engine, &["network", "inspect", name])).unwrap();
        v[0].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]).out;
        let ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            self.docker(&args);
        }
        self.docker(&["network", "prune", "-f"]);
    }
}

/// Runs `cmd` (stdin empty) for at most a minute.
fn run_cmd(cmd: &mut Command) -> Out {
    let line = common::show(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
    let out = common::drain(child.stdout.take().expect("piped"));
    let err = common::drain(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out: {line}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code().unwrap_or(-1),
        out: out.join().unwrap_or_default(),
        err: err.join().unwrap_or_default(),
    }
}

/// A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` consecutive free ports on 127.0.0.1.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let p = free_port();
        if p.checked_add(n).is_some()
            && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok())
        {
            return p;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// GET / from 127.0.0.1:`port`, retried until the server answers (it is started detached).
fn http_get(port: u16) -> String {
    hoist_testsupport::output::http_get(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Hex ids (64 and 12 digits) become `<ID>`.
fn ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            .count();
        let before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let after = b.get(i + run).is_none_or(|c| !c.is_ascii_alphanumeric());
        if (run == 64 || run == 12) && before && after {
            out.push_str("<ID>");
            i += run;
        } else {
            let ch = s[i..].chars().next().expect("a char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// `s` with each `(from, to)` replaced, longest `from` first.
fn replace_all(s: &str, pairs: &[(String, String)]) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    let mut s = s.to_owned();
    for (i, (from, _)) in pairs.iter().enumerate() {
        s = s.replace(from.as_str(), &format!("\u{1}{i}\u{1}"));
    }
    for (i, (_, to)) in pairs.iter().enumerate() {
        s = s.replace(&format!("\u{1}{i}\u{1}"), to);
    }
    s
}

/// The JSON paths of `v` (objects' keys, arrays as `[]`); the keys of the objects at the paths
/// in `maps` (names, ids: values, not fields) become `*`.
fn keys(v: &Value, maps: &[&str]) -> BTreeSet<String> {
    fn walk(v: &Value, path: &str, maps: &[&str], out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let k = if maps.contains(&path) {
                        "*"
                    } else {
                        k.as_str()
                    };
                    let p = format!("{path}.{k}");
                    out.insert(p.clone());
                    walk(x, &p, maps, out);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, &format!("{path}[]"), maps, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", maps, &mut out);
    out
}

/// Asserts `docker` and `hoist` have the same keys, but for `docker_only` and `hoist_only`.
fn same_keys(what: &str, docker: &Value, hoist: &Value, maps: &[&str], docker_only: &[&str]) {
    let (d, h) = (keys(docker, maps), keys(hoist, maps));
    let missing: Vec<&String> = d
        .difference(&h)
        .filter(|k| !docker_only.contains(&k.as_str()))
        .collect();
    let extra: Vec<&String> = h.difference(&d).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keys only docker has: {missing:?}; only hoist has: {extra:?}\n--- docker\n{docker:#}\n--- hoist\n{hoist:#}"
    );
}

/// The first three octets of a /24 (`10.198.201.0/24` -> `10.198.201.`).
fn net24(subnet: &str) -> String {
    let ip = subnet.split('/').next().unwrap();
    let mut parts: Vec<&str> = ip.split('.').collect();
    parts.pop();
    format!("{}.", parts.join("."))
}

/// The MAC docker (and hoist) derive from an IPv4 address: `02:42:` and its four bytes.
fn mac_of(ip: &str) -> String {
    let b: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Whether `err` says `what`, either as docker words it or lowercased (hoist's rule).
fn says(err: &str, what: &str) -> bool {
    err.to_lowercase().contains(&what.to_lowercase())
}

fn assert_says(engine: &str, o: &Out, what: &str) {
    assert!(says(&o.err, what), "{engine} should say {what:?}: {o:?}");
}

/// The unique names of one scenario: `P-x` for each engine (the same name on both sides).
fn name(prefix: &str, x: &str) -> String {
    format!("nd{}-{prefix}-{x}", std::process::id() % 10_000)
}

/// A subnet for scenario `k`: docker's explicit ones inside its pool (10.198/16, far above what
/// it hands out itself), hoist's in 10.197/16 (no route on the machine is there).
fn subnet(engine: &str, k: u8) -> String {
    if engine == "docker" {
        format!("10.198.{}.0/24", 200 + k)
    } else {
        format!("10.197.{}.0/24", 200 + k)
    }
}

const ENGINES: [&str; 2] = ["docker", "hoist"];

/// `network create` with a subnet, gateway, --internal and labels; `inspect` with a container
/// on it; `ls` and its filters and formats; the errors.
fn create_inspect_ls_and_errors(e: &Env) {
    let net = name("c", "net");
    let other = name("c", "other");
    let ctr = name("c", "ctr");
    // Numbers in names sort by value.
    let (x2, x10) = (name("c", "x2"), name("c", "x10"));
    for engine in ENGINES {
        for n in [&x10, &x2] {
            e.ok(engine, &["network", "create", n]);
        }
        let sub = subnet(engine, 1);
        let gw = format!("{}1", net24(&sub));
        let id = e.ok(
            engine,
            &[
                "network",
                "create",
                "--subnet",
                &sub,
                "--gateway",
                &gw,
                "--internal",
                "--label",
                "k=v",
                "--label",
                "e=",
                &net,
            ],
        );
        assert_eq!(ids(&id), "<ID>\n", "{engine}: {id}");
        let other_sub = format!("{}0/24", net24(&subnet(engine, 2)));
        e.ok(
            engine,
            &["network", "create", "--subnet", &other_sub, &other],
        );
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &ctr,
                "--network",
                &net,
                "busybox",
                "sleep",
                "300",
            ],
        );
    }
    let (d, h) = (
        e.network_inspect("docker", &net),
        e.network_inspect("hoist", &net),
    );
    // KEPT: both print keys in their own order and indent (docker: struct order, four spaces;
    // hoist: sorted, two spaces, as every hoist inspect does); the keys are the same.
    same_keys("network inspect", &d, &h, &[".Containers", ".Labels"], &[]);
    for k in [
        "Name",
        "Driver",
        "Scope",
        "Internal",
        "EnableIPv6",
        "Attachable",
        "Labels",
        "Options",
    ] {
        assert_eq!(d[k], h[k], "network inspect .{k}");
    }
    assert_eq!(h["Options"], serde_json::json!({}));
    assert_eq!(d["IPAM"]["Options"], h["IPAM"]["Options"]);
    assert_eq!(h["Labels"], serde_json::json!({"k": "v", "e": ""}));
    for (engine, v) in [("docker", &d), ("hoist", &h)] {
        let sub = subnet(engine, 1);
        let n = net24(&sub);
        assert_eq!(
            v["IPAM"]["Config"],
            serde_json::json!([{"Subnet": sub, "Gateway": format!("{n}1")}]),
            "{engine}"
        );
        let c = v["Containers"].as_object().unwrap();
        assert_eq!(c.len(), 1, "{engine}: {v:#}");
        let (cid, ep) = c.iter().next().unwrap();
        assert_eq!(ids(cid), "<ID>");
        assert_eq!(ep["Name"], ctr.as_str(), "{engine}");
        // The first container gets .2; its MAC is derived from it.
        assert_eq!(ep["IPv4Address"], format!("{n}2/24"), "{engine}");
        assert_eq!(ep["MacAddress"], mac_of(&format!("{n}2")), "{engine}");
        assert_eq!(ep["IPv6Address"], "", "{engine}");
    }

    // ls: the table, a format, filters.
    let table = |engine: &str, args: &[&str]| {
        let mut a = vec!["network", "ls"];
        a.extend_from_slice(args);
        ids(&e.ok(engine, &a))
    };
    let prefix = name("c", "");
    for args in [
        vec!["--filter", &*format!("name={prefix}")],
        vec![
            "--filter",
            &*format!("name={prefix}"),
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.IPv6}}",
        ],
        vec!["--filter", &*format!("name={prefix}"), "--no-trunc"],
        vec!["--filter", "label=k=v", "--format", "{{.Name}}"],
        vec!["--filter", "label=k", "--format", "{{.Name}}"],
        vec!["--filter", "label=e=", "--format", "{{.Name}}"],
        vec!["--filter", "driver=null"],
        vec![
            "--filter",
            "driver=host",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
        vec![
            "--filter",
            "type=builtin",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
        vec!["--filter", &*format!("name={prefix}"), "-q"],
        vec![
            "--filter",
            "type=custom",
            "--filter",
            &*format!("name={prefix}"),
            "--format",
            "{{.Name}}",
        ],
    ] {
        assert_eq!(
            table("docker", &args),
            table("hoist", &args),
            "network ls {args:?}"
        );
    }
    // Every field `{{json .}}` has; CreatedAt as Go prints a time.
    let json_row = |engine: &str| -> Value {
        serde_json::from_str(&e.ok(
            engine,
            &[
                "network",
                "ls",
                "--filter",
                &format!("name={net}"),
                "--format",
                "{{json .}}",
            ],
        ))
        .unwrap()
    };
    let (dj, hj) = (json_row("docker"), json_row("hoist"));
    same_keys("network ls {{json .}}", &dj, &hj, &[], &[]);
    for v in [&dj, &hj] {
        let t = v["CreatedAt"].as_str().unwrap();
        assert!(t.ends_with(" +0000 UTC") && t.as_bytes()[10] == b' ', "{t}");
        // docker prints them in its map's (random) order.
        let mut labels: Vec<&str> = v["Labels"].as_str().unwrap().split(',').collect();
        labels.sort();
        assert_eq!(labels, ["e=", "k=v"]);
    }

    // Errors: the exit codes, and the substance of the message.
    let (dn, hn) = e.both(&["network", "create", &net]);
    for (engine, o) in [("docker", &dn), ("hoist", &hn)] {
        assert_eq!(o.code, 1, "{engine}: {o:?}");
        assert_says(
            engine,
            o,
            &format!("network with name {net} already exists"),
        );
    }
    for engine in ENGINES {
        let half = format!("{}128/25", net24(&subnet(engine, 1)));
        let o = e.on(
            engine,
            &["network", "create", "--subnet", &half, &name("c", "half")],
        );
        assert_eq!(o.code, 1, "{engine}: {o:?}");
        // KEPT: docker says "Pool overlaps with other one on this address space"; hoist names
        // the network it overlaps.
        assert_says(engine, &o, "overlaps");
    }
    let (dr, hr) = e.both(&["network", "rm", &net]);
    for (engine, o) in [("docker", &dr), ("hoist", &hr)] {
        assert_eq!(o.code, 1, "{engine}: {o:?}");
        assert_says(
            engine,
            o,
            &format!("error while removing network: network {net} id"),
        );
        assert_says(engine, o, "has active endpoints");
    }
    let (dip, hip) = e.both(&["run", "--rm", "--ip", "10.9.9.9", "busybox", "true"]);
    for (engine, o) in [("docker", &dip), ("hoist", &hip)] {
        assert_eq!(o.code, 125, "{engine}: {o:?}");
        assert_says(
            engine,
            o,
            "user specified IP address is supported on user defined networks only",
        );
    }
    let (dip, hip) = e.both(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        "10.9.9.9",
        "busybox",
        "true",
    ]);
    for (engine, o) in [("docker", &dip), ("hoist", &hip)] {
        assert_eq!(o.code, 125, "{engine}: {o:?}");
        // KEPT (runtime/src/net/ipam): docker goes on "It does not belong to any of this
        // network's subnets", hoist "not a host address of subnet ...".
        assert_says(engine, o, "invalid address 10.9.9.9");
    }
    let (dx, hx) = e.both(&[
        "run",
        "--rm",
        "--network",
        &name("c", "nosuch"),
        "busybox",
        "true",
    ]);
    for (engine, o) in [("docker", &dx), ("hoist", &hx)] {
        assert_eq!(o.code, 125, "{engine}: {o:?}");
        assert_says(
            engine,
            o,
            &format!("network {} not found", name("c", "nosuch")),
        );
    }
    // On an --internal network docker still gives the container a default route (isolation is
    // its firewall's), hoist none.
    // KEPT (runtime/src/net): hoist's internal network has no route out at all.
    let route = |engine: &str| e.ok(engine, &["exec", &ctr, "ip", "-4", "route"]);
    assert!(
        route("docker").starts_with("default via "),
        "{}",
        route("docker")
    );
    assert!(!route("hoist").contains("default"), "{}", route("hoist"));

    for engine in ENGINES {
        e.ok(engine, &["rm", "-f", &ctr]);
    }
    // KEPT: docker 20.10's `ls` counts a network with a running container on it as dangling
    // (its list leaves the containers out); hoist follows docker's documentation ("not in use
    // by any containers"), so they are compared with none on them.
    for d in ["dangling=true", "dangling=false"] {
        let args = [
            "--filter",
            &*format!("name={prefix}"),
            "--filter",
            d,
            "--format",
            "{{.Name}}",
        ];
        assert_eq!(
            table("docker", &args),
            table("hoist", &args),
            "network ls {args:?}"
        );
    }
    for engine in ENGINES {
        assert_eq!(
            e.ok(engine, &["network", "rm", &net, &other, &x2, &x10]),
            format!("{net}\n{other}\n{x2}\n{x10}\n")
        );
        let o = e.on(engine, &["network", "inspect", &net]);
        assert_eq!(o.code, 1, "{engine}: {o:?}");
        assert_says(engine, &o, &format!("network {net} not found"));
    }
}

/// What a script prints inside a detached sleeper, made comparable: its address, gateway,
/// subnet, broadcast, id and interface indexes replaced by names.
fn inside(e: &Env, engine: &str, ctr: &str, network: &str, script: &str) -> String {
    let v = e.inspect(engine, ctr);
    let n = &v["NetworkSettings"]["Networks"][network];
    let ip = n["IPAddress"].as_str().unwrap().to_owned();
    let gw = n["Gateway"].as_str().unwrap().to_owned();
    let prefix = n["IPPrefixLen"].as_u64().unwrap();
    let net = e.network_inspect(engine, network);
    let sub = net["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub_ip = sub.split('/').next().unwrap().to_owned();
    let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
    let base: std::net::Ipv4Addr = sub_ip.parse().unwrap();
    let brd = std::net::Ipv4Addr::from(u32::from(base) | !mask).to_string();
    let out = e.ok(engine, &["exec", ctr, "sh", "-c", script]);
    let mut pairs = vec![
        (format!("{sub_ip}/{prefix}"), "<SUBNET>".to_owned()),
        (format!("{ip}/{prefix}"), "<IP>/<P>".to_owned()),
        (ip, "<IP>".to_owned()),
        (gw, "<GW>".to_owned()),
        (brd, "<BRD>".to_owned()),
    ];
    pairs.retain(|(f, _)| !f.is_empty());
    let out = ids(&replace_all(&out, &pairs));
    // Interface indexes (`12: eth0@if13:`) are the machine's.
    out.lines()
        .map(|l| {
            let l = match l.split_once(": ") {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => {
                    let rest = match rest.split_once(':') {
                        Some((dev, tail)) => format!("{}:{tail}", dev.split('@').next().unwrap()),
                        None => rest.to_owned(),
                    };
                    format!("N: {rest}")
                }
                _ => l.to_owned(),
            };
            // Both veth ends have no queue (txqueuelen 0: `ip` prints no `qlen`).
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const FILES: &str = "echo '## resolv'; cat /etc/resolv.conf; echo '## hosts'; cat /etc/hosts; \
    echo '## addr'; ip -4 addr; echo '## route'; ip -4 route; echo '## hostname'; hostname; \
    cat /etc/hostname; echo '## links'; ls /sys/class/net";

/// resolv.conf, hosts, addresses, routes and hostname inside, on the default bridge and on a
/// user network, with and without --dns, --add-host, --hostname.
fn files_inside(e: &Env) {
    let net = name("f", "net");
    for engine in ENGINES {
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 3), &net],
        );
    }
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("bridge", vec![]),
        (
            "bridge",
            vec![
                "--dns",
                "10.0.0.53",
                "--add-host",
                "foo:10.1.2.3",
                "--hostname",
                "hh",
            ],
        ),
        (&net, vec!["--network", &net]),
        (
            &net,
            vec![
                "--network",
                &net,
                "--dns",
                "10.0.0.53",
                "--add-host",
                "foo:10.1.2.3",
            ],
        ),
    ];
    for (i, (network, flags)) in cases.iter().enumerate() {
        let ctr = name("f", &i.to_string());
        let mut got = Vec::new();
        for engine in ENGINES {
            let mut args = vec!["run", "-d", "--name", &ctr];
            args.extend_from_slice(flags);
            args.extend_from_slice(&["busybox", "sleep", "300"]);
            e.ok(engine, &args);
            got.push(inside(e, engine, &ctr, network, FILES));
            e.ok(engine, &["rm", "-f", &ctr]);
        }
        assert_eq!(
            got[0], got[1],
            "inside a container with {flags:?}\n--- docker\n{}\n--- hoist\n{}",
            got[0], got[1]
        );
    }
    for engine in ENGINES {
        e.ok(engine, &["network", "rm", &net]);
    }
}

/// `nslookup NAME`'s answer lines (`Name:` and `Address:` after the server's), and its exit
/// code; the answered addresses replaced by the names of their containers.
fn lookup(e: &Env, engine: &str, from: &[&str], name: &str, known: &[(String, String)]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(from);
    let script = format!("timeout 10 nslookup {name} 2>&1; echo rc=$?");
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    let out = e.ok(engine, &args);
    // Both servers answer without the AA bit (busybox prints "Non-authoritative answer:" for
    // both); busybox prints the empty AAAA answer in different places. The answer lines are
    // compared, and the non-authoritative mark.
    if out.contains("rc=0") {
        assert!(out.contains("Non-authoritative answer:"), "{out}");
    }
    let mut lines: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("Address:"))
        .skip(1)
        .filter(|l| l.starts_with("Name:") || l.starts_with("Address:") || l.starts_with("rc="))
        .map(|l| replace_all(l, known))
        .collect();
    // An unknown name: how it fails depends on the upstream (none reachable here): only that
    // it fails is compared.
    if lines.last().is_none_or(|l| l != "rc=0") {
        lines = vec!["failed".to_owned()];
    }
    lines.join("\n")
}

/// Names on a user network: the container's, its alias, NAME.NETWORK; none on the default
/// bridge; `ping` by name.
fn names_resolve(e: &Env) {
    let net = name("d", "net");
    let a = name("d", "a");
    let b = name("d", "b");
    let mut answers = Vec::new();
    for engine in ENGINES {
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 4), &net],
        );
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &a,
                "--network",
                &net,
                "--network-alias",
                "alpha",
                "busybox",
                "sleep",
                "300",
            ],
        );
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &b,
                "--network",
                &net,
                "busybox",
                "sleep",
                "300",
            ],
        );
        // The sleepers on the default bridge too, with no names there.
        let ip = |c: &str| {
            e.inspect(engine, c)["NetworkSettings"]["Networks"][&net]["IPAddress"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let known = vec![(ip(&a), "<A>".to_owned()), (ip(&b), "<B>".to_owned())];
        let on_net = ["--network", net.as_str()];
        let mut got = Vec::new();
        for n in [
            a.clone(),
            "alpha".into(),
            format!("{a}.{net}"),
            format!("alpha.{net}"),
            b.clone(),
            name("d", "nosuch"),
        ] {
            got.push(format!("{n}: {}", lookup(e, engine, &on_net, &n, &known)));
        }
        got.push(format!(
            "bridge {a}: {}",
            lookup(e, engine, &[], &a, &known)
        ));
        let ping = e.on(engine, &["exec", &b, "ping", "-c1", "-W2", "alpha"]);
        got.push(format!(
            "ping: {} {}",
            ping.code,
            replace_all(ping.out.lines().next().unwrap_or(""), &known)
        ));
        // The aliases inspect lists: the given ones, then the short id.
        let aliases = &e.inspect(engine, &a)["NetworkSettings"]["Networks"][&net]["Aliases"];
        got.push(format!("aliases: {}", ids(&aliases.to_string())));
        answers.push(got.join("\n"));
    }
    assert_eq!(
        answers[0], answers[1],
        "names\n--- docker\n{}\n--- hoist\n{}",
        answers[0], answers[1]
    );
    for engine in ENGINES {
        e.ok(engine, &["rm", "-f", &a, &b]);
        e.ok(engine, &["network", "rm", &net]);
    }
}

/// Ports in `s`: each of `fixed` becomes `<Pn>`, any other host port after `127.0.0.1:` or
/// `0.0.0.0:` (an ephemeral one) `<E>`; JSON `"HostPort":"N"` likewise.
fn ports_in(s: &str, fixed: &[u16]) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, p) in fixed.iter().enumerate() {
        for (pre, post) in [(":", ""), ("\"", "\"")] {
            pairs.push((format!("{pre}{p}{post}"), format!("{pre}<P{i}>{post}")));
        }
    }
    let s = replace_all(s, &pairs);
    let mut out = String::new();
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let at = ["127.0.0.1:", "0.0.0.0:", "\"HostPort\":\""]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
            .min();
        let Some((i, len)) = at else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..i + len]);
        rest = &rest[i + len..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("<E>");
            rest = &rest[digits..];
        }
    }
    out
}

/// `-p` in its forms and `-P`: `port`, `ps`, `inspect`, a GET through each; one host port
/// asked for twice.
fn published_ports(e: &Env) {
    let p = name("p", "p");
    let all = name("p", "all");
    let clash = name("p", "clash");
    let mut got = Vec::new();
    for engine in ENGINES {
        let fixed = free_port();
        let range = free_ports(2);
        let spec_fixed = format!("127.0.0.1:{fixed}:80/tcp");
        let spec_range = format!("127.0.0.1:{range}-{}:81-82", range + 1);
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &p,
                "-p",
                "127.0.0.1::80",
                "-p",
                &spec_fixed,
                "-p",
                &spec_range,
                "-p",
                "127.0.0.1::53/udp",
                "busybox",
                "sh",
                "-c",
                WEB,
            ],
        );
        e.ok(
            engine,
            &["run", "-d", "--name", &all, "-P", "webimg", "sh", "-c", WEB],
        );
        assert!(http_get(fixed).contains("hello"), "{engine}");
        let fixed_ports = [fixed, range, range + 1];
        let mut lines = Vec::new();
        for (c, q) in [
            (&p, vec![]),
            (&p, vec!["80/tcp"]),
            (&p, vec!["80"]),
            (&p, vec!["53/udp"]),
            (&p, vec!["99"]),
            (&all, vec![]),
        ] {
            let mut args = vec!["port", c.as_str()];
            args.extend(q.iter().copied());
            let o = e.on(engine, &args);
            let mut out: Vec<String> = o
                .out
                .lines()
                // KEPT (runtime/src/net): docker also publishes -P's ports on [::]; hoist
                // publishes IPv4 only.
                .filter(|l| !l.contains("[::]"))
                .map(|l| ports_in(l, &fixed_ports))
                .collect();
            // The ephemeral ports differ, so their order among the others may too.
            out.sort();
            // KEPT: docker's CLI says "Error: No public port ..."; hoist lowercase.
            let err = o
                .err
                .to_lowercase()
                .replace("error: ", "")
                .replace("hoist: ", "");
            lines.push(format!("port {q:?}: {} {out:?} {}", o.code, err.trim()));
        }
        for c in [&p, &all] {
            let ps = e.ok(
                engine,
                &[
                    "ps",
                    "--filter",
                    &format!("name={c}"),
                    "--format",
                    "{{.Ports}}",
                ],
            );
            let mut parts: Vec<String> = ps
                .trim()
                .split(", ")
                .filter(|l| !l.contains("[::]"))
                .map(|l| ports_in(l, &fixed_ports))
                .collect();
            parts.sort();
            lines.push(format!("ps: {parts:?}"));
            let v = e.inspect(engine, c);
            let mut ports = v["NetworkSettings"]["Ports"].clone();
            for (_, b) in ports.as_object_mut().unwrap() {
                if let Some(a) = b.as_array_mut() {
                    a.retain(|x| x["HostIp"] != "::");
                }
            }
            lines.push(format!(
                "Ports: {}",
                ports_in(&ports.to_string(), &fixed_ports)
            ));
            if c == &p {
                lines.push(format!(
                    "PortBindings: {} {}",
                    ports_in(&v["HostConfig"]["PortBindings"].to_string(), &fixed_ports),
                    v["HostConfig"]["PublishAllPorts"]
                ));
            }
        }
        // KEPT (needs a `publish_all` in runtime/src/container.rs's options): for -P docker
        // keeps `PortBindings` empty and says `PublishAllPorts: true`; hoist records the
        // exposed ports as `-p` requests.
        let v = e.inspect(engine, &all);
        if engine == "docker" {
            assert_eq!(v["HostConfig"]["PortBindings"], serde_json::json!({}));
            assert_eq!(v["HostConfig"]["PublishAllPorts"], true);
        } else {
            assert_eq!(
                v["HostConfig"]["PortBindings"],
                serde_json::json!({"80/tcp": [{"HostIp": "", "HostPort": ""}]})
            );
            assert_eq!(v["HostConfig"]["PublishAllPorts"], false);
        }
        // -P's port answers.
        let all_port = e.ok(engine, &["port", &all, "80/tcp"]);
        let all_port: u16 = all_port
            .lines()
            .find(|l| l.starts_with("0.0.0.0:"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{engine}: {all_port}"));
        assert!(http_get(all_port).contains("hello"), "{engine}");
        // Hairpin: the published port through the host's address on the bridge, from another
        // container of the network and from the container itself.
        let gw = e.inspect(engine, &all)["NetworkSettings"]["Gateway"]
            .as_str()
            .unwrap_or_else(|| panic!("{engine}: no gateway"))
            .to_owned();
        let get = format!(
            "for i in 1 2 3 4 5; do \
               printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {gw} {all_port} && exit 0; sleep 0.2; \
             done; exit 1"
        );
        let from_other = ["run", "--rm", "busybox", "sh", "-c", &get];
        let from_itself = ["exec", all.as_str(), "sh", "-c", &get];
        let o = e.on(engine, &from_other);
        let body = o.out.lines().last().unwrap_or_default();
        lines.push(format!("hairpin from another: {} {body}", o.code));
        // KEPT: from the container itself, this test's dockerd (no iptables, the port through
        // docker-proxy) answers in most runs but not all (about 1 in 5 here, retries
        // included), so only hoist's answer is asserted; hoist's bridge ports are in hairpin
        // mode and its DNAT carries the connection.
        let o = e.on(engine, &from_itself);
        if engine == "hoist" {
            let body = o.out.lines().last().unwrap_or_default();
            assert_eq!((o.code, body), (0, "hello"), "{o:?}");
        }
        // The same host port again.
        let again = format!("127.0.0.1:{fixed}:80");
        let o = e.on(
            engine,
            &[
                "run", "-d", "--name", &clash, "-p", &again, "busybox", "sleep", "100",
            ],
        );
        assert_says(
            engine,
            &o,
            &format!("Bind for 127.0.0.1:{fixed} failed: port is already allocated"),
        );
        let status = e.ok(
            engine,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("name={clash}"),
                "--format",
                "{{.Status}}",
            ],
        );
        lines.push(format!("clash: {} {}", o.code, status.trim()));
        e.ok(engine, &["rm", "-f", &p, &all, &clash]);
        // Removed: the host port is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(("127.0.0.1", fixed)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{engine}: port {fixed} still taken"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        got.push(lines.join("\n"));
    }
    assert_eq!(
        got[0], got[1],
        "ports\n--- docker\n{}\n--- hoist\n{}",
        got[0], got[1]
    );
}

/// A container before its first start and after it exited: its aliases, ports, `port`, `ps`.
fn created_and_exited(e: &Env) {
    let net = name("x", "net");
    let ctr = name("x", "ctr");
    let mut got = Vec::new();
    for engine in ENGINES {
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 8), &net],
        );
        e.ok(
            engine,
            &[
                "create",
                "--name",
                &ctr,
                "--network",
                &net,
                "--network-alias",
                "x",
                "-p",
                "127.0.0.1::80",
                "webimg",
                "true",
            ],
        );
        let mut lines = Vec::new();
        let mut look = |when: &str| {
            let v = e.inspect(engine, &ctr);
            let ns = &v["NetworkSettings"];
            lines.push(format!(
                "{when}: aliases {} ports {} ip {:?} port {:?} ps {:?}",
                ids(&ns["Networks"][&net]["Aliases"].to_string()),
                ns["Ports"],
                ns["Networks"][&net]["IPAddress"],
                e.ok(engine, &["port", &ctr]),
                e.ok(
                    engine,
                    &[
                        "ps",
                        "-a",
                        "--filter",
                        &format!("name={ctr}"),
                        "--format",
                        "{{.Ports}}|{{.Networks}}"
                    ]
                ),
            ));
        };
        look("created");
        e.ok(engine, &["start", "-a", &ctr]);
        look("exited");
        e.ok(engine, &["rm", "-f", &ctr]);
        e.ok(engine, &["network", "rm", &net]);
        got.push(lines.join("\n"));
    }
    assert_eq!(
        got[0], got[1],
        "created and exited\n--- docker\n{}\n--- hoist\n{}",
        got[0], got[1]
    );
}

/// `--network none`, `host`, `container:NAME`.
fn modes(e: &Env) {
    // The host's links no test makes (lo, eth0, ...).
    let host_links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "lo" || n.starts_with("eth") || n.starts_with("en"))
        .collect();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let base = name("m", "base");
    let joiner = name("m", "join");
    let mut got = Vec::new();
    for engine in ENGINES {
        let mut lines = Vec::new();
        let none = e.ok(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "ls /sys/class/net; ip -4 route | wc -l",
            ],
        );
        lines.push(format!("none: {none:?}"));
        // The host's hostname and its own interfaces (the veths and bridges of the scenarios
        // running at once come and go: only the others are compared).
        let host = e.ok(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "busybox",
                "sh",
                "-c",
                "hostname; ls /sys/class/net",
            ],
        );
        let (hn, links) = host.split_once('\n').unwrap();
        assert_eq!(hn, host_name.trim(), "{engine}");
        for l in &host_links {
            assert!(
                links.lines().any(|x| x == l),
                "{engine}: {l} missing in {links}"
            );
        }
        for (mode, c) in [("none", "n"), ("host", "h")] {
            let ctr = name("m", c);
            e.ok(
                engine,
                &[
                    "create",
                    "--name",
                    &ctr,
                    "--network",
                    mode,
                    "busybox",
                    "true",
                ],
            );
            let v = e.inspect(engine, &ctr);
            let nets: Vec<&String> = v["NetworkSettings"]["Networks"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            lines.push(format!(
                "{mode}: {} {nets:?}",
                v["HostConfig"]["NetworkMode"]
            ));
            e.ok(engine, &["rm", &ctr]);
        }
        // container:NAME shares the other's interfaces and hostname.
        e.ok(
            engine,
            &["run", "-d", "--name", &base, "busybox", "sleep", "300"],
        );
        let v = e.inspect(engine, &base);
        let ip = v["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_owned();
        let id = v["Id"].as_str().unwrap().to_owned();
        let mode = format!("container:{base}");
        let out = e.ok(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                &mode,
                "busybox",
                "sh",
                "-c",
                "hostname; ip -4 addr show eth0 | grep -o 'inet [0-9.]*'; ls /sys/class/net",
            ],
        );
        lines.push(format!(
            "joined: {}",
            replace_all(
                &out,
                &[(ip, "<IP>".into()), (id[..12].to_owned(), "<BASE>".into())]
            )
        ));
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &joiner,
                "--network",
                &mode,
                "busybox",
                "sleep",
                "300",
            ],
        );
        let v = e.inspect(engine, &joiner);
        lines.push(format!(
            "joiner: {} {} {} {}",
            v["HostConfig"]["NetworkMode"]
                .as_str()
                .unwrap()
                .replace(&id, "<BASE>"),
            v["NetworkSettings"]["Networks"],
            v["NetworkSettings"]["IPAddress"],
            v["Config"]["Hostname"]
                .as_str()
                .unwrap()
                .replace(&id[..12], "<BASE>"),
        ));
        let o = e.on(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                &format!("container:{}", name("m", "nosuch")),
                "busybox",
                "true",
            ],
        );
        assert_says(
            engine,
            &o,
            &format!("No such container: {}", name("m", "nosuch")),
        );
        lines.push(format!("nosuch: {}", o.code));
        let o = e.on(
            engine,
            &["run", "--rm", "--network", "container:", "busybox", "true"],
        );
        assert_says(
            engine,
            &o,
            "invalid network mode: invalid container format container:<name|id>",
        );
        lines.push(format!("empty: {}", o.code));
        // KEPT (the namespace is resolved at create, runtime/src/spec): docker creates a
        // container on a stopped one's network and refuses it at start; hoist refuses it at
        // create. `run` fails alike.
        let stopped = name("m", "stopped");
        e.ok(engine, &["create", "--name", &stopped, "busybox", "true"]);
        let o = e.on(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                &format!("container:{stopped}"),
                "busybox",
                "true",
            ],
        );
        assert!(
            says(
                &ids(&o.err),
                "cannot join network of a non running container: <ID>"
            ),
            "{engine}: {o:?}"
        );
        lines.push(format!("stopped: {}", o.code));
        e.ok(engine, &["rm", &stopped]);
        e.ok(engine, &["rm", "-f", &joiner, &base]);
        got.push(lines.join("\n"));
    }
    assert_eq!(
        got[0], got[1],
        "modes\n--- docker\n{}\n--- hoist\n{}",
        got[0], got[1]
    );
}

/// `network connect` and `disconnect` of a running container.
fn connect_disconnect(e: &Env) {
    let net = name("n", "net");
    let ctr = name("n", "ctr");
    let mut got = Vec::new();
    for engine in ENGINES {
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 5), &net],
        );
        e.ok(
            engine,
            &["run", "-d", "--name", &ctr, "busybox", "sleep", "300"],
        );
        let mut lines = Vec::new();
        let links = |e: &Env| e.ok(engine, &["exec", &ctr, "ls", "/sys/class/net"]);
        lines.push(format!("before: {:?}", links(e)));
        let o = e.on(engine, &["network", "connect", "--alias", "kk", &net, &ctr]);
        lines.push(format!("connect: {} {:?}", o.code, o.out));
        lines.push(format!("after: {:?}", links(e)));
        let v = e.inspect(engine, &ctr);
        let nets = &v["NetworkSettings"]["Networks"];
        let keys: Vec<&String> = nets.as_object().unwrap().keys().collect();
        let n = net24(&subnet(engine, 5));
        lines.push(format!(
            "networks: {keys:?} {} {} {}",
            ids(&nets[&net]["Aliases"].to_string()),
            nets[&net]["IPAddress"].as_str().unwrap().replace(&n, "<N>"),
            nets[&net]["Gateway"].as_str().unwrap().replace(&n, "<N>"),
        ));
        let inside = e.ok(
            engine,
            &[
                "exec",
                &ctr,
                "sh",
                "-c",
                "ip -4 addr show eth1 | grep -o 'inet [0-9./]*'; ip -4 route | grep eth1",
            ],
        );
        lines.push(format!("eth1: {}", inside.replace(&n, "<N>")));
        let o = e.on(engine, &["network", "connect", &net, &ctr]);
        lines.push(format!(
            "again: {} {}",
            o.code,
            says(
                &o.err,
                &format!("endpoint with name {ctr} already exists in network {net}")
            )
        ));
        let o = e.on(engine, &["network", "connect", "bridge", &ctr]);
        lines.push(format!(
            "bridge again: {} {}",
            o.code,
            says(
                &o.err,
                &format!("endpoint with name {ctr} already exists in network bridge")
            )
        ));
        let o = e.on(engine, &["network", "disconnect", &net, &ctr]);
        lines.push(format!("disconnect: {} {:?}", o.code, o.out));
        lines.push(format!("gone: {:?}", links(e)));
        let v = e.inspect(engine, &ctr);
        let keys: Vec<&String> = v["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        lines.push(format!("networks: {keys:?}"));
        let o = e.on(engine, &["network", "disconnect", &net, &ctr]);
        lines.push(format!(
            "not connected: {} {}",
            o.code,
            says(
                &ids(&o.err),
                &format!("container <ID> is not connected to network {net}")
            )
        ));
        e.ok(engine, &["rm", "-f", &ctr]);
        e.ok(engine, &["network", "rm", &net]);
        got.push(lines.join("\n"));
    }
    assert_eq!(
        got[0], got[1],
        "connect\n--- docker\n{}\n--- hoist\n{}",
        got[0], got[1]
    );
}

/// The container `inspect`'s `NetworkSettings` and the default bridge's `network inspect`:
/// the same keys.
fn inspect_shapes(e: &Env) {
    let ctr = name("i", "ctr");
    let mut v = Vec::new();
    for engine in ENGINES {
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &ctr,
                "-p",
                "127.0.0.1::80",
                "busybox",
                "sleep",
                "300",
            ],
        );
        v.push((e.inspect(engine, &ctr), e.network_inspect(engine, "bridge")));
    }
    // KEPT: docker 20.10 answers without the `DNSNames`/`GwPriority` of newer daemons; hoist
    // has the keys of the daemon here.
    same_keys(
        "inspect .NetworkSettings",
        &v[0].0["NetworkSettings"],
        &v[1].0["NetworkSettings"],
        &[".Networks", ".Ports"],
        &[],
    );
    same_keys(
        "network inspect bridge",
        &v[0].1,
        &v[1].1,
        &[".Containers", ".Labels", ".Options"],
        &[],
    );
    let opts =
        |x: &Value| -> Vec<String> { x["Options"].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(opts(&v[0].1), opts(&v[1].1), "the default bridge's options");
    assert_eq!(v[0].1["IPAM"]["Options"], v[1].1["IPAM"]["Options"]);
    // host and none list the containers running in that mode, with no addresses.
    for pseudo in ["host", "none"] {
        let c = name("i", pseudo);
        let mut got = Vec::new();
        for engine in ENGINES {
            let id = e.ok(
                engine,
                &[
                    "run",
                    "-d",
                    "--name",
                    &c,
                    "--network",
                    pseudo,
                    "busybox",
                    "sleep",
                    "300",
                ],
            );
            let v = e.network_inspect(engine, pseudo);
            let mine = v["Containers"][id.trim()].clone();
            got.push((v, mine));
            e.ok(engine, &["rm", "-f", &c]);
        }
        let ((d, dc), (h, hc)) = (&got[0], &got[1]);
        same_keys(pseudo, d, h, &[".Containers", ".Labels", ".Options"], &[]);
        for k in ["Name", "Driver", "Scope", "IPAM", "Options", "Internal"] {
            assert_eq!(d[k], h[k], "network inspect {pseudo} .{k}");
        }
        let entry = |x: &Value| ids(&x.to_string());
        assert_eq!(
            entry(dc),
            entry(hc),
            "network inspect {pseudo}: its container"
        );
    }
    for (i, engine) in ENGINES.iter().enumerate() {
        let (c, n) = &v[i];
        let ns = &c["NetworkSettings"];
        let ep = &ns["Networks"]["bridge"];
        // The top-level fields are the default network's.
        for k in [
            "IPAddress",
            "Gateway",
            "IPPrefixLen",
            "MacAddress",
            "EndpointID",
        ] {
            assert_eq!(ns[k], ep[k], "{engine}: .NetworkSettings.{k}");
        }
        let ip = ns["IPAddress"].as_str().unwrap();
        assert_eq!(ns["MacAddress"], mac_of(ip), "{engine}");
        assert_eq!(ep["NetworkID"], n["Id"], "{engine}");
        assert_eq!(ep["Aliases"], Value::Null, "{engine}");
        assert_eq!(
            n["Containers"][c["Id"].as_str().unwrap()]["IPv4Address"],
            format!("{ip}/{}", ns["IPPrefixLen"]),
            "{engine}"
        );
        let gw = n["IPAM"]["Config"][0]["Gateway"].as_str().unwrap();
        assert_eq!(ns["Gateway"], gw, "{engine}");
        e.ok(engine, &["rm", "-f", &ctr]);
    }
}

/// What each mode refuses, `ps`'s NETWORKS, `network prune`'s output, and where each side's
/// engine error goes: the exit codes and the substance of the messages.
fn refusals(e: &Env) {
    let net = name("r", "net");
    let base = name("r", "base");
    let none = name("r", "none");
    let hosty = name("r", "host");
    let joined = name("r", "join");
    let mut got = Vec::new();
    for engine in ENGINES {
        let mut lines = Vec::new();
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 6), &net],
        );
        e.ok(
            engine,
            &["run", "-d", "--name", &base, "busybox", "sleep", "300"],
        );
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &none,
                "--network",
                "none",
                "busybox",
                "sleep",
                "300",
            ],
        );
        e.ok(
            engine,
            &[
                "create",
                "--name",
                &hosty,
                "--network",
                "host",
                "busybox",
                "true",
            ],
        );
        let mode = format!("container:{base}");
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &joined,
                "--network",
                &mode,
                "busybox",
                "sleep",
                "300",
            ],
        );
        e.ok(engine, &["network", "connect", &net, &base]);
        let mut check = |args: &[&str], what: &str| {
            let o = e.on(engine, args);
            assert!(
                says(&ids(&o.err), what),
                "{engine} {args:?} should say {what:?}: {o:?}"
            );
            let n = net24(&subnet(engine, 6));
            lines.push(format!("{args:?}: {}", o.code).replace(&n, "<N>"));
        };
        for (flags, what) in [
            (
                vec!["-p", "80:80"],
                "conflicting options: port publishing and the container type network mode",
            ),
            (
                vec!["-P"],
                "conflicting options: port publishing and the container type network mode",
            ),
            (
                vec!["--hostname", "hh"],
                "conflicting options: hostname and the network mode",
            ),
            (
                vec!["--dns", "10.0.0.53"],
                "conflicting options: dns and the network mode",
            ),
            (
                vec!["--add-host", "foo:10.1.2.3"],
                "conflicting options: custom host-to-IP mapping and the network mode",
            ),
        ] {
            let mut args = vec!["run", "--rm", "--network", &mode];
            args.extend(flags);
            args.extend(["busybox", "true"]);
            check(&args, what);
        }
        check(
            &["run", "--rm", "--network-alias", "x", "busybox", "true"],
            "network-scoped aliases are only supported for user-defined networks",
        );
        check(
            &["network", "rm", "bridge"],
            "bridge is a pre-defined network and cannot be removed",
        );
        check(
            &["network", "rm", "host"],
            "host is a pre-defined network and cannot be removed",
        );
        check(
            &["network", "rm", &name("r", "nosuch")],
            &format!("network {} not found", name("r", "nosuch")),
        );
        check(
            &["network", "connect", &net, &none],
            "container cannot be connected to multiple networks with one of the networks in private (none) mode",
        );
        check(
            &["network", "connect", &net, &hosty],
            "container sharing network namespace with another container or host cannot be connected to any other network",
        );
        check(
            &["network", "connect", &net, &joined],
            "container sharing network namespace with another container or host cannot be connected to any other network",
        );
        check(
            &["network", "connect", "host", &base],
            "container cannot be disconnected from host network or connected to host network",
        );
        check(
            &["network", "disconnect", "host", &base],
            "container <ID> is not connected to network host",
        );
        check(
            &["network", "connect", &name("r", "nosuch"), &base],
            &format!("network {} not found", name("r", "nosuch")),
        );
        check(
            &["network", "connect", &net, &name("r", "nosuch")],
            &format!("No such container: {}", name("r", "nosuch")),
        );
        check(
            &[
                "network",
                "create",
                "--gateway",
                "10.196.0.1",
                &name("r", "gw"),
            ],
            "every ip-range or gateway must have a corresponding subnet",
        );
        check(
            &["network", "ls", "--filter", "name"],
            "invalid argument \"name\" for \"-f, --filter\" flag: bad format of filter (expected name=value)",
        );
        check(
            &["network", "ls", "--filter", "bad=x"],
            "Invalid filter 'bad'",
        );
        check(
            &["network", "ls", "--filter", "type=bogus"],
            "invalid filter: 'type'='bogus'",
        );
        check(
            &["network", "connect", "--alias", "zz", "bridge", &none],
            "network-scoped alias is supported only for containers in user defined networks",
        );
        // An address taken: docker says "Address already in use", hoist names it.
        let taken = format!("{}9", net24(&subnet(engine, 6)));
        e.ok(
            engine,
            &[
                "run",
                "-d",
                "--name",
                &name("r", "ip1"),
                "--network",
                &net,
                "--ip",
                &taken,
                "busybox",
                "sleep",
                "300",
            ],
        );
        check(
            &[
                "run",
                "--rm",
                "--network",
                &net,
                "--ip",
                &taken,
                "busybox",
                "true",
            ],
            "already in use",
        );
        e.ok(engine, &["rm", "-f", &name("r", "ip1")]);
        // A created container disconnected from its only network is on none.
        let cr = name("r", "created");
        e.ok(
            engine,
            &[
                "create",
                "--name",
                &cr,
                "--network",
                &net,
                "busybox",
                "true",
            ],
        );
        e.ok(engine, &["network", "disconnect", &net, &cr]);
        let v = e.inspect(engine, &cr);
        lines.push(format!(
            "disconnected: {}",
            v["NetworkSettings"]["Networks"]
        ));
        // --network host with -p: a warning, and the container runs.
        let o = e.on(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "-p",
                "80:80",
                "busybox",
                "true",
            ],
        );
        assert!(
            o.err
                .contains("WARNING: Published ports are discarded when using host network mode"),
            "{engine}: {o:?}"
        );
        lines.push(format!("host -p: {}", o.code));
        let ps = e.ok(
            engine,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("name={}", name("r", "")),
                "--format",
                "{{.Names}} {{.Networks}}",
            ],
        );
        // docker lists a container's networks in its map's (random) order.
        let mut ps: Vec<String> = ps
            .lines()
            .map(|l| {
                let (n, nets) = l.split_once(' ').unwrap_or((l, ""));
                let mut nets: Vec<&str> = nets.split(',').collect();
                nets.sort();
                format!("{n} {}", nets.join(","))
            })
            .collect();
        ps.sort();
        lines.push(format!("ps: {ps:?}"));
        // KEPT (runtime/src/net/sandbox): docker rewrites a container's resolv.conf for the
        // embedded server when it joins a user network; hoist keeps the one it started with.
        let resolv = e.ok(engine, &["exec", &base, "cat", "/etc/resolv.conf"]);
        assert_eq!(
            resolv.contains("127.0.0.11"),
            engine == "docker",
            "{engine}: {resolv}"
        );
        e.ok(engine, &["rm", "-f", &joined, &base, &none, &hosty, &cr]);
        // Only this scenario's network is unused (the others' have containers or are made
        // and removed whole while a scenario runs): prune would race them, so it is compared
        // on a quiet moment below.
        e.ok(engine, &["network", "rm", &net]);
        got.push(lines.join("\n"));
    }
    assert_eq!(
        got[0], got[1],
        "refusals\n--- docker\n{}\n--- hoist\n{}",
        got[0], got[1]
    );
}

/// `network prune`, once every other scenario is done.
fn prune(e: &Env) {
    let net = name("z", "net");
    let mut got = Vec::new();
    for engine in ENGINES {
        e.ok(
            engine,
            &["network", "create", "--subnet", &subnet(engine, 7), &net],
        );
        got.push(e.ok(engine, &["network", "prune", "-f"]));
        got.push(e.ok(engine, &["network", "prune", "-f"]));
    }
    assert_eq!(got[0], format!("Deleted Networks:\n{net}\n\n"));
    assert_eq!(got[0..2], got[2..4]);
}

/// One scenario: it panics where hoist differs from docker.
type Scenario = fn(&Env);

#[test]
fn networks_match_docker_s() {
    common::require_root();
    let e = Env {
        h: Home::new(),
        d: Dockerd::start_with_bridge(),
    };
    let rootfs = e.h.rootfs();
    for (image, extra) in [("busybox", None), ("webimg", Some("EXPOSE 80"))] {
        let mut changes = vec![PATH_ENV, r#"CMD ["sh"]"#];
        changes.extend(extra);
        // busybox again: `Home::new`'s has no PATH, docker's gets one.
        e.h.import(image, &changes);
        let mut cmd = e.d.docker();
        cmd.arg("import");
        for c in &changes {
            cmd.args(["--change", c]);
        }
        common::run(cmd.arg(&rootfs).arg(image));
    }
    let scenarios: &[(&str, Scenario)] = &[
        ("create_inspect_ls_and_errors", create_inspect_ls_and_errors),
        ("files_inside", files_inside),
        ("names_resolve", names_resolve),
        ("published_ports", published_ports),
        ("modes", modes),
        ("connect_disconnect", connect_disconnect),
        ("inspect_shapes", inspect_shapes),
        ("refusals", refusals),
        ("created_and_exited", created_and_exited),
    ];
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|(n, f)| (n, s.spawn(|| f(&e))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(n, h)| {
                h.join().err().map(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{n}: {msg}")
                })
            })
            .collect()
    });
    let mut failures = failures;
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prune(&e))) {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        failures.push(format!("prune: {msg}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ from docker:\n\n{}",
        failures.len(),
        scenarios.len() + 1,
        failures.join("\n\n")
    );
}
