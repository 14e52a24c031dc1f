//! The networks of a host, one JSON file each under `$HOIST_HOME/networks/`, with their
//! endpoints (the containers on them, each with its address and published ports). Every change
//! is made under one lock (`networks/.lock`) and written whole (a temporary file renamed over
//! the old one), so a reader — the DNS server of a network — never sees half a file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{NetError, PortMapping, ipam};

/// The default network's name (docker's).
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge on the system home (`/var/lib/hoist`); other homes get a
/// bridge named after their path, so two homes on one host never share one.
pub const DEFAULT_BRIDGE: &str = "hoist0";
const SYSTEM_HOME: &str = "/var/lib/hoist";
/// Held while a subnet is picked and its bridge made: the host's routes are the other homes'
/// record of what is taken.
const HOST_LOCK: &str = "/run/hoist/networks.lock";
/// Names that are modes, not networks.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// No route out: no default route in the containers and no NAT.
    pub internal: bool,
    /// The bridge device.
    pub bridge: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Containers resolve each other by name (user-defined networks; not the default bridge,
    /// as in docker).
    pub dns: bool,
    /// By container id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The address given out last (the allocator goes on after it).
    #[serde(default)]
    pub last_ip: Option<Ipv4Addr>,
    /// The digest of the firewall table last applied, its published ports aside (none: not
    /// applied since the bridge was made): a start or stop that changes no rule spawns no `nft`.
    #[serde(default)]
    pub rules: Option<String>,
    /// Published ports of containers gone whose DNAT rules are still in the table behind a
    /// `return` (see `firewall`): cleared when the table's ports are made again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<PortMapping>,
    /// Endpoints gone whose fast path (`ep-<veth>` chain, `peers` rule) is still in the table
    /// (see `firewall`): cleared when the tables are made again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StalePath>,
}

/// A gone endpoint's fast path left in the table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StalePath {
    pub ip: Ipv4Addr,
    pub host_veth: String,
}

/// A container on a network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub container: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The host end of its veth.
    pub host_veth: String,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

impl Network {
    /// The addresses in use: the containers' and the gateway.
    pub fn used(&self) -> BTreeSet<Ipv4Addr> {
        self.endpoints.values().map(|e| e.ip).collect()
    }

    /// The addresses a name resolves to on this network: a container's name, alias, or id (its
    /// first 12 characters or more), as docker's embedded DNS answers.
    pub fn resolve(&self, name: &str) -> Vec<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.endpoints
            .values()
            .filter(|e| {
                e.name.eq_ignore_ascii_case(&name)
                    || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(&name))
                    || (name.len() >= 12 && e.container.starts_with(&name))
            })
            .map(|e| e.ip)
            .collect()
    }

    /// Gives container `id` an endpoint: the address `want` (checked) or the next free one, and
    /// its MAC; returns the address.
    pub fn add_endpoint(
        &mut self,
        id: &str,
        name: &str,
        aliases: Vec<String>,
        want: Option<Ipv4Addr>,
        host_veth: String,
        ports: Vec<super::PortMapping>,
    ) -> Result<Ipv4Addr, NetError> {
        let used = self.used();
        let ip = match want {
            Some(ip) => {
                ipam::check_requested(&self.subnet, self.gateway, &used, ip)?;
                ip
            }
            None => ipam::allocate(&self.subnet, self.gateway, &used, self.last_ip).ok_or_else(
                || {
                    NetError::Exhausted(format!(
                        "no address is left in network {} ({})",
                        self.name, self.subnet
                    ))
                },
            )?,
        };
        self.last_ip = Some(ip);
        self.endpoints.insert(
            id.to_owned(),
            Endpoint {
                container: id.to_owned(),
                name: name.to_owned(),
                aliases,
                ip,
                mac: ipam::mac_string(&ipam::mac_for(ip)),
                host_veth,
                ports,
            },
        );
        Ok(ip)
    }

    /// The container name of an address (for reverse lookups).
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<&str> {
        self.endpoints
            .values()
            .find(|e| e.ip == ip)
            .map(|e| e.name.as_str())
    }
}

/// What `network create` asks for.
#[derive(Default, Debug)]
pub struct NewNetwork {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

pub struct NetworkStore {
    dir: PathBuf,
    default_bridge: String,
}

/// The store's lock, held until dropped.
pub struct Locked(#[allow(dead_code)] File);

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// docker's network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// An exclusive lock on the file `p` (made in `dir`), held until dropped.
fn lock_file(dir: &Path, p: &Path) -> Result<Locked, NetError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map_err(io(format!("opening {}", p.display())))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| NetError::Io {
        what: format!("locking {}", p.display()),
        source: e.into(),
    })?;
    Ok(Locked(f))
}

fn host_lock() -> Result<Locked, NetError> {
    let p = Path::new(HOST_LOCK);
    lock_file(p.parent().unwrap_or(Path::new("/")), p)
}

/// Where each bridge hoist made names the network record it belongs to (a file per bridge,
/// holding the record's path): a bridge whose record is gone (its home removed, or a crash
/// between the two) is removed, with its table, by the next reconcile of any home.
pub const BRIDGES_DIR: &str = "/run/hoist/bridges";

/// The bridges whose network record no longer exists, with the table of each: `(bridge, table)`.
pub fn orphan_bridges() -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(BRIDGES_DIR) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let record = PathBuf::from(std::fs::read_to_string(e.path()).ok()?.trim());
            if record.exists() {
                return None;
            }
            let id = record.file_stem()?.to_string_lossy().into_owned();
            Some((
                e.file_name().to_string_lossy().into_owned(),
                format!("hoist-{}", &id[..id.len().min(12)]),
            ))
        })
        .collect()
}

/// Forgets the owner of `bridge` (after it is deleted).
pub fn forget_bridge(bridge: &str) {
    let _ = std::fs::remove_file(Path::new(BRIDGES_DIR).join(bridge));
}

impl NetworkStore {
    /// Makes `n`'s bridge (up, with its gateway address) if it is not there (then `true`: its
    /// table is gone too, as after a reboot), noting which record it belongs to first.
    pub fn ensure_bridge(&self, n: &Network) -> Result<bool, NetError> {
        self.note_owner(n)?;
        super::link::ensure_bridge(&n.bridge, n.gateway, n.subnet.prefix_len())
    }

    /// Notes in [`BRIDGES_DIR`] that `n`'s bridge belongs to its record here.
    fn note_owner(&self, n: &Network) -> Result<(), NetError> {
        let dir = Path::new(BRIDGES_DIR);
        let owner = dir.join(&n.bridge);
        // Absolute: the reaper may run with another working directory.
        let record = std::fs::canonicalize(self.path(&n.id)).unwrap_or_else(|_| self.path(&n.id));
        let record = record.to_string_lossy();
        if std::fs::read_to_string(&owner).ok().as_deref() == Some(record.as_ref()) {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::write(&owner, record.as_bytes())
            .map_err(io(format!("writing {}", owner.display())))
    }

    pub fn open(home: &Path) -> Self {
        let default_bridge = if home == Path::new(SYSTEM_HOME) {
            DEFAULT_BRIDGE.to_owned()
        } else {
            let path = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
            let d = hoist_oci::Digest::sha256_of(path.as_os_str().as_encoded_bytes());
            format!("hoist{}", &d.hex()[..10])
        };
        NetworkStore {
            dir: home.join("networks"),
            default_bridge,
        }
    }

    /// Takes the store's lock (every change and every address given out is made under it).
    pub fn lock(&self) -> Result<Locked, NetError> {
        lock_file(&self.dir, &self.dir.join(".lock"))
    }

    /// The record file of `n` (what its DNS server reads).
    pub fn file_of(&self, n: &Network) -> PathBuf {
        self.path(&n.id)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every network, oldest first.
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("reading {}", self.dir.display()))(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = match std::fs::read(&p) {
                Ok(b) => b,
                // Removed meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(format!("reading {}", p.display()))(e)),
            };
            let n: Network = serde_json::from_slice(&bytes).map_err(|source| NetError::Decode {
                path: p.clone(),
                source,
            })?;
            out.push(n);
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// A network by name, id, or a unique prefix of its id (docker's lookup order).
    pub fn get(&self, key: &str) -> Result<Network, NetError> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(key)).collect();
        match by_prefix.as_slice() {
            [n] if !key.is_empty() => Ok((*n).clone()),
            [] | [_] => Err(NetError::NotFound(format!("network {key} not found"))),
            _ => Err(NetError::Invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    fn write(&self, n: &Network) -> Result<(), NetError> {
        let bytes = serde_json::to_vec_pretty(n).expect("a network encodes");
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io(format!("creating a file in {}", self.dir.display())))?;
        std::fs::write(tmp.path(), bytes).map_err(io("writing the network"))?;
        tmp.persist(self.path(&n.id))
            .map_err(|e| io(format!("writing network {}", n.name))(e.error))?;
        Ok(())
    }

    /// Creates a network: a free subnet from the default pools unless one is given (it must
    /// overlap no other network), its gateway the first address unless given.
    pub fn create(&self, req: NewNetwork) -> Result<Network, NetError> {
        let _l = self.lock()?;
        let _h = host_lock()?;
        let n = self.create_locked(req, false)?;
        if let Err(e) = self.ensure_bridge(&n) {
            let _ = std::fs::remove_file(self.path(&n.id));
            return Err(e);
        }
        Ok(n)
    }

    /// A free subnet: none of this home's other networks, none of the host's routes.
    fn free_subnet(&self, others: &[Network]) -> Result<Ipv4Net, NetError> {
        let mut taken: Vec<Ipv4Net> = others.iter().map(|n| n.subnet).collect();
        taken.extend(ipam::host_routes());
        ipam::pick_subnet(&taken).ok_or_else(|| {
            NetError::Exhausted(
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
            )
        })
    }

    fn create_locked(&self, req: NewNetwork, default: bool) -> Result<Network, NetError> {
        if !valid_name(&req.name) {
            return Err(NetError::Invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        if !default && PREDEFINED.contains(&req.name.as_str()) {
            return Err(NetError::Invalid(format!(
                "operation is not permitted on predefined {} network",
                req.name
            )));
        }
        let all = self.list()?;
        if all.iter().any(|n| n.name == req.name) {
            return Err(NetError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let subnet = match req.subnet {
            Some(s) => {
                if let Some(n) = all.iter().find(|n| ipam::overlaps(&n.subnet, &s)) {
                    return Err(NetError::Conflict(format!(
                        "invalid pool request: pool {s} overlaps with network {} ({})",
                        n.name, n.subnet
                    )));
                }
                s
            }
            None => self.free_subnet(&all)?,
        };
        let gateway = match req.gateway {
            Some(g) => {
                ipam::check_gateway(&subnet, g)?;
                g
            }
            None => ipam::default_gateway(&subnet),
        };
        let id = {
            let u = uuid::Uuid::new_v4().simple().to_string();
            let v = uuid::Uuid::new_v4().simple().to_string();
            format!("{u}{v}")
        };
        let n = Network {
            bridge: if default {
                self.default_bridge.clone()
            } else {
                format!("hbr-{}", &id[..11])
            },
            id,
            name: req.name,
            driver: "bridge".into(),
            subnet,
            gateway,
            internal: req.internal,
            created: hoist_oci::time::rfc3339_nanos(std::time::SystemTime::now()),
            labels: req.labels,
            dns: !default,
            endpoints: BTreeMap::new(),
            last_ip: None,
            rules: None,
            retired: Vec::new(),
            stale: Vec::new(),
        };
        self.write(&n)?;
        Ok(n)
    }

    /// The default network's record (`bridge`), made on first use; its bridge is made when a
    /// container starts on it ([`NetworkStore::bring_up_default`]).
    pub fn default_record(&self) -> Result<Network, NetError> {
        let _l = self.lock()?;
        self.default_record_held()
    }

    fn default_record_held(&self) -> Result<Network, NetError> {
        if let Some(n) = self.list()?.into_iter().find(|n| n.name == DEFAULT_NETWORK) {
            return Ok(n);
        }
        let _h = host_lock()?;
        self.create_locked(
            NewNetwork {
                name: DEFAULT_NETWORK.into(),
                ..NewNetwork::default()
            },
            true,
        )
    }

    /// The default network with its bridge up, under the store's lock `_l`: the bridge made
    /// again after its last container took it down, on a subnet free now.
    pub fn bring_up_default(&self, _l: &Locked) -> Result<Network, NetError> {
        let mut n = self.default_record_held()?;
        if super::link::exists(&n.bridge)? {
            self.note_owner(&n)?;
            return Ok(n);
        }
        let _h = host_lock()?;
        let routes = ipam::host_routes();
        if n.endpoints.is_empty() && routes.iter().any(|r| ipam::overlaps(r, &n.subnet)) {
            let others: Vec<Network> = self.list()?.into_iter().filter(|o| o.id != n.id).collect();
            n.subnet = self.free_subnet(&others)?;
            n.gateway = ipam::default_gateway(&n.subnet);
            n.last_ip = None;
        }
        // A new bridge: its rules are applied again.
        n.rules = None;
        self.write(&n)?;
        self.ensure_bridge(&n)?;
        Ok(n)
    }

    /// Removes a network no container is on.
    pub fn remove(&self, key: &str) -> Result<Network, NetError> {
        let _l = self.lock()?;
        let n = self.get(key)?;
        if n.name == DEFAULT_NETWORK {
            return Err(NetError::Invalid(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !n.endpoints.is_empty() {
            return Err(NetError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        super::firewall::remove(&n)?;
        super::link::delete(&n.bridge)?;
        std::fs::remove_file(self.path(&n.id))
            .map_err(io(format!("removing network {}", n.name)))?;
        forget_bridge(&n.bridge);
        Ok(n)
    }

    /// Changes network `key` under the lock and writes it.
    pub fn update<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Network) -> Result<R, NetError>,
    ) -> Result<R, NetError> {
        let l = self.lock()?;
        self.update_held(&l, key, f)
    }

    /// [`NetworkStore::update`] under the store's lock `_l`, already held.
    pub fn update_held<R>(
        &self,
        _l: &Locked,
        key: &str,
        f: impl FnOnce(&mut Network) -> Result<R, NetError>,
    ) -> Result<R, NetError> {
        let mut n = self.get(key)?;
        let r = f(&mut n)?;
        self.write(&n)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::tests::in_private_host;

    #[test]
    fn networks_get_free_subnets_and_unique_names() {
        in_private_host(networks_get_free_subnets_and_unique_names_in);
    }

    fn networks_get_free_subnets_and_unique_names_in() {
        let home = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(home.path());
        let d = s.default_record().unwrap();
        assert!(!super::super::link::exists(&d.bridge).unwrap());
        let d = s.bring_up_default(&s.lock().unwrap()).unwrap();
        assert_eq!((d.name.as_str(), d.dns), ("bridge", false));
        assert!(
            d.bridge.starts_with("hoist") && d.bridge.len() == 15,
            "{}",
            d.bridge
        );
        assert!(super::super::link::exists(&d.bridge).unwrap());
        assert_eq!(s.default_record().unwrap().id, d.id);
        let a = s
            .create(NewNetwork {
                name: "a".into(),
                ..Default::default()
            })
            .unwrap();
        assert!(a.dns && a.bridge.starts_with("hbr-") && a.bridge.len() <= 15);
        assert!(!ipam::overlaps(&a.subnet, &d.subnet));
        let e = s
            .create(NewNetwork {
                name: "a".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = s
            .create(NewNetwork {
                name: "b".into(),
                subnet: Some(a.subnet),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("overlaps with network a"), "{e}");
        for bad in ["host", "none", "-x", ""] {
            assert!(
                s.create(NewNetwork {
                    name: bad.into(),
                    ..Default::default()
                })
                .is_err(),
                "{bad}"
            );
        }
        assert_eq!(s.get(&a.id[..6]).unwrap().name, "a");
        assert!(s.get("nope").unwrap_err().to_string().contains("not found"));
        assert_eq!(
            s.list()
                .unwrap()
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["bridge", "a"]
        );
    }

    #[test]
    fn a_network_with_endpoints_is_not_removed() {
        in_private_host(a_network_with_endpoints_is_not_removed_in);
    }

    fn a_network_with_endpoints_is_not_removed_in() {
        let home = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(home.path());
        let n = s
            .create(NewNetwork {
                name: "web".into(),
                subnet: Some("10.9.0.0/24".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        s.update("web", |n| {
            n.endpoints.insert(
                "c1".into(),
                Endpoint {
                    container: "c1".repeat(32),
                    name: "api".into(),
                    aliases: vec!["backend".into()],
                    ip: Ipv4Addr::new(10, 9, 0, 2),
                    mac: String::new(),
                    host_veth: String::new(),
                    ports: Vec::new(),
                },
            );
            Ok(())
        })
        .unwrap();
        let e = s.remove("web").unwrap_err().to_string();
        assert!(e.contains("has active endpoints"), "{e}");
        let got = s.get("web").unwrap();
        assert_eq!(got.resolve("API."), [Ipv4Addr::new(10, 9, 0, 2)]);
        assert_eq!(got.resolve("backend"), [Ipv4Addr::new(10, 9, 0, 2)]);
        assert_eq!(got.resolve(&"c1".repeat(6)), [Ipv4Addr::new(10, 9, 0, 2)]);
        assert!(got.resolve("c1c1").is_empty());
        s.update("web", |n| {
            n.endpoints.clear();
            Ok(())
        })
        .unwrap();
        assert!(super::super::link::exists(&n.bridge).unwrap());
        assert_eq!(s.remove(&n.id).unwrap().name, "web");
        assert!(!super::super::link::exists(&n.bridge).unwrap());
        assert!(s.list().unwrap().is_empty());
        assert!(s.remove("bridge").is_err());
    }
}
