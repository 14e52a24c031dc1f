//! Links in a network namespace of the test's own (its "host"), never the machine's.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::link::{self, Veth};
use super::netns;

/// Runs `f` on a thread in a new network namespace (threads it starts are in it too).
fn in_private_host<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
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
        link::ensure_bridge("hbtest0", gw, 24).unwrap();
        // A second call finds it as it is.
        link::ensure_bridge("hbtest0", gw, 24).unwrap();
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
