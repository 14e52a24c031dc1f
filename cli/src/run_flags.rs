//! `hoist run` flags beyond the basic ones, parsed as docker's: `--mount`, `--tmpfs`,
//! `--device`, `--security-opt`, `--label`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{Context, Result, bail};
use hoist_runtime::net::sandbox::PortRequest;
use hoist_runtime::spec::{BindOptions, DeviceMapping, SeccompChoice, TmpfsMount};

pub use hoist_engine::containers::Mount;

fn truthy(v: Option<&str>, spec: &str, key: &str) -> Result<bool> {
    match v {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(other) => bail!("invalid mount {spec:?}: invalid value {other:?} for {key}"),
    }
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...` (docker's keys).
pub fn parse_mount(spec: &str) -> Result<Mount> {
    let (mut kind, mut source, mut target, mut read_only) = ("volume", None, None, false);
    let mut tmpfs_opts = Vec::new();
    let mut bind = BindOptions::default();
    let (mut no_copy, mut labels) = (false, BTreeMap::new());
    // Which type's options were given (docker refuses another type's: "field BindOptions must
    // not be specified").
    let mut option_kinds: Vec<(&str, &str)> = Vec::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        match (k.as_str(), v) {
            ("type", Some(t)) => {
                kind = match t {
                    "bind" => "bind",
                    "volume" => "volume",
                    "tmpfs" => "tmpfs",
                    _ => bail!("invalid mount {spec:?}: unknown type {t:?} (bind, volume, tmpfs)"),
                }
            }
            ("source" | "src", Some(s)) => source = Some(s.to_owned()),
            ("target" | "destination" | "dst", Some(d)) => target = Some(d.to_owned()),
            ("readonly" | "ro", v) => read_only = truthy(v, spec, &k)?,
            ("tmpfs-size", Some(s)) => {
                option_kinds.push(("tmpfs", "TmpfsOptions"));
                let bytes =
                    parse_size(s).with_context(|| format!("invalid mount {spec:?}: tmpfs-size"))?;
                tmpfs_opts.push(format!("size={bytes}"));
            }
            ("tmpfs-mode", Some(m)) => {
                option_kinds.push(("tmpfs", "TmpfsOptions"));
                let mode = u32::from_str_radix(m, 8)
                    .with_context(|| format!("invalid mount {spec:?}: tmpfs-mode {m:?}"))?;
                tmpfs_opts.push(format!("mode={mode:o}"));
            }
            ("bind-propagation", Some(p)) => {
                option_kinds.push(("bind", "BindOptions"));
                let p = p.to_ascii_lowercase();
                if !matches!(
                    p.as_str(),
                    "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                ) {
                    bail!("invalid mount {spec:?}: invalid propagation mode: {p}");
                }
                bind.propagation = Some(p);
            }
            ("bind-nonrecursive", v) => {
                option_kinds.push(("bind", "BindOptions"));
                bind.non_recursive = truthy(v, spec, &k)?;
            }
            ("volume-nocopy", v) => {
                option_kinds.push(("volume", "VolumeOptions"));
                no_copy = truthy(v, spec, &k)?;
            }
            ("volume-label", Some(l)) => {
                option_kinds.push(("volume", "VolumeOptions"));
                let (lk, lv) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(lk.to_owned(), lv.to_owned());
            }
            ("volume-driver", Some(d)) => {
                option_kinds.push(("volume", "VolumeOptions"));
                if d != "local" {
                    bail!(
                        "invalid mount {spec:?}: volume driver {d:?} is not available (hoist has the local driver)"
                    );
                }
            }
            ("volume-opt", Some(o)) => {
                option_kinds.push(("volume", "VolumeOptions"));
                bail!(
                    "invalid mount {spec:?}: volume-opt {o:?}: hoist's local volumes are directories and take no driver options"
                );
            }
            // docker accepts it for macOS's file sharing and ignores it on Linux.
            ("consistency", Some("consistent" | "cached" | "delegated" | "default")) => {}
            _ => bail!("invalid mount {spec:?}: unexpected key {k:?}"),
        }
    }
    if let Some((_, field)) = option_kinds.iter().find(|(k, _)| *k != kind) {
        bail!("invalid mount config for type {kind:?}: field {field} must not be specified");
    }
    let Some(destination) = target else {
        bail!("invalid mount {spec:?}: target is required");
    };
    if !destination.starts_with('/') {
        bail!("invalid mount {spec:?}: the target must be an absolute path");
    }
    let destination = destination.trim_end_matches('/').to_owned();
    if destination.is_empty() {
        bail!("invalid mount {spec:?}: the target can't be /");
    }
    Ok(match kind {
        "bind" => {
            let Some(s) = source else {
                bail!("invalid mount {spec:?}: source is required for a bind mount");
            };
            let source = std::path::absolute(&s)
                .with_context(|| format!("invalid mount {spec:?}: source {s:?}"))?;
            if !source.exists() {
                bail!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    source.display()
                );
            }
            Mount::Bind {
                source,
                destination,
                read_only,
                options: bind,
            }
        }
        "volume" => Mount::Volume {
            name: source,
            destination,
            read_only,
            no_copy,
            labels,
        },
        _ => {
            if source.is_some() {
                bail!("invalid mount {spec:?}: a tmpfs mount takes no source");
            }
            Mount::Tmpfs(TmpfsMount {
                destination,
                options: tmpfs_opts,
            })
        }
    })
}

/// A size as docker's `units.RAMInBytes`: a number with an optional b, k, m, g or t suffix
/// (binary multiples, an optional trailing `b`: `64m`, `1GB`).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.strip_suffix('b').unwrap_or(unit) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => bail!("invalid size {s:?}: unknown unit {unit:?}"),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .with_context(|| format!("invalid size {s:?}"))?;
    Ok((n * mult as f64) as u64)
}

/// `--tmpfs DEST[:OPTIONS]`.
pub fn parse_tmpfs(spec: &str) -> Result<TmpfsMount> {
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !dest.starts_with('/') || dest.trim_end_matches('/').is_empty() {
        bail!("invalid tmpfs {spec:?}: the destination must be an absolute path other than /");
    }
    Ok(TmpfsMount {
        destination: dest.trim_end_matches('/').to_owned(),
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`.
pub fn parse_device(spec: &str) -> Result<DeviceMapping> {
    let parts: Vec<&str> = spec.split(':').collect();
    let perms_ok = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, path, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms_ok(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if perms_ok(p) => (*h, *c, *p),
        _ => bail!("invalid device {spec:?}: want HOST[:CONTAINER][:PERMISSIONS]"),
    };
    if !path.starts_with('/') {
        bail!("invalid device {spec:?}: the container path must be absolute");
    }
    let meta = std::fs::metadata(host)
        .with_context(|| format!("error gathering device information for {host:?}"))?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        bail!("invalid device {spec:?}: {host} is not a device node");
    };
    let rdev = meta.rdev();
    Ok(DeviceMapping {
        path: path.to_owned(),
        kind: kind.to_owned(),
        major: libc_major(rdev),
        minor: libc_minor(rdev),
        file_mode: meta.mode() & 0o7777,
        permissions: permissions.to_owned(),
    })
}

/// The major number of a Linux `dev_t` (glibc's `gnu_dev_major`).
fn libc_major(dev: u64) -> i64 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff)) as i64
}

/// The minor number of a Linux `dev_t` (glibc's `gnu_dev_minor`).
fn libc_minor(dev: u64) -> i64 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as i64
}

/// What `--security-opt` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Security {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
}

/// `--security-opt no-new-privileges[=true|false]`, `seccomp=unconfined|PATH`; AppArmor and
/// SELinux options are accepted and have no effect (hoist applies neither).
pub fn parse_security(opts: &[String]) -> Result<Security> {
    let mut out = Security::default();
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
            ("seccomp", Some("unconfined")) => out.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("opening seccomp profile ({path})"))?;
                out.seccomp = SeccompChoice::Profile(text);
            }
            ("apparmor" | "label", Some(_)) => {}
            _ => bail!("invalid --security-opt: {o:?}"),
        }
    }
    Ok(out)
}

/// `-l KEY=VALUE` (or `KEY` for an empty value).
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: empty key");
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// One side of `-p`: a port or a range (`8000-8002`).
fn port_range(s: &str, what: &str) -> Result<(u16, u16)> {
    let one = |p: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("invalid {what}: {s}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                bail!("invalid {what}: {s}");
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` as docker reads it (`nat.ParsePortSpec`), with
/// ranges (`8000-8001:80-81`); no host port, or a host range for one container port, is any
/// free port. IPv4 addresses only.
pub fn parse_publish(spec: &str) -> Result<Vec<PortRequest>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if proto != "tcp" && proto != "udp" {
        bail!("invalid proto: {proto} (tcp or udp)");
    }
    if rest.starts_with('[') {
        bail!("invalid -p {spec:?}: IPv6 host addresses are not supported (IPv4 only)");
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => bail!("invalid -p {spec:?}: expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<std::net::Ipv4Addr>()
                .with_context(|| format!("invalid IP address: {ip}"))?,
        ),
    };
    let (c0, c1) = port_range(container, "containerPort")?;
    let host = if host.is_empty() {
        None
    } else {
        Some(port_range(host, "hostPort")?)
    };
    let n = c1 - c0;
    match host {
        Some((h0, h1)) if h1 - h0 != n && !(n == 0 && h1 > h0) => {
            bail!("invalid ranges specified for container and host ports: {spec}")
        }
        _ => {}
    }
    Ok((0..=n)
        .map(|i| PortRequest {
            host_ip,
            host_port: match host {
                // A host range for one container port: the first of it.
                Some((h0, h1)) if n == 0 && h1 > h0 => h0,
                Some((h0, _)) => h0 + i,
                None => 0,
            },
            container_port: c0 + i,
            protocol: proto.clone(),
        })
        .collect())
}

/// `-P`: every port the image exposes (`ExposedPorts`, `80/tcp`), on any free host port.
pub fn exposed_ports(image_config: &serde_json::Value) -> Vec<PortRequest> {
    image_config
        .pointer("/config/ExposedPorts")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some(PortRequest {
                host_ip: None,
                host_port: 0,
                container_port: port.parse().ok()?,
                protocol: proto.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_dockers() {
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=0755").unwrap(),
            Mount::Tmpfs(TmpfsMount {
                destination: "/t".into(),
                options: vec!["size=2097152".into(), "mode=755".into()]
            })
        );
        assert_eq!(
            parse_mount("source=data,target=/d,readonly").unwrap(),
            Mount::Volume {
                name: Some("data".into()),
                destination: "/d".into(),
                read_only: true,
                no_copy: false,
                labels: BTreeMap::new(),
            }
        );
        assert_eq!(
            parse_mount("type=bind,src=/,dst=/host,ro=false").unwrap(),
            Mount::Bind {
                source: "/".into(),
                destination: "/host".into(),
                read_only: false,
                options: BindOptions::default(),
            }
        );
        assert_eq!(
            parse_mount("type=bind,src=/,dst=/h,bind-propagation=RSHARED,bind-nonrecursive")
                .unwrap(),
            Mount::Bind {
                source: "/".into(),
                destination: "/h".into(),
                read_only: false,
                options: BindOptions {
                    propagation: Some("rshared".into()),
                    non_recursive: true
                },
            }
        );
        assert_eq!(
            parse_mount(
                "src=v,dst=/v,volume-nocopy,volume-label=a=b,volume-driver=local,consistency=cached"
            )
            .unwrap(),
            Mount::Volume {
                name: Some("v".into()),
                destination: "/v".into(),
                read_only: false,
                no_copy: true,
                labels: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            }
        );
        // Another type's options, unknown values, what hoist's local driver cannot do.
        for (bad, why) in [
            (
                "type=volume,dst=/x,bind-propagation=shared",
                "field BindOptions must not be specified",
            ),
            (
                "type=bind,src=/,dst=/x,volume-nocopy",
                "field VolumeOptions must not be specified",
            ),
            (
                "type=bind,src=/,dst=/x,tmpfs-size=1m",
                "field TmpfsOptions must not be specified",
            ),
            (
                "type=bind,src=/,dst=/x,bind-propagation=sideways",
                "invalid propagation mode",
            ),
            ("dst=/x,volume-driver=nfs", "is not available"),
            ("dst=/x,volume-opt=type=tmpfs", "take no driver options"),
            ("dst=/x,consistency=sometimes", "unexpected key"),
        ] {
            let e = parse_mount(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        for bad in [
            "type=bind,dst=/x",
            "type=bind,src=/no/such/dir,dst=/x",
            "type=nfs,dst=/x",
            "src=a",
            "dst=rel",
            "type=tmpfs,src=a,dst=/x",
            "dst=/x,bogus=1",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tmpfs_devices_security_labels() {
        assert_eq!(
            parse_tmpfs("/s:size=1m,mode=700").unwrap(),
            TmpfsMount {
                destination: "/s".into(),
                options: vec!["size=1m".into(), "mode=700".into()]
            }
        );
        assert!(parse_tmpfs("rel").is_err());
        let d = parse_device("/dev/null:/dev/mynull:rw").unwrap();
        assert_eq!((d.kind.as_str(), d.major, d.minor), ("c", 1, 3));
        assert_eq!(
            (d.path.as_str(), d.permissions.as_str()),
            ("/dev/mynull", "rw")
        );
        assert_eq!(parse_device("/dev/zero").unwrap().minor, 5);
        assert!(parse_device("/etc/passwd").is_err());
        let s = parse_security(&["no-new-privileges".into(), "seccomp=unconfined".into()]).unwrap();
        assert!(s.no_new_privileges);
        assert_eq!(s.seccomp, SeccompChoice::Unconfined);
        assert!(parse_security(&["bogus".into()]).is_err());
        assert!(parse_security(&["seccomp=/no/such.json".into()]).is_err());
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("12x").is_err());
        let l = parse_labels(&["a=b".into(), "c".into()]).unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["c"], "");
    }

    #[test]
    fn publish_specs_as_docker_reads_them() {
        let p = |s| parse_publish(s).unwrap();
        let one = |ip: Option<[u8; 4]>, h, c, proto: &str| PortRequest {
            host_ip: ip.map(std::net::Ipv4Addr::from),
            host_port: h,
            container_port: c,
            protocol: proto.into(),
        };
        assert_eq!(p("80"), [one(None, 0, 80, "tcp")]);
        assert_eq!(p("8080:80"), [one(None, 8080, 80, "tcp")]);
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            [one(Some([127, 0, 0, 1]), 8080, 80, "udp")]
        );
        assert_eq!(
            p("127.0.0.1::80"),
            [one(Some([127, 0, 0, 1]), 0, 80, "tcp")]
        );
        assert_eq!(
            p("8000-8001:80-81"),
            [one(None, 8000, 80, "tcp"), one(None, 8001, 81, "tcp")]
        );
        assert_eq!(p("9000-9009:80"), [one(None, 9000, 80, "tcp")]);
        for (bad, err) in [
            ("abc", "invalid containerPort: abc"),
            ("x:80", "invalid hostPort: x"),
            ("8000-8002:80-81", "invalid ranges"),
            ("80/sctp", "invalid proto: sctp"),
            ("1.2.3:80:80", "invalid IP address: 1.2.3"),
            ("[::1]:80:80", "IPv6"),
            ("0", "invalid containerPort: 0"),
        ] {
            let e = format!("{:#}", parse_publish(bad).unwrap_err());
            assert!(e.contains(err), "{bad}: {e}");
        }
    }

    #[test]
    fn publish_all_takes_the_exposed_ports() {
        let cfg = serde_json::json!({"config": {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}});
        let mut got = exposed_ports(&cfg);
        got.sort_by_key(|p| p.container_port);
        assert_eq!(
            got.iter()
                .map(|p| (p.container_port, p.protocol.as_str(), p.host_port))
                .collect::<Vec<_>>(),
            [(53, "udp", 0), (80, "tcp", 0)]
        );
        assert!(exposed_ports(&serde_json::json!({})).is_empty());
    }
}

/// `run`'s and `create`'s `--restart` and health-check flags.
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Restart policy when the container exits: no, always, unless-stopped, on-failure[:N]
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(
        long = "health-retries",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries towards unstable
    /// (ms|s|m|h)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
}

impl PolicyArgs {
    /// `--restart`.
    pub fn restart_policy(&self) -> Result<hoist_runtime::container::restart::RestartPolicy> {
        Ok(hoist_runtime::container::restart::RestartPolicy::parse(
            &self.restart,
        )?)
    }

    /// The flags' health check (`None` when no flag is given), checked as docker checks it.
    pub fn healthcheck(&self) -> Result<Option<hoist_runtime::container::health::HealthConfig>> {
        use hoist_runtime::container::health::HealthConfig;
        let dur = |flag: &str, v: &Option<String>| -> Result<u64> {
            let Some(v) = v else { return Ok(0) };
            let ns = hoist_builder::dockerfile::parse_go_duration(v).map_err(|e| {
                anyhow::anyhow!("invalid argument {v:?} for \"--{flag}\" flag: {e}")
            })?;
            if ns < 0 {
                anyhow::bail!("--{flag} cannot be negative");
            }
            if ns != 0 && ns < 1_000_000 {
                let what = match flag {
                    "health-interval" => "Interval",
                    "health-timeout" => "Timeout",
                    _ => "StartPeriod",
                };
                anyhow::bail!("{what} in Healthcheck cannot be less than 1ms");
            }
            Ok(u64::try_from(ns).unwrap_or(u64::MAX))
        };
        let interval = dur("health-interval", &self.health_interval)?;
        let timeout = dur("health-timeout", &self.health_timeout)?;
        let start_period = dur("health-start-period", &self.health_start_period)?;
        let retries = self.health_retries.unwrap_or(0);
        let any = self.health_cmd.as_deref().is_some_and(|c| !c.is_empty())
            || interval != 0
            || timeout != 0
            || start_period != 0
            || retries != 0;
        if self.no_healthcheck {
            if any {
                anyhow::bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig {
                test: vec!["NONE".to_owned()],
                ..HealthConfig::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        if retries < 0 {
            anyhow::bail!("--health-retries cannot be negative");
        }
        Ok(Some(HealthConfig {
            test: self
                .health_cmd
                .iter()
                .filter(|c| !c.is_empty())
                .flat_map(|c| ["CMD-SHELL".to_owned(), c.clone()])
                .collect(),
            interval,
            timeout,
            start_period,
            retries: u32::try_from(retries).unwrap_or(u32::MAX),
        }))
    }
}
