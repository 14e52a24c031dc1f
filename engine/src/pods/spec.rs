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
mod tests {
    use super::*;

    const MC1: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: mc1
spec:
  volumes:
  - name: html
    emptyDir: {}
  containers:
  - name: 1st
    image: nginx
    volumeMounts:
    - name: html
      mountPath: /usr/share/nginx/html
  - name: 2nd
    image: debian
    volumeMounts:
    - name: html
      mountPath: /html
    command: ["/bin/sh", "-c"]
    args:
      - while true; do
          date >> /html/index.html;
          sleep 1;
        done
"#;

    const MC2: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: mc2
spec:
  containers:
  - name: producer
    image: allingeek/ch6_ipc
    command: ["./ipc", "-producer"]
  - name: consumer
    image: allingeek/ch6_ipc
    command: ["./ipc", "-consumer"]
  restartPolicy: Never
"#;

    const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    fn container(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            volume_mounts: Vec::new(),
            ports: Vec::new(),
        }
    }

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            read_only: false,
        }
    }

    /// The pod `p` with `spec` (indented as under `spec:`).
    fn with_spec(spec: &str) -> String {
        format!("{HEAD}spec:\n{spec}")
    }

    fn parse_spec(spec: &str) -> PodSpec {
        parse(&with_spec(spec), "pod.yaml").unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, "pod.yaml").unwrap_err().to_string()
    }

    fn spec_err(spec: &str) -> String {
        err(&with_spec(spec))
    }

    /// The pod `p` with one container `a`, whose further fields are `fields`.
    fn container_err(fields: &str) -> String {
        spec_err(&format!(
            "  containers:\n  - name: a\n    image: busybox\n{fields}"
        ))
    }

    fn parse_container(fields: &str) -> ContainerSpec {
        let mut pod = parse_spec(&format!(
            "  containers:\n  - name: a\n    image: busybox\n{fields}"
        ));
        assert_eq!(pod.containers.len(), 1);
        pod.containers.remove(0)
    }

    #[test]
    fn pod_mc1_shares_an_empty_dir() {
        let pod = parse(MC1, "mc1.yaml").unwrap();
        let mut first = container("1st", "nginx");
        first.volume_mounts = vec![mount("html", "/usr/share/nginx/html")];
        let mut second = container("2nd", "debian");
        second.volume_mounts = vec![mount("html", "/html")];
        second.command = strings(&["/bin/sh", "-c"]);
        second.args = strings(&["while true; do date >> /html/index.html; sleep 1; done"]);
        assert_eq!(
            pod,
            PodSpec {
                name: "mc1".to_owned(),
                labels: BTreeMap::new(),
                hostname: None,
                restart_policy: RestartPolicy::Always,
                init_containers: Vec::new(),
                containers: vec![first, second],
                volumes: vec![VolumeSpec {
                    name: "html".to_owned(),
                    source: VolumeSource::EmptyDir,
                }],
            }
        );
    }

    #[test]
    fn pod_mc2_never_restarts() {
        let pod = parse(MC2, "mc2.yaml").unwrap();
        let mut producer = container("producer", "allingeek/ch6_ipc");
        producer.command = strings(&["./ipc", "-producer"]);
        let mut consumer = container("consumer", "allingeek/ch6_ipc");
        consumer.command = strings(&["./ipc", "-consumer"]);
        assert_eq!(
            pod,
            PodSpec {
                name: "mc2".to_owned(),
                labels: BTreeMap::new(),
                hostname: None,
                restart_policy: RestartPolicy::Never,
                init_containers: Vec::new(),
                containers: vec![producer, consumer],
                volumes: Vec::new(),
            }
        );
    }

    #[test]
    fn pod_every_field_hoist_takes() {
        let text = r#"---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
    app.kubernetes.io/part-of: shop
    empty: ""
spec:
  hostname: front
  restartPolicy: OnFailure
  volumes:
  - name: data
    hostPath:
      path: /srv/data
      type: Directory
  - name: plain
    hostPath:
      path: /srv/plain
  - name: scratch
  initContainers:
  - name: init
    image: busybox
    command: [sh, -c, "echo hi > /data/x"]
    volumeMounts:
    - {name: data, mountPath: /data}
  containers:
  - name: web
    image: docker.io/library/nginx:1
    args: [nginx, -g, "daemon off;"]
    env:
    - name: MODE
      value: prod
    - name: EMPTY
      value: ""
    - name: UNSET
    workingDir: /srv
    volumeMounts:
    - name: data
      mountPath: /data
      readOnly: true
    - name: scratch
      mountPath: /tmp/scratch/
      readOnly: false
    ports:
    - containerPort: 80
      hostPort: 8080
      hostIP: 127.0.0.1
      name: http
    - containerPort: 53
      hostPort: 5353
      protocol: UDP
    - containerPort: 53
      hostPort: 5353
      protocol: TCP
    - containerPort: 9090
      hostPort: 0
      hostIP: ""
"#;
        let pod = parse(text, "web.yaml").unwrap();
        assert_eq!(pod.name, "web");
        assert_eq!(
            pod.labels,
            BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                ("app.kubernetes.io/part-of".to_owned(), "shop".to_owned()),
                ("empty".to_owned(), String::new()),
            ])
        );
        assert_eq!(pod.hostname.as_deref(), Some("front"));
        assert_eq!(pod.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(
            pod.volumes,
            vec![
                VolumeSpec {
                    name: "data".to_owned(),
                    source: VolumeSource::HostPath(PathBuf::from("/srv/data")),
                },
                VolumeSpec {
                    name: "plain".to_owned(),
                    source: VolumeSource::HostPath(PathBuf::from("/srv/plain")),
                },
                VolumeSpec {
                    name: "scratch".to_owned(),
                    source: VolumeSource::EmptyDir,
                },
            ]
        );
        let mut init = container("init", "busybox");
        init.command = strings(&["sh", "-c", "echo hi > /data/x"]);
        init.volume_mounts = vec![mount("data", "/data")];
        assert_eq!(pod.init_containers, vec![init]);

        let mut web = container("web", "docker.io/library/nginx:1");
        web.args = strings(&["nginx", "-g", "daemon off;"]);
        web.env = vec![
            ("MODE".to_owned(), "prod".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("UNSET".to_owned(), String::new()),
        ];
        web.working_dir = Some("/srv".to_owned());
        web.volume_mounts = vec![
            VolumeMount {
                read_only: true,
                ..mount("data", "/data")
            },
            mount("scratch", "/tmp/scratch/"),
        ];
        let port = |container_port, host_port, protocol, host_ip, name: Option<&str>| PortSpec {
            container_port,
            host_port,
            protocol,
            host_ip,
            name: name.map(str::to_owned),
        };
        web.ports = vec![
            port(
                80,
                Some(8080),
                Protocol::Tcp,
                Some(Ipv4Addr::LOCALHOST),
                Some("http"),
            ),
            port(53, Some(5353), Protocol::Udp, None, None),
            port(53, Some(5353), Protocol::Tcp, None, None),
            port(9090, None, Protocol::Tcp, None, None),
        ];
        assert_eq!(pod.containers, vec![web]);
    }

    #[test]
    fn pod_null_fields_are_absent() {
        let c = parse_container("    args:\n    env: ~\n    workingDir: \"\"\n");
        assert_eq!(c, container("a", "busybox"));
        let pod = parse_spec(
            "  hostname:\n  restartPolicy:\n  containers:\n  - name: a\n    image: busybox\n",
        );
        assert_eq!(pod.hostname, None);
        assert_eq!(pod.restart_policy, RestartPolicy::Always);
    }

    #[test]
    fn pod_unimplemented_fields_are_named() {
        let two = "  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n    livenessProbe:\n      exec:\n        command: [true]\n";
        assert_eq!(
            spec_err(two),
            "pod.yaml: spec.containers[1].livenessProbe: hoist does not implement this field"
        );
        assert_eq!(
            err(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: metadata.namespace: hoist does not implement this field"
        );
        assert_eq!(
            err(&format!(
                "{HEAD}status: {{}}\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
            )),
            "pod.yaml: status: hoist does not implement this field"
        );
        assert_eq!(
            spec_err("  nodeName: n1\n  containers:\n  - name: a\n    image: busybox\n"),
            "pod.yaml: spec.nodeName: hoist does not implement this field"
        );
        // a null field is still named: it was written
        assert_eq!(
            container_err("    imagePullPolicy:\n"),
            "pod.yaml: spec.containers[0].imagePullPolicy: hoist does not implement this field"
        );
        assert_eq!(
            container_err(
                "    env:\n    - name: X\n      valueFrom:\n        fieldRef: {fieldPath: metadata.name}\n"
            ),
            "pod.yaml: spec.containers[0].env[0].valueFrom: hoist does not implement this field"
        );
        assert_eq!(
            container_err(
                "    volumeMounts:\n    - name: v\n      mountPath: /v\n      subPath: x\n"
            ),
            "pod.yaml: spec.containers[0].volumeMounts[0].subPath: hoist does not implement this field"
        );
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      hostport: 80\n"),
            "pod.yaml: spec.containers[0].ports[0].hostport: hoist does not implement this field"
        );
        assert_eq!(
            spec_err(
                "  initContainers:\n  - name: i\n    image: busybox\n    restartPolicy: Always\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.initContainers[0].restartPolicy: hoist does not implement this field"
        );
        assert_eq!(
            spec_err(
                "  volumes:\n  - name: v\n    emptyDir:\n      medium: Memory\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.volumes[0].emptyDir.medium: hoist does not implement this field"
        );
        assert_eq!(
            spec_err(
                "  volumes:\n  - name: v\n    configMap:\n      name: c\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.volumes[0].configMap: hoist does not implement this field"
        );
        let e = parse(&with_spec(two), "pod.yaml").unwrap_err();
        assert_eq!(e.path(), Some("spec.containers[1].livenessProbe"));
        assert!(matches!(e, PodSpecError::Unsupported { .. }));
    }

    #[test]
    fn pod_api_version_and_kind() {
        let body = "metadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: busybox\n";
        assert_eq!(
            err(&format!("apiVersion: apps/v1\nkind: Pod\n{body}")),
            "pod.yaml: apiVersion: \"apps/v1\" is not supported, hoist runs apiVersion v1 Pods"
        );
        assert_eq!(
            err(&format!("kind: Pod\n{body}")),
            "pod.yaml: apiVersion: required"
        );
        assert_eq!(
            err(&format!("apiVersion: v1\nkind: Deployment\n{body}")),
            "pod.yaml: kind: \"Deployment\" is not supported, hoist pod run takes kind Pod"
        );
        assert_eq!(
            err(&format!("apiVersion: v1\n{body}")),
            "pod.yaml: kind: required"
        );
        assert_eq!(
            err(&format!("apiVersion: 1\nkind: Pod\n{body}")),
            "pod.yaml: apiVersion: expected a string, found a number (quote it)"
        );
    }

    #[test]
    fn pod_one_yaml_document() {
        assert_eq!(
            err(&format!("{MC2}---\n{MC1}")),
            "pod.yaml: holds 2 YAML documents, hoist pod run takes one Pod"
        );
        assert_eq!(err(""), "pod.yaml: no YAML document, expected a v1 Pod");
        assert_eq!(
            err("# nothing\n"),
            "pod.yaml: no YAML document, expected a v1 Pod"
        );
        assert_eq!(
            err("- a\n- b\n"),
            "pod.yaml: expected a v1 Pod (a mapping), found a list"
        );
        // a trailing separator adds no document
        assert!(parse(&format!("{MC2}---\n"), "pod.yaml").is_ok());
    }

    #[test]
    fn pod_invalid_yaml_has_a_location() {
        let e = err("apiVersion: v1\nkind: [Pod\n");
        assert!(e.starts_with("pod.yaml: invalid YAML: "), "{e}");
        assert!(e.contains("line"), "{e}");
        let e = err("apiVersion: v1\nkind: Pod\nkind: Pod\n");
        assert!(e.starts_with("pod.yaml: invalid YAML: "), "{e}");
        assert_eq!(
            e,
            "pod.yaml: invalid YAML: duplicate mapping key `kind` is not allowed here at line 3, column 1"
        );
    }

    #[test]
    fn pod_metadata_is_required() {
        assert_eq!(
            err(
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: metadata.name: required"
        );
        assert_eq!(
            err(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {a: b}\nspec:\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: metadata.name: required"
        );
        assert_eq!(err(HEAD), "pod.yaml: spec: required");
        assert_eq!(
            err(&format!("{HEAD}spec: [a]\n")),
            "pod.yaml: spec: expected a mapping, found a list"
        );
    }

    #[test]
    fn pod_names_are_dns_labels() {
        let rule = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
        let body = "spec:\n  containers:\n  - name: a\n    image: busybox\n";
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: My_Pod\n{body}"
            )),
            format!("pod.yaml: metadata.name: \"My_Pod\" is not a valid name: {rule}")
        );
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"\"\n{body}"
            )),
            format!("pod.yaml: metadata.name: \"\" is not a valid name: {rule}")
        );
        let long = "a".repeat(64);
        assert_eq!(
            spec_err(&format!(
                "  containers:\n  - name: {long}\n    image: busybox\n"
            )),
            format!("pod.yaml: spec.containers[0].name: \"{long}\" is not a valid name: {rule}")
        );
        assert!(
            parse_spec(&format!(
                "  containers:\n  - name: {}\n    image: busybox\n",
                &long[1..]
            ))
            .containers[0]
                .name
                .len()
                == 63
        );
        assert_eq!(
            spec_err("  containers:\n  - name: web-\n    image: busybox\n"),
            format!("pod.yaml: spec.containers[0].name: \"web-\" is not a valid name: {rule}")
        );
        assert_eq!(
            spec_err("  containers:\n  - image: busybox\n"),
            "pod.yaml: spec.containers[0].name: required"
        );
        assert_eq!(
            spec_err("  hostname: Front.End\n  containers:\n  - name: a\n    image: busybox\n"),
            format!("pod.yaml: spec.hostname: \"Front.End\" is not a valid name: {rule}")
        );
        assert_eq!(
            spec_err(
                "  volumes:\n  - name: Data\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            format!("pod.yaml: spec.volumes[0].name: \"Data\" is not a valid name: {rule}")
        );
    }

    #[test]
    fn pod_container_names_are_unique() {
        assert_eq!(
            spec_err(
                "  initContainers:\n  - name: web\n    image: busybox\n  containers:\n  - name: a\n    image: busybox\n  - name: web\n    image: nginx\n"
            ),
            "pod.yaml: spec.containers[1].name: \"web\" is already the name of spec.initContainers[0]"
        );
        assert_eq!(
            spec_err(
                "  containers:\n  - name: a\n    image: busybox\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.containers[1].name: \"a\" is already the name of spec.containers[0]"
        );
        assert_eq!(
            spec_err(
                "  initContainers:\n  - name: i\n    image: busybox\n  - name: i\n    image: busybox\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.initContainers[1].name: \"i\" is already the name of spec.initContainers[0]"
        );
    }

    #[test]
    fn pod_needs_a_container() {
        let msg = "pod.yaml: spec.containers: a pod needs at least one container";
        assert_eq!(spec_err("  containers: []\n"), msg);
        assert_eq!(spec_err("  restartPolicy: Never\n"), msg);
        assert_eq!(
            spec_err("  initContainers:\n  - name: i\n    image: busybox\n"),
            msg
        );
        assert_eq!(
            spec_err("  containers: {name: a}\n"),
            "pod.yaml: spec.containers: expected a list, found a mapping"
        );
        assert_eq!(
            spec_err("  containers:\n  - busybox\n"),
            "pod.yaml: spec.containers[0]: expected a mapping, found a string"
        );
    }

    #[test]
    fn pod_image_is_required() {
        assert_eq!(
            spec_err("  containers:\n  - name: a\n"),
            "pod.yaml: spec.containers[0].image: required"
        );
        assert_eq!(
            spec_err("  containers:\n  - name: a\n    image: \" \"\n"),
            "pod.yaml: spec.containers[0].image: must not be empty"
        );
    }

    #[test]
    fn pod_mounts_name_declared_volumes() {
        assert_eq!(
            container_err("    volumeMounts:\n    - name: data\n      mountPath: /data\n"),
            "pod.yaml: spec.containers[0].volumeMounts[0].name: no volume \"data\" in spec.volumes"
        );
        assert_eq!(
            container_err("    volumeMounts:\n    - mountPath: /data\n"),
            "pod.yaml: spec.containers[0].volumeMounts[0].name: required"
        );
    }

    #[test]
    fn pod_volume_names_are_unique() {
        assert_eq!(
            spec_err(
                "  volumes:\n  - name: v\n    emptyDir: {}\n  - name: v\n    hostPath:\n      path: /srv\n  containers:\n  - name: a\n    image: busybox\n"
            ),
            "pod.yaml: spec.volumes[1].name: \"v\" is already the name of spec.volumes[0]"
        );
    }

    fn with_volume(volume: &str, mount_fields: &str) -> String {
        spec_err(&format!(
            "  volumes:\n  - name: v\n{volume}  containers:\n  - name: a\n    image: busybox\n    volumeMounts:\n    - name: v\n{mount_fields}"
        ))
    }

    #[test]
    fn pod_mount_paths_are_absolute_and_unique() {
        assert_eq!(
            with_volume("", "      mountPath: data\n"),
            "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: \"data\" is not an absolute path"
        );
        assert_eq!(
            with_volume("", "      mountPath: /\n"),
            "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: a volume cannot be mounted on /"
        );
        assert_eq!(
            with_volume("", ""),
            "pod.yaml: spec.containers[0].volumeMounts[0].mountPath: required"
        );
        assert_eq!(
            with_volume(
                "",
                "      mountPath: /d\n    - name: v\n      mountPath: /d\n"
            ),
            "pod.yaml: spec.containers[0].volumeMounts[1].mountPath: \"/d\" is already mounted by spec.containers[0].volumeMounts[0]"
        );
        assert_eq!(
            with_volume("", "      mountPath: /d\n      readOnly: \"yes\"\n"),
            "pod.yaml: spec.containers[0].volumeMounts[0].readOnly: expected true or false, found a string"
        );
    }

    #[test]
    fn pod_host_paths() {
        assert_eq!(
            with_volume("    hostPath:\n      path: srv\n", "      mountPath: /d\n"),
            "pod.yaml: spec.volumes[0].hostPath.path: \"srv\" is not an absolute path"
        );
        assert_eq!(
            with_volume("    hostPath: {}\n", "      mountPath: /d\n"),
            "pod.yaml: spec.volumes[0].hostPath.path: required"
        );
        assert_eq!(
            with_volume(
                "    hostPath:\n      path: /srv\n      type: DirectoryOrCreate\n",
                "      mountPath: /d\n"
            ),
            "pod.yaml: spec.volumes[0].hostPath.type: \"DirectoryOrCreate\" is not supported, hoist binds an existing directory (type Directory, or none)"
        );
        assert_eq!(
            with_volume(
                "    hostPath:\n      path: /srv\n    emptyDir: {}\n",
                "      mountPath: /d\n"
            ),
            "pod.yaml: spec.volumes[0]: has both emptyDir and hostPath, a volume has one source"
        );
        let pod = parse(
            &with_spec("  volumes:\n  - name: v\n    hostPath:\n      path: /srv\n      type: \"\"\n  containers:\n  - name: a\n    image: busybox\n"),
            "pod.yaml",
        )
        .unwrap();
        assert_eq!(pod.volumes[0].source, VolumeSource::HostPath("/srv".into()));
    }

    #[test]
    fn pod_env_entries() {
        assert_eq!(
            container_err("    env:\n    - value: x\n"),
            "pod.yaml: spec.containers[0].env[0].name: required"
        );
        assert_eq!(
            container_err("    env:\n    - name: A=B\n"),
            "pod.yaml: spec.containers[0].env[0].name: \"A=B\" is not a variable name: not empty, without '='"
        );
        assert_eq!(
            container_err(
                "    env:\n    - name: A\n      value: x\n    - name: PORT\n      value: 8080\n"
            ),
            "pod.yaml: spec.containers[0].env[1].value: expected a string, found a number (quote it)"
        );
        assert_eq!(
            container_err("    env:\n      A: b\n"),
            "pod.yaml: spec.containers[0].env: expected a list, found a mapping"
        );
    }

    #[test]
    fn pod_command_and_args_are_lists_of_strings() {
        assert_eq!(
            container_err("    command: /bin/sh\n"),
            "pod.yaml: spec.containers[0].command: expected a list of strings, found a string"
        );
        assert_eq!(
            container_err("    args: [sleep, 10]\n"),
            "pod.yaml: spec.containers[0].args[1]: expected a string, found a number (quote it)"
        );
        assert_eq!(
            container_err("    workingDir: srv\n"),
            "pod.yaml: spec.containers[0].workingDir: \"srv\" is not an absolute path"
        );
    }

    #[test]
    fn pod_port_numbers() {
        for (value, shown) in [("0", "0"), ("65536", "65536"), ("-1", "-1"), ("8.5", "8.5")] {
            assert_eq!(
                container_err(&format!("    ports:\n    - containerPort: {value}\n")),
                format!(
                    "pod.yaml: spec.containers[0].ports[0].containerPort: {shown} is not a port number (1 to 65535)"
                )
            );
        }
        assert_eq!(
            container_err("    ports:\n    - containerPort: \"80\"\n"),
            "pod.yaml: spec.containers[0].ports[0].containerPort: expected a port number (1 to 65535), found a string"
        );
        assert_eq!(
            container_err("    ports:\n    - hostPort: 80\n"),
            "pod.yaml: spec.containers[0].ports[0].containerPort: required"
        );
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      hostPort: 70000\n"),
            "pod.yaml: spec.containers[0].ports[0].hostPort: 70000 is not a port number (1 to 65535)"
        );
        let c = parse_container(
            "    ports:\n    - containerPort: 65535\n    - containerPort: 1\n      hostPort: 65535\n",
        );
        assert_eq!(c.ports[0].container_port, 65535);
        assert_eq!(c.ports[1].host_port, Some(65535));
    }

    #[test]
    fn pod_port_protocol_host_ip_and_name() {
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      protocol: SCTP\n"),
            "pod.yaml: spec.containers[0].ports[0].protocol: \"SCTP\" is not supported, hoist publishes TCP or UDP"
        );
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      protocol: tcp\n"),
            "pod.yaml: spec.containers[0].ports[0].protocol: \"tcp\" is not supported, hoist publishes TCP or UDP"
        );
        assert_eq!(
            container_err(
                "    ports:\n    - containerPort: 80\n      hostPort: 80\n      hostIP: ::1\n"
            ),
            "pod.yaml: spec.containers[0].ports[0].hostIP: \"::1\" is not an IPv4 address"
        );
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      hostIP: 127.0.0.1\n"),
            "pod.yaml: spec.containers[0].ports[0].hostIP: set without a hostPort, it would publish nothing"
        );
        assert_eq!(
            container_err("    ports:\n    - containerPort: 80\n      name: Web_Port\n"),
            "pod.yaml: spec.containers[0].ports[0].name: \"Web_Port\" is not a valid port name: lowercase letters, digits and '-', at least one letter, no '-' at either end nor two in a row, at most 15 characters"
        );
        assert!(
            container_err("    ports:\n    - containerPort: 80\n      name: \"8080\"\n")
                .contains("is not a valid port name")
        );
    }

    #[test]
    fn pod_host_ports_are_unique() {
        assert_eq!(
            spec_err(
                "  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: 80\n      hostPort: 8080\n  - name: b\n    image: busybox\n    ports:\n    - containerPort: 81\n      hostPort: 8080\n      hostIP: 127.0.0.1\n"
            ),
            "pod.yaml: spec.containers[1].ports[0].hostPort: 8080/TCP is already published by spec.containers[0].ports[0]"
        );
        assert_eq!(
            spec_err(
                "  initContainers:\n  - name: i\n    image: busybox\n    ports:\n    - containerPort: 53\n      hostPort: 53\n      protocol: UDP\n  containers:\n  - name: a\n    image: busybox\n    ports:\n    - containerPort: 53\n      hostPort: 53\n    - containerPort: 54\n      hostPort: 53\n      protocol: UDP\n"
            ),
            "pod.yaml: spec.containers[0].ports[1].hostPort: 53/UDP is already published by spec.initContainers[0].ports[0]"
        );
    }

    #[test]
    fn pod_restart_policy() {
        for (given, want) in [
            ("Always", RestartPolicy::Always),
            ("OnFailure", RestartPolicy::OnFailure),
            ("Never", RestartPolicy::Never),
        ] {
            let pod = parse_spec(&format!(
                "  restartPolicy: {given}\n  containers:\n  - name: a\n    image: busybox\n"
            ));
            assert_eq!(pod.restart_policy, want);
            assert_eq!(want.to_string(), given);
        }
        assert_eq!(
            spec_err("  restartPolicy: always\n  containers:\n  - name: a\n    image: busybox\n"),
            "pod.yaml: spec.restartPolicy: \"always\" is not one of Always, OnFailure, Never"
        );
    }

    #[test]
    fn pod_labels() {
        let body = "spec:\n  containers:\n  - name: a\n    image: busybox\n";
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    tier: 1\n{body}"
            )),
            "pod.yaml: metadata.labels.tier: expected a string, found a number (quote it)"
        );
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    tier: back end\n{body}"
            )),
            "pod.yaml: metadata.labels.tier: \"back end\" is not a valid label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
        );
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    Bad/x: y\n{body}"
            )),
            "pod.yaml: metadata.labels.Bad/x: \"Bad/x\" is not a valid label key: an optional DNS subdomain and '/', then letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
        );
        assert_eq!(
            err(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: [a]\n{body}"
            )),
            "pod.yaml: metadata.labels: expected a mapping, found a list"
        );
    }

    #[test]
    fn pod_error_messages_start_with_the_file() {
        let e = parse("kind: Pod\n", "/tmp/x/web.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "/tmp/x/web.yaml: apiVersion: required");
    }
}
