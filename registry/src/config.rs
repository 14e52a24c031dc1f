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

/// The registry's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where blobs and metadata live (the `fs` driver).
    pub data: PathBuf,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Seconds between garbage collections; 0 turns them off.
    pub gc_interval_secs: u64,
    /// Links and blobs younger than this many seconds are never collected (pushes in progress).
    pub gc_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data: PathBuf::from("./hoist-data"),
            log_format: LogFormat::Text,
            gc_interval_secs: 24 * 3600,
            gc_grace_secs: 24 * 3600,
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
            config.listen =
                v.parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                        key: "HOIST_LISTEN".into(),
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
        }
        for (key, slot) in [
            ("HOIST_GC_INTERVAL_SECS", &mut config.gc_interval_secs),
            ("HOIST_GC_GRACE_SECS", &mut config.gc_grace_secs),
        ] {
            if let Some(v) = env(key) {
                *slot = v
                    .parse()
                    .map_err(|e: std::num::ParseIntError| ConfigError::Invalid {
                        key: key.into(),
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let bad = |k: &str| (k == "HOIST_LOG_FORMAT").then(|| "xml".to_string());
        assert!(
            Config::load(None, bad)
                .unwrap_err()
                .to_string()
                .contains("HOIST_LOG_FORMAT")
        );
    }
}
