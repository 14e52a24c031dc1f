//! Links in a network namespace of the test's own (its "host"), never the machine's.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::link::{self, Veth};
use super::netns;

/// Runs `f` on a thread in a new network namespace (threads it starts are in it too).
pub(crate) fn in_private_host<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare: run as root");
        f()
    })
    .join()
    .unwrap()
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (CI runs them as root)"
    );
}

#[test]
fn a_veth_joins_a_container_to_the_bridge_both_ways_and_goes_on_delete() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("c1");
    in_private_host(move || {
        let gw = Ipv4Addr::new(10, 200, 0, 1);
        let ip = Ipv4Addr::new(10, 200, 0, 2);
        assert!(link::ensure_bridge("hbtest0", gw, 24).unwrap(), "made");
        // A second call finds it as it is.
        assert!(
            !link::ensure_bridge("hbtest0", gw, 24).unwrap(),
            "there already"
        );
        assert!(link::exists("hbtest0").unwrap());
        netns::create(&ns).unwrap();
        let v = Veth {
            host: "vhtest1".into(),
            bridge: "hbtest0".into(),
            netns: ns.clone(),
            inside: "eth0".into(),
            ip,
            prefix: 24,
            gateway: Some(gw),
            mac: super::ipam::mac_for(ip),
        };
        link::connect(&v).unwrap();
        assert_eq!(link::names_with_prefix("vhtest").unwrap(), ["vhtest1"]);

        // The host reaches the container's address.
        let listener = netns::run_in(&ns, move || TcpListener::bind((ip, 8080)).unwrap()).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, peer) = listener.accept().unwrap();
            s.write_all(b"from the container").unwrap();
            peer
        });
        let mut got = String::new();
        TcpStream::connect_timeout(&SocketAddr::from((ip, 8080)), Duration::from_secs(5))
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "from the container");
        assert_eq!(server.join().unwrap().ip(), gw);

        // The container reaches the host through its default route (the gateway).
        let host_l = TcpListener::bind((Ipv4Addr::new(10, 200, 0, 1), 9090)).unwrap();
        let dialed = netns::run_in(&ns, move || {
            TcpStream::connect_timeout(
                &SocketAddr::from(([10, 200, 0, 1], 9090)),
                Duration::from_secs(5),
            )
            .map(|s| s.local_addr().unwrap())
        })
        .unwrap()
        .unwrap();
        assert_eq!(host_l.accept().unwrap().1, dialed);
        assert!(
            netns::run_in(&ns, || link::exists("eth0"))
                .unwrap()
                .unwrap()
        );

        link::delete("vhtest1").unwrap();
        link::delete("vhtest1").unwrap();
        assert!(link::names_with_prefix("vhtest").unwrap().is_empty());
        let gone = netns::run_in(&ns, || link::exists("eth0")).unwrap();
        // `exists` looks in the calling thread's namespace's: from inside, eth0 is gone.
        assert!(!gone.unwrap());
        netns::remove(&ns).unwrap();
        assert!(!ns.exists());
        link::delete("hbtest0").unwrap();
        assert!(!link::exists("hbtest0").unwrap());
    });
}

#[test]
fn a_failed_connect_leaves_no_veth() {
    require_root();
    in_private_host(|| {
        let v = Veth {
            host: "vhtest2".into(),
            bridge: "hbnosuch".into(),
            netns: "/nonexistent/ns".into(),
            inside: "eth0".into(),
            ip: Ipv4Addr::new(10, 201, 0, 2),
            prefix: 24,
            gateway: None,
            mac: [2, 0x42, 0, 0, 0, 2],
        };
        let e = link::connect(&v).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ns"), "{e}");
        let v = Veth {
            netns: "/proc/thread-self/ns/net".into(),
            ..v
        };
        let e = link::connect(&v).unwrap_err().to_string();
        assert!(e.contains("bridge hbnosuch"), "{e}");
        assert!(link::names_with_prefix("vhtest2").unwrap().is_empty());
    });
}

/// A network record with one container publishing `ports`.
fn network_with(
    name: &str,
    bridge: &str,
    subnet: &str,
    internal: bool,
    ip: Ipv4Addr,
    ports: Vec<super::PortMapping>,
) -> super::store::Network {
    let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
    let mut endpoints = std::collections::BTreeMap::new();
    endpoints.insert(
        "c".repeat(64),
        super::store::Endpoint {
            container: "c".repeat(64),
            name: "web".into(),
            aliases: Vec::new(),
            ip,
            mac: String::new(),
            host_veth: String::new(),
            ports,
        },
    );
    super::store::Network {
        id: "n".repeat(64),
        name: name.into(),
        driver: "bridge".into(),
        gateway: super::ipam::default_gateway(&subnet),
        subnet,
        internal,
        bridge: bridge.into(),
        created: String::new(),
        labels: Default::default(),
        dns: true,
        endpoints,
        last_ip: None,
        rules: None,
        retired: Vec::new(),
        stale: Vec::new(),
    }
}

fn serve_once(
    ns: &std::path::Path,
    addr: SocketAddr,
    reply: &'static [u8],
) -> std::thread::JoinHandle<SocketAddr> {
    let l = netns::run_in(ns, move || TcpListener::bind(addr).unwrap()).unwrap();
    std::thread::spawn(move || {
        let (mut s, peer) = l.accept().unwrap();
        s.write_all(reply).unwrap();
        peer
    })
}

fn fetch(from: Option<&std::path::Path>, to: SocketAddr) -> std::io::Result<String> {
    let go = move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(got)
    };
    match from {
        Some(ns) => netns::run_in(ns, go).unwrap(),
        None => go(),
    }
}

#[test]
fn published_ports_reach_the_container_from_localhost_and_from_another_host_and_nat_hides_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (c_ns, out_ns) = (dir.path().join("c"), dir.path().join("outside"));
    in_private_host(move || {
        link::set_up("lo").unwrap();
        // The container's network, and "another host" on a second link of this host.
        let cip = Ipv4Addr::new(10, 210, 0, 2);
        link::ensure_bridge("hbfw0", Ipv4Addr::new(10, 210, 0, 1), 24).unwrap();
        link::ensure_bridge("hbout0", Ipv4Addr::new(10, 211, 0, 1), 24).unwrap();
        for (ns, host, bridge, ip, gw) in [
            (&c_ns, "vhfw1", "hbfw0", cip, [10, 210, 0, 1]),
            (
                &out_ns,
                "vhout1",
                "hbout0",
                Ipv4Addr::new(10, 211, 0, 2),
                [10, 211, 0, 1],
            ),
        ] {
            netns::create(ns).unwrap();
            link::connect(&Veth {
                host: host.into(),
                bridge: bridge.into(),
                netns: ns.clone(),
                inside: "eth0".into(),
                ip,
                prefix: 24,
                gateway: Some(gw.into()),
                mac: super::ipam::mac_for(ip),
            })
            .unwrap();
        }
        let port = |host_ip: Option<[u8; 4]>, host_port| super::PortMapping {
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            container_port: 80,
            protocol: "tcp".into(),
        };
        let net = network_with(
            "fw",
            "hbfw0",
            "10.210.0.0/24",
            false,
            cip,
            vec![port(None, 18080), port(Some([127, 0, 0, 1]), 18081)],
        );
        super::firewall::apply(&net).unwrap();
        // Applying again replaces, not adds.
        super::firewall::apply(&net).unwrap();
        let listing = String::from_utf8(
            std::process::Command::new("nft")
                .args(["list", "table", "ip", &super::firewall::table_name(&net)])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(
            listing.matches("dnat to 10.210.0.2:80").count(),
            2,
            "{listing}"
        );
        assert!(
            listing.contains(
                "iifname \"hbfw0\" ip saddr 10.210.0.0/24 oifname != \"hbfw0\" masquerade"
            ),
            "{listing}"
        );

        let caddr = SocketAddr::from((cip, 80));
        // From the host, on 127.0.0.1.
        let srv = serve_once(&c_ns, caddr, b"one");
        assert_eq!(
            fetch(None, "127.0.0.1:18080".parse().unwrap()).unwrap(),
            "one"
        );
        srv.join().unwrap();
        let srv = serve_once(&c_ns, caddr, b"two");
        assert_eq!(
            fetch(None, "127.0.0.1:18081".parse().unwrap()).unwrap(),
            "two"
        );
        srv.join().unwrap();
        // From another host, to this host's address on its link; the container sees the
        // client's own address (DNAT only).
        let srv = serve_once(&c_ns, caddr, b"three");
        assert_eq!(
            fetch(Some(&out_ns), "10.211.0.1:18080".parse().unwrap()).unwrap(),
            "three"
        );
        assert_eq!(srv.join().unwrap().ip(), Ipv4Addr::new(10, 211, 0, 2));
        // A port bound to 127.0.0.1 only is not published to other hosts.
        assert!(fetch(Some(&out_ns), "10.211.0.1:18081".parse().unwrap()).is_err());
        // Outbound, the container is masqueraded behind the host's address.
        let srv = serve_once(&out_ns, "10.211.0.2:7000".parse().unwrap(), b"out");
        assert_eq!(
            fetch(Some(&c_ns), "10.211.0.2:7000".parse().unwrap()).unwrap(),
            "out"
        );
        assert_eq!(srv.join().unwrap().ip(), Ipv4Addr::new(10, 211, 0, 1));

        // An internal network reaches nothing beyond its bridge, and is not masqueraded.
        let internal = network_with("fw", "hbfw0", "10.210.0.0/24", true, cip, Vec::new());
        super::firewall::apply(&internal).unwrap();
        assert!(fetch(Some(&c_ns), "10.211.0.2:7000".parse().unwrap()).is_err());

        super::firewall::remove(&net).unwrap();
        super::firewall::remove(&net).unwrap();
        let out = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("hoist"));
        for ns in [&c_ns, &out_ns] {
            netns::remove(ns).unwrap();
        }
    });
}
