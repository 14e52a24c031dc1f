//! Container networks: bridges with their addresses ([`ipam`]), the records of networks and the
//! containers on them ([`store`]), named network namespaces ([`netns`]), and the links made
//! through netlink ([`link`]).

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod sandbox;
pub mod store;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// In use, or taken by another.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Exhausted(String),
    /// `nft` refused the rules, or is missing.
    #[error("{0}")]
    Firewall(String),
}

/// A published port: `host_ip:host_port` on the host to `container_port` of the container's
/// address, as `-p` gives it (`host_ip` unspecified: every address of the host).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}
