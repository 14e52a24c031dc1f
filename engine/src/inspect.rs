//! docker's inspect shapes of the local objects (`docker container inspect`'s JSON), from what
//! the stores record.

use hoist_runtime::container::{Container, Status};
use hoist_runtime::net::sandbox::PortRequest;
use hoist_runtime::net::store::{DEFAULT_NETWORK, Endpoint, Network};
use serde_json::{Map, Value, json};

use crate::usage::dir_size;

/// A container's labels: its image's, then its own over them.
pub fn container_labels(c: &Container) -> Map<String, Value> {
    let mut labels = c
        .config
        .image_config
        .pointer("/config/Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in &c.config.labels {
        labels.insert(k.clone(), Value::String(v.clone()));
    }
    labels
}

/// docker's `-s` sizes of a container: its writable layer, and that with its image's layers
/// (the virtual size).
pub fn container_sizes(c: &Container) -> (u64, u64) {
    let rw = dir_size(&c.upper());
    let image: u64 = c.config.layers.iter().map(|p| dir_size(p)).sum();
    (rw, rw + image)
}

/// docker's container inspect shape.
pub fn container(c: &Container, endpoints: &[(Network, Endpoint)]) -> Value {
    let cfg = &c.config;
    let o = &cfg.options;
    let st = &c.state;
    let zero = "0001-01-01T00:00:00Z";
    let image_cfg = cfg
        .image_config
        .get("config")
        .cloned()
        .unwrap_or(Value::Null);
    let env = c
        .bundle()
        .join("config.json")
        .exists()
        .then(|| {
            std::fs::read(c.bundle().join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.pointer("/process/env").cloned())
        })
        .flatten()
        .unwrap_or_else(|| json!(o.env));
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind,
                "Name": m.name,
                "Source": m.source,
                "Destination": m.destination,
                "Driver": if m.kind == "volume" { "local" } else { "" },
                "Mode": if m.read_only { "ro" } else { "" },
                "RW": !m.read_only,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            })
        })
        .collect();
    let spec = std::fs::read(c.bundle().join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let shm_size = spec
        .get("mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m.get("destination").and_then(Value::as_str) == Some("/dev/shm"))
        .and_then(|m| m.get("options").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|o| o.strip_prefix("size="))
        .and_then(parse_shm_size)
        .unwrap_or(0);
    // docker's HostConfig keys for what hoist does not set: docker's defaults of `docker run`.
    let host_defaults = json!({
            "ContainerIDFile": "",
            "PortBindings": port_bindings(&o.publish),
            "VolumeDriver": "",
            "VolumesFrom": Value::Null,
            "ConsoleSize": [0, 0],
            "CgroupnsMode": "private",
            "Dns": o.dns,
            "DnsOptions": [],
            "DnsSearch": [],
            "ExtraHosts": if o.extra_hosts.is_empty() { Value::Null } else { json!(o.extra_hosts) },
            "GroupAdd": Value::Null,
            "IpcMode": "private",
            "Cgroup": "",
            "Links": Value::Null,
            "OomScoreAdj": 0,
            "PidMode": "",
            "PublishAllPorts": false,
            "SecurityOpt": Value::Null,
            "UTSMode": "",
            "UsernsMode": "",
            "ShmSize": shm_size,
            "Runtime": cfg.runtime.clone().unwrap_or_else(|| "hoist".to_owned()),
            "Isolation": "",
    });
    let host_defaults2 = json!({
            "CpuShares": 0,
            "CgroupParent": "",
            "BlkioWeight": 0,
            "BlkioWeightDevice": [],
            "BlkioDeviceReadBps": Value::Null,
            "BlkioDeviceWriteBps": Value::Null,
            "BlkioDeviceReadIOps": Value::Null,
            "BlkioDeviceWriteIOps": Value::Null,
            "CpuPeriod": 0,
            "CpuQuota": 0,
            "CpuRealtimePeriod": 0,
            "CpuRealtimeRuntime": 0,
            "CpusetCpus": "",
            "CpusetMems": "",
            "Devices": [],
            "DeviceCgroupRules": Value::Null,
            "DeviceRequests": Value::Null,
            "MemoryReservation": 0,
            "MemorySwap": 0,
            "MemorySwappiness": Value::Null,
            "OomKillDisable": false,
            "Ulimits": Value::Null,
            "CpuCount": 0,
            "CpuPercent": 0,
            "IOMaximumIOps": 0,
            "IOMaximumBandwidth": 0,
            "KernelMemory": 0,
            "KernelMemoryTCP": 0,
    });
    let mut v = json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": cfg.path,
        "Args": cfg.args,
        "State": {
            "Status": st.status_name(),
            "Running": st.status == Status::Running,
            "Paused": st.paused,
            "Restarting": st.running() && st.restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.init.filter(|_| st.running()).map_or(0, |i| i.pid),
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error,
            "StartedAt": st.started_at.as_deref().unwrap_or(zero),
            "FinishedAt": st.finished_at.as_deref().unwrap_or(zero),
        },
        "Image": cfg.image_id,
        "ResolvConfPath": c.resolv_conf_path(),
        "HostnamePath": c.hostname_path(),
        "HostsPath": c.hosts_path(),
        "LogPath": c.log_path(),
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": {
            "MaskedPaths": spec.pointer("/linux/maskedPaths").cloned().unwrap_or(json!([])),
            "ReadonlyPaths": spec.pointer("/linux/readonlyPaths").cloned().unwrap_or(json!([])),
            "Binds": cfg.mounts.iter().filter(|m| m.kind == "bind").map(|m| format!("{}:{}{}", m.source.display(), m.destination, if m.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
            "NetworkMode": cfg.network_mode,
            "AutoRemove": cfg.auto_remove,
            "RestartPolicy": {"Name": cfg.restart_policy.name, "MaximumRetryCount": cfg.restart_policy.maximum_retry_count},
            "Privileged": o.privileged,
            "ReadonlyRootfs": o.read_only,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "Memory": o.memory.unwrap_or(0),
            "NanoCpus": o.nano_cpus.unwrap_or(0),
            "PidsLimit": o.pids_limit,
            "LogConfig": {"Type": "json-file", "Config": {"max-size": cfg.log_max_size.to_string(), "max-file": cfg.log_max_files.to_string()}},
        },
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "LowerDir": cfg.layers.iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                "UpperDir": c.upper(),
                "WorkDir": c.work(),
                "MergedDir": c.rootfs(),
            }
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": std::fs::read_to_string(c.hostname_path()).map(|s| s.trim().to_owned()).unwrap_or_default(),
            "Domainname": "",
            "AttachStdin": o.interactive,
            "AttachStdout": !o.interactive || o.tty,
            "AttachStderr": !o.interactive || o.tty,
            "StdinOnce": false,
            "OnBuild": Value::Null,
            "User": o.user.clone().or_else(|| image_cfg.get("User").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default(),
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "Env": env,
            "Cmd": if o.args.is_empty() { image_cfg.get("Cmd").cloned().unwrap_or(Value::Null) } else { json!(o.args) },
            "Image": cfg.image,
            "Volumes": image_cfg.get("Volumes").cloned().unwrap_or(Value::Null),
            "WorkingDir": o.workdir.clone().or_else(|| image_cfg.get("WorkingDir").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default(),
            "Entrypoint": match &o.entrypoint { Some(e) if e.is_empty() => Value::Null, Some(e) => json!([e]), None => image_cfg.get("Entrypoint").cloned().unwrap_or(Value::Null) },
            "Labels": container_labels(c),
        },
    });
    v["NetworkSettings"] = network_settings(c, endpoints);
    for d in [&host_defaults, &host_defaults2] {
        if let (Some(h), Some(d)) = (v["HostConfig"].as_object_mut(), d.as_object()) {
            for (k, val) in d {
                h.entry(k.clone()).or_insert_with(|| val.clone());
            }
        }
    }
    // docker leaves these out when unset.
    if let Some(s) = &cfg.stop_signal {
        v["Config"]["StopSignal"] = json!(s);
    }
    if let Some(t) = cfg.stop_timeout {
        v["Config"]["StopTimeout"] = json!(t);
    }
    if let Some(h) = &cfg.healthcheck {
        v["Config"]["Healthcheck"] = json!(h);
    }
    if let Some(h) = &st.health {
        v["State"]["Health"] = json!(h);
    }
    v
}

/// `HostConfig.PortBindings`: the `-p` requests (a free host port: `""`).
fn port_bindings(publish: &[PortRequest]) -> Value {
    let mut m = Map::new();
    for p in publish {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let b = json!({
            "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
            "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
        });
        if let Some(Value::Array(a)) = m.get_mut(&key) {
            a.push(b);
        } else {
            m.insert(key, json!([b]));
        }
    }
    Value::Object(m)
}

/// `NetworkSettings.Ports` of a running container: each published port with its host side (the
/// first network's endpoint carries them), and the image's other exposed ports with none.
pub fn ports(c: &Container, endpoints: &[(Network, Endpoint)]) -> Map<String, Value> {
    let mut m = Map::new();
    // docker's: none until it runs, and none again once it stopped.
    if !c.state.running() {
        return m;
    }
    if let Some(exposed) = c
        .config
        .image_config
        .pointer("/config/ExposedPorts")
        .and_then(Value::as_object)
    {
        for k in exposed.keys() {
            m.insert(k.clone(), Value::Null);
        }
    }
    for (_, e) in endpoints {
        // docker's order (go-connections' `SortPortMap`): by container port, and for one
        // port the higher requested host port first, a free one (requested as 0) last.
        let requested = |p: &hoist_runtime::net::PortMapping| {
            let asked = c.config.options.publish.iter().any(|r| {
                r.host_port != 0
                    && r.host_port == p.host_port
                    && r.container_port == p.container_port
                    && r.protocol == p.protocol
            });
            if asked { p.host_port } else { 0 }
        };
        let mut bound: Vec<&hoist_runtime::net::PortMapping> = e.ports.iter().collect();
        bound.sort_by_key(|p| std::cmp::Reverse(requested(p)));
        for p in bound {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let b = json!({
                "HostIp": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": p.host_port.to_string(),
            });
            match m.get_mut(&key) {
                Some(Value::Array(a)) => a.push(b),
                _ => {
                    m.insert(key, json!([b]));
                }
            }
        }
    }
    m
}

/// An endpoint's id: fixed for a container on a network.
pub fn endpoint_id(network: &str, container: &str) -> String {
    hoist_oci::Digest::sha256_of(format!("{network}\0{container}").as_bytes())
        .hex()
        .to_owned()
}

/// docker's `NetworkSettings`: the top-level address fields are the default network's only
/// (as docker fills them); `Networks` has each network the container is configured for, with
/// its endpoint while it runs.
fn network_settings(c: &Container, endpoints: &[(Network, Endpoint)]) -> Value {
    let cfg = &c.config;
    // docker lists no network for a container sharing another's (`container:NAME`).
    let names: Vec<String> = if cfg.network_mode.starts_with("container:") {
        Vec::new()
    } else if cfg.options.networks.is_empty() {
        // A bridge container disconnected from everything is on none (docker's `{}`).
        if cfg.options.network == hoist_runtime::spec::Network::Bridge {
            Vec::new()
        } else {
            vec![cfg.network_mode.clone()]
        }
    } else {
        cfg.options
            .networks
            .iter()
            .map(|r| r.network.clone())
            .collect()
    };
    let mut networks = Map::new();
    for name in &names {
        let req = cfg.options.networks.iter().find(|r| &r.network == name);
        let ep = endpoints.iter().find(|(n, _)| &n.name == name);
        let user = name != DEFAULT_NETWORK && req.is_some();
        let aliases = match (user, req) {
            (true, Some(r)) => {
                // docker adds the short id when it first starts the container.
                let mut a = r.aliases.clone();
                if c.state.started_at.is_some() {
                    a.push(c.short_id().to_owned());
                }
                if a.is_empty() { Value::Null } else { json!(a) }
            }
            _ => Value::Null,
        };
        let ipam = match req.and_then(|r| r.ip) {
            Some(ip) => json!({"IPv4Address": ip.to_string()}),
            None => Value::Null,
        };
        let (net_id, ep_id, gw, ip, prefix, mac) = match ep {
            Some((n, e)) => (
                n.id.clone(),
                endpoint_id(&n.id, c.id()),
                n.gateway.to_string(),
                e.ip.to_string(),
                n.subnet.prefix_len(),
                e.mac.clone(),
            ),
            None => Default::default(),
        };
        networks.insert(
            name.clone(),
            json!({
                "IPAMConfig": ipam,
                "Links": Value::Null,
                "Aliases": aliases,
                "NetworkID": net_id,
                "EndpointID": ep_id,
                "Gateway": gw,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": mac,
                "DriverOpts": Value::Null,
            }),
        );
    }
    let default = endpoints.iter().find(|(n, _)| n.name == DEFAULT_NETWORK);
    let field = |f: &dyn Fn(&Network, &Endpoint) -> Value, empty: Value| {
        default.map_or(empty, |(n, e)| f(n, e))
    };
    let running = !endpoints.is_empty();
    json!({
        "Bridge": "",
        "SandboxID": if running { endpoint_id("sandbox", c.id()) } else { String::new() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports(c, endpoints),
        "SandboxKey": if running { hoist_runtime::net::netns::path_for(c.id()).display().to_string() } else { String::new() },
        "SecondaryIPAddresses": Value::Null,
        "SecondaryIPv6Addresses": Value::Null,
        "EndpointID": field(&|n, _| json!(endpoint_id(&n.id, c.id())), json!("")),
        "Gateway": field(&|n, _| json!(n.gateway.to_string()), json!("")),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": field(&|_, e| json!(e.ip.to_string()), json!("")),
        "IPPrefixLen": field(&|n, _| json!(n.subnet.prefix_len()), json!(0)),
        "IPv6Gateway": "",
        "MacAddress": field(&|_, e| json!(e.mac), json!("")),
        "Networks": networks,
    })
}

/// `/dev/shm`'s `size=` mount option (`65536k`, `64m`, bytes) in bytes.
fn parse_shm_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_sizes_read_as_the_mount_option_says() {
        assert_eq!(parse_shm_size("65536k"), Some(64 << 20));
        assert_eq!(parse_shm_size("64m"), Some(64 << 20));
        assert_eq!(parse_shm_size("1G"), Some(1 << 30));
        assert_eq!(parse_shm_size("4096"), Some(4096));
        assert_eq!(parse_shm_size("big"), None);
    }
}
