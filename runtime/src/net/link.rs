//! Links, addresses and routes through netlink (`rtnetlink`): a network's bridge, and each
//! container's veth pair (one end on the bridge, the other the container's `eth0`).
//!
//! The calls are synchronous: each runs its netlink conversation on a thread of its own with a
//! small runtime, so they can be made from the supervisor (no runtime) and from async code.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoBridgePort, InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::{NetError, netns};

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Runs `f` with a netlink handle of the calling thread's namespace, on a runtime of its own.
fn with_handle<R, F, Fut>(f: F) -> Result<R, NetError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = Result<R, NetError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetError::Io {
            what: "starting the netlink runtime".into(),
            source,
        })?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
            what: "opening a netlink socket".into(),
            source,
        })?;
        let task = tokio::spawn(conn);
        let r = f(handle).await;
        task.abort();
        r
    })
}

/// [`with_handle`] on a fresh thread of the host's namespace (safe inside a runtime).
fn on_host<R: Send + 'static, F, Fut>(f: F) -> Result<R, NetError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<R, NetError>>,
{
    std::thread::spawn(move || with_handle(f))
        .join()
        .map_err(|_| NetError::Invalid("the netlink thread panicked".into()))?
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(netlink(format!("looking up link {name}"))(e)),
    }
}

async fn add_address(
    h: &Handle,
    index: u32,
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetError> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        r => r.map_err(netlink(format!("adding {ip}/{prefix} to {name}"))),
    }
}

async fn up(h: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("setting {name} up")))
}

/// Does the link `name` exist in the host's namespace?
pub fn exists(name: &str) -> Result<bool, NetError> {
    let name = name.to_owned();
    on_host(move |h| async move { Ok(index_of(&h, &name).await?.is_some()) })
}

/// Sets the link `name` up.
pub fn set_up(name: &str) -> Result<(), NetError> {
    let name = name.to_owned();
    on_host(move |h| async move {
        let i = index_of(&h, &name)
            .await?
            .ok_or_else(|| NetError::NotFound(format!("link {name}")))?;
        up(&h, i, &name).await
    })
}

/// The bridge `name` with address `gateway/prefix`, up (created when missing: then `true`).
pub fn ensure_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> Result<bool, NetError> {
    let name = bridge.to_owned();
    let made = on_host(move |h| async move {
        let (index, made) = match index_of(&h, &name).await? {
            Some(i) => (i, false),
            None => {
                match h.link().add(LinkBridge::new(&name).build()).execute().await {
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    r => r.map_err(netlink(format!("creating bridge {name}")))?,
                }
                let i = index_of(&h, &name)
                    .await?
                    .ok_or_else(|| NetError::NotFound(format!("bridge {name}")))?;
                (i, true)
            }
        };
        add_address(&h, index, &name, gateway, prefix).await?;
        up(&h, index, &name).await?;
        Ok(made)
    })?;
    // Published ports are reachable on 127.0.0.1: DNAT of local traffic to the bridge.
    set_sysctl(&format!("net/ipv4/conf/{bridge}/route_localnet"), "1")?;
    set_sysctl("net/ipv4/ip_forward", "1")?;
    Ok(made)
}

/// Deletes the link `name` (a veth's peer goes with it); a missing link is not an error.
pub fn delete(name: &str) -> Result<(), NetError> {
    let name = name.to_owned();
    on_host(move |h| async move {
        let Some(index) = index_of(&h, &name).await? else {
            return Ok(());
        };
        match h.link().del(index).execute().await {
            Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
            r => r.map_err(netlink(format!("deleting link {name}"))),
        }
    })
}

/// The host's links whose names start with `prefix` (what a crash may have left).
pub fn names_with_prefix(prefix: &str) -> Result<Vec<String>, NetError> {
    let prefix = prefix.to_owned();
    on_host(move |h| async move {
        let mut out = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(m) = links.try_next().await.map_err(netlink("listing links"))? {
            for a in &m.attributes {
                if let rtnetlink::packet_route::link::LinkAttribute::IfName(n) = a
                    && n.starts_with(&prefix)
                {
                    out.push(n.clone());
                }
            }
        }
        Ok(out)
    })
}

/// A container's interface on a bridge.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The host end's name (on the bridge).
    pub host: String,
    pub bridge: String,
    /// The container's network namespace file.
    pub netns: PathBuf,
    /// The name inside the container (`eth0`).
    pub inside: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway (none on an internal network).
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
}

/// Creates `v`'s veth pair: the host end on the bridge, the other end moved into the
/// container's namespace, renamed, addressed and routed; the namespace's loopback up too. On
/// failure the pair is deleted again.
pub fn connect(v: &Veth) -> Result<(), NetError> {
    let made = connect_inner(v);
    if made.is_err() {
        let _ = delete(&v.host);
    }
    made
}

fn connect_inner(v: &Veth) -> Result<(), NetError> {
    let ns = std::fs::File::open(&v.netns).map_err(|source| NetError::Io {
        what: format!("opening the namespace {}", v.netns.display()),
        source,
    })?;
    // One request makes the pair: the host end on the bridge and up, the peer created in the
    // container's namespace under its final name and address (moving a link between
    // namespaces afterwards costs an RCU grace period per move).
    let (host, bridge, inside, mac) = (
        v.host.clone(),
        v.bridge.clone(),
        v.inside.clone(),
        v.mac.to_vec(),
    );
    on_host(move |h| async move {
        let br = index_of(&h, &bridge)
            .await?
            .ok_or_else(|| NetError::NotFound(format!("bridge {bridge}")))?;
        // No queue on either end (txqueuelen 0), as docker makes its veths: a veth hands
        // packets to its peer at once, and a queue only adds latency under load.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(inside)
            .address(mac)
            .setns_by_fd(ns.as_raw_fd())
            .append_extra_attribute(LinkAttribute::TxQueueLen(0))
            .build();
        let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.clone())
            .controller(br)
            .append_extra_attribute(LinkAttribute::TxQueueLen(0))
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        match h.link().add(pair.clone()).execute().await {
            // The same container's veth of its last run (a restart), still going away with
            // that run's namespace: deleted now, and made again.
            Err(e) if errno(&e) == Some(EEXIST) => {
                if let Some(old) = index_of(&h, &host).await? {
                    match h.link().del(old).execute().await {
                        Err(e) if errno(&e) == Some(ENODEV) => {}
                        r => r.map_err(netlink(format!("deleting the old veth {host}")))?,
                    }
                }
                h.link()
                    .add(pair)
                    .execute()
                    .await
                    .map_err(netlink(format!("creating veth {host} on {bridge}")))
            }
            r => r.map_err(netlink(format!("creating veth {host} on {bridge}"))),
        }?;
        // Hairpin mode on its bridge port: a container's connection to its own published port
        // through the host comes back out of the port it went in by (docker sets it too when
        // no userland proxy carries that connection).
        let port = index_of(&h, &host)
            .await?
            .ok_or_else(|| NetError::NotFound(format!("veth {host}")))?;
        h.link()
            .set_port(
                LinkBridgePort::new(port)
                    .append_info_data(InfoBridgePort::HairpinMode(true))
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink(format!("setting hairpin mode on {host}")))
    })?;
    let v = v.clone();
    netns::run_in(&v.netns.clone(), move || {
        with_handle(move |h| async move {
            if let Some(lo) = index_of(&h, "lo").await? {
                up(&h, lo, "lo").await?;
            }
            let i = index_of(&h, &v.inside)
                .await?
                .ok_or_else(|| NetError::NotFound(format!("link {} in the container", v.inside)))?;
            add_address(&h, i, &v.inside, v.ip, v.prefix).await?;
            up(&h, i, &v.inside).await?;
            if let Some(gw) = v.gateway {
                h.route()
                    .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build())
                    .execute()
                    .await
                    .map_err(netlink(format!("adding the default route via {gw}")))?;
            }
            Ok(())
        })
    })?
}

/// Writes `/proc/sys/<key>`.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), NetError> {
    let p = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&p).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&p, value).map_err(|source| NetError::Io {
        what: format!("setting {key}={value}"),
        source,
    })
}
