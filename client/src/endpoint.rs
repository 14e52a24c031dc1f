//! Where a registry host's API lives, and over what.
//!
//! - Docker Hub (`docker.io`, `index.docker.io`, `registry-1.docker.io`) is served at
//!   `https://registry-1.docker.io`.
//! - Plain HTTP is used only for loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`, any
//!   port) that have no `certs.d` dir of their own, and for registries the caller lists as
//!   insecure, as docker's `--insecure-registry`: a host (any port), a `host:port`, or a CIDR
//!   range that IP-literal hosts fall in. Everything else is HTTPS, verified. (docker tries a
//!   loopback registry over HTTPS without verifying it, then over HTTP; hoist verifies.)
//! - TLS uses the system roots plus the CAs of docker's `certs.d` layout: every `*.crt` in
//!   `<certs dir>/<host[:port]>/`, and client certificates as `<name>.cert` + `<name>.key` pairs
//!   there. The certs dirs are the caller's (docker's `/etc/docker/certs.d`, hoist's
//!   `$HOIST_HOME/certs.d`).
//!
//! Unlike docker, a host name is never resolved to match a CIDR range: only IP literals are.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hoist_oci::DEFAULT_REGISTRY;

/// Where Docker Hub's registry API lives.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The names of Docker Hub; the first is the one references use.
pub(crate) const DOCKER_HUB_ALIASES: [&str; 3] =
    [DEFAULT_REGISTRY, "index.docker.io", DOCKER_HUB_API_HOST];

/// Whether `host` names Docker Hub.
pub fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_ALIASES
        .iter()
        .any(|alias| host.eq_ignore_ascii_case(alias))
}

/// Whether `host` (`name` or `name:port`) is a loopback registry: `localhost`, an address in
/// `127.0.0.0/8`, or `[::1]`.
pub fn is_loopback(host: &str) -> bool {
    HostPort::parse(host).is_ok_and(|h| h.is_loopback())
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    #[error("invalid insecure registry {entry:?}: {reason}")]
    InvalidInsecure { entry: String, reason: &'static str },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {detail}", path.display())]
    BadFile { path: PathBuf, detail: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a registry's API is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    api_host: String,
    scheme: Scheme,
}

impl Endpoint {
    /// The registry host as references name it, lowercased (`docker.io` for Docker Hub).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host (and port) requests go to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        &self.api_host
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `scheme://api_host`, without a trailing slash: `/v2/...` paths are appended to it.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.api_host)
    }
}

/// A host split into name and port. `name` is lowercased and has no brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPort {
    name: String,
    port: Option<u16>,
}

impl HostPort {
    fn parse(host: &str) -> Result<Self, ()> {
        let host = host.to_ascii_lowercase();
        let (name, port) = if let Some(rest) = host.strip_prefix('[') {
            let (name, after) = rest.split_once(']').ok_or(())?;
            name.parse::<Ipv6Addr>().map_err(drop)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(())?),
            };
            (name.to_owned(), port)
        } else if host.matches(':').count() > 1 {
            // An IPv6 literal without brackets cannot carry a port.
            host.parse::<Ipv6Addr>().map_err(drop)?;
            (host.clone(), None)
        } else {
            match host.split_once(':') {
                Some((name, port)) => (name.to_owned(), Some(port)),
                None => (host.clone(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(drop)?)
            }
            Some(_) => return Err(()),
        };
        let valid_name = name.parse::<IpAddr>().is_ok()
            || name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_name {
            return Err(());
        }
        Ok(Self { name, port })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.name.parse().ok()
    }

    fn is_loopback(&self) -> bool {
        match self.ip() {
            None => self.name == "localhost",
            Some(IpAddr::V6(ip)) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Some(ip) => ip.is_loopback(),
        }
    }
}

/// An IP network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u32::from(net) ^ u32::from(ip)) & mask == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u128::from(net) ^ u128::from(ip)) & mask == 0
            }
            _ => false,
        }
    }
}

/// One `--insecure-registry` entry: a host (any port), a `host:port`, or a CIDR range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsecureRegistry(Insecure);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Insecure {
    Host(HostPort),
    Net(IpNet),
}

impl FromStr for InsecureRegistry {
    type Err = EndpointError;

    /// Docker's rules: an `http://` or `https://` prefix is dropped, any other scheme refused; an
    /// entry with a `/` is a CIDR range, anything else a host or `host:port`.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| EndpointError::InvalidInsecure {
            entry: entry.to_owned(),
            reason,
        };
        let trimmed = entry.trim();
        let lower = trimmed.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &trimmed["http://".len()..]
        } else if lower.starts_with("https://") {
            &trimmed["https://".len()..]
        } else if trimmed.contains("://") {
            return Err(invalid("only http:// and https:// may prefix it"));
        } else {
            trimmed
        };
        if rest.contains('/') {
            let net = IpNet::parse(rest).ok_or_else(|| invalid("not a valid cidr range"))?;
            return Ok(Self(Insecure::Net(net)));
        }
        let host = HostPort::parse(rest).map_err(|()| invalid("not a host or host:port"))?;
        Ok(Self(Insecure::Host(host)))
    }
}

impl InsecureRegistry {
    fn matches(&self, host: &HostPort) -> bool {
        match &self.0 {
            Insecure::Host(entry) => {
                entry.name == host.name && (entry.port.is_none() || entry.port == host.port)
            }
            Insecure::Net(net) => host.ip().is_some_and(|ip| net.contains(ip)),
        }
    }
}

/// The caller's transport settings: which registries are insecure and where `certs.d` dirs are.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    insecure: Vec<InsecureRegistry>,
    certs_dirs: Vec<PathBuf>,
}

impl Endpoints {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `--insecure-registry` entries (see [`InsecureRegistry`]).
    pub fn with_insecure<I, S>(mut self, entries: I) -> Result<Self, EndpointError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for entry in entries {
            self.insecure.push(entry.as_ref().parse()?);
        }
        Ok(self)
    }

    /// Add `certs.d` roots, searched in order (each holds one directory per host).
    pub fn with_certs_dirs<I, P>(mut self, dirs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.certs_dirs.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Whether `host` is listed as insecure (loopback hosts need not be).
    pub fn is_insecure(&self, host: &str) -> bool {
        HostPort::parse(host).is_ok_and(|h| self.insecure.iter().any(|e| e.matches(&h)))
    }

    /// Where `host` (`name` or `name:port`, as a reference's registry) serves its API.
    pub fn resolve(&self, host: &str) -> Result<Endpoint, EndpointError> {
        let parsed =
            HostPort::parse(host).map_err(|()| EndpointError::InvalidHost(host.to_owned()))?;
        let host = host.to_ascii_lowercase();
        if is_docker_hub(&host) {
            return Ok(Endpoint {
                host: DEFAULT_REGISTRY.to_owned(),
                api_host: DOCKER_HUB_API_HOST.to_owned(),
                scheme: Scheme::Https,
            });
        }
        // A loopback registry with a certs.d dir of its own serves TLS: it is verified as any.
        let plain = (parsed.is_loopback()
            && !self.certs_dirs.iter().any(|d| d.join(&host).is_dir()))
            || self.insecure.iter().any(|e| e.matches(&parsed));
        Ok(Endpoint {
            api_host: host.clone(),
            host,
            scheme: if plain { Scheme::Http } else { Scheme::Https },
        })
    }

    /// The TLS settings for `host`, from `<certs dir>/<host>/` in every certs dir (for Docker Hub,
    /// the dirs of each of its names). Missing dirs are fine; a `.cert` without its `.key` (or the
    /// reverse) is an error, as in docker.
    pub fn tls(&self, host: &str) -> Result<TlsSettings, EndpointError> {
        HostPort::parse(host).map_err(|()| EndpointError::InvalidHost(host.to_owned()))?;
        let host = host.to_ascii_lowercase();
        let names: Vec<&str> = if is_docker_hub(&host) {
            DOCKER_HUB_ALIASES.to_vec()
        } else {
            vec![host.as_str()]
        };
        let mut tls = TlsSettings::default();
        for root in &self.certs_dirs {
            for name in &names {
                read_certs_dir(&root.join(name), &mut tls)?;
            }
        }
        Ok(tls)
    }
}

/// A file read from a certs dir.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// A client certificate (`<name>.cert`) and its key (`<name>.key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PemFile,
    pub key: PemFile,
}

/// The TLS settings for one registry: CAs to trust besides the system roots, client identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    ca_certs: Vec<PemFile>,
    client_identities: Vec<ClientIdentity>,
}

impl TlsSettings {
    /// The `*.crt` files, in certs-dir order then file-name order.
    pub fn ca_certs(&self) -> &[PemFile] {
        &self.ca_certs
    }

    /// The `<name>.cert`/`<name>.key` pairs, in the same order.
    pub fn client_identities(&self) -> &[ClientIdentity] {
        &self.client_identities
    }

    pub fn is_empty(&self) -> bool {
        self.ca_certs.is_empty() && self.client_identities.is_empty()
    }

    /// Every certificate of every `*.crt` file. A file with none, or with a broken one, is an
    /// error naming it.
    pub fn root_certificates(&self) -> Result<Vec<reqwest::Certificate>, EndpointError> {
        let mut out = Vec::new();
        for file in &self.ca_certs {
            let certs = reqwest::Certificate::from_pem_bundle(&file.pem).map_err(|e| {
                EndpointError::BadFile {
                    path: file.path.clone(),
                    detail: format!("not a pem certificate bundle: {e}"),
                }
            })?;
            if certs.is_empty() {
                return Err(EndpointError::BadFile {
                    path: file.path.clone(),
                    detail: "no pem certificate in it".into(),
                });
            }
            out.extend(certs);
        }
        Ok(out)
    }

    /// The first client identity (a reqwest client presents one).
    pub fn identity(&self) -> Result<Option<reqwest::Identity>, EndpointError> {
        let Some(pair) = self.client_identities.first() else {
            return Ok(None);
        };
        let mut pem = pair.cert.pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(&pair.key.pem);
        reqwest::Identity::from_pem(&pem)
            .map(Some)
            .map_err(|e| EndpointError::BadFile {
                path: pair.cert.path.clone(),
                detail: format!("not a pem certificate with its key: {e}"),
            })
    }

    /// Configure `builder` with these settings: the CAs added to the system roots, the first
    /// client identity presented.
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, EndpointError> {
        let mut builder = builder.tls_certs_merge(self.root_certificates()?);
        if let Some(identity) = self.identity()? {
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

fn read_certs_dir(dir: &Path, tls: &mut TlsSettings) -> Result<(), EndpointError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| EndpointError::Read { path, source }
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(read_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err(dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    let read = |name: &str| -> Result<PemFile, EndpointError> {
        let path = dir.join(name);
        let pem = fs::read(&path).map_err(read_err(&path))?;
        Ok(PemFile { path, pem })
    };
    for name in &names {
        if name.ends_with(".crt") {
            tls.ca_certs.push(read(name)?);
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(EndpointError::BadFile {
                    path: dir.join(name),
                    detail: format!(
                        "missing key {key} for this client certificate (ca certificates end in .crt)"
                    ),
                });
            }
            tls.client_identities.push(ClientIdentity {
                cert: read(name)?,
                key: read(&key)?,
            });
        } else if let Some(stem) = name.strip_suffix(".key") {
            let cert = format!("{stem}.cert");
            if !names.contains(&cert) {
                return Err(EndpointError::BadFile {
                    path: dir.join(name),
                    detail: format!("missing client certificate {cert} for this key"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn fixture(name: &str) -> Vec<u8> {
        fs::read(Path::new(FIXTURES).join(name)).unwrap()
    }

    #[test]
    fn endpoints_resolve() {
        let endpoints = Endpoints::new()
            .with_insecure([
                "reg.internal",
                "other.internal:5000",
                "http://schemed.internal",
                "10.1.0.0/16",
                "fd00::/8",
                "192.168.7.7",
            ])
            .unwrap();
        let cases = [
            ("docker.io", "docker.io", "https://registry-1.docker.io"),
            (
                "index.docker.io",
                "docker.io",
                "https://registry-1.docker.io",
            ),
            (
                "registry-1.docker.io",
                "docker.io",
                "https://registry-1.docker.io",
            ),
            ("Docker.io", "docker.io", "https://registry-1.docker.io"),
            ("ghcr.io", "ghcr.io", "https://ghcr.io"),
            ("Quay.IO", "quay.io", "https://quay.io"),
            ("localhost", "localhost", "http://localhost"),
            ("localhost:5000", "localhost:5000", "http://localhost:5000"),
            ("LOCALHOST:5000", "localhost:5000", "http://localhost:5000"),
            ("127.0.0.1", "127.0.0.1", "http://127.0.0.1"),
            ("127.0.0.1:5000", "127.0.0.1:5000", "http://127.0.0.1:5000"),
            ("127.255.0.9:80", "127.255.0.9:80", "http://127.255.0.9:80"),
            ("[::1]", "[::1]", "http://[::1]"),
            ("[::1]:5000", "[::1]:5000", "http://[::1]:5000"),
            (
                "[::ffff:127.0.0.1]:5000",
                "[::ffff:127.0.0.1]:5000",
                "http://[::ffff:127.0.0.1]:5000",
            ),
            ("128.0.0.1:5000", "128.0.0.1:5000", "https://128.0.0.1:5000"),
            (
                "localhost.example.com",
                "localhost.example.com",
                "https://localhost.example.com",
            ),
            ("[::2]:5000", "[::2]:5000", "https://[::2]:5000"),
            ("reg.internal", "reg.internal", "http://reg.internal"),
            (
                "reg.internal:8443",
                "reg.internal:8443",
                "http://reg.internal:8443",
            ),
            (
                "sub.reg.internal",
                "sub.reg.internal",
                "https://sub.reg.internal",
            ),
            (
                "other.internal:5000",
                "other.internal:5000",
                "http://other.internal:5000",
            ),
            ("other.internal", "other.internal", "https://other.internal"),
            (
                "other.internal:5001",
                "other.internal:5001",
                "https://other.internal:5001",
            ),
            (
                "schemed.internal",
                "schemed.internal",
                "http://schemed.internal",
            ),
            ("10.1.2.3:5000", "10.1.2.3:5000", "http://10.1.2.3:5000"),
            ("10.2.0.1:5000", "10.2.0.1:5000", "https://10.2.0.1:5000"),
            ("[fd12::1]:5000", "[fd12::1]:5000", "http://[fd12::1]:5000"),
            ("[fe80::1]:5000", "[fe80::1]:5000", "https://[fe80::1]:5000"),
            (
                "192.168.7.7:5000",
                "192.168.7.7:5000",
                "http://192.168.7.7:5000",
            ),
            ("192.168.7.8", "192.168.7.8", "https://192.168.7.8"),
        ];
        for (host, want_host, want_url) in cases {
            let endpoint = endpoints.resolve(host).unwrap();
            assert_eq!(endpoint.host(), want_host, "{host}");
            assert_eq!(endpoint.base_url(), want_url, "{host}");
            let scheme = if want_url.starts_with("https") {
                Scheme::Https
            } else {
                Scheme::Http
            };
            assert_eq!(endpoint.scheme(), scheme, "{host}");
        }
        let hub = endpoints.resolve("docker.io").unwrap();
        assert_eq!(hub.api_host(), DOCKER_HUB_API_HOST);
    }

    #[test]
    fn docker_hub_stays_https_even_when_listed_insecure() {
        let endpoints = Endpoints::new().with_insecure(["docker.io"]).unwrap();
        assert_eq!(
            endpoints.resolve("docker.io").unwrap().scheme(),
            Scheme::Https
        );
        assert!(endpoints.is_insecure("docker.io"));
    }

    #[test]
    fn without_a_list_only_loopback_is_plain_http() {
        let endpoints = Endpoints::new();
        for (host, loopback) in [
            ("localhost", true),
            ("localhost:1", true),
            ("127.0.0.1", true),
            ("127.1.2.3:65535", true),
            ("[::1]", true),
            ("::1", true),
            ("[::1]:443", true),
            ("10.0.0.1", false),
            ("0.0.0.0:5000", false),
            ("[::]:5000", false),
            ("mylocalhost", false),
            ("localhost.localdomain", false),
            ("registry.example.com:5000", false),
        ] {
            assert_eq!(is_loopback(host), loopback, "{host}");
            assert!(!endpoints.is_insecure(host), "{host}");
            let want = if loopback {
                Scheme::Http
            } else {
                Scheme::Https
            };
            assert_eq!(endpoints.resolve(host).unwrap().scheme(), want, "{host}");
        }
    }

    #[test]
    fn a_loopback_registry_with_a_certs_dir_is_https() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("127.0.0.1:5443")).unwrap();
        std::fs::create_dir(dir.path().join("localhost")).unwrap();
        let endpoints = Endpoints::new().with_certs_dirs([dir.path()]);
        for (host, want) in [
            ("127.0.0.1:5443", Scheme::Https),
            ("127.0.0.1:5000", Scheme::Http),
            ("localhost", Scheme::Https),
            ("LOCALHOST", Scheme::Https),
            ("localhost:5443", Scheme::Http),
        ] {
            assert_eq!(endpoints.resolve(host).unwrap().scheme(), want, "{host}");
        }
        // Listed insecure, it stays plain.
        let endpoints = endpoints.with_insecure(["127.0.0.1:5443"]).unwrap();
        assert_eq!(
            endpoints.resolve("127.0.0.1:5443").unwrap().scheme(),
            Scheme::Http
        );
    }

    #[test]
    fn invalid_hosts_are_refused() {
        let endpoints = Endpoints::new();
        for host in [
            "",
            "https://reg.example.com",
            "reg.example.com/v2",
            "reg.example.com:",
            "reg.example.com:http",
            "reg.example.com:70000",
            "reg..example.com",
            ".",
            "..",
            "a b",
            "[::1",
            "[::1]5000",
            "[reg.example.com]:5000",
            "1:2:3",
            "user@reg.example.com",
        ] {
            let err = endpoints.resolve(host).unwrap_err();
            assert!(
                matches!(&err, EndpointError::InvalidHost(h) if h == host),
                "{host}: {err:?}"
            );
            assert!(endpoints.tls(host).is_err(), "{host}");
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn insecure_entries_parse_like_dockers() {
        let ok = [
            "reg.internal",
            "reg.internal:5000",
            "HTTP://reg.internal:5000",
            "https://reg.internal",
            "10.0.0.0/8",
            "10.1.2.3/8",
            "0.0.0.0/0",
            "::/0",
            "fd00::/8",
            "192.168.1.1",
            "[fd00::1]:5000",
        ];
        for entry in ok {
            assert!(entry.parse::<InsecureRegistry>().is_ok(), "{entry}");
        }
        let bad = [
            ("", "not a host or host:port"),
            (
                "ftp://reg.internal",
                "only http:// and https:// may prefix it",
            ),
            ("10.0.0.0/33", "not a valid cidr range"),
            ("fd00::/129", "not a valid cidr range"),
            ("10.0.0.0/", "not a valid cidr range"),
            ("10.0.0.0/+8", "not a valid cidr range"),
            ("reg.internal/path", "not a valid cidr range"),
            ("reg.internal:port", "not a host or host:port"),
        ];
        for (entry, reason) in bad {
            let err = entry.parse::<InsecureRegistry>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid insecure registry {entry:?}: {reason}")
            );
        }
        assert!(
            Endpoints::new()
                .with_insecure(["ok.internal", "ftp://x"])
                .is_err()
        );
    }

    #[test]
    fn cidr_ranges_contain() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3/32", "10.1.2.3", true),
            ("10.1.2.3/32", "10.1.2.4", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("192.168.0.0/23", "192.168.1.200", true),
            ("192.168.0.0/23", "192.168.2.1", false),
            ("fd00::/8", "fdff::1", true),
            ("fd00::/8", "fe00::1", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::1/128", "2001:db8::1", true),
            ("2001:db8::1/128", "2001:db8::2", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (net, ip, want) in cases {
            let parsed = IpNet::parse(net).unwrap();
            assert_eq!(parsed.contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }

    fn names(files: &[PemFile]) -> Vec<String> {
        files.iter().map(|f| f.path.display().to_string()).collect()
    }

    #[test]
    fn tls_settings_come_from_every_certs_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc-docker-certs.d");
        let hoist = tmp.path().join("hoist-certs.d");
        let missing = tmp.path().join("missing");
        let host_dir = etc.join("reg.example.com:5000");
        write(&host_dir, "ca.crt", &fixture("ca.crt"));
        write(&host_dir, "another.crt", &fixture("ca.crt"));
        write(&host_dir, "client.cert", &fixture("client.cert"));
        write(&host_dir, "client.key", &fixture("client.key"));
        write(&host_dir, "README", b"ignored");
        write(
            &hoist.join("reg.example.com:5000"),
            "ca.crt",
            &fixture("ca.crt"),
        );
        write(&etc.join("reg.example.com"), "ca.crt", b"other port");
        write(&etc.join("docker.io"), "hub.crt", &fixture("ca.crt"));
        write(
            &hoist.join("registry-1.docker.io"),
            "mirror.crt",
            &fixture("ca.crt"),
        );
        fs::write(hoist.join("not-a-dir.example.com"), b"").unwrap();

        let endpoints = Endpoints::new().with_certs_dirs([&etc, &missing, &hoist]);
        let tls = endpoints.tls("Reg.Example.com:5000").unwrap();
        assert_eq!(
            names(tls.ca_certs()),
            [
                host_dir.join("another.crt"),
                host_dir.join("ca.crt"),
                hoist.join("reg.example.com:5000/ca.crt"),
            ]
            .map(|p| p.display().to_string())
        );
        assert_eq!(tls.ca_certs()[0].pem, fixture("ca.crt"));
        let [identity] = tls.client_identities() else {
            panic!("one identity: {tls:?}")
        };
        assert_eq!(identity.cert.path, host_dir.join("client.cert"));
        assert_eq!(identity.key.path, host_dir.join("client.key"));
        assert_eq!(identity.key.pem, fixture("client.key"));
        assert_eq!(tls.root_certificates().unwrap().len(), 3);
        assert!(tls.identity().unwrap().is_some());
        tls.apply(reqwest::Client::builder())
            .unwrap()
            .build()
            .unwrap();

        let hub = endpoints.tls("docker.io").unwrap();
        assert_eq!(
            names(hub.ca_certs()),
            [
                etc.join("docker.io/hub.crt"),
                hoist.join("registry-1.docker.io/mirror.crt")
            ]
            .map(|p| p.display().to_string())
        );
        assert!(hub.client_identities().is_empty());

        for host in [
            "unknown.example.com",
            "not-a-dir.example.com",
            "localhost:5000",
        ] {
            let tls = endpoints.tls(host).unwrap();
            assert!(tls.is_empty(), "{host}");
            assert!(tls.root_certificates().unwrap().is_empty());
            assert!(tls.identity().unwrap().is_none());
        }
        assert!(
            Endpoints::new()
                .tls("reg.example.com:5000")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn half_client_pairs_are_errors_naming_the_file() {
        let cases = [
            (
                "client.cert",
                "missing key client.key for this client certificate",
            ),
            (
                "client.key",
                "missing client certificate client.cert for this key",
            ),
        ];
        for (name, want) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("reg.example.com");
            write(&dir, name, &fixture(name));
            let err = Endpoints::new()
                .with_certs_dirs([tmp.path()])
                .tls("reg.example.com")
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&dir.join(name).display().to_string()),
                "{text}"
            );
            assert!(text.contains(want), "{text}");
        }
    }

    #[test]
    fn unreadable_certificates_are_errors_naming_the_file() {
        let cases: [(&str, &[u8], &str); 3] = [
            ("ca.crt", b"not a certificate", "no pem certificate in it"),
            ("empty.crt", b"", "no pem certificate in it"),
            (
                "broken.crt",
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                "not a pem certificate bundle",
            ),
        ];
        for (name, bytes, want) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("reg.example.com");
            write(&dir, name, bytes);
            let tls = Endpoints::new()
                .with_certs_dirs([tmp.path()])
                .tls("reg.example.com")
                .unwrap();
            let err = tls.root_certificates().unwrap_err().to_string();
            assert!(
                err.starts_with(&dir.join(name).display().to_string()),
                "{err}"
            );
            assert!(err.contains(want), "{name}: {err}");
            assert!(tls.apply(reqwest::Client::builder()).is_err());
        }

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("reg.example.com");
        write(&dir, "client.cert", b"garbage");
        write(&dir, "client.key", b"garbage");
        let tls = Endpoints::new()
            .with_certs_dirs([tmp.path()])
            .tls("reg.example.com")
            .unwrap();
        let err = tls.identity().unwrap_err().to_string();
        assert!(
            err.contains("client.cert: not a pem certificate with its key"),
            "{err}"
        );
    }
}
