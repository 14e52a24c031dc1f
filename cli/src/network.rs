//! `hoist network create|ls|inspect|rm|connect|disconnect|prune`, in docker's shapes.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use hoist_engine::Host;
use hoist_engine::networks::Listed;
use hoist_runtime::net::ipam;
use hoist_runtime::net::store::{Network, NewNetwork};
use serde_json::{Value, json};

use crate::images_format::table;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkGroup),
}

#[derive(Subcommand)]
pub enum NetworkGroup {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only bridge)
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format (default: a free one of docker's pools)
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 gateway of the subnet (default: its first address)
    #[arg(long)]
    gateway: Option<std::net::Ipv4Addr>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment (always on: accepted for docker compatibility)
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network (KEY=VALUE)
    #[arg(long = "label")]
    label: Vec<String>,
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network ids
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output (name=, id=, driver=, label=, type=, dangling=)
    #[arg(short, long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output: json, or a Go template
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Add a network-scoped alias for the container
    #[arg(long = "alias")]
    aliases: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

fn print_out(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

pub fn run(cmd: NetworkCommand) -> Result<()> {
    let NetworkCommand::Network(cmd) = cmd;
    let host = Host::from_env()?;
    match cmd {
        NetworkGroup::Create(a) => create(&host, a),
        NetworkGroup::Ls(a) => ls(&host, a),
        NetworkGroup::Inspect(a) => {
            // docker's: what was found is printed (`[]` when nothing was), then the errors.
            let f = crate::format::Format::parse(a.format.as_deref())?;
            let mut out = Vec::new();
            let mut failed = None;
            for n in &a.networks {
                match host.network(n) {
                    Ok(l) => out.push(inspect_json(&host, &l)?),
                    Err(e) => {
                        if let Some(prev) = failed.replace(anyhow::Error::new(e)) {
                            eprintln!("{}", crate::error_line(&prev));
                        }
                    }
                }
            }
            if matches!(
                f,
                crate::format::Format::Raw(_) | crate::format::Format::Table(_)
            ) {
                crate::format::print(&f, &out, &[])?;
            } else {
                let mut s = serde_json::to_string_pretty(&out).context("encoding the output")?;
                s.push('\n');
                print_out(&s)?;
            }
            failed.map_or(Ok(()), Err)
        }
        NetworkGroup::Rm(a) => {
            let mut failed = None;
            for n in &a.networks {
                match host.remove_network(n) {
                    Ok(_) => print_out(&format!("{n}\n"))?,
                    Err(e) => {
                        if let Some(prev) = failed.replace(anyhow::Error::new(e)) {
                            eprintln!("{}", crate::error_line(&prev));
                        }
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        }
        NetworkGroup::Connect(a) => {
            Ok(host.connect_network(&a.network, &a.container, &a.aliases, a.ip)?)
        }
        NetworkGroup::Disconnect(a) => {
            let _ = a.force;
            Ok(host.disconnect_network(&a.network, &a.container)?)
        }
        NetworkGroup::Prune(a) => {
            if !a.force
                && !crate::confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(());
            }
            let removed = host.prune_networks()?;
            let mut out = String::new();
            if !removed.is_empty() {
                out.push_str("Deleted Networks:\n");
                for n in removed {
                    out.push_str(&n);
                    out.push('\n');
                }
                // docker's CLI prints the list and then a newline of its own.
                out.push('\n');
            }
            print_out(&out)
        }
    }
}

fn create(host: &Host, a: CreateArgs) -> Result<()> {
    if a.driver != "bridge" {
        bail!(
            "plugin \"{}\" not found: hoist networks use the bridge driver",
            a.driver
        );
    }
    let subnet = a.subnet.as_deref().map(ipam::parse_subnet).transpose()?;
    if a.gateway.is_some() && subnet.is_none() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let labels: BTreeMap<String, String> = a
        .label
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let _ = a.attachable;
    let n = host.create_network(NewNetwork {
        name: a.name,
        subnet,
        gateway: a.gateway,
        internal: a.internal,
        labels,
    })?;
    print_out(&format!("{}\n", n.id))
}

fn labels_of(n: &Listed) -> Value {
    n.network
        .as_ref()
        .map(|n| json!(n.labels))
        .unwrap_or_else(|| json!({}))
}

fn created_of(n: &Listed) -> String {
    n.network
        .as_ref()
        .map(|n| n.created.clone())
        .unwrap_or_default()
}

/// docker's CLI order of names (`sortorder.NaturalLess`): runs of digits compare by value,
/// the rest byte by byte.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let trim = |n: &[u8]| -> usize { n.iter().take_while(|c| **c == b'0').count() };
                let (ta, tb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let o = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then(da.cmp(&db));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// An RFC 3339 time (`2024-05-01T10:00:00.120000000Z`) as Go's `time.Time.String()` prints
/// it (`2024-05-01 10:00:00.12 +0000 UTC`: trailing zeros of the fraction dropped), as
/// `network ls` shows `CreatedAt`; anything else as it is.
fn go_time_of(rfc3339: &str) -> String {
    let Some(t) = rfc3339.strip_suffix('Z') else {
        return rfc3339.to_owned();
    };
    let Some((date, clock)) = t.split_once('T') else {
        return rfc3339.to_owned();
    };
    let clock = match clock.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                secs.to_owned()
            } else {
                format!("{secs}.{frac}")
            }
        }
        None => clock.to_owned(),
    };
    format!("{date} {clock} +0000 UTC")
}

fn ls(host: &Host, a: LsArgs) -> Result<()> {
    let mut all = host.list_networks()?;
    // docker's order: by name, numbers in names by value.
    all.sort_by(|x, y| natural_cmp(&x.name, &y.name));
    for f in &a.filter {
        // docker's CLI refuses it as a bad flag value: a usage error.
        let (k, v) = f
            .split_once('=')
            .with_context(|| {
                format!(
                    "invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
                )
            })
            .context(crate::Status(125))?;
        if k == "type" && !matches!(v, "custom" | "builtin") {
            bail!("invalid filter: 'type'='{v}'");
        }
        let dangling = match (k, v) {
            ("dangling", "true" | "1") => Some(true),
            ("dangling", "false" | "0") => Some(false),
            ("dangling", _) => bail!("invalid filter 'dangling={v}'"),
            _ => None,
        };
        // docker's dangling: a user-defined network no container is on.
        let mut unused = std::collections::HashSet::new();
        if dangling.is_some() {
            for n in &all {
                if n.network.as_ref().is_some_and(|x| x.name != "bridge")
                    && host.containers_on(&n.name)?.is_empty()
                {
                    unused.insert(n.id.clone());
                }
            }
        }
        all.retain(|n| match k {
            "dangling" => dangling == Some(unused.contains(&n.id)),
            "name" => n.name.contains(v),
            "id" => n.id.starts_with(v),
            "driver" => n.driver == v,
            "label" => {
                let (lk, lv) = v.split_once('=').map_or((v, None), |(k, v)| (k, Some(v)));
                n.network
                    .as_ref()
                    .and_then(|n| n.labels.get(lk))
                    .is_some_and(|x| lv.is_none_or(|lv| lv == x))
            }
            "type" => match v {
                "custom" => n.network.as_ref().is_some_and(|x| x.name != "bridge"),
                "builtin" => n.network.as_ref().is_none_or(|x| x.name == "bridge"),
                _ => true,
            },
            _ => true,
        });
        if !matches!(k, "name" | "id" | "driver" | "label" | "type" | "dangling") {
            bail!("invalid filter '{k}'");
        }
    }
    let id = |n: &Listed| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id[..12].to_owned()
        }
    };
    if a.quiet {
        return print_out(
            &all.iter()
                .map(|n| format!("{}\n", id(n)))
                .collect::<String>(),
        );
    }
    let format = crate::format::Format::parse(a.format.as_deref())?;
    if !format.is_default() {
        let rows: Vec<Value> = all
            .iter()
            .map(|n| {
                json!({
                    "ID": id(n),
                    "Name": n.name,
                    "Driver": n.driver,
                    "Scope": "local",
                    "IPv4": "true",
                    "IPv6": "false",
                    "Internal": n.network.as_ref().is_some_and(|x| x.internal).to_string(),
                    "Labels": crate::listing::labels_string(labels_of(n).as_object()),
                    "CreatedAt": go_time_of(&created_of(n)),
                })
            })
            .collect();
        return crate::format::print(&format, &rows, HEADERS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|n| vec![id(n), n.name.clone(), n.driver.clone(), "local".to_owned()])
        .collect();
    print_out(&table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows))
}

/// docker's `network inspect` shape.
fn inspect_json(host: &Host, l: &Listed) -> Result<Value> {
    let (config, containers, internal, options) = match &l.network {
        Some(n) => (
            json!([{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]),
            endpoints_json(n),
            n.internal,
            options_json(n),
        ),
        None => (json!([]), mode_members(host, &l.name)?, false, json!({})),
    };
    let ipam_options = match &l.network {
        Some(n) if n.name != hoist_runtime::net::store::DEFAULT_NETWORK => json!({}),
        _ => Value::Null,
    };
    Ok(json!({
        "Name": l.name,
        "Id": l.id,
        "Created": created_of(l),
        "Scope": "local",
        "Driver": l.driver,
        "EnableIPv6": false,
        // docker's: none for its default bridge and host and none, empty for a user network.
        "IPAM": {"Driver": "default", "Options": ipam_options, "Config": config},
        "Internal": internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": labels_of(l),
    }))
}

/// docker's `Options`: the default network's bridge settings; none for a user network
/// (docker lists only the `-o` options it was made with, and `network create` takes none).
fn options_json(n: &Network) -> Value {
    if n.name != hoist_runtime::net::store::DEFAULT_NETWORK {
        return json!({});
    }
    json!({
        "com.docker.network.bridge.default_bridge": "true",
        "com.docker.network.bridge.enable_icc": "true",
        "com.docker.network.bridge.enable_ip_masquerade": "true",
        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
        "com.docker.network.bridge.name": n.bridge,
        "com.docker.network.driver.mtu": "1500",
    })
}

/// The running containers in mode `host` or `none`, as docker lists them on those networks:
/// no addresses.
fn mode_members(host: &Host, mode: &str) -> Result<Value> {
    let mut m = serde_json::Map::new();
    for c in host.containers()?.list()? {
        if c.config.network_mode == mode && c.state.running() {
            m.insert(
                c.id().to_owned(),
                json!({
                    "Name": c.name(),
                    "EndpointID": hoist_engine::inspect::endpoint_id(mode, c.id()),
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(Value::Object(m))
}

fn endpoints_json(n: &Network) -> Value {
    let mut m = serde_json::Map::new();
    for e in n.endpoints.values() {
        m.insert(
            e.container.clone(),
            json!({
                "Name": e.name,
                "EndpointID": hoist_engine::inspect::endpoint_id(&n.id, &e.container),
                "MacAddress": e.mac,
                "IPv4Address": format!("{}/{}", e.ip, n.subnet.prefix_len()),
                "IPv6Address": "",
            }),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::go_time_of;

    #[test]
    fn names_sort_with_numbers_by_value() {
        let mut names = vec!["net10", "net2", "bridge", "net1", "host", "Net3", "none"];
        names.sort_by(|a, b| super::natural_cmp(a, b));
        assert_eq!(
            names,
            ["Net3", "bridge", "host", "net1", "net2", "net10", "none"]
        );
    }

    #[test]
    fn created_at_reads_as_go_prints_a_time() {
        assert_eq!(
            go_time_of("2026-12-02T23:48:23.785101440Z"),
            "2026-12-02 23:48:23.78510144 +0000 UTC"
        );
        assert_eq!(
            go_time_of("2026-12-02T23:48:23.000000000Z"),
            "2026-12-02 23:48:23 +0000 UTC"
        );
        assert_eq!(
            go_time_of("2026-12-02T23:48:23Z"),
            "2026-12-02 23:48:23 +0000 UTC"
        );
        assert_eq!(go_time_of(""), "");
    }
}
