//! Networks: `hoist network create|ls|inspect|rm|connect|disconnect|prune`, the `--network` of a
//! new container, and what a container's endpoints are (for `inspect`, `ps` and `port`).
//!
//! The mechanism is the runtime's ([`hoist_runtime::net`]): records, IPAM, links through
//! netlink, one nftables table per network, the sandbox the supervisor sets up at each start.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use hoist_runtime::container::Container;
use hoist_runtime::net::sandbox::{self, NetworkRequest};
use hoist_runtime::net::store::{DEFAULT_NETWORK, Endpoint, Network, NetworkStore, NewNetwork};
use hoist_runtime::net::{NetError, firewall, ipam, link, netns};
use hoist_runtime::spec;

use crate::{EngineError, Host, Result, bail};

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        EngineError::Library(Box::new(e))
    }
}

/// A network as `network ls` lists it: the records, and docker's two modes that are listed as
/// networks (`host`, `none`).
pub struct Listed {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub network: Option<Network>,
}

/// docker's ids of the `host` and `none` pseudo-networks: fixed per home.
fn pseudo_id(home: &std::path::Path, name: &str) -> String {
    let d = hoist_oci::Digest::sha256_of(format!("{}\0{name}", home.display()).as_bytes());
    d.hex().to_owned()
}

impl Host {
    pub fn networks(&self) -> NetworkStore {
        NetworkStore::open(self.home())
    }

    /// A new container's network from `--network` (with `--network-alias` and `--ip`):
    /// `none`, `host`, `container:NAME` (which must run; returned too: the new container
    /// shares its files), `bridge` (the default network) or the name of a network.
    pub fn network_for(
        &self,
        mode: &str,
        aliases: &[String],
        ip: Option<Ipv4Addr>,
    ) -> Result<(spec::Network, Option<Container>, Vec<NetworkRequest>)> {
        let plain = |n: spec::Network| {
            if !aliases.is_empty() {
                bail!("network-scoped aliases are only supported for user-defined networks");
            }
            if ip.is_some() {
                bail!("user specified IP address is supported on user defined networks only");
            }
            Ok((n, None, Vec::new()))
        };
        match mode {
            "none" => plain(spec::Network::None),
            "host" => plain(spec::Network::Host),
            "bridge" | "default" => {
                let (n, c, _) = plain(spec::Network::Bridge)?;
                Ok((
                    n,
                    c,
                    vec![NetworkRequest {
                        network: DEFAULT_NETWORK.into(),
                        ..NetworkRequest::default()
                    }],
                ))
            }
            m if m.starts_with("container:") => {
                let name = &m["container:".len()..];
                if name.is_empty() {
                    bail!("invalid network mode: invalid container format container:<name|id>");
                }
                // Aliases and addresses are refused as for host and none.
                plain(spec::Network::None)?;
                let other = self
                    .containers()?
                    .get(name)
                    .map_err(|e| EngineError::Step {
                        what: format!("joining the network of {name}"),
                        source: Box::new(e),
                    })?;
                let Some(init) = other.state.init.filter(|_| other.state.running()) else {
                    bail!(
                        "cannot join network of a non running container: {}",
                        other.id()
                    );
                };
                let ns = PathBuf::from(format!("/proc/{}/ns/net", init.pid));
                Ok((spec::Network::Container(ns), Some(other))).map(|(n, c)| (n, c, Vec::new()))
            }
            name => {
                let n = self.networks().get(name)?;
                Ok((
                    spec::Network::Bridge,
                    None,
                    vec![NetworkRequest {
                        network: n.name,
                        aliases: aliases.to_vec(),
                        ip,
                    }],
                ))
            }
        }
    }

    /// `network create`.
    pub fn create_network(&self, req: NewNetwork) -> Result<Network> {
        let n = self.networks().create(req)?;
        firewall::apply(&n)?;
        Ok(n)
    }

    /// Every network, the default one first (made when missing), then `host` and `none`.
    pub fn list_networks(&self) -> Result<Vec<Listed>> {
        sandbox::reconcile(self.home())?;
        let store = self.networks();
        let mut all = store.list()?;
        if !all.iter().any(|n| n.name == DEFAULT_NETWORK) {
            all.insert(0, store.default_record()?);
        }
        all.sort_by_key(|n| n.name != DEFAULT_NETWORK);
        let mut out: Vec<Listed> = all
            .into_iter()
            .map(|n| Listed {
                id: n.id.clone(),
                name: n.name.clone(),
                driver: n.driver.clone(),
                network: Some(n),
            })
            .collect();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            out.push(Listed {
                id: pseudo_id(self.home(), name),
                name: name.into(),
                driver: driver.into(),
                network: None,
            });
        }
        Ok(out)
    }

    /// A network by name, id or id prefix (`host` and `none` included).
    pub fn network(&self, key: &str) -> Result<Listed> {
        let all = self.list_networks()?;
        if let Some(i) = all.iter().position(|l| l.name == key || l.id == key) {
            return Ok(all.into_iter().nth(i).expect("found"));
        }
        let mut found: Vec<Listed> = all
            .into_iter()
            .filter(|l| !key.is_empty() && l.id.starts_with(key))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(NetError::NotFound(format!("network {key} not found")).into()),
            n => bail!("network {key} is ambiguous ({n} matches found based on ID prefix)"),
        }
    }

    /// `network rm`: refused while a container (running or not) is configured for it.
    pub fn remove_network(&self, key: &str) -> Result<Network> {
        sandbox::reconcile(self.home())?;
        let listed = self.network(key)?;
        let Some(n) = listed.network else {
            bail!(
                "{} is a pre-defined network and cannot be removed",
                listed.name
            );
        };
        if n.name == DEFAULT_NETWORK {
            bail!("{} is a pre-defined network and cannot be removed", n.name);
        }
        let users = self.containers_on(&n.name)?;
        if let Some(c) = users.first() {
            bail!(
                "error while removing network: network {} id {} has active endpoints (container {})",
                n.name,
                n.id,
                c.name()
            );
        }
        Ok(self.networks().remove(&n.id)?)
    }

    /// The containers configured for network `name` (running or not).
    pub fn containers_on(&self, name: &str) -> Result<Vec<Container>> {
        Ok(self
            .containers()?
            .list()?
            .into_iter()
            .filter(|c| c.config.options.networks.iter().any(|r| r.network == name))
            .collect())
    }

    /// `network prune`: every user-defined network no container is configured for; the
    /// default network's bridge and rules too when no container is on it (its record stays, and
    /// the next container on it makes them again).
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        sandbox::reconcile(self.home())?;
        let mut removed = Vec::new();
        for n in self.networks().list()? {
            if n.name == DEFAULT_NETWORK {
                let store = self.networks();
                let l = store.lock()?;
                if store.get(&n.id)?.endpoints.is_empty() {
                    sandbox::take_down(&store, &l, &n)?;
                }
                continue;
            }
            if !self.containers_on(&n.name)?.is_empty() {
                continue;
            }
            self.networks().remove(&n.id)?;
            removed.push(n.name);
        }
        Ok(removed)
    }

    /// `network connect`: the container joins the network at its next start; a running one
    /// also at once (a new interface in its namespace).
    pub fn connect_network(
        &self,
        key: &str,
        container: &str,
        aliases: &[String],
        ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        let (net, mut c) = self.bridge_and_container(key, container)?;
        let store = self.containers()?;
        // docker's order: a shared namespace, then what the default network refuses, then
        // the other modes.
        if matches!(c.config.options.network, spec::Network::Container(_)) {
            bail!(
                "container sharing network namespace with another container or host cannot be connected to any other network"
            );
        }
        if net.name == DEFAULT_NETWORK {
            if !aliases.is_empty() {
                bail!(
                    "network-scoped alias is supported only for containers in user defined networks"
                );
            }
            if ip.is_some() {
                bail!("user specified IP address is supported on user defined networks only");
            }
        }
        // docker's words for each mode that cannot join.
        match c.config.options.network {
            spec::Network::Bridge => {}
            spec::Network::None if c.config.network_mode == "none" => bail!(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
            ),
            spec::Network::Host | spec::Network::Container(_) | spec::Network::None => bail!(
                "container sharing network namespace with another container or host cannot be connected to any other network"
            ),
            _ => bail!(
                "container {} is not on a bridge network (--network {}): it cannot join {}",
                c.name(),
                c.config.network_mode,
                net.name
            ),
        }
        if c.config
            .options
            .networks
            .iter()
            .any(|r| r.network == net.name)
        {
            bail!(
                "endpoint with name {} already exists in network {}",
                c.name(),
                net.name
            );
        }
        if c.state.running() {
            attach_live(
                &self.networks(),
                &c,
                &net,
                aliases,
                ip,
                c.config.options.networks.len(),
            )?;
        }
        c.config.options.networks.push(NetworkRequest {
            network: net.name,
            aliases: aliases.to_vec(),
            ip,
        });
        store.write_config(&c.config)?;
        Ok(())
    }

    /// The bridge network `key` (not `host` or `none`) and the container `container`, for
    /// `connect` and `disconnect`.
    fn bridge_and_container(&self, key: &str, container: &str) -> Result<(Network, Container)> {
        let Some(net) = self.network(key)?.network else {
            bail!(
                "container cannot be disconnected from host network or connected to host network"
            );
        };
        Ok((net, self.containers()?.get(container)?))
    }

    /// `network disconnect`.
    pub fn disconnect_network(&self, key: &str, container: &str) -> Result<()> {
        // `host` and `none`: refused for a container in that mode, else it is not on it.
        if let Listed {
            network: None,
            name,
            ..
        } = self.network(key)?
        {
            let c = self.containers()?.get(container)?;
            if c.config.network_mode != name {
                bail!("container {} is not connected to network {name}", c.id());
            }
        }
        let (net, mut c) = self.bridge_and_container(key, container)?;
        let store = self.containers()?;
        let before = c.config.options.networks.len();
        c.config.options.networks.retain(|r| r.network != net.name);
        if c.config.options.networks.len() == before {
            bail!(
                "container {} is not connected to network {}",
                c.id(),
                net.name
            );
        }
        let id = c.id().to_owned();
        let (after, gone) = self.networks().update(&net.id, move |n| {
            let e = n.endpoints.remove(&id);
            Ok((n.clone(), e))
        })?;
        if let Some(e) = gone {
            link::delete(&e.host_veth)?;
            sandbox::remake(&self.networks(), &after.id)?;
        }
        store.write_config(&c.config)?;
        Ok(())
    }

    /// Every running container's endpoints, by container id.
    pub fn all_endpoints(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<(Network, Endpoint)>>> {
        let mut out: std::collections::HashMap<String, Vec<(Network, Endpoint)>> =
            std::collections::HashMap::new();
        for n in self.networks().list()? {
            for e in n.endpoints.values() {
                out.entry(e.container.clone())
                    .or_default()
                    .push((n.clone(), e.clone()));
            }
        }
        Ok(out)
    }

    /// The endpoints of the sandbox `id` (a running container's, or a pod's), one per network.
    pub fn endpoints_of_sandbox(&self, id: &str) -> Result<Vec<(Network, Endpoint)>> {
        let mut out = Vec::new();
        for n in self.networks().list()? {
            if let Some(e) = n.endpoints.get(id).cloned() {
                out.push((n, e));
            }
        }
        Ok(out)
    }

    /// The networks a running container is on, with its endpoint on each, in its order.
    pub fn endpoints_of(&self, c: &Container) -> Result<Vec<(Network, Endpoint)>> {
        let mut out = self.endpoints_of_sandbox(c.id())?;
        let order = |n: &Network| {
            c.config
                .options
                .networks
                .iter()
                .position(|r| r.network == n.name)
                .unwrap_or(usize::MAX)
        };
        out.sort_by_key(|(n, _)| order(n));
        Ok(out)
    }
}

/// Joins the running container `c` to `net` now: an endpoint, a veth into its namespace
/// (`eth{index}`, no default route), the network's rules.
fn attach_live(
    store: &NetworkStore,
    c: &Container,
    net: &Network,
    aliases: &[String],
    ip: Option<Ipv4Addr>,
    index: usize,
) -> Result<()> {
    let id = c.id().to_owned();
    let name = c.name().to_owned();
    let aliases = aliases.to_vec();
    let veth = sandbox::veth_name(&id, net);
    let host_veth = veth.clone();
    let (n, addr) = store.update(&net.id, move |n| {
        let addr = n.add_endpoint(&id, &name, aliases, ip, host_veth, Vec::new())?;
        Ok((n.clone(), addr))
    })?;
    let made = store.ensure_bridge(&n).and_then(|_| {
        link::connect(&link::Veth {
            host: veth.clone(),
            bridge: n.bridge.clone(),
            netns: netns::path_for(c.id()),
            inside: format!("eth{index}"),
            ip: addr,
            prefix: n.subnet.prefix_len(),
            gateway: None,
            mac: ipam::mac_for(addr),
        })
    });
    if let Err(e) = made {
        let id = c.id().to_owned();
        let _ = store.update(&net.id, move |n| {
            n.endpoints.remove(&id);
            Ok(())
        });
        return Err(e.into());
    }
    sandbox::remake(store, &n.id)?;
    Ok(())
}
