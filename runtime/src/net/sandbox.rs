//! A container's network sandbox on bridge networks: its namespace, one interface per network
//! (`eth0`, `eth1`, ... in the order asked; the first one's gateway is the default route), an
//! address from each network's IPAM, its published ports (DNAT rules, and the host ports held
//! open so that no other container or program can take them, as docker-proxy holds them), and
//! its `/etc/hosts` and `resolv.conf`. [`Sandbox::down`] (or dropping it) undoes all of it;
//! [`reconcile`] undoes what a supervisor that died left behind.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::{DEFAULT_NETWORK, Endpoint, Locked, Network, NetworkStore, StalePath};
use std::sync::Arc;

use super::dns::{self, DnsServer};
use super::{NetError, PortMapping, firewall, ipam, link, netns};

/// The embedded DNS server's address in a container on a user network (docker's).
pub const EMBEDDED_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// A container's request to be on a network (`--network`, `--network-alias`, `--ip`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkRequest {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

/// `-p`: a host port of 0 is any free one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// What a sandbox is made from.
pub struct SandboxSpec<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub networks: &'a [NetworkRequest],
    pub ports: &'a [PortRequest],
    /// `--dns`: these instead of the host's resolvers.
    pub dns: &'a [String],
    /// `--add-host NAME:IP`.
    pub extra_hosts: &'a [String],
    pub hosts_path: &'a Path,
    pub resolv_conf_path: &'a Path,
}

/// A held host port.
enum Held {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

/// A container's network sandbox, torn down when dropped.
pub struct Sandbox {
    home: PathBuf,
    id: String,
    netns: PathBuf,
    /// The network ids the container is on, in order.
    networks: Vec<String>,
    _held: Vec<Held>,
    /// The DNS servers of its user networks (on each gateway, shared with the other
    /// containers' supervisors).
    dns: Vec<DnsServer>,
    done: bool,
}

/// The host end of container `id`'s veth on `net` (15 characters at most).
pub fn veth_name(id: &str, net: &Network) -> String {
    format!(
        "vh{}{}",
        &id[..id.len().min(8)],
        &net.id[..net.id.len().min(5)]
    )
}

fn is_held_by_a_supervisor(home: &Path, container: &str) -> bool {
    let lock = home
        .join("containers")
        .join(container)
        .join("supervisor.lock");
    let Ok(f) = File::options().write(true).open(lock) else {
        // No container: nobody holds it.
        return false;
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_unlocked_on_drop) => false,
        Err(_) => true,
    }
}

/// Removes the endpoints whose container has no supervisor any more (one that was killed, or a
/// crash), with their links, namespaces and rules.
pub fn reconcile(home: &Path) -> Result<(), NetError> {
    let store = NetworkStore::open(home);
    for n in store.list()? {
        let stale: Vec<Endpoint> = n
            .endpoints
            .values()
            .filter(|e| !is_held_by_a_supervisor(home, &e.container))
            .cloned()
            .collect();
        if stale.is_empty() {
            continue;
        }
        let l = store.lock()?;
        let after = store.update_held(&l, &n.id, |n| {
            for e in &stale {
                n.endpoints.remove(&e.container);
            }
            Ok(n.clone())
        })?;
        for e in &stale {
            let _ = link::delete(&e.host_veth);
            let _ = netns::remove(&netns::path_for(&e.container));
        }
        // Their published ports are elements the digest does not cover: the table is made
        // again from the record.
        rebuild(&store, &l, &after)?;
    }
    reconcile_orphans(home, &store)?;
    reap_orphan_bridges()
}

/// Removes the bridges (and tables) of networks whose record is gone, and the namespaces whose
/// container is gone from its home, whichever home they were in: a home deleted with its
/// networks and containers still up, or a crash halfway through a removal.
fn reap_orphan_bridges() -> Result<(), NetError> {
    // The namespaces of containers of those homes first: their veths hold the bridges' ports.
    for ns in netns::orphans() {
        netns::remove(&ns)?;
    }
    for (bridge, table) in super::store::orphan_bridges() {
        firewall::remove_table(&table)?;
        link::delete(&bridge)?;
        super::store::forget_bridge(&bridge);
    }
    Ok(())
}

/// The id in `home/containers` (or `home/pods`) that starts with `prefix`, if any.
fn sandbox_with_prefix(home: &Path, prefix: &str) -> Option<String> {
    ["containers", "pods"].iter().find_map(|kind| {
        std::fs::read_dir(home.join(kind))
            .ok()?
            .flatten()
            .find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(prefix).then_some(n)
            })
    })
}

/// What no record names any more, left by a supervisor killed halfway through a teardown: the
/// veths of this home's networks (`vh<container 8><network 5>`) that no endpoint has, of
/// containers no supervisor holds, and the namespaces of this home's containers and pods that
/// no supervisor holds.
fn reconcile_orphans(home: &Path, store: &NetworkStore) -> Result<(), NetError> {
    let nets = store.list()?;
    let known: BTreeSet<String> = nets
        .iter()
        .flat_map(|n| n.endpoints.values().map(|e| e.host_veth.clone()))
        .collect();
    let ours: Vec<&str> = nets.iter().map(|n| &n.id[..n.id.len().min(5)]).collect();
    for l in link::names_with_prefix("vh")? {
        if l.len() != 15 || known.contains(&l) || !ours.iter().any(|s| l.ends_with(s)) {
            continue;
        }
        // A removed container's veth is going away with its namespace (a stop leaves that to
        // the kernel); one of a container still here whose supervisor is gone is deleted.
        let Some(owner) = sandbox_with_prefix(home, &l[2..10]) else {
            continue;
        };
        if !is_held_by_a_supervisor(home, &owner) {
            link::delete(&l)?;
        }
    }
    let Ok(rd) = std::fs::read_dir(netns::NETNS_DIR) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let ours = ["containers", "pods"]
            .iter()
            .any(|kind| home.join(kind).join(&id).is_dir());
        if ours && !is_held_by_a_supervisor(home, &id) {
            netns::remove(&e.path())?;
        }
    }
    Ok(())
}

/// The network's rules after a change of its endpoints (made again only when they differ from
/// what was applied last, published ports aside), under the store's lock `l`. The bridges stay (docker's `docker0`
/// does): the next container starts without making one; `network prune` takes an idle default
/// bridge down ([`take_down`]).
pub fn settle(store: &NetworkStore, l: &Locked, n: &Network) -> Result<(), NetError> {
    if firewall_current(n) {
        return Ok(());
    }
    rebuild(store, l, n)
}

/// Whether `n`'s table is the one its record says was applied last (its ports aside).
fn firewall_current(n: &Network) -> bool {
    n.rules.as_deref() == Some(firewall::digest(n).as_str())
}

/// Makes `n`'s table again from its record, under the store's lock `l`.
fn rebuild(store: &NetworkStore, l: &Locked, n: &Network) -> Result<(), NetError> {
    let digest = firewall::digest(n);
    firewall::apply(n)?;
    store.update_held(l, &n.id, |n| {
        n.rules = Some(digest);
        n.retired.clear();
        n.stale.clear();
        Ok(())
    })
}

/// Makes `n`'s tables again from its record, under the store's lock (after an endpoint joined
/// or left a running container: `network connect` and `disconnect`).
pub fn remake(store: &NetworkStore, network: &str) -> Result<(), NetError> {
    let l = store.lock()?;
    let n = store.get(network)?;
    rebuild(store, &l, &n)
}

/// The rules after container `id` joined `n` (under the store's lock `l`): its published ports
/// and fast path added to tables that are current (`ports` made again when one of them was
/// retired), else the whole tables made again (with them); also when its veth still has a
/// stale fast path (the container started again).
fn publish(store: &NetworkStore, l: &Locked, n: &Network, id: &str) -> Result<(), NetError> {
    let Some(e) = n
        .endpoints
        .get(id)
        .filter(|e| firewall_current(n) && !n.stale.iter().any(|s| s.host_veth == e.host_veth))
    else {
        return rebuild(store, l, n);
    };
    let reused = e.ports.iter().any(|p| {
        n.retired
            .iter()
            .any(|r| r.protocol == p.protocol && r.host_port == p.host_port)
    });
    if !reused {
        return firewall::publish(n, e);
    }
    firewall::republish(n)?;
    store.update_held(l, &n.id, |n| {
        n.retired.clear();
        Ok(())
    })
}

/// Removes the bridge and the rules of a network no container is on (made again by the next
/// start on it), under the store's lock `l`.
pub fn take_down(store: &NetworkStore, l: &Locked, n: &Network) -> Result<(), NetError> {
    firewall::remove(n)?;
    link::delete(&n.bridge)?;
    super::store::forget_bridge(&n.bridge);
    store.update_held(l, &n.id, |n| {
        n.rules = None;
        Ok(())
    })
}

/// docker's refusal of a host port something else holds.
fn port_taken(p: &PortRequest) -> NetError {
    let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    NetError::Conflict(format!(
        "Bind for {ip}:{} failed: port is already allocated",
        p.host_port
    ))
}

/// Holds the host port of `p` (a free one when it is 0): the mapping as it is published.
fn hold(p: &PortRequest) -> Result<(PortMapping, Held), NetError> {
    let addr = SocketAddr::from((p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port));
    let map_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AddrInUse => port_taken(p),
        _ => NetError::Io {
            what: format!("holding host port {addr}"),
            source: e,
        },
    };
    let (port, held) = if p.protocol == "udp" {
        let s = UdpSocket::bind(addr).map_err(map_err)?;
        (s.local_addr().map_err(map_err)?.port(), Held::Udp(s))
    } else {
        let s = TcpListener::bind(addr).map_err(map_err)?;
        (s.local_addr().map_err(map_err)?.port(), Held::Tcp(s))
    };
    Ok((
        PortMapping {
            host_ip: p.host_ip,
            host_port: port,
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        },
        held,
    ))
}

/// The host's resolv.conf for a container: its nameservers, except loopback ones (they do not
/// answer inside the container; none left: docker's fallback, Google's), or `--dns`; its
/// search and options lines.
pub fn resolv_conf(host: &str, dns: &[String], embedded: Option<Ipv4Addr>) -> String {
    let mut servers: Vec<String> = match embedded {
        Some(gw) => vec![gw.to_string()],
        None if !dns.is_empty() => dns.to_vec(),
        None => host
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .map(|s| s.trim().to_owned())
            .filter(|s| {
                s.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| !ip.is_loopback())
            })
            .collect(),
    };
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let mut out = String::new();
    for l in host.lines() {
        let t = l.trim();
        if t.starts_with("search") || (t.starts_with("options") && embedded.is_none()) {
            out.push_str(t);
            out.push('\n');
        }
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if embedded.is_some() {
        out.push_str("options ndots:0\n");
    }
    out
}

/// docker's `/etc/hosts` of a container on a bridge: localhost entries, `--add-host`s, then its
/// own address and hostname.
pub fn hosts_file(hostname: &str, ip: Ipv4Addr, extra: &[(String, String)]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (name, addr) in extra {
        s.push_str(&format!("{addr}\t{name}\n"));
    }
    s.push_str(&format!("{ip}\t{hostname}\n"));
    s
}

/// `--add-host NAME:IP` (docker's `host:ip`; `host-gateway` is the first network's gateway).
pub fn parse_extra_host(s: &str, gateway: Ipv4Addr) -> Result<(String, String), NetError> {
    let (name, ip) = s
        .split_once(':')
        .or_else(|| s.split_once('='))
        .ok_or_else(|| {
            NetError::Invalid(format!(
                "invalid argument {s:?} for --add-host: expected HOST:IP"
            ))
        })?;
    let ip = if ip == "host-gateway" {
        gateway.to_string()
    } else {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| {
                NetError::Invalid(format!("invalid IP address in --add-host {s:?}: {ip:?}"))
            })?
            .to_string()
    };
    if name.is_empty() {
        return Err(NetError::Invalid(format!(
            "invalid argument {s:?} for --add-host: no host name"
        )));
    }
    Ok((name.to_owned(), ip))
}

/// Sets up the sandbox of a container about to start.
pub fn up(home: &Path, spec: &SandboxSpec<'_>) -> Result<Sandbox, NetError> {
    reconcile(home)?;
    let path = netns::path_for(spec.id);
    netns::note_owner(spec.id, home)?;
    netns::create(&path)?;
    let mut sb = Sandbox {
        home: home.to_path_buf(),
        id: spec.id.to_owned(),
        netns: path,
        networks: Vec::new(),
        _held: Vec::new(),
        dns: Vec::new(),
        done: false,
    };
    // On an error, dropping `sb` undoes what was done so far.
    let store = NetworkStore::open(home);
    let mut first: Option<(Network, Ipv4Addr)> = None;
    for (i, req) in spec.networks.iter().enumerate() {
        // One container's attach at a time per home: a bridge taken down by the last container
        // leaving cannot vanish between being made and being used.
        let l = store.lock()?;
        let n = if req.network == DEFAULT_NETWORK {
            store.bring_up_default(&l)?
        } else {
            let n = store.get(&req.network)?;
            if store.ensure_bridge(&n)? {
                // A bridge made again (after a reboot, or deleted by hand): its table is made
                // again too.
                store.update_held(&l, &n.id, |n| {
                    n.rules = None;
                    Ok(n.clone())
                })?
            } else {
                n
            }
        };
        let veth = veth_name(spec.id, &n);
        // The first network's endpoint carries the published ports.
        let mut mappings = Vec::new();
        if i == 0 {
            for p in spec.ports {
                let (m, held) = hold(p)?;
                sb._held.push(held);
                mappings.push(m);
            }
        }
        let id = spec.id.to_owned();
        let name = spec.name.to_owned();
        let aliases = req.aliases.clone();
        let want = req.ip;
        let (n, ip) = store.update_held(&l, &n.id, move |n| {
            let ip = n.add_endpoint(&id, &name, aliases, want, veth, mappings)?;
            Ok((n.clone(), ip))
        })?;
        sb.networks.push(n.id.clone());
        link::connect(&link::Veth {
            host: veth_name(spec.id, &n),
            bridge: n.bridge.clone(),
            netns: sb.netns.clone(),
            inside: format!("eth{i}"),
            ip,
            prefix: n.subnet.prefix_len(),
            gateway: (i == 0 && !n.internal).then_some(n.gateway),
            mac: ipam::mac_for(ip),
        })?;
        publish(&store, &l, &n, spec.id)?;
        drop(l);
        if n.dns {
            // docker's embedded DNS: 127.0.0.11 in the container's own namespace, names from
            // the network's record, the rest forwarded (from that namespace, through its
            // gateway) to `--dns`, else the host's servers.
            let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let upstream = if spec.dns.is_empty() {
                dns::upstream_servers(&host)
            } else {
                let lines: String = spec
                    .dns
                    .iter()
                    .map(|d| format!("nameserver {d}\n"))
                    .collect();
                dns::upstream_servers(&lines)
            };
            let resolver = Arc::new(dns::FileResolver::new(store.file_of(&n)));
            let server = netns::run_in(&sb.netns, move || {
                DnsServer::start(SocketAddr::from((EMBEDDED_DNS, 53)), resolver, upstream)
            })??;
            sb.dns.push(server);
        }
        if first.is_none() {
            first = Some((n, ip));
        }
    }
    if let Some((n, ip)) = &first {
        let extra = spec
            .extra_hosts
            .iter()
            .map(|h| parse_extra_host(h, n.gateway))
            .collect::<Result<Vec<_>, _>>()?;
        let write = |p: &Path, s: String| {
            std::fs::write(p, s).map_err(|source| NetError::Io {
                what: format!("writing {}", p.display()),
                source,
            })
        };
        write(spec.hosts_path, hosts_file(spec.hostname, *ip, &extra))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        // On a user network the embedded server answers (and forwards to `--dns`), as docker's.
        let embedded = n.dns.then_some(EMBEDDED_DNS);
        write(
            spec.resolv_conf_path,
            resolv_conf(&host, spec.dns, embedded),
        )?;
    }
    Ok(sb)
}

impl Sandbox {
    /// The namespace file the container joins.
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// Undoes the sandbox: endpoints, links, rules, namespace, held ports.
    pub fn down(mut self) -> Result<(), NetError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), NetError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let store = NetworkStore::open(&self.home);
        let mut first_err = None;
        // The embedded DNS servers' sockets hold the namespace: closed first.
        for d in self.dns.drain(..) {
            d.stop();
        }
        for net in &self.networks {
            let id = self.id.clone();
            // The veths are not deleted one by one: they go with the namespace, which the
            // kernel takes down in the background once its last holder is gone (deleting a
            // link waits for an RCU grace period, most of a stop's cost). One that something
            // else keeps alive is deleted by the next reconcile, as its endpoint is gone.
            let r = store.lock().and_then(|l| {
                // The ports go before the endpoint: a crash between the two leaves an endpoint
                // without a supervisor, which the next reconcile removes, rules and all.
                let mut after = store.get(net)?;
                let gone = after.endpoints.remove(&id);
                let current = firewall_current(&after);
                let (mut retired, mut cleared) = (Vec::new(), false);
                if let Some(e) = gone.filter(|e| current && !e.ports.is_empty()) {
                    if after.retired.len() + e.ports.len() <= firewall::RETIRED_MAX {
                        firewall::retire(&after, &e)?;
                        retired = e.ports;
                    } else {
                        firewall::republish(&after)?;
                        cleared = true;
                    }
                }
                let n = store.update_held(&l, net, move |n| {
                    if let Some(e) = n.endpoints.remove(&id) {
                        n.stale.push(StalePath {
                            ip: e.ip,
                            host_veth: e.host_veth,
                        });
                    }
                    if cleared {
                        n.retired.clear();
                    }
                    n.retired.extend(retired);
                    Ok(n.clone())
                })?;
                if current && n.stale.len() <= firewall::RETIRED_MAX {
                    settle(&store, &l, &n)
                } else {
                    rebuild(&store, &l, &n)
                }
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = netns::remove(&self.netns) {
            first_err.get_or_insert(e);
        }
        self._held.clear();
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(id = %self.id, "tearing down the network sandbox: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_as_docker_writes_it() {
        let host =
            "search corp.example\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &[], None),
            "search corp.example\noptions edns0\nnameserver 10.0.0.2\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", &[], None),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(host, &["1.1.1.1".into()], None),
            "search corp.example\noptions edns0\nnameserver 1.1.1.1\n"
        );
        assert_eq!(
            resolv_conf(host, &[], Some(EMBEDDED_DNS)),
            "search corp.example\nnameserver 127.0.0.11\noptions ndots:0\n"
        );
    }

    #[test]
    fn hosts_and_add_host() {
        let gw = Ipv4Addr::new(172, 17, 0, 1);
        let extra = vec![
            parse_extra_host("db:10.1.2.3", gw).unwrap(),
            parse_extra_host("host.docker.internal:host-gateway", gw).unwrap(),
        ];
        let s = hosts_file("abc123", Ipv4Addr::new(172, 17, 0, 2), &extra);
        assert!(s.starts_with("127.0.0.1\tlocalhost\n"), "{s}");
        assert!(
            s.ends_with("10.1.2.3\tdb\n172.17.0.1\thost.docker.internal\n172.17.0.2\tabc123\n"),
            "{s}"
        );
        for bad in ["nocolon", "db:not-an-ip", ":1.2.3.4"] {
            assert!(parse_extra_host(bad, gw).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_held_port_is_refused_to_the_next_holder() {
        let p = PortRequest {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 0,
            container_port: 80,
            protocol: "tcp".into(),
        };
        let (m, _held) = hold(&p).unwrap();
        assert_ne!(m.host_port, 0);
        let again = PortRequest {
            host_port: m.host_port,
            ..p
        };
        let e = hold(&again).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "Bind for 127.0.0.1:{} failed: port is already allocated",
                m.host_port
            )
        );
        let udp = PortRequest {
            protocol: "udp".into(),
            ..again
        };
        // The same number over udp is another port.
        hold(&udp).unwrap();
    }
}
