//! Networks end to end, as root: bridges, addresses, published ports, names, and that every
//! change is undone. Traffic goes only to 127.0.0.1 and to the addresses of the containers the
//! tests start (in namespaces hoist made for them).

mod run_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use run_support::Home;

/// A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

use hoist_testsupport::output::http_get;

fn links() -> String {
    String::from_utf8(
        Command::new("ls")
            .arg("/sys/class/net")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

fn nft_tables() -> String {
    String::from_utf8(
        Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// A detached web server (busybox httpd) serving `text` at /, with `args` before the image.
fn web(h: &Home, name: &str, args: &[&str], text: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    all.extend_from_slice(&["busybox", "sh", "-c", &script]);
    h.ok(&all).trim().to_owned()
}

#[test]
fn a_published_port_serves_on_localhost_and_the_container_has_its_own_address() {
    let h = Home::new();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = web(&h, "web", &["-p", &publish], "hello-from-web");
    let body = http_get(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(body.contains("hello-from-web"), "{body}");

    // docker's PORTS and `port`.
    let ps = h.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));
    assert_eq!(
        h.ok(&["port", "web"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(h.ok(&["port", "web", "80"]), format!("127.0.0.1:{port}\n"));
    let (_, _, err) = h.fails(&["port", "web", "81"]);
    assert!(
        err.contains("no public port '81' published for web"),
        "{err}"
    );

    // Its address is on the default network, reachable from the host.
    let v = h.inspect("web");
    let ip: Ipv4Addr = v["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let gw: Ipv4Addr = v["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        v["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
        ip.to_string()
    );
    assert_eq!(
        v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert!(http_get(SocketAddr::from((ip, 80))).contains("hello-from-web"));
    let mac = v["NetworkSettings"]["MacAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(mac.starts_with("02:42:"), "{mac}");

    // Inside: eth0 with that address, the default route via the gateway, /etc/hosts naming it.
    let out = h.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat /sys/class/net/eth0/address; ip -4 route | head -1; tail -1 /etc/hosts",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].len(), 17, "{out}");
    assert!(
        lines[1].starts_with(&format!("default via {gw} dev eth0")),
        "{out}"
    );
    assert!(lines[2].contains('\t'), "{out}");

    // A second container cannot take the same host port.
    let (code, _, err) = h.fails(&[
        "run", "-d", "--name", "web2", "-p", &publish, "busybox", "sleep", "100",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{err}"
    );
    h.ok(&["rm", "-f", "web2"]);

    // rm undoes it all: the veth, the namespace, the port; the default network's bridge stays
    // (as docker0) until `network prune` finds it idle.
    let veth = format!("vh{}", &id[..8]);
    assert!(links().contains(&veth), "{}", links());
    let bridge = h.ok(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
    ]);
    let bridge = bridge.trim().to_owned();
    assert!(links().contains(&bridge));
    h.ok(&["rm", "-f", "web"]);
    // The veth goes with the namespace, which the kernel takes down in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while links().contains(&veth) {
        assert!(Instant::now() < deadline, "{}", links());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(links().contains(&bridge), "{}", links());
    h.ok(&["network", "prune", "-f"]);
    assert!(!links().contains(&bridge), "{}", links());
    assert!(!std::path::Path::new(&format!("/run/hoist/netns/{id}")).exists());
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the host port is free again");
}

#[test]
fn user_networks_give_addresses_aliases_and_isolation_and_are_removed_whole() {
    let h = Home::new();
    let id = h.ok(&["network", "create", "--subnet", "10.231.0.0/24", "backend"]);
    assert_eq!(id.trim().len(), 64);
    let (_, _, err) = h.fails(&["network", "create", "backend"]);
    assert!(
        err.contains("network with name backend already exists"),
        "{err}"
    );
    let (_, _, err) = h.fails(&["network", "create", "--subnet", "10.231.0.0/25", "other"]);
    assert!(err.contains("overlaps with network backend"), "{err}");
    let (_, _, err) = h.fails(&["network", "create", "--subnet", "10.1.2.3/24", "x"]);
    assert!(err.contains("host bits are set"), "{err}");

    let ls = h.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls, "backend bridge\nbridge bridge\nhost host\nnone null\n");
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "backend"])).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.231.0.0/24");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.231.0.1");

    // --ip and --network-alias on a user network; both refused on the default one.
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "--ip",
        "10.231.0.50",
        "--network-alias",
        "db",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'",
    ]);
    assert_eq!(out.trim(), "inet 10.231.0.50/24");
    let (_, _, err) = h.fails(&["run", "--rm", "--ip", "172.17.0.9", "busybox", "true"]);
    assert!(
        err.contains("user specified IP address is supported on user defined networks only"),
        "{err}"
    );
    let (_, _, err) = h.fails(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert!(err.contains("network nosuch not found"), "{err}");

    // Addresses in order, not given twice.
    let a = web(&h, "a", &["--network", "backend"], "a");
    let b = web(
        &h,
        "b",
        &["--network", "backend", "--network-alias", "bee"],
        "b",
    );
    let ip = |n: &str| {
        h.inspect(n)["NetworkSettings"]["Networks"]["backend"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(ip("a"), ip("b"));
    let v = h.inspect("b");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["backend"]["Aliases"],
        serde_json::json!(["bee", &b[..12]])
    );
    // On the same network: a reaches b directly.
    let got = h.ok(&["exec", "a", "wget", "-qO-", &format!("http://{}/", ip("b"))]);
    assert_eq!(got.trim(), "b");
    // A container on the default network does not reach the user network.
    let (code, _, _) = h.fails(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-q",
        "-T",
        "2",
        "-O-",
        &format!("http://{}/", ip("b")),
    ]);
    assert_ne!(code, 0);

    // The network is in use: rm refuses, naming it; disconnect, then rm works.
    let (_, _, err) = h.fails(&["network", "rm", "backend"]);
    assert!(err.contains("has active endpoints"), "{err}");
    let table = format!("hoist-{}", &id.trim()[..12]);
    assert!(nft_tables().contains(&table), "{}", nft_tables());
    h.ok(&["rm", "-f", "a", "b"]);
    let _ = (a, b);
    assert_eq!(h.ok(&["network", "rm", "backend"]), "backend\n");
    assert!(!nft_tables().contains(&table), "{}", nft_tables());
    let (_, _, err) = h.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined network"), "{err}");
    let (_, _, err) = h.fails(&["network", "inspect", "backend"]);
    assert!(err.contains("network backend not found"), "{err}");
}

#[test]
fn none_host_add_host_and_dns() {
    let h = Home::new();
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out, "lo\n");
    let out = h.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.local:10.9.8.7",
        "--dns",
        "10.0.0.53",
        "busybox",
        "sh",
        "-c",
        "grep db.local /etc/hosts; grep nameserver /etc/resolv.conf",
    ]);
    assert_eq!(out, "10.9.8.7\tdb.local\nnameserver 10.0.0.53\n");
    let (_, _, err) = h.fails(&["run", "--rm", "--add-host", "nocolon", "busybox", "true"]);
    assert!(err.contains("--add-host"), "{err}");
    // `-p` with --network host publishes nothing, and says so.
    let out = h.run(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        "80:80",
        "busybox",
        "true",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Published ports are discarded"));
}

/// A detached container `c` on `network`: its id and its veth's host end (prefix).
fn sleeper_on(h: &Home, network: &str) -> (String, String) {
    let id = h.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        network,
        "busybox",
        "sleep",
        "300",
    ]);
    let id = id.trim().to_owned();
    let veth = format!("vh{}", &id[..8]);
    (id, veth)
}

#[test]
fn a_killed_supervisor_s_network_is_reclaimed() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.232.0.0/24", "crashy"]);
    let (_, veth) = sleeper_on(&h, "crashy");
    assert!(links().contains(&veth));
    // The supervisor and the container die at once, as in a crash.
    h.crash("c");
    std::thread::sleep(Duration::from_millis(300));
    // The next network command reconciles: no endpoint, no veth.
    let v: serde_json::Value =
        serde_json::from_str(&h.ok(&["network", "inspect", "crashy"])).unwrap();
    assert_eq!(v[0]["Containers"], serde_json::json!({}), "{v}");
    assert!(!links().contains(&veth), "{}", links());
    h.ok(&["rm", "-f", "c"]);
    assert_eq!(
        h.ok(&["network", "prune", "-f"]),
        "Deleted Networks:\ncrashy\n\n"
    );
}

/// A fake upstream resolver on `addr` (UDP): `A` queries for any name get `answer`, others no
/// records. Answers until the test ends.
fn fake_upstream(addr: &str, answer: [u8; 4]) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind(addr)
        .unwrap_or_else(|e| panic!("the fake upstream needs {addr} free: {e}"));
    let srv = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = srv.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            // The question: labels to a zero byte, then type and class.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += 1 + buf[i] as usize;
            }
            let qend = i + 5;
            if qend > n {
                continue;
            }
            let qtype = u16::from_be_bytes([buf[i + 1], buf[i + 2]]);
            let mut out = buf[..qend].to_vec();
            out[2] = 0x81; // QR, RD
            out[3] = 0x80; // RA, NOERROR
            out[6..12].copy_from_slice(&[0, u16::from(qtype == 1) as u8, 0, 0, 0, 0]);
            if qtype == 1 {
                out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                out.extend_from_slice(&answer);
            }
            let _ = srv.send_to(&out, peer);
        }
    });
    s
}

#[test]
fn containers_on_a_user_network_find_each_other_by_name_and_other_names_go_upstream() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.233.0.0/24", "dnsnet"]);
    web(
        &h,
        "b",
        &["--network", "dnsnet", "--network-alias", "bee"],
        "b-page",
    );
    let ip = h.inspect("b")["NetworkSettings"]["Networks"]["dnsnet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    // The upstream on the network's gateway (the host's end of its bridge): a container
    // reaches it, and nothing leaves the machine.
    let _upstream = fake_upstream("10.233.0.1:53", [10, 1, 1, 1]);
    // busybox's nslookup has its own resolver (its static wget's name lookups crash without
    // NSS libraries), so names are checked with it.
    let out = h.ok(&[
        "run", "--rm", "--network", "dnsnet", "--dns", "10.233.0.1", "busybox", "sh", "-c",
        "for n in b bee B. b.dnsnet; do nslookup $n | grep -A1 '^Name:' | grep -o '10\\.233\\.0\\.[0-9]*'; done; \
         nslookup outside.example | grep -c 10.1.1.1; grep nameserver /etc/resolv.conf",
    ]);
    assert_eq!(
        out,
        format!("{ip}\n{ip}\n{ip}\n{ip}\n1\nnameserver 127.0.0.11\n"),
        "names, aliases, case and NAME.NETWORK; the rest forwarded to --dns; the gateway is the resolver"
    );
    // The default bridge has no names (docker's): `b` does not resolve there.
    let (code, _, err) = h.fails(&[
        "run",
        "--rm",
        "--dns",
        "127.0.0.77",
        "busybox",
        "sh",
        "-c",
        "nslookup b | grep -A1 '^Name:' | grep -q 10.233.0",
    ]);
    assert_ne!(code, 0, "{err}");
    // A name stops resolving once its container has gone.
    h.ok(&["rm", "-f", "b"]);
    let (code, _, _) = h.fails(&[
        "run",
        "--rm",
        "--network",
        "dnsnet",
        "--dns",
        "10.233.0.1",
        "busybox",
        "sh",
        "-c",
        "nslookup b | grep -A1 '^Name:' | grep -q 10.233.0",
    ]);
    assert_ne!(code, 0);
}

#[test]
fn a_pod_by_hand_joins_another_container_s_network() {
    // PODS.md: `run -d --name pause web-image`, then `--network container:pause` reaches it on
    // localhost.
    let h = Home::new();
    web(&h, "pause", &[], "by-hand");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = h.run(&[
            "run",
            "--rm",
            "--network",
            "container:pause",
            "busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1/",
        ]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by-hand\n");
    // It shares the other's interfaces: the same eth0 address.
    let ip = h.inspect("pause")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = h.ok(&[
        "run",
        "--rm",
        "--network",
        "container:pause",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'",
    ]);
    assert_eq!(got.trim(), format!("inet {ip}"));
}

#[test]
fn connect_and_disconnect_a_running_container_and_publish_all() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.235.0.0/24", "side"]);
    // -P: the image's EXPOSEd port on a free host port.
    h.import("webimg", &["EXPOSE 80"]);
    let script = "mkdir -p /www && echo all > /www/index.html && exec httpd -f -p 80 -h /www";
    h.ok(&[
        "run", "-d", "--name", "w", "-P", "webimg", "sh", "-c", script,
    ]);
    let port = h.ok(&["port", "w", "80"]);
    let host_port: u16 = port.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(http_get(SocketAddr::from(([127, 0, 0, 1], host_port))).contains("all"));

    // A live connect: a second interface on the user network, its name resolvable there.
    h.ok(&["network", "connect", "--alias", "web", "side", "w"]);
    let v = h.inspect("w");
    let side_ip = v["NetworkSettings"]["Networks"]["side"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(side_ip.starts_with("10.235.0."), "{v}");
    let out = h.ok(&[
        "exec",
        "w",
        "sh",
        "-c",
        "ip -4 addr show eth1 | grep -o 'inet [0-9.]*'",
    ]);
    assert_eq!(out.trim(), format!("inet {side_ip}"));
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "side",
        "busybox",
        "sh",
        "-c",
        "nslookup web | grep -A1 '^Name:' | grep -o '10\\.235\\.0\\.[0-9]*'",
    ]);
    assert_eq!(out.trim(), side_ip);
    let (_, _, err) = h.fails(&["network", "connect", "side", "w"]);
    assert!(err.contains("already exists in network side"), "{err}");
    // Disconnect: the interface goes, the network can be removed once nothing is on it.
    h.ok(&["network", "disconnect", "side", "w"]);
    let (code, _, _) = h.fails(&["exec", "w", "ip", "addr", "show", "eth1"]);
    assert_ne!(code, 0);
    let (_, _, err) = h.fails(&["network", "disconnect", "side", "w"]);
    assert!(err.contains("is not connected to network side"), "{err}");
    assert_eq!(h.ok(&["network", "rm", "side"]), "side\n");
    h.ok(&["rm", "-f", "w"]);
}

#[test]
fn what_a_supervisor_killed_mid_teardown_leaves_is_reclaimed() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.236.0.0/24", "midway"]);
    let (id, veth) = sleeper_on(&h, "midway");
    h.crash("c");
    // As if it died after dropping the endpoint from the record but before deleting the link
    // and the namespace.
    let dir = h.home().join("networks");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            if v["name"] == "midway" {
                v["endpoints"] = serde_json::json!({});
                std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(links().contains(&veth), "{}", links());
    assert!(std::path::Path::new(&format!("/run/hoist/netns/{id}")).exists());
    h.ok(&["network", "ls"]);
    assert!(!links().contains(&veth), "{}", links());
    assert!(!std::path::Path::new(&format!("/run/hoist/netns/{id}")).exists());
    h.ok(&["rm", "-f", "c"]);
}

/// The `ports` chain of the table of network `name` in `h`, as `nft` lists it.
fn ports_chain(h: &Home, name: &str) -> String {
    let id = h.ok(&["network", "inspect", name, "--format", "{{.Id}}"]);
    let table = format!("hoist-{}", &id.trim()[..12]);
    let out = Command::new("nft")
        .args(["list", "chain", "ip", &table, "ports"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_published_port_follows_its_container_through_stops_and_reuse() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.237.0.0/24", "portnet"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for generation in 0..3 {
        let text = format!("generation-{generation}");
        web(&h, "w", &["--network", "portnet", "-p", &publish], &text);
        let body = http_get(addr);
        assert!(body.contains(&text), "{body}");
        h.ok(&["rm", "-f", "w"]);
        // Stopped: the port is the host's again, and what listens there gets the traffic (the
        // container's DNAT rule is retired, not in the way).
        let host = std::net::TcpListener::bind(addr).expect("the port is free after rm");
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        c.write_all(b"x").unwrap();
        let (mut s, _) = host.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }
    // Retired rules do not pile up: the chain is made again once enough have gathered.
    for _ in 0..40 {
        h.ok(&[
            "run",
            "--rm",
            "--network",
            "portnet",
            "-p",
            "127.0.0.1::80",
            "busybox",
            "true",
        ]);
    }
    let chain = ports_chain(&h, "portnet");
    let retired = chain.matches("return").count();
    assert!(
        retired <= 32,
        "{retired} retired rules in the chain:\n{chain}"
    );
    assert_eq!(chain.matches("dnat to").count(), retired, "{chain}");
    // A running container's rule is there, and reachable, among them.
    web(
        &h,
        "last",
        &["--network", "portnet", "-p", &publish],
        "the-last",
    );
    assert!(http_get(addr).contains("the-last"));
    h.ok(&["rm", "-f", "last"]);
    h.ok(&["network", "rm", "portnet"]);
}

/// Two homes (two hosts' worth of networks on one machine) with one subnet each: traffic between
/// two containers of one network stays theirs, whatever the other's rules say (with
/// `br_netfilter` loaded, bridged traffic passes every table's forward and postrouting hooks).
#[test]
fn two_containers_of_a_network_talk_while_another_home_has_the_same_subnet() {
    let (a, b) = (Home::new(), Home::new());
    for h in [&a, &b] {
        h.ok(&["network", "create", "--subnet", "10.238.0.0/24", "twin"]);
    }
    web(&a, "srv", &["--network", "twin"], "same-subnet-ok");
    sleeper_on(&b, "twin");
    let got = a.ok(&[
        "run",
        "--rm",
        "--network",
        "twin",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do \
           printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 srv 80 && exit 0; sleep 0.2; done; exit 1",
    ]);
    assert!(got.contains("same-subnet-ok"), "{got}");
    a.ok(&["rm", "-f", "srv"]);
    b.ok(&["rm", "-f", "c"]);
}

/// A home deleted with its networks up (a test or CI runner that died) leaves bridges and
/// tables on the host: the next reconcile of any home removes them.
#[test]
fn the_networks_of_a_deleted_home_are_reaped_by_another_home() {
    let gone = Home::new();
    gone.ok(&["network", "create", "--subnet", "10.239.0.0/24", "orphan"]);
    let id = gone.ok(&["network", "inspect", "orphan", "--format", "{{.Id}}"]);
    let bridge = format!("hbr-{}", &id.trim()[..11]);
    let table = format!("hoist-{}", &id.trim()[..12]);
    let (container, _) = sleeper_on(&gone, "orphan");
    let ns = std::path::Path::new("/run/hoist/netns").join(&container);
    assert!(ns.exists());
    assert!(links().contains(&bridge), "{}", links());
    assert!(nft_tables().contains(&table), "{}", nft_tables());
    // The home goes without a word to its networks (its container is killed with it).
    gone.crash("c");
    std::fs::remove_dir_all(gone.home().join("networks")).unwrap();
    // Its containers' records go too (moved aside: the crashed container's rootfs is still
    // mounted in there, and the home's own cleanup unmounts it once they are back).
    let (containers, aside) = (
        gone.home().join("containers"),
        gone.home().join("containers.aside"),
    );
    std::fs::rename(&containers, &aside).unwrap();
    let other = Home::new();
    other.ok(&["network", "ls"]);
    // The crashed container's namespace (and the veth it holds) went too.
    assert!(!ns.exists(), "{} is left", ns.display());
    assert!(
        !std::path::Path::new("/run/hoist/netns-owners")
            .join(&container)
            .exists()
    );
    std::fs::rename(&aside, &containers).unwrap();
    assert!(!links().contains(&bridge), "{}", links());
    assert!(!nft_tables().contains(&table), "{}", nft_tables());
    assert!(
        !std::path::Path::new("/run/hoist/bridges")
            .join(&bridge)
            .exists()
    );
}

/// The netdev table (the fast path) of network `name` in `h`, as `nft` lists it.
fn fast_table(h: &Home, name: &str) -> String {
    let id = h.ok(&["network", "inspect", name, "--format", "{{.Id}}"]);
    let table = format!("hoist-{}", &id.trim()[..12]);
    let out = Command::new("nft")
        .args(["list", "table", "netdev", &table])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The packets the fast path's rule for address `ip` counted, in a listing of its table.
fn fast_packets(listing: &str, ip: &str) -> u64 {
    let line = listing
        .lines()
        .find(|l| l.contains(&format!("ip daddr {ip} ")))
        .unwrap_or_else(|| panic!("no fast path for {ip}:\n{listing}"));
    let n = line
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no counter in {line:?}"));
    n.parse().unwrap()
}

/// `GET /` from `host` port `port` in a new container on `network` (busybox's `nc`: its
/// static `wget` cannot resolve names), retried while the server starts.
fn fetch_on(h: &Home, network: &str, host: &str, port: u16) -> String {
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do \
           printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port} && exit 0; sleep 0.2; \
         done; exit 1"
    );
    h.ok(&[
        "run",
        "--rm",
        "--network",
        network,
        "busybox",
        "sh",
        "-c",
        &script,
    ])
}

#[test]
fn traffic_between_containers_skips_the_bridge_and_hairpin_returns_through_the_host() {
    let h = Home::new();
    h.ok(&["network", "create", "--subnet", "10.241.0.0/24", "fastnet"]);
    let port = free_port();
    let publish = format!("{port}:80");
    web(
        &h,
        "srv",
        &["--network", "fastnet", "-p", &publish],
        "fast-ok",
    );
    let ip = h.inspect("srv")["NetworkSettings"]["Networks"]["fastnet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = fast_packets(&fast_table(&h, "fastnet"), &ip);
    // By name: the packets for the server go veth to veth (its rule counts them).
    assert!(fetch_on(&h, "fastnet", "srv", 80).contains("fast-ok"));
    let after = fast_packets(&fast_table(&h, "fastnet"), &ip);
    assert!(after > before, "fast path counted {before} then {after}");
    // Hairpin: the published port through the gateway, from another container and from the
    // server itself; the answers come back through the host, which translates them.
    assert!(fetch_on(&h, "fastnet", "10.241.0.1", port).contains("fast-ok"));
    let own = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.241.0.1 {port}");
    let own = h.ok(&["exec", "srv", "sh", "-c", &own]);
    assert!(own.contains("fast-ok"), "{own}");
    // Started again: its veth has the same name, and its fast path is made again, once.
    h.ok(&["stop", "-t", "1", "srv"]);
    h.ok(&["start", "srv"]);
    assert!(fetch_on(&h, "fastnet", "srv", 80).contains("fast-ok"));
    let listing = fast_table(&h, "fastnet");
    let ip = h.inspect("srv")["NetworkSettings"]["Networks"]["fastnet"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fast_packets(&listing, &ip) > 0, "{listing}");
    assert_eq!(
        listing.matches(&format!("ip daddr {ip} ")).count(),
        1,
        "{listing}"
    );
    // Stops leave their fast path behind, but not without bound.
    for _ in 0..40 {
        h.ok(&["run", "--rm", "--network", "fastnet", "busybox", "true"]);
    }
    let listing = fast_table(&h, "fastnet");
    let chains = listing.matches("chain ep-").count();
    assert!((1..=34).contains(&chains), "{chains} chains:\n{listing}");
    assert!(fetch_on(&h, "fastnet", "srv", 80).contains("fast-ok"));
    h.ok(&["rm", "-f", "srv"]);
    let id = h.ok(&["network", "inspect", "fastnet", "--format", "{{.Id}}"]);
    h.ok(&["network", "rm", "fastnet"]);
    let table = format!("hoist-{}", &id.trim()[..12]);
    assert!(!nft_tables().contains(&table), "{}", nft_tables());
}
