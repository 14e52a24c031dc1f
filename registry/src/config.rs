//! `hoist serve` configuration: a TOML file, each key overridable by a `HOIST_*` variable, and
//! defaults that need neither.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid {key} {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A secret from the environment: never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where blobs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The data directory.
    #[default]
    Fs,
    /// An S3 or S3-compatible bucket (`[storage.s3]`).
    S3,
}

/// `[storage]`: the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub driver: StorageKind,
    pub s3: S3Settings,
}

/// `[storage.s3]`: a bucket, as the CNCF registry's `storage.s3` names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    pub bucket: String,
    /// `http(s)://host:port` of an S3-compatible store (path-style requests); empty for AWS.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Every key lives under this prefix.
    pub prefix: String,
    /// Answer blob GETs with a presigned URL (`307`), as the CNCF registry's `redirect`.
    pub redirect: bool,
}

/// `[database]`: metadata and auth on PostgreSQL instead of the data directory's SQLite.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db` (or key=value form).
    pub url: Secret,
    /// Connections per replica, at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PEM CAs to verify the database server's certificate with: the connection is then TLS,
    /// never plain. Without it, `sslmode=require` in the URL verifies with the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl DatabaseConfig {
    /// Whether the connection is to be TLS: a `ca_file`, or `sslmode=require` in the URL.
    pub fn wants_tls(&self) -> bool {
        self.ca_file.is_some() || self.url.0.contains("sslmode=require")
    }
}

fn default_pool_size() -> usize {
    16
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a listen address as the CNCF registry's `http.addr` (Go's `net.Listen`) does:
/// `HOST:PORT` with an IP or a host name (resolved; its first IPv4 address, else its first
/// address), `[V6]:PORT`, or `:PORT` for every interface (IPv4's `0.0.0.0`).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected HOST:PORT or :PORT".into());
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port {port:?}: expected a number from 0 to 65535"))?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(format!("invalid IPv6 address {host:?}"));
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

fn deserialize_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(|reason| serde::de::Error::custom(format!("listen {s:?}: {reason}")))
}

/// The registry's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (written as [`parse_listen`] reads it).
    #[serde(deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// Where blobs and metadata live (the `fs` driver).
    pub data: PathBuf,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Seconds between garbage collections; 0 turns them off.
    pub gc_interval_secs: u64,
    /// Links and blobs younger than this many seconds are never collected (pushes in progress).
    pub gc_grace_secs: u64,
    /// A file holding the initial `admin` password: with it (or `HOIST_ADMIN_PASSWORD`), the
    /// registry creates `admin` on first start and runs closed (auth on every route).
    pub admin_password_file: Option<PathBuf>,
    /// Allow listening open (no auth) on a non-loopback address.
    pub insecure_no_auth: bool,
    /// The `service` of the token challenge and the audience of registry tokens.
    pub auth_service: String,
    /// The registry's public base URL (`https://registry.example.com`): the challenge's realm is
    /// `<auth_realm>/token`. Without it the realm is built from the request's `Host`.
    pub auth_realm: Option<String>,
    /// Lifetime of registry tokens in seconds.
    pub token_ttl_secs: u64,
    /// Failed logins per user (and 6x that per remote address) within a minute before logins
    /// are refused for `login_lockout_secs`.
    pub login_max_failures: u32,
    /// Failed logins per remote address within a minute (0: six times `login_max_failures`).
    pub login_max_failures_per_addr: u32,
    pub login_lockout_secs: u64,
    /// Open connections at most; beyond it new clients wait until one closes.
    pub max_connections: usize,
    /// Seconds a request's header may take to arrive, from its first byte (slowloris).
    pub header_timeout_secs: u64,
    /// Seconds a connection with no request in progress stays open.
    pub idle_timeout_secs: u64,
    /// Seconds a request body may go without bytes, and a client may take no response bytes.
    pub body_timeout_secs: u64,
    /// `[storage]`: where blobs live (the data directory, or S3).
    pub storage: StorageConfig,
    /// `[database]`: PostgreSQL for metadata and auth (replicas share it); none: SQLite in the
    /// data directory.
    pub database: Option<DatabaseConfig>,
    /// PEM certificate (and chain) to serve TLS with; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CAs whose client certificates authenticate as the user their subject's CN names.
    pub tls_client_ca: Option<PathBuf>,
    /// Load balancers whose `X-Forwarded-For` names the client (addresses or ranges,
    /// `10.0.0.0/8`), for the login limiter and the audit log; `HOIST_TRUSTED_PROXIES` is a
    /// comma-separated list. None by default: the header is then ignored.
    pub trusted_proxies: Vec<String>,
    /// `HOIST_ADMIN_PASSWORD` (environment only, never from the file).
    #[serde(skip)]
    pub admin_password: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data: PathBuf::from("./hoist-data"),
            log_format: LogFormat::Text,
            gc_interval_secs: 24 * 3600,
            gc_grace_secs: 24 * 3600,
            admin_password_file: None,
            insecure_no_auth: false,
            auth_service: "hoist".into(),
            auth_realm: None,
            token_ttl_secs: 300,
            login_max_failures: 5,
            login_max_failures_per_addr: 0,
            login_lockout_secs: 60,
            max_connections: 4096,
            header_timeout_secs: 30,
            idle_timeout_secs: 60,
            body_timeout_secs: 60,
            storage: StorageConfig::default(),
            database: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            trusted_proxies: Vec::new(),
            admin_password: None,
        }
    }
}

impl Config {
    /// Loads the defaults, then the file (if any), then `HOIST_LISTEN`, `HOIST_DATA` and
    /// `HOIST_LOG_FORMAT` from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        if let Some(v) = env("HOIST_LISTEN") {
            config.listen = parse_listen(&v).map_err(|reason| ConfigError::Invalid {
                key: "HOIST_LISTEN".into(),
                value: v.clone(),
                reason,
            })?;
        }
        for (key, slot) in [
            ("HOIST_GC_INTERVAL_SECS", &mut config.gc_interval_secs),
            ("HOIST_GC_GRACE_SECS", &mut config.gc_grace_secs),
            ("HOIST_TOKEN_TTL_SECS", &mut config.token_ttl_secs),
            ("HOIST_LOGIN_LOCKOUT_SECS", &mut config.login_lockout_secs),
            ("HOIST_HEADER_TIMEOUT_SECS", &mut config.header_timeout_secs),
            ("HOIST_IDLE_TIMEOUT_SECS", &mut config.idle_timeout_secs),
            ("HOIST_BODY_TIMEOUT_SECS", &mut config.body_timeout_secs),
        ] {
            env_number(&env, key, slot)?;
        }
        for (key, slot) in [
            (
                "HOIST_LOGIN_MAX_FAILURES_PER_ADDR",
                &mut config.login_max_failures_per_addr,
            ),
            ("HOIST_LOGIN_MAX_FAILURES", &mut config.login_max_failures),
        ] {
            env_number(&env, key, slot)?;
        }
        env_number(&env, "HOIST_MAX_CONNECTIONS", &mut config.max_connections)?;
        config.storage_env(&env)?;
        for (key, value) in [
            ("max_connections", config.max_connections as u64),
            ("header_timeout_secs", config.header_timeout_secs),
            ("idle_timeout_secs", config.idle_timeout_secs),
            ("body_timeout_secs", config.body_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        for (key, slot) in [
            ("HOIST_ADMIN_PASSWORD_FILE", &mut config.admin_password_file),
            ("HOIST_TLS_CERT", &mut config.tls_cert),
            ("HOIST_TLS_KEY", &mut config.tls_key),
            ("HOIST_TLS_CLIENT_CA", &mut config.tls_client_ca),
        ] {
            if let Some(v) = env(key) {
                *slot = (!v.is_empty()).then(|| PathBuf::from(v));
            }
        }
        if let Some(v) = env("HOIST_ADMIN_PASSWORD")
            && !v.is_empty()
        {
            config.admin_password = Some(Secret(v));
        }
        if let Some(v) = env("HOIST_INSECURE_NO_AUTH") {
            config.insecure_no_auth = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("HOIST_AUTH_SERVICE") {
            config.auth_service = v;
        }
        if let Some(v) = env("HOIST_AUTH_REALM") {
            config.auth_realm = Some(v);
        }
        if config.auth_service.is_empty()
            || config
                .auth_service
                .chars()
                .any(|c| c == '"' || c.is_control())
        {
            return Err(ConfigError::Invalid {
                key: "auth_service".into(),
                value: config.auth_service,
                reason: "expected a non-empty name without quotes".into(),
            });
        }
        if let Some(r) = &config.auth_realm
            && !(r.starts_with("http://") || r.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "auth_realm".into(),
                value: r.clone(),
                reason: "expected an http:// or https:// base url".into(),
            });
        }
        if config.token_ttl_secs == 0 || config.login_max_failures == 0 {
            return Err(ConfigError::Invalid {
                key: "token_ttl_secs/login_max_failures".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(v) = env("HOIST_TRUSTED_PROXIES") {
            config.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        config.trusted_proxies()?;
        if let Some(v) = env("HOIST_DATA") {
            config.data = PathBuf::from(v);
        }
        if let Some(v) = env("HOIST_LOG_FORMAT") {
            config.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "HOIST_LOG_FORMAT".into(),
                        value: v,
                        reason: "expected text or json".into(),
                    });
                }
            };
        }
        Ok(config)
    }
}

impl Config {
    /// `HOIST_STORAGE_DRIVER`, `HOIST_S3_*`, `HOIST_DATABASE_URL` and `HOIST_DATABASE_POOL_SIZE`;
    /// then checks that the S3 settings are complete when the driver is `s3`.
    fn storage_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("HOIST_STORAGE_DRIVER") {
            self.storage.driver = match v.as_str() {
                "fs" => StorageKind::Fs,
                "s3" => StorageKind::S3,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "HOIST_STORAGE_DRIVER".into(),
                        value: v,
                        reason: "expected fs or s3".into(),
                    });
                }
            };
        }
        let s3 = &mut self.storage.s3;
        for (key, slot) in [
            ("HOIST_S3_BUCKET", &mut s3.bucket),
            ("HOIST_S3_ENDPOINT", &mut s3.endpoint),
            ("HOIST_S3_REGION", &mut s3.region),
            ("HOIST_S3_ACCESS_KEY_ID", &mut s3.access_key_id),
            ("HOIST_S3_SECRET_ACCESS_KEY", &mut s3.secret_access_key.0),
            ("HOIST_S3_PREFIX", &mut s3.prefix),
        ] {
            if let Some(v) = env(key) {
                *slot = v;
            }
        }
        if let Some(v) = env("HOIST_S3_REDIRECT") {
            s3.redirect = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(url) = env("HOIST_DATABASE_URL").filter(|u| !u.is_empty()) {
            let pool_size = self
                .database
                .as_ref()
                .map_or(default_pool_size(), |d| d.pool_size);
            let ca_file = self.database.as_ref().and_then(|d| d.ca_file.clone());
            self.database = Some(DatabaseConfig {
                url: Secret(url),
                pool_size,
                ca_file,
            });
        }
        if let Some(db) = &mut self.database {
            env_number(env, "HOIST_DATABASE_POOL_SIZE", &mut db.pool_size)?;
            if let Some(ca) = env("HOIST_DATABASE_CA_FILE").filter(|c| !c.is_empty()) {
                db.ca_file = Some(PathBuf::from(ca));
            }
            if db.pool_size == 0 {
                return Err(ConfigError::Invalid {
                    key: "database.pool_size".into(),
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.storage.driver == StorageKind::S3 {
            let s3 = &self.storage.s3;
            for (key, value) in [
                ("storage.s3.bucket", &s3.bucket),
                ("storage.s3.region", &s3.region),
                ("storage.s3.access_key_id", &s3.access_key_id),
                ("storage.s3.secret_access_key", &s3.secret_access_key.0),
            ] {
                if value.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        value: String::new(),
                        reason: "the s3 storage driver needs it".into(),
                    });
                }
            }
            if !(s3.endpoint.is_empty()
                || s3.endpoint.starts_with("http://")
                || s3.endpoint.starts_with("https://"))
            {
                return Err(ConfigError::Invalid {
                    key: "storage.s3.endpoint".into(),
                    value: s3.endpoint.clone(),
                    reason: "expected an http:// or https:// url".into(),
                });
            }
        }
        Ok(())
    }
}

/// Sets `slot` from the variable `key`, when it is set: a number, or an error naming the key.
fn env_number<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    env: &impl Fn(&str) -> Option<String>,
    key: &str,
    slot: &mut T,
) -> Result<(), ConfigError> {
    if let Some(v) = env(key) {
        *slot = v
            .parse()
            .map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
                key: key.into(),
                value: v.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

impl Config {
    /// The TLS files, when TLS is configured: a certificate and its key together, and a client
    /// CA only with them.
    /// `trusted_proxies`, parsed; the first entry that is no address or range is the error.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::forwarded::Cidr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|s| {
                crate::forwarded::Cidr::parse(s).map_err(|reason| ConfigError::Invalid {
                    key: "trusted_proxies".into(),
                    value: s.clone(),
                    reason,
                })
            })
            .collect()
    }

    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        let missing = |key: &str, with: &str, value: &Path| ConfigError::Invalid {
            key: key.into(),
            value: value.display().to_string(),
            reason: format!("needs {with} as well"),
        };
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (Some(cert), None) => Err(missing("tls_cert", "tls_key", cert)),
            (None, Some(key)) => Err(missing("tls_key", "tls_cert", key)),
            (None, None) => match &self.tls_client_ca {
                Some(ca) => Err(missing("tls_client_ca", "tls_cert and tls_key", ca)),
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_as_the_cncf_registry_reads_them() {
        let p = |s: &str| parse_listen(s).map(|a| a.to_string());
        assert_eq!(p(":5000").unwrap(), "0.0.0.0:5000");
        assert_eq!(p("localhost:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(p("127.0.0.1:6000").unwrap(), "127.0.0.1:6000");
        assert_eq!(p("[::1]:5000").unwrap(), "[::1]:5000");
        assert_eq!(p("0.0.0.0:0").unwrap(), "0.0.0.0:0");
        for bad in [
            "",
            "5000",
            ":",
            ":http",
            "localhost:99999",
            "::1:5000",
            "[::1:5000",
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hoist.toml");
        std::fs::write(&f, "listen = \":5001\"\n").unwrap();
        let none = |_: &str| None;
        assert_eq!(
            Config::load(Some(&f), none).unwrap().listen.to_string(),
            "0.0.0.0:5001"
        );
        let env = |k: &str| (k == "HOIST_LISTEN").then(|| "localhost:7001".to_string());
        assert_eq!(
            Config::load(None, env).unwrap().listen.to_string(),
            "127.0.0.1:7001"
        );
    }

    #[test]
    fn defaults_file_and_env() {
        let none = |_: &str| None;
        assert_eq!(Config::load(None, none).unwrap(), Config::default());
        assert_eq!(Config::default().listen.to_string(), "127.0.0.1:5000");

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hoist.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:6000\"\ndata = \"/srv/hoist\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), none).unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.data, PathBuf::from("/srv/hoist"));
        assert_eq!(c.log_format, LogFormat::Json);

        let env = |k: &str| (k == "HOIST_LISTEN").then(|| "0.0.0.0:7000".to_string());
        assert_eq!(Config::load(Some(&f), env).unwrap().listen.port(), 7000);

        std::fs::write(&f, "listen = \"nope\"\n").unwrap();
        let e = Config::load(Some(&f), none).unwrap_err();
        assert!(e.to_string().contains("hoist.toml"), "{e}");
        std::fs::write(&f, "colour = 1\n").unwrap();
        assert!(
            Config::load(Some(&f), none)
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
        let gc = |k: &str| (k == "HOIST_GC_INTERVAL_SECS").then(|| "0".to_string());
        assert_eq!(Config::load(None, gc).unwrap().gc_interval_secs, 0);
        let gc_bad = |k: &str| (k == "HOIST_GC_GRACE_SECS").then(|| "soon".to_string());
        assert!(
            Config::load(None, gc_bad)
                .unwrap_err()
                .to_string()
                .contains("HOIST_GC_GRACE_SECS")
        );
        let pw = |k: &str| (k == "HOIST_ADMIN_PASSWORD").then(|| "s3cret-pass".to_string());
        let c = Config::load(None, pw).unwrap();
        assert_eq!(c.admin_password, Some(Secret("s3cret-pass".into())));
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        std::fs::write(
            &f,
            "auth_service = \"registry.example\"\nauth_realm = \"https://r.example\"\ninsecure_no_auth = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), none).unwrap();
        assert_eq!(c.auth_service, "registry.example");
        let per_addr =
            |k: &str| (k == "HOIST_LOGIN_MAX_FAILURES_PER_ADDR").then(|| "100".to_string());
        assert_eq!(
            Config::load(None, per_addr)
                .unwrap()
                .login_max_failures_per_addr,
            100
        );
        assert!(c.insecure_no_auth);
        std::fs::write(&f, "auth_realm = \"r.example\"\n").unwrap();
        assert!(
            Config::load(Some(&f), none)
                .unwrap_err()
                .to_string()
                .contains("auth_realm")
        );
        let tls = |k: &str| match k {
            "HOIST_TLS_CERT" => Some("/etc/hoist/cert.pem".to_string()),
            "HOIST_TLS_KEY" => Some("/etc/hoist/key.pem".to_string()),
            _ => None,
        };
        let files = Config::load(None, tls)
            .unwrap()
            .tls_files()
            .unwrap()
            .unwrap();
        assert_eq!(files.cert, PathBuf::from("/etc/hoist/cert.pem"));
        assert_eq!(files.client_ca, None);
        std::fs::write(&f, "tls_cert = \"/c.pem\"\n").unwrap();
        let e = Config::load(Some(&f), none)
            .unwrap()
            .tls_files()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tls_cert \"/c.pem\": needs tls_key as well"
        );
        std::fs::write(&f, "tls_client_ca = \"/ca.pem\"\n").unwrap();
        let e = Config::load(Some(&f), none)
            .unwrap()
            .tls_files()
            .unwrap_err();
        assert!(e.to_string().contains("needs tls_cert and tls_key"), "{e}");
        assert_eq!(Config::default().tls_files().unwrap(), None);
        std::fs::write(
            &f,
            "[storage]\ndriver = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"r\"\naccess_key_id = \"k\"\nsecret_access_key = \"s3-secret\"\n[database]\nurl = \"postgres://u:db-secret@h/d\"\nca_file = \"/etc/hoist/db-ca.pem\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), none).unwrap();
        assert_eq!(c.storage.driver, StorageKind::S3);
        assert_eq!(c.storage.s3.secret_access_key.0, "s3-secret");
        assert_eq!(c.database.as_ref().unwrap().pool_size, 16);
        assert!(c.database.as_ref().unwrap().wants_tls());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3-secret") && !shown.contains("db-secret"),
            "{shown}"
        );
        let env = |k: &str| match k {
            "HOIST_S3_BUCKET" => Some("other".to_string()),
            "HOIST_DATABASE_POOL_SIZE" => Some("4".to_string()),
            "HOIST_DATABASE_CA_FILE" => Some("/run/secrets/ca.pem".to_string()),
            _ => None,
        };
        let c = Config::load(Some(&f), env).unwrap();
        let db = c.database.as_ref().unwrap();
        assert_eq!(
            (
                c.storage.s3.bucket.as_str(),
                db.pool_size,
                db.ca_file.as_deref()
            ),
            ("other", 4, Some(Path::new("/run/secrets/ca.pem")))
        );
        let no_secret = |k: &str| (k == "HOIST_S3_SECRET_ACCESS_KEY").then(String::new);
        let e = Config::load(Some(&f), no_secret).unwrap_err();
        assert!(
            e.to_string().contains("storage.s3.secret_access_key"),
            "{e}"
        );
        let s3_env = |k: &str| (k == "HOIST_STORAGE_DRIVER").then(|| "s3".to_string());
        let e = Config::load(None, s3_env).unwrap_err();
        assert!(e.to_string().contains("storage.s3.bucket"), "{e}");
        let bad = |k: &str| (k == "HOIST_LOG_FORMAT").then(|| "xml".to_string());
        assert!(
            Config::load(None, bad)
                .unwrap_err()
                .to_string()
                .contains("HOIST_LOG_FORMAT")
        );
    }
}
