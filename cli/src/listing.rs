//! The rows of `ps`, `images` and `volume ls` as docker's formatter sees them (its field names
//! and string values, for `--format`), and their `--filter`s.

use anyhow::Result;
use hoist_runtime::container::{self, Container, Status};
use hoist_runtime::net::store::{Endpoint, Network};
use serde_json::{Value, json};

use crate::filter::Filters;
use crate::images_format::{human_ago, human_size, short_id};

/// `ps --filter` keys.
pub const PS_FILTERS: &[&str] = &[
    "status", "name", "label", "ancestor", "id", "exited", "before", "since", "health",
];
/// `images --filter` keys.
pub const IMAGE_FILTERS: &[&str] = &["dangling", "reference", "label", "before", "since"];
/// `volume ls --filter` keys.
pub const VOLUME_FILTERS: &[&str] = &["name", "dangling", "label", "driver"];

/// `ps`'s header names, by field.
pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// `images`' header names, by field.
pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

/// `volume ls`' header names, by field.
pub const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

/// Go's `time.Time.String()` in UTC (`2024-05-01 10:00:00 +0000 UTC`), as docker's `CreatedAt`.
pub fn go_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let s = container::rfc3339(t);
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

/// `k=v,k2=v2` of a labels object, keys sorted.
pub fn labels_string(labels: Option<&serde_json::Map<String, Value>>) -> String {
    let mut kv: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    kv.sort();
    kv.join(",")
}

/// The docker formatter's fields of one container. `size` is `ps -s`'s column (writable layer,
/// and with the image: virtual).
/// `ps`'s PORTS: each published port (`0.0.0.0:8080->80/tcp`), then the image's other exposed
/// ports (`443/tcp`), sorted as docker sorts them (by container port).
pub fn ps_ports(c: &Container, endpoints: &[(Network, Endpoint)]) -> String {
    let ports = hoist_engine::inspect::ports(c, endpoints);
    let mut items: Vec<(u16, String, String)> = Vec::new();
    for (key, v) in &ports {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let n: u16 = port.parse().unwrap_or(0);
        match v.as_array() {
            Some(bindings) => {
                for b in bindings {
                    let ip = b["HostIp"].as_str().unwrap_or("0.0.0.0");
                    let hp = b["HostPort"].as_str().unwrap_or("");
                    items.push((n, proto.to_owned(), format!("{ip}:{hp}->{port}/{proto}")));
                }
            }
            None => items.push((n, proto.to_owned(), format!("{port}/{proto}"))),
        }
    }
    items.sort();
    items
        .into_iter()
        .map(|(_, _, s)| s)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ps_row(
    c: &Container,
    no_trunc: bool,
    now: i64,
    size: Option<(u64, u64)>,
    ports: &str,
) -> Value {
    let volumes: Vec<&str> = c
        .config
        .mounts
        .iter()
        .filter(|m| m.kind == "volume")
        .filter_map(|m| m.name.as_deref())
        .collect();
    let mounts: Vec<String> = c
        .config
        .mounts
        .iter()
        .map(|m| {
            m.name
                .clone()
                .unwrap_or_else(|| m.source.display().to_string())
        })
        .collect();
    json!({
        "ID": if no_trunc { c.id() } else { c.short_id() },
        "Image": c.config.image,
        "Command": crate::containers::ps_command(c, no_trunc),
        "CreatedAt": go_time(c.config.created_unix),
        "RunningFor": format!("{} ago", container::human_duration(now - c.config.created_unix)),
        "Ports": ports,
        "State": c.state.status_name(),
        "Status": c.state.describe(now),
        "Size": size.map_or_else(|| "0B".to_owned(), |(rw, virt)| format!("{} (virtual {})", human_size(rw, 3), human_size(virt, 3))),
        "Names": c.name(),
        "Labels": labels_string(Some(&hoist_engine::inspect::container_labels(c))),
        "Mounts": mounts.join(","),
        "Networks": networks_of(c),
        "LocalVolumes": volumes.len().to_string(),
        "Platform": Value::Null,
    })
}

/// `ps`'s NETWORKS: the networks the container is configured for, sorted, comma-separated
/// (docker's: the keys of its `NetworkSettings.Networks`, none for `container:NAME`).
fn networks_of(c: &Container) -> String {
    let o = &c.config.options;
    if c.config.network_mode.starts_with("container:") {
        return String::new();
    }
    if o.networks.is_empty() {
        // A bridge container disconnected from everything is on none.
        if o.network == hoist_runtime::spec::Network::Bridge {
            return String::new();
        }
        return c.config.network_mode.clone();
    }
    let mut names: Vec<&str> = o.networks.iter().map(|r| r.network.as_str()).collect();
    names.sort();
    names.join(",")
}

/// Whether container `c` passes `ps`'s filters. `image_matches(c, ancestor)` says whether the
/// container's image is that image (or one built on it, as far as hoist knows: by name or id).
pub fn ps_keep(f: &Filters, c: &Container) -> Result<bool> {
    let exited_ok = if f.has("exited") {
        let mut any = false;
        for v in f.values("exited") {
            let code: i32 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid filter 'exited={v}': an exit code"))?;
            any |= c.state.status == Status::Exited && c.state.exit_code.unwrap_or(0) == code;
        }
        any
    } else {
        true
    };
    for v in f.values("status") {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&v.as_str())
        {
            anyhow::bail!(
                "invalid filter 'status={v}': one of created, restarting, running, removing, paused, exited or dead"
            );
        }
    }
    for v in f.values("health") {
        if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
            anyhow::bail!("unrecognised filter value for health: {v}");
        }
    }
    let health = container::health::filter_status(&c.state);
    let image = &c.config.image;
    let image_id = c
        .config
        .image_id
        .strip_prefix("sha256:")
        .unwrap_or(&c.config.image_id);
    Ok(exited_ok
        && f.any("status", |v| v == c.state.status_name())
        && f.any("health", |v| v == health)
        && f.matches("name", c.name())?
        && f.any("id", |v| c.id().starts_with(v))
        && f.any("ancestor", |v| {
            let v_id = v.strip_prefix("sha256:").unwrap_or(v);
            image == v
                || image.split_once(':').is_some_and(|(r, _)| r == v)
                || format!("{v}:latest") == *image
                || (v_id.len() >= 4 && image_id.starts_with(v_id))
        })
        && f.labels(Some(&hoist_engine::inspect::container_labels(c))))
}

/// The docker formatter's fields of one `images` row.
pub fn image_row(
    r: &hoist_storage::images::ImageSummary,
    no_trunc: bool,
    now: i64,
    size: u64,
) -> Value {
    json!({
        "ID": if no_trunc { r.id.to_string() } else { short_id(r.id.hex()).to_owned() },
        "Repository": r.repository,
        "Tag": r.tag.clone().unwrap_or_else(|| "<none>".to_owned()),
        "Digest": r.digest.to_string(),
        "CreatedSince": human_ago(r.created_unix, now),
        "CreatedAt": r.created_unix.map_or_else(String::new, go_time),
        "Size": human_size(size, 3),
        "Containers": "N/A",
        "SharedSize": "N/A",
        "UniqueSize": "N/A",
        "VirtualSize": human_size(size, 4),
    })
}

/// The docker formatter's fields of one `volume ls` row.
pub fn volume_row(v: &hoist_runtime::volume::Volume) -> Value {
    let labels: serde_json::Map<String, Value> = v
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Scope": v.scope,
        "Mountpoint": v.mountpoint,
        "Labels": labels_string(Some(&labels)),
        "Links": "N/A",
        "Size": "N/A",
        "Availability": "N/A",
        "Group": "N/A",
        "Status": "N/A",
    })
}

/// Whether volume `v` passes `volume ls`'s filters; `used` says whether a container uses it.
pub fn volume_keep(f: &Filters, v: &hoist_runtime::volume::Volume, used: bool) -> Result<bool> {
    let labels: serde_json::Map<String, Value> = v
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    Ok(f.bool("dangling")?.is_none_or(|d| d != used)
        && f.matches("name", &v.name)?
        && f.any("driver", |d| v.driver == d)
        && f.labels(Some(&labels)))
}
