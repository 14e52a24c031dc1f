//! `hoist pod run`'s manifest: a Kubernetes `v1` Pod, of which hoist takes a subset.
//!
//! [`parse`] reads one YAML document into a [`PodSpec`] and checks it. The fields hoist takes:
//! `apiVersion` (`v1`), `kind` (`Pod`), `metadata.name`, `metadata.labels`; `spec.containers[]`
//! and `spec.initContainers[]` with `name`, `image`, `command`, `args`, `env` (`name`, `value`),
//! `workingDir`, `volumeMounts` (`name`, `mountPath`, `readOnly`) and `ports` (`containerPort`,
//! `hostPort`, `protocol`, `hostIP`, `name`); `spec.volumes[]` with `name` and `emptyDir: {}` or
//! `hostPath` (`path`, `type`); `spec.restartPolicy`; `spec.hostname`.
//!
//! Any other field is an error that names it by its path
//! (`pod.yaml: spec.containers[1].livenessProbe: hoist does not implement this field`), never
//! ignored: so are `metadata.namespace`, `status`, `env[].valueFrom`, `emptyDir.medium`. Every
//! error starts with the file's name and, but for YAML syntax errors, the field's path.
//!
//! Choices, as Kubernetes makes them where it has a rule:
//! - a field set to `null` (`args:` with nothing after it) is as if it were absent.
//! - strings are YAML strings: `value: 8080` or `app: true` is an error (quote it).
//! - `restartPolicy` defaults to `Always`; a port's `protocol` to `TCP` (`SCTP` is refused).
//! - a volume with neither `emptyDir` nor `hostPath` is an `emptyDir`; with both, an error.
//! - `hostPath.path` is absolute; `hostPath.type` is absent, `""` or `Directory`: hoist binds an
//!   existing directory, so the other types (`DirectoryOrCreate`, `File`, `Socket`, ...) are
//!   refused rather than half implemented.
//! - `hostPort: 0` is no host port; a `hostIP` (IPv4, `""` is none) needs a host port. A host
//!   port is published once per pod and protocol, whatever its `hostIP` (Kubernetes' rule).
//! - an env entry without `value` has the empty value; its name is not empty and has no `=`.
//! - `workingDir: ""` is no working directory; any other is absolute.
//! - a `mountPath` is absolute, not `/`, and unique within its container.
//! - the pod's, containers', volumes' names and `hostname` are DNS-1123 labels
//!   (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters); container names are unique across
//!   init and regular containers, volume names among volumes; label keys and values and port
//!   names follow Kubernetes' syntax.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// A checked Pod manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// `metadata.name`, a DNS-1123 label.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.hostname`; the pod's name when `None`.
    pub hostname: Option<String>,
    /// `spec.restartPolicy`.
    pub restart_policy: RestartPolicy,
    /// `spec.initContainers`, run to completion, in order, before the others.
    pub init_containers: Vec<ContainerSpec>,
    /// `spec.containers`, at least one.
    pub containers: Vec<ContainerSpec>,
    /// `spec.volumes`.
    pub volumes: Vec<VolumeSpec>,
}

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Its manifest spelling: `Always`, `OnFailure`, `Never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of `spec.containers` or `spec.initContainers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// A DNS-1123 label, unique in the pod.
    pub name: String,
    /// Not empty.
    pub image: String,
    /// `command`: replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// `args`: replaces the image's command when not empty.
    pub args: Vec<String>,
    /// `env`, in order (a later entry of the same name wins, as in Kubernetes).
    pub env: Vec<(String, String)>,
    /// `workingDir`, absolute.
    pub working_dir: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
    pub ports: Vec<PortSpec>,
}

/// One of a container's `volumeMounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// One of the pod's [`VolumeSpec::name`]s.
    pub name: String,
    /// Absolute, not `/`, unique in its container.
    pub mount_path: String,
    pub read_only: bool,
}

/// One of a container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub container_port: u16,
    /// `hostPort` (`0` is `None`): unique per protocol in the pod.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
    /// `hostIP`: only with a `host_port`.
    pub host_ip: Option<Ipv4Addr>,
    /// `name`, informational.
    pub name: Option<String>,
}

/// A port's `protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// Its manifest spelling: `TCP` or `UDP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of `spec.volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// A DNS-1123 label, unique among the pod's volumes.
    pub name: String,
    pub source: VolumeSource,
}

/// What a volume is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// `emptyDir: {}`: empty when the pod starts, removed with it.
    EmptyDir,
    /// `hostPath.path`: an existing host directory, absolute.
    HostPath(PathBuf),
}

/// Why a manifest was refused. Each message starts with the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodSpecError {
    /// Not YAML (the message has the line and column).
    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: no YAML document, expected a v1 Pod")]
    Empty { file: String },
    #[error("{file}: holds {count} YAML documents, hoist pod run takes one Pod")]
    MultipleDocuments { file: String, count: usize },
    #[error("{file}: expected a v1 Pod (a mapping), found {found}")]
    NotAMapping { file: String, found: &'static str },
    /// A field hoist does not take, at `path` (`spec.containers[1].livenessProbe`).
    #[error("{file}: {path}: hoist does not implement this field")]
    Unsupported { file: String, path: String },
    /// A field's value refused, at `path`.
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
}

impl PodSpecError {
    /// The path of the field the error is about, when it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            PodSpecError::Unsupported { path, .. } | PodSpecError::Invalid { path, .. } => {
                Some(path)
            }
            _ => None,
        }
    }
}

type Result<T, E = PodSpecError> = std::result::Result<T, E>;

/// Reads `text`, the manifest `file` (its name, for the messages), into a checked [`PodSpec`].
pub fn parse(text: &str, file: &str) -> Result<PodSpec> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let mut options = serde_saphyr::RenderOptions::new(&serde_saphyr::UserMessageFormatter);
        options.snippets = serde_saphyr::SnippetMode::Off;
        PodSpecError::Yaml {
            file: file.to_owned(),
            message: e.render_with_options(options),
        }
    })?;
    match docs.as_slice() {
        [] => Err(PodSpecError::Empty {
            file: file.to_owned(),
        }),
        [doc] => Walker { file }.pod(doc),
        more => Err(PodSpecError::MultipleDocuments {
            file: file.to_owned(),
            count: more.len(),
        }),
    }
}

const POD_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name", "labels"];
const SPEC_FIELDS: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "restartPolicy",
    "hostname",
];
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "env",
    "workingDir",
    "volumeMounts",
    "ports",
];
const ENV_FIELDS: &[&str] = &["name", "value"];
const MOUNT_FIELDS: &[&str] = &["name", "mountPath", "readOnly"];
const PORT_FIELDS: &[&str] = &["containerPort", "hostPort", "protocol", "hostIP", "name"];
const VOLUME_FIELDS: &[&str] = &["name", "emptyDir", "hostPath"];
const HOST_PATH_FIELDS: &[&str] = &["path", "type"];

const LABEL_RULE: &str = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/// Walks the manifest's generic value, the path of each field at hand, into the typed spec.
struct Walker<'a> {
    file: &'a str,
}

impl Walker<'_> {
    fn invalid(&self, path: &str, message: impl Into<String>) -> PodSpecError {
        PodSpecError::Invalid {
            file: self.file.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn pod(&self, doc: &Value) -> Result<PodSpec> {
        let Value::Object(top) = doc else {
            return Err(PodSpecError::NotAMapping {
                file: self.file.to_owned(),
                found: what(doc),
            });
        };
        // What the document is, before what it holds: a Deployment's fields are not the point.
        let api = self.required_string(top, "", "apiVersion")?;
        if api != "v1" {
            return Err(self.invalid(
                "apiVersion",
                format!("{api:?} is not supported, hoist runs apiVersion v1 Pods"),
            ));
        }
        let kind = self.required_string(top, "", "kind")?;
        if kind != "Pod" {
            return Err(self.invalid(
                "kind",
                format!("{kind:?} is not supported, hoist pod run takes kind Pod"),
            ));
        }
        let top = self.mapping(doc, "", POD_FIELDS)?;

        let metadata =
            get(top, "metadata").ok_or_else(|| self.invalid("metadata.name", "required"))?;
        let metadata = self.mapping(metadata, "metadata", METADATA_FIELDS)?;
        let name = self.required_string(metadata, "metadata", "name")?;
        self.dns_label(&name, "metadata.name")?;
        let labels = self.labels(metadata)?;

        let spec = get(top, "spec").ok_or_else(|| self.invalid("spec", "required"))?;
        let spec = self.mapping(spec, "spec", SPEC_FIELDS)?;
        let hostname = self
            .string(spec, "spec", "hostname")?
            .filter(|h| !h.is_empty());
        if let Some(h) = &hostname {
            self.dns_label(h, "spec.hostname")?;
        }
        let restart_policy = match self.string(spec, "spec", "restartPolicy")?.as_deref() {
            None => RestartPolicy::default(),
            Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(other) => {
                return Err(self.invalid(
                    "spec.restartPolicy",
                    format!("{other:?} is not one of Always, OnFailure, Never"),
                ));
            }
        };

        let volumes = self.volumes(spec)?;
        let init_containers = self.containers(spec, "initContainers", &volumes)?;
        let containers = self.containers(spec, "containers", &volumes)?;
        if containers.is_empty() {
            return Err(self.invalid("spec.containers", "a pod needs at least one container"));
        }
        self.unique_container_names(&init_containers, &containers)?;
        self.unique_host_ports(&init_containers, &containers)?;

        Ok(PodSpec {
            name,
            labels,
            hostname,
            restart_policy,
            init_containers,
            containers,
            volumes,
        })
    }

    fn labels(&self, metadata: &Map<String, Value>) -> Result<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        let Some(v) = get(metadata, "labels") else {
            return Ok(labels);
        };
        let Value::Object(m) = v else {
            return Err(self.invalid(
                "metadata.labels",
                format!("expected a mapping, found {}", what(v)),
            ));
        };
        for (key, value) in m {
            let path = format!("metadata.labels.{key}");
            if !is_label_key(key) {
                return Err(self.invalid(
                    &path,
                    format!(
                        "{key:?} is not a valid label key: an optional DNS subdomain and '/', then letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
                    ),
                ));
            }
            let value = self.as_string(value, &path)?;
            if !value.is_empty() && !is_label_name(&value) {
                return Err(self.invalid(
                    &path,
                    format!(
                        "{value:?} is not a valid label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
                    ),
                ));
            }
            labels.insert(key.clone(), value);
        }
        Ok(labels)
    }

    fn volumes(&self, spec: &Map<String, Value>) -> Result<Vec<VolumeSpec>> {
        let mut volumes: Vec<VolumeSpec> = Vec::new();
        for (i, v) in self.list(spec, "spec", "volumes")?.iter().enumerate() {
            let path = format!("spec.volumes[{i}]");
            let m = self.mapping(v, &path, VOLUME_FIELDS)?;
            let name = self.required_string(m, &path, "name")?;
            let name_path = format!("{path}.name");
            self.dns_label(&name, &name_path)?;
            if let Some(j) = volumes.iter().position(|o| o.name == name) {
                return Err(self.invalid(
                    &name_path,
                    format!("{name:?} is already the name of spec.volumes[{j}]"),
                ));
            }
            let empty_dir = get(m, "emptyDir");
            let host_path = get(m, "hostPath");
            let source = match (empty_dir, host_path) {
                (Some(_), Some(_)) => {
                    return Err(self.invalid(
                        &path,
                        "has both emptyDir and hostPath, a volume has one source",
                    ));
                }
                (Some(e), None) => {
                    self.mapping(e, &format!("{path}.emptyDir"), &[])?;
                    VolumeSource::EmptyDir
                }
                (None, Some(h)) => VolumeSource::HostPath(self.host_path(h, &path)?),
                (None, None) => VolumeSource::EmptyDir,
            };
            volumes.push(VolumeSpec { name, source });
        }
        Ok(volumes)
    }

    fn host_path(&self, v: &Value, volume_path: &str) -> Result<PathBuf> {
        let path = format!("{volume_path}.hostPath");
        let m = self.mapping(v, &path, HOST_PATH_FIELDS)?;
        let dir = self.required_string(m, &path, "path")?;
        if !dir.starts_with('/') {
            return Err(self.invalid(
                &format!("{path}.path"),
                format!("{dir:?} is not an absolute path"),
            ));
        }
        match self.string(m, &path, "type")?.as_deref() {
            None | Some("" | "Directory") => Ok(PathBuf::from(dir)),
            Some(other) => Err(self.invalid(
                &format!("{path}.type"),
                format!(
                    "{other:?} is not supported, hoist binds an existing directory (type Directory, or none)"
                ),
            )),
        }
    }

    fn containers(
        &self,
        spec: &Map<String, Value>,
        field: &str,
        volumes: &[VolumeSpec],
    ) -> Result<Vec<ContainerSpec>> {
        self.list(spec, "spec", field)?
            .iter()
            .enumerate()
            .map(|(i, v)| self.container(v, &format!("spec.{field}[{i}]"), volumes))
            .collect()
    }

    fn container(&self, v: &Value, path: &str, volumes: &[VolumeSpec]) -> Result<ContainerSpec> {
        let m = self.mapping(v, path, CONTAINER_FIELDS)?;
        let name = self.required_string(m, path, "name")?;
        self.dns_label(&name, &format!("{path}.name"))?;
        let image = self.required_string(m, path, "image")?;
        if image.trim().is_empty() {
            return Err(self.invalid(&format!("{path}.image"), "must not be empty"));
        }
        let command = self.strings(m, path, "command")?;
        let args = self.strings(m, path, "args")?;

        let mut env = Vec::new();
        for (i, e) in self.list(m, path, "env")?.iter().enumerate() {
            let env_path = format!("{path}.env[{i}]");
            let e = self.mapping(e, &env_path, ENV_FIELDS)?;
            let name = self.required_string(e, &env_path, "name")?;
            if name.is_empty() || name.contains('=') {
                return Err(self.invalid(
                    &format!("{env_path}.name"),
                    format!("{name:?} is not a variable name: not empty, without '='"),
                ));
            }
            let value = self.string(e, &env_path, "value")?.unwrap_or_default();
            env.push((name, value));
        }

        let working_dir = self
            .string(m, path, "workingDir")?
            .filter(|w| !w.is_empty());
        if let Some(w) = &working_dir
            && !w.starts_with('/')
        {
            return Err(self.invalid(
                &format!("{path}.workingDir"),
                format!("{w:?} is not an absolute path"),
            ));
        }

        let mut volume_mounts: Vec<VolumeMount> = Vec::new();
        for (i, v) in self.list(m, path, "volumeMounts")?.iter().enumerate() {
            let mount_path = format!("{path}.volumeMounts[{i}]");
            let mount = self.volume_mount(v, &mount_path, volumes)?;
            if let Some(j) = volume_mounts
                .iter()
                .position(|o| o.mount_path == mount.mount_path)
            {
                return Err(self.invalid(
                    &format!("{mount_path}.mountPath"),
                    format!(
                        "{:?} is already mounted by {path}.volumeMounts[{j}]",
                        mount.mount_path
                    ),
                ));
            }
            volume_mounts.push(mount);
        }

        let ports = self
            .list(m, path, "ports")?
            .iter()
            .enumerate()
            .map(|(i, v)| self.port(v, &format!("{path}.ports[{i}]")))
            .collect::<Result<_>>()?;

        Ok(ContainerSpec {
            name,
            image,
            command,
            args,
            env,
            working_dir,
            volume_mounts,
            ports,
        })
    }

    fn volume_mount(&self, v: &Value, path: &str, volumes: &[VolumeSpec]) -> Result<VolumeMount> {
        let m = self.mapping(v, path, MOUNT_FIELDS)?;
        let name = self.required_string(m, path, "name")?;
        if !volumes.iter().any(|v| v.name == name) {
            return Err(self.invalid(
                &format!("{path}.name"),
                format!("no volume {name:?} in spec.volumes"),
            ));
        }
        let mount_path = self.required_string(m, path, "mountPath")?;
        if !mount_path.starts_with('/') {
            return Err(self.invalid(
                &format!("{path}.mountPath"),
                format!("{mount_path:?} is not an absolute path"),
            ));
        }
        if mount_path.trim_end_matches('/').is_empty() {
            return Err(self.invalid(
                &format!("{path}.mountPath"),
                "a volume cannot be mounted on /",
            ));
        }
        let read_only = self.boolean(m, path, "readOnly")?.unwrap_or(false);
        Ok(VolumeMount {
            name,
            mount_path,
            read_only,
        })
    }

    fn port(&self, v: &Value, path: &str) -> Result<PortSpec> {
        let m = self.mapping(v, path, PORT_FIELDS)?;
        let container_port = match get(m, "containerPort") {
            Some(p) => self.port_number(p, &format!("{path}.containerPort"), false)?,
            None => return Err(self.invalid(&format!("{path}.containerPort"), "required")),
        };
        let host_port = match get(m, "hostPort") {
            Some(p) => Some(self.port_number(p, &format!("{path}.hostPort"), true)?),
            None => None,
        }
        .filter(|&p| p != 0);
        let protocol = match self.string(m, path, "protocol")?.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(other) => {
                return Err(self.invalid(
                    &format!("{path}.protocol"),
                    format!("{other:?} is not supported, hoist publishes TCP or UDP"),
                ));
            }
        };
        let host_ip = match self.string(m, path, "hostIP")?.as_deref() {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                self.invalid(
                    &format!("{path}.hostIP"),
                    format!("{ip:?} is not an IPv4 address"),
                )
            })?),
        };
        if host_ip.is_some() && host_port.is_none() {
            return Err(self.invalid(
                &format!("{path}.hostIP"),
                "set without a hostPort, it would publish nothing",
            ));
        }
        let name = self.string(m, path, "name")?;
        if let Some(n) = &name
            && !is_port_name(n)
        {
            return Err(self.invalid(
                &format!("{path}.name"),
                format!(
                    "{n:?} is not a valid port name: lowercase letters, digits and '-', at least one letter, no '-' at either end nor two in a row, at most 15 characters"
                ),
            ));
        }
        Ok(PortSpec {
            container_port,
            host_port,
            protocol,
            host_ip,
            name,
        })
    }

    fn unique_container_names(
        &self,
        init_containers: &[ContainerSpec],
        containers: &[ContainerSpec],
    ) -> Result<()> {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (c, path) in with_paths(init_containers, containers) {
            if let Some(first) = seen.get(c.name.as_str()) {
                return Err(self.invalid(
                    &format!("{path}.name"),
                    format!("{:?} is already the name of {first}", c.name),
                ));
            }
            seen.insert(&c.name, path);
        }
        Ok(())
    }

    fn unique_host_ports(
        &self,
        init_containers: &[ContainerSpec],
        containers: &[ContainerSpec],
    ) -> Result<()> {
        let mut seen: HashMap<(u16, Protocol), String> = HashMap::new();
        for (c, path) in with_paths(init_containers, containers) {
            for (i, p) in c.ports.iter().enumerate() {
                let Some(host_port) = p.host_port else {
                    continue;
                };
                let port_path = format!("{path}.ports[{i}]");
                if let Some(first) = seen.get(&(host_port, p.protocol)) {
                    return Err(self.invalid(
                        &format!("{port_path}.hostPort"),
                        format!("{host_port}/{} is already published by {first}", p.protocol),
                    ));
                }
                seen.insert((host_port, p.protocol), port_path);
            }
        }
        Ok(())
    }

    // The generic value's accessors: `path` is the mapping's, `key` the field's.

    /// `v` as a mapping of only the `known` fields.
    fn mapping<'v>(
        &self,
        v: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Result<&'v Map<String, Value>> {
        let Value::Object(m) = v else {
            return Err(self.invalid(path, format!("expected a mapping, found {}", what(v))));
        };
        if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(PodSpecError::Unsupported {
                file: self.file.to_owned(),
                path: join(path, k),
            });
        }
        Ok(m)
    }

    fn as_string(&self, v: &Value, path: &str) -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(_) | Value::Bool(_) => Err(self.invalid(
                path,
                format!("expected a string, found {} (quote it)", what(v)),
            )),
            _ => Err(self.invalid(path, format!("expected a string, found {}", what(v)))),
        }
    }

    fn string(&self, m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<String>> {
        get(m, key)
            .map(|v| self.as_string(v, &join(path, key)))
            .transpose()
    }

    fn required_string(&self, m: &Map<String, Value>, path: &str, key: &str) -> Result<String> {
        self.string(m, path, key)?
            .ok_or_else(|| self.invalid(&join(path, key), "required"))
    }

    fn boolean(&self, m: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>> {
        match get(m, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.invalid(
                &join(path, key),
                format!("expected true or false, found {}", what(v)),
            )),
        }
    }

    /// The list at `key`, empty when absent.
    fn list<'v>(&self, m: &'v Map<String, Value>, path: &str, key: &str) -> Result<&'v [Value]> {
        match get(m, key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.invalid(
                &join(path, key),
                format!("expected a list, found {}", what(v)),
            )),
        }
    }

    fn strings(&self, m: &Map<String, Value>, path: &str, key: &str) -> Result<Vec<String>> {
        let list_path = join(path, key);
        match get(m, key) {
            Some(v @ Value::String(_)) => Err(self.invalid(
                &list_path,
                format!("expected a list of strings, found {}", what(v)),
            )),
            _ => self
                .list(m, path, key)?
                .iter()
                .enumerate()
                .map(|(i, v)| self.as_string(v, &format!("{list_path}[{i}]")))
                .collect(),
        }
    }

    fn port_number(&self, v: &Value, path: &str, zero_is_none: bool) -> Result<u16> {
        let Value::Number(n) = v else {
            return Err(self.invalid(
                path,
                format!("expected a port number (1 to 65535), found {}", what(v)),
            ));
        };
        match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) if p != 0 || zero_is_none => Ok(p),
            _ => Err(self.invalid(path, format!("{n} is not a port number (1 to 65535)"))),
        }
    }

    fn dns_label(&self, name: &str, path: &str) -> Result<()> {
        if is_dns_label(name) {
            Ok(())
        } else {
            Err(self.invalid(path, format!("{name:?} is not a valid name: {LABEL_RULE}")))
        }
    }
}

/// The field, null as absent.
fn get<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The pod's containers, init ones first, each with its path (`spec.initContainers[0]`).
fn with_paths<'c>(
    init_containers: &'c [ContainerSpec],
    containers: &'c [ContainerSpec],
) -> impl Iterator<Item = (&'c ContainerSpec, String)> {
    let init = init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c, format!("spec.initContainers[{i}]")));
    let regular = containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c, format!("spec.containers[{i}]")));
    init.chain(regular)
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label's name (or non-empty value): `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key: a name, optionally after a DNS subdomain prefix and `/`.
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        None => is_label_name(s),
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
    }
}

/// A port's name (an IANA service name): at most 15 lowercase letters, digits and '-', at
/// least one letter, no '-' at either end nor two in a row.
fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

#[cfg(test)]
mod tests;
