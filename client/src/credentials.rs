//! Docker's credential model, so a user's existing `docker login` just works.
//!
//! The file is docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `$HOME/.docker/config.json`). Credentials live in its `auths` map (`auth` = base64 of
//! `user:password`, or `username`/`password`, or `identitytoken`), or in a credential helper:
//! `credHelpers` names one per registry, `credsStore` names the default. A helper is the program
//! `docker-credential-<name>`, run as `get`, `store` or `erase` with docker's protocol.
//!
//! Docker Hub is filed under `https://index.docker.io/v1/`, whichever of `docker.io`,
//! `index.docker.io` or `registry-1.docker.io` names it; every other registry under its host
//! (and port).
//!
//! Everything here blocks (file I/O, helper processes): async code calls it from
//! `spawn_blocking`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::endpoint::{DOCKER_HUB_ALIASES, is_docker_hub};

/// The key docker files Docker Hub's credentials under, in `auths` and with helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// The username a helper gives (and is given) when the secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// What a helper prints when it has nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// The fields of an `auths` entry that hold a credential; `login` and `logout` replace these and
/// keep the others (`email`, anything newer docker adds).
const CREDENTIAL_FIELDS: [&str; 5] = [
    "auth",
    "username",
    "password",
    "identitytoken",
    "registrytoken",
];

/// A registry credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and password (or personal access token), sent with Basic auth or to a token
    /// endpoint.
    Basic { username: String, password: String },
    /// An OAuth refresh token (docker's `identitytoken`), exchanged at the token endpoint.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot locate the docker config: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
    #[error("invalid registry host {0:?}")]
    InvalidHost(String),
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("parsing {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("credential helper {program} not found in PATH")]
    HelperNotFound { program: String },
    #[error("running credential helper {program}: {source}")]
    HelperRun { program: String, source: io::Error },
    #[error("credential helper {program} {action} failed ({status}): {output}")]
    HelperFailed {
        program: String,
        action: &'static str,
        status: String,
        /// What the helper printed, stdout then stderr.
        output: String,
    },
    #[error("credential helper {program} get printed invalid json: {source}")]
    HelperOutput {
        program: String,
        source: serde_json::Error,
    },
}

/// The key docker files `host`'s credentials under: [`DOCKER_HUB_SERVER`] for Docker Hub, else
/// the host (and port), lowercased. A URL (`https://host/v2/`) is accepted, as `docker login`
/// accepts one.
pub fn server_key(host: &str) -> Result<String, CredentialError> {
    let name = hostname_of(host);
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@');
    if !valid {
        return Err(CredentialError::InvalidHost(host.to_owned()));
    }
    Ok(if is_docker_hub(&name) {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        name
    })
}

/// The host of a key or URL: scheme and path dropped, lowercased (docker's `ConvertToHostname`).
fn hostname_of(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// The host a key names, with Docker Hub's aliases folded into one, for comparing keys.
fn canonical_host(key: &str) -> String {
    let name = hostname_of(key);
    if is_docker_hub(&name) {
        DOCKER_HUB_ALIASES[0].to_owned()
    } else {
        name
    }
}

/// A docker config file and where to find its credential helpers.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    path: PathBuf,
    /// The `PATH` helpers are looked up in (and run with); `None` is the process's.
    search_path: Option<OsString>,
}

impl DockerConfig {
    /// The config docker uses: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`;
    /// helpers are looked up in `$PATH`.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// As [`DockerConfig::from_env`], with the variables (`DOCKER_CONFIG`, `HOME`, `PATH`) read
    /// through `var`. An empty variable counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, CredentialError> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let dir = match set("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(set("HOME").ok_or(CredentialError::NoConfigDir)?).join(".docker"),
        };
        Ok(Self {
            path: dir.join("config.json"),
            search_path: set("PATH"),
        })
    }

    /// The config file at `path`; helpers are looked up in the process's `PATH`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            search_path: None,
        }
    }

    /// Look up (and run) credential helpers in `path` (a `PATH`-style list) instead.
    pub fn with_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.search_path = Some(path.into());
        self
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential for a registry host, as docker finds it: from the host's helper when one is
    /// configured, else from `auths` (the host, then `https://host`, `http://host`, `host/v1/`,
    /// then any key with the same host). `Ok(None)` when there is none, or no config file.
    pub fn get(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let key = server_key(host)?;
        let file = ConfigFile::load(&self.path)?;
        if let Some(helper) = file.helper_for(&key)? {
            return self.helper(&helper).get(&key);
        }
        let Some(auths) = file.object("auths")? else {
            return Ok(None);
        };
        match find_entry(auths, &key) {
            Some((entry_key, entry)) => decode_entry(&self.path, entry_key, entry),
            None => Ok(None),
        }
    }

    /// `docker login`: file `username` and `secret` for `host`. A `username` of `<token>` makes
    /// `secret` an identity token, as in the helper protocol.
    pub fn login(&self, host: &str, username: &str, secret: &str) -> Result<(), CredentialError> {
        let credential = if username == TOKEN_USERNAME {
            Credential::IdentityToken(secret.to_owned())
        } else {
            Credential::Basic {
                username: username.to_owned(),
                password: secret.to_owned(),
            }
        };
        self.store(host, &credential)
    }

    /// File `credential` for `host` as docker does: through the host's helper when one is
    /// configured (leaving an empty `auths` entry, as docker does), else in `auths`. Every other
    /// key of the file is kept.
    pub fn store(&self, host: &str, credential: &Credential) -> Result<(), CredentialError> {
        let key = server_key(host)?;
        let mut file = ConfigFile::load(&self.path)?;
        let helper = file.helper_for(&key)?;
        if let Some(helper) = &helper {
            self.helper(helper).store(&key, credential)?;
        }
        let entry = file.entry_mut(&key)?;
        for field in CREDENTIAL_FIELDS {
            entry.remove(field);
        }
        if helper.is_none() {
            match credential {
                Credential::Basic { username, password } => {
                    let auth = STANDARD.encode(format!("{username}:{password}"));
                    entry.insert("auth".into(), Value::String(auth));
                }
                Credential::IdentityToken(token) => {
                    entry.insert("identitytoken".into(), Value::String(token.clone()));
                }
            }
        }
        file.save()
    }

    /// `docker logout`: erase `host`'s credential from its helper (if one is configured) and
    /// every `auths` entry for the host. Returns whether a credential was there.
    pub fn logout(&self, host: &str) -> Result<bool, CredentialError> {
        let key = server_key(host)?;
        let host = canonical_host(&key);
        let mut file = ConfigFile::load(&self.path)?;
        let mut removed = false;
        if let Some(helper) = file.helper_for(&key)? {
            removed |= self.helper(&helper).erase(&key)?;
        }
        let mut changed = false;
        if let Some(auths) = file.object_mut("auths")? {
            let keys: Vec<String> = auths
                .keys()
                .filter(|k| canonical_host(k) == host)
                .cloned()
                .collect();
            for k in keys {
                if let Some(entry) = auths.remove(&k) {
                    removed |= has_credential(&entry);
                    changed = true;
                }
            }
        }
        if changed {
            file.save()?;
        }
        Ok(removed)
    }

    fn helper(&self, name: &str) -> Helper<'_> {
        Helper {
            program: format!("docker-credential-{name}"),
            search_path: self.search_path.as_deref(),
        }
    }
}

/// The `auths` entry for `key`, in docker's order of preference; entries without a credential
/// (docker leaves `{}` when a helper holds it) are skipped.
fn find_entry<'a>(auths: &'a Map<String, Value>, key: &str) -> Option<(&'a str, &'a Value)> {
    let mut candidates = vec![key.to_owned()];
    if key != DOCKER_HUB_SERVER {
        candidates.extend([
            format!("https://{key}"),
            format!("http://{key}"),
            format!("{key}/v1/"),
        ]);
    }
    let exact = candidates.iter().find_map(|c| {
        auths
            .get_key_value(c)
            .filter(|(_, v)| has_credential(v))
            .map(|(k, v)| (k.as_str(), v))
    });
    exact.or_else(|| {
        let host = canonical_host(key);
        auths
            .iter()
            .find(|(k, v)| canonical_host(k) == host && has_credential(v))
            .map(|(k, v)| (k.as_str(), v))
    })
}

fn nonempty_str<'a>(entry: &'a Value, field: &str) -> Option<&'a str> {
    entry
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn has_credential(entry: &Value) -> bool {
    ["auth", "identitytoken", "username"]
        .iter()
        .any(|f| nonempty_str(entry, f).is_some())
}

fn decode_entry(
    path: &Path,
    key: &str,
    entry: &Value,
) -> Result<Option<Credential>, CredentialError> {
    if let Some(token) = nonempty_str(entry, "identitytoken") {
        return Ok(Some(Credential::IdentityToken(token.to_owned())));
    }
    if let Some(auth) = nonempty_str(entry, "auth") {
        // Docker writes padded base64; accept it unpadded too, as other tools write it.
        let engine = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let decoded = engine
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((username, password)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
            return Err(CredentialError::Invalid {
                path: path.to_owned(),
                detail: format!("auths[{key:?}].auth is not the base64 of user:password"),
            });
        };
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    if let Some(username) = nonempty_str(entry, "username") {
        let password = entry.get("password").and_then(Value::as_str).unwrap_or("");
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    Ok(None)
}

/// The config file as a JSON object, so that writing it back keeps every key hoist does not know.
struct ConfigFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl ConfigFile {
    /// A missing or empty file is an empty config, as for docker.
    fn load(path: &Path) -> Result<Self, CredentialError> {
        let doc = match fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(Value::Object(doc)) => doc,
                Ok(_) => {
                    return Err(CredentialError::Invalid {
                        path: path.to_owned(),
                        detail: "not a json object".into(),
                    });
                }
                Err(source) => {
                    return Err(CredentialError::Parse {
                        path: path.to_owned(),
                        source,
                    });
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    fn invalid(&self, detail: String) -> CredentialError {
        CredentialError::Invalid {
            path: self.path.clone(),
            detail,
        }
    }

    fn object(&self, name: &str) -> Result<Option<&Map<String, Value>>, CredentialError> {
        match self.doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(self.invalid(format!("{name} is not an object"))),
        }
    }

    fn object_mut(
        &mut self,
        name: &str,
    ) -> Result<Option<&mut Map<String, Value>>, CredentialError> {
        self.object(name)?;
        Ok(self.doc.get_mut(name).and_then(Value::as_object_mut))
    }

    /// The `auths` entry for exactly `key`, created (with `auths`) when missing.
    fn entry_mut(&mut self, key: &str) -> Result<&mut Map<String, Value>, CredentialError> {
        if self.object("auths")?.is_none() {
            self.doc.insert("auths".into(), Value::Object(Map::new()));
        }
        match self.doc.get("auths").and_then(|a| a.get(key)) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => return Err(self.invalid(format!("auths[{key:?}] is not an object"))),
        }
        let auths = self
            .doc
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .expect("auths was made an object above");
        let entry = auths
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        Ok(entry.as_object_mut().expect("entry is an object"))
    }

    /// The helper that holds `key`'s credential: its `credHelpers` entry (an empty one means the
    /// file itself, as in docker), else `credsStore`.
    fn helper_for(&self, key: &str) -> Result<Option<String>, CredentialError> {
        if let Some(helpers) = self.object("credHelpers")? {
            let host = canonical_host(key);
            let mut names = vec![key, host.as_str()];
            if key == DOCKER_HUB_SERVER {
                names.extend(DOCKER_HUB_ALIASES);
            }
            for name in names {
                if let Some(helper) = helpers.get(name) {
                    let helper = helper.as_str().ok_or_else(|| {
                        self.invalid(format!("credHelpers[{name:?}] is not a string"))
                    })?;
                    return Ok(Some(helper.to_owned()).filter(|h| !h.is_empty()));
                }
            }
        }
        match self.doc.get("credsStore") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(store)) => Ok(Some(store.clone()).filter(|s| !s.is_empty())),
            Some(_) => Err(self.invalid("credsStore is not a string".into())),
        }
    }

    /// Write the file the way docker does: tab-indented JSON, through a temporary file in the same
    /// directory renamed over it, mode 0600, the directory made (0700) when missing. A symlinked
    /// config.json is written through to its target.
    fn save(&self) -> Result<(), CredentialError> {
        let target = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let err = |source| CredentialError::Write {
            path: target.clone(),
            source,
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err)?;
        let mut bytes = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut bytes,
            serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        );
        self.doc
            .serialize(&mut ser)
            .map_err(|e| err(io::Error::other(e)))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(&dir)
            .map_err(err)?;
        tmp.write_all(&bytes).map_err(err)?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&target).map_err(|e| err(e.error))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

/// What a helper reads on `store` and prints on `get`.
#[derive(Serialize, Deserialize)]
struct HelperCredential {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// A `docker-credential-<name>` program.
struct Helper<'a> {
    program: String,
    search_path: Option<&'a OsStr>,
}

impl Helper<'_> {
    fn get(&self, key: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(stdout) = self.run("get", key.as_bytes())? else {
            return Ok(None);
        };
        let found: HelperCredential =
            serde_json::from_slice(&stdout).map_err(|source| CredentialError::HelperOutput {
                program: self.program.clone(),
                source,
            })?;
        Ok(match (found.username.as_str(), found.secret) {
            (_, secret) if secret.is_empty() => None,
            (TOKEN_USERNAME, secret) => Some(Credential::IdentityToken(secret)),
            (username, secret) => Some(Credential::Basic {
                username: username.to_owned(),
                password: secret,
            }),
        })
    }

    fn store(&self, key: &str, credential: &Credential) -> Result<(), CredentialError> {
        let (username, secret) = match credential {
            Credential::Basic { username, password } => (username.clone(), password.clone()),
            Credential::IdentityToken(token) => (TOKEN_USERNAME.to_owned(), token.clone()),
        };
        let input = serde_json::to_vec(&HelperCredential {
            server_url: key.to_owned(),
            username,
            secret,
        })
        .expect("strings serialise");
        self.run("store", &input)?;
        Ok(())
    }

    /// Whether the helper had a credential to erase.
    fn erase(&self, key: &str) -> Result<bool, CredentialError> {
        Ok(self.run("erase", key.as_bytes())?.is_some())
    }

    fn locate(&self) -> Result<PathBuf, CredentialError> {
        let path = self
            .search_path
            .map(OsStr::to_owned)
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    PathBuf::from(".").join(&self.program)
                } else {
                    dir.join(&self.program)
                }
            })
            .find(|candidate| {
                fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| CredentialError::HelperNotFound {
                program: self.program.clone(),
            })
    }

    /// Run `action` with `input` on stdin: `Some(stdout)` on success, `None` when the helper
    /// says it has no credential for the server.
    fn run(&self, action: &'static str, input: &[u8]) -> Result<Option<Vec<u8>>, CredentialError> {
        let exe = self.locate()?;
        let run_err = |source| CredentialError::HelperRun {
            program: self.program.clone(),
            source,
        };
        let mut command = Command::new(&exe);
        command
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = self.search_path {
            command.env("PATH", path);
        }
        // A program that was just written can be briefly busy (ETXTBSY) while another thread's
        // fork still holds the writer's descriptor: try again a few times.
        let mut attempt = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10 * attempt));
                }
                other => break other.map_err(run_err)?,
            }
        };
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(input))
            .unwrap_or(Ok(()));
        let out = child.wait_with_output().map_err(run_err)?;
        if out.status.success() {
            // A helper that exited 0 without reading its input is fine; one that failed is
            // reported below with what it printed.
            return Ok(Some(out.stdout));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let output = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if output.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        if let Err(e) = written
            && output.is_empty()
        {
            return Err(run_err(e));
        }
        Err(CredentialError::HelperFailed {
            program: self.program.clone(),
            action,
            status: out.status.to_string(),
            output: if output.is_empty() {
                "no output".into()
            } else {
                output
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A docker config dir and a bin dir for fake helpers, both in a temp dir. Helpers are found
    /// through an explicit search path, so no test touches the process environment.
    struct Fixture {
        dir: tempfile::TempDir,
        config: DockerConfig,
    }

    /// A helper that keeps one file per server URL beside itself and logs every call.
    const FAKE_HELPER: &str = r#"#!/bin/sh
store="$(dirname "$0")/store-$(basename "$0")"
mkdir -p "$store"
input=$(cat)
printf '%s %s\n' "$1" "$input" >> "$store.log"
case "$1" in
  store)
    url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf '%s' "$input" > "$store/$(printf '%s' "$url" | tr '/:' '__')" ;;
  get|erase)
    f="$store/$(printf '%s' "$input" | tr '/:' '__')"
    if [ ! -f "$f" ]; then echo "credentials not found in native keychain"; exit 1; fi
    if [ "$1" = get ]; then cat "$f"; else rm "$f"; fi ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
"#;

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("bin")).unwrap();
            let mut search = OsString::from(dir.path().join("bin"));
            search.push(":/usr/bin:/bin");
            let config =
                DockerConfig::at(dir.path().join("docker/config.json")).with_search_path(search);
            Self { dir, config }
        }

        fn write(&self, config: &Value) {
            fs::create_dir_all(self.config.path().parent().unwrap()).unwrap();
            fs::write(self.config.path(), serde_json::to_vec(config).unwrap()).unwrap();
        }

        fn read(&self) -> Value {
            serde_json::from_slice(&fs::read(self.config.path()).unwrap()).unwrap()
        }

        fn helper(&self, name: &str, script: &str) {
            let path = self
                .dir
                .path()
                .join("bin")
                .join(format!("docker-credential-{name}"));
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn helper_log(&self, name: &str) -> String {
            let log = self
                .dir
                .path()
                .join(format!("bin/store-docker-credential-{name}.log"));
            fs::read_to_string(log).unwrap_or_default()
        }
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn locates_the_config_like_docker() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars<'_>, Option<&str>)] = &[
            (
                &[("DOCKER_CONFIG", "/cfg"), ("HOME", "/home/u")],
                Some("/cfg/config.json"),
            ),
            (&[("HOME", "/home/u")], Some("/home/u/.docker/config.json")),
            (
                &[("DOCKER_CONFIG", ""), ("HOME", "/home/u")],
                Some("/home/u/.docker/config.json"),
            ),
            (&[("DOCKER_CONFIG", "/cfg")], Some("/cfg/config.json")),
            (&[("PATH", "/bin")], None),
        ];
        for (vars, want) in cases {
            let var = |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            };
            match (DockerConfig::from_vars(var), want) {
                (Ok(config), Some(want)) => assert_eq!(config.path(), Path::new(want), "{vars:?}"),
                (Err(CredentialError::NoConfigDir), None) => {}
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
        let config = DockerConfig::from_vars(|name| {
            (name != "DOCKER_CONFIG").then(|| OsString::from(format!("/{name}")))
        })
        .unwrap();
        assert_eq!(config.search_path.as_deref(), Some(OsStr::new("/PATH")));
    }

    #[test]
    fn server_keys_follow_docker() {
        let cases = [
            ("docker.io", Some(DOCKER_HUB_SERVER)),
            ("index.docker.io", Some(DOCKER_HUB_SERVER)),
            ("registry-1.docker.io", Some(DOCKER_HUB_SERVER)),
            ("Docker.IO", Some(DOCKER_HUB_SERVER)),
            ("https://index.docker.io/v1/", Some(DOCKER_HUB_SERVER)),
            ("localhost:5000", Some("localhost:5000")),
            ("Registry.Example.com", Some("registry.example.com")),
            (
                "https://registry.example.com/v2/",
                Some("registry.example.com"),
            ),
            ("http://10.0.0.1:5000", Some("10.0.0.1:5000")),
            ("[::1]:5000", Some("[::1]:5000")),
            ("", None),
            ("https://", None),
            ("a b", None),
            ("user@host", None),
        ];
        for (host, want) in cases {
            match (server_key(host), want) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{host:?}"),
                (Err(CredentialError::InvalidHost(h)), None) => assert_eq!(h, host),
                (got, want) => panic!("{host:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn lookup_follows_dockers_key_order() {
        let f = Fixture::new();
        f.write(&json!({"auths": {
            "exact.example.com": {"auth": b64("exact:1")},
            "https://exact.example.com": {"auth": b64("https:1")},
            "https://scheme.example.com": {"auth": b64("https:2")},
            "http://scheme.example.com": {"auth": b64("http:2")},
            "http://plain.example.com": {"auth": b64("http:3")},
            "v1.example.com/v1/": {"auth": b64("v1:4")},
            "https://legacy.example.com/v2/": {"auth": b64("legacy:5")},
            "helped.example.com": {},
            "https://helped.example.com": {"auth": b64("behind-empty:6")},
            "https://index.docker.io/v1/": {"auth": b64("hub:7")},
            "mixed.Example.com:5000": {"auth": b64("mixed:8")},
        }}));
        let cases = [
            ("exact.example.com", Some(basic("exact", "1"))),
            ("scheme.example.com", Some(basic("https", "2"))),
            ("plain.example.com", Some(basic("http", "3"))),
            ("v1.example.com", Some(basic("v1", "4"))),
            ("legacy.example.com", Some(basic("legacy", "5"))),
            ("helped.example.com", Some(basic("behind-empty", "6"))),
            ("docker.io", Some(basic("hub", "7"))),
            ("index.docker.io", Some(basic("hub", "7"))),
            ("registry-1.docker.io", Some(basic("hub", "7"))),
            ("MIXED.example.com:5000", Some(basic("mixed", "8"))),
            ("mixed.example.com", None),
            ("other.example.com", None),
            ("exact.example.com:5000", None),
        ];
        for (host, want) in cases {
            assert_eq!(f.config.get(host).unwrap(), want, "{host}");
        }
    }

    #[test]
    fn docker_hub_found_under_legacy_alias_keys() {
        for key in [
            "docker.io",
            "https://registry-1.docker.io/v2/",
            "index.docker.io",
        ] {
            let f = Fixture::new();
            f.write(&json!({"auths": {key: {"auth": b64("hub:pw")}}}));
            for host in DOCKER_HUB_ALIASES {
                assert_eq!(
                    f.config.get(host).unwrap(),
                    Some(basic("hub", "pw")),
                    "{key} via {host}"
                );
            }
        }
    }

    #[test]
    fn entry_forms_decode() {
        let cases = [
            (json!({"auth": b64("u:p")}), Some(basic("u", "p"))),
            (
                json!({"auth": STANDARD.encode("u:pw").trim_end_matches('=')}),
                Some(basic("u", "pw")),
            ),
            (
                json!({"auth": b64("u:p:with:colons")}),
                Some(basic("u", "p:with:colons")),
            ),
            (
                json!({"username": "u", "password": "p"}),
                Some(basic("u", "p")),
            ),
            (
                json!({"auth": b64("from-auth:1"), "username": "u", "password": "p"}),
                Some(basic("from-auth", "1")),
            ),
            (
                json!({"auth": b64("u:"), "identitytoken": "refresh"}),
                Some(Credential::IdentityToken("refresh".into())),
            ),
            (json!({"email": "u@example.com"}), None),
            (json!({"auth": ""}), None),
        ];
        for (entry, want) in cases {
            let f = Fixture::new();
            f.write(&json!({"auths": {"r.example.com": entry}}));
            assert_eq!(f.config.get("r.example.com").unwrap(), want, "{entry}");
        }
    }

    #[test]
    fn broken_files_are_named_in_errors() {
        let f = Fixture::new();
        assert_eq!(f.config.get("r.example.com").unwrap(), None, "no file");

        let path = f.config.path().display().to_string();
        let cases = [
            (r#"{"auths": "#, "parsing"),
            (r#"[1, 2]"#, "not a json object"),
            (r#"{"auths": []}"#, "auths is not an object"),
            (r#"{"credsStore": 3}"#, "credsStore is not a string"),
            (
                r#"{"credHelpers": {"r.example.com": 3}}"#,
                "is not a string",
            ),
            (
                r#"{"auths": {"r.example.com": {"auth": "!!!"}}}"#,
                r#"auths["r.example.com"].auth is not the base64 of user:password"#,
            ),
            (
                r#"{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}"#,
                "not the base64 of user:password",
            ),
        ];
        fs::create_dir_all(f.config.path().parent().unwrap()).unwrap();
        for (text, want) in cases {
            fs::write(f.config.path(), text).unwrap();
            let err = f.config.get("r.example.com").unwrap_err().to_string();
            assert!(err.contains(&path), "{text}: {err}");
            assert!(err.contains(want), "{text}: {err}");
        }
        fs::write(f.config.path(), " \n").unwrap();
        assert_eq!(f.config.get("r.example.com").unwrap(), None, "empty file");
    }

    #[test]
    fn login_lookup_logout_round_trip() {
        let f = Fixture::new();
        f.config
            .login("localhost:5000", "alice", "s3cret:x")
            .unwrap();

        let meta = fs::metadata(f.config.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_meta = fs::metadata(f.config.path().parent().unwrap()).unwrap();
        assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700);
        let text = fs::read_to_string(f.config.path()).unwrap();
        assert!(
            text.starts_with("{\n\t\"auths\""),
            "tab-indented like docker: {text}"
        );
        assert_eq!(
            f.read(),
            json!({"auths": {"localhost:5000": {"auth": b64("alice:s3cret:x")}}})
        );
        let leftovers: Vec<_> = fs::read_dir(f.config.path().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            [OsString::from("config.json")],
            "no temp files left"
        );

        assert_eq!(
            f.config.get("localhost:5000").unwrap(),
            Some(basic("alice", "s3cret:x"))
        );
        f.config.login("localhost:5000", "bob", "other").unwrap();
        assert_eq!(
            f.config.get("localhost:5000").unwrap(),
            Some(basic("bob", "other"))
        );

        assert!(f.config.logout("localhost:5000").unwrap());
        assert_eq!(f.config.get("localhost:5000").unwrap(), None);
        assert_eq!(f.read(), json!({"auths": {}}));
        assert!(
            !f.config.logout("localhost:5000").unwrap(),
            "already logged out"
        );
    }

    #[test]
    fn logout_without_a_file_writes_nothing() {
        let f = Fixture::new();
        assert!(!f.config.logout("r.example.com").unwrap());
        assert!(!f.config.path().exists());
    }

    #[test]
    fn unknown_fields_are_kept() {
        let f = Fixture::new();
        let original = json!({
            "auths": {
                "other.example.com": {"auth": b64("o:p"), "email": "o@example.com"},
                "r.example.com": {"auth": b64("old:pw"), "email": "r@example.com"}
            },
            "HttpHeaders": {"User-Agent": "x"},
            "psFormat": "table {{.ID}}",
            "plugins": {"buildx": {"enabled": true}},
            "x-future": [1, 2, {"deep": null}]
        });
        f.write(&original);

        f.config.login("r.example.com", "new", "pw2").unwrap();
        let mut want = original.clone();
        want["auths"]["r.example.com"] = json!({"auth": b64("new:pw2"), "email": "r@example.com"});
        assert_eq!(f.read(), want);

        assert!(f.config.logout("r.example.com").unwrap());
        let mut want = original;
        want["auths"]
            .as_object_mut()
            .unwrap()
            .remove("r.example.com");
        assert_eq!(f.read(), want);
    }

    #[test]
    fn docker_hub_login_uses_the_index_key_and_logout_clears_aliases() {
        let f = Fixture::new();
        f.write(&json!({"auths": {"docker.io": {"auth": b64("stale:1")}}}));
        f.config
            .login("registry-1.docker.io", "hubuser", "pw")
            .unwrap();
        assert_eq!(
            f.read()["auths"][DOCKER_HUB_SERVER],
            json!({"auth": b64("hubuser:pw")})
        );
        assert_eq!(
            f.config.get("docker.io").unwrap(),
            Some(basic("hubuser", "pw"))
        );
        assert!(f.config.logout("index.docker.io").unwrap());
        assert_eq!(f.read(), json!({"auths": {}}));
        assert_eq!(f.config.get("docker.io").unwrap(), None);
    }

    #[test]
    fn identity_tokens_in_the_file() {
        let f = Fixture::new();
        f.config
            .login("r.example.com", TOKEN_USERNAME, "refresh-token")
            .unwrap();
        assert_eq!(
            f.read(),
            json!({"auths": {"r.example.com": {"identitytoken": "refresh-token"}}})
        );
        assert_eq!(
            f.config.get("r.example.com").unwrap(),
            Some(Credential::IdentityToken("refresh-token".into()))
        );
        f.config.store("r.example.com", &basic("u", "p")).unwrap();
        assert_eq!(
            f.read(),
            json!({"auths": {"r.example.com": {"auth": b64("u:p")}}}),
            "a password replaces the token"
        );
    }

    #[test]
    fn creds_store_round_trip_through_a_helper() {
        let f = Fixture::new();
        f.helper("fake", FAKE_HELPER);
        f.write(&json!({"credsStore": "fake", "auths": {}}));

        assert_eq!(
            f.config.get("r.example.com:5000").unwrap(),
            None,
            "helper has none"
        );
        f.config.login("r.example.com:5000", "alice", "pw").unwrap();
        assert_eq!(
            f.read(),
            json!({"credsStore": "fake", "auths": {"r.example.com:5000": {}}}),
            "secret stays out of the file, as with docker"
        );
        assert!(
            f.helper_log("fake").contains(
                r#"store {"ServerURL":"r.example.com:5000","Username":"alice","Secret":"pw"}"#
            ),
            "{}",
            f.helper_log("fake")
        );
        assert_eq!(
            f.config.get("r.example.com:5000").unwrap(),
            Some(basic("alice", "pw"))
        );

        f.config
            .login("r.example.com:5000", TOKEN_USERNAME, "refresh")
            .unwrap();
        assert_eq!(
            f.config.get("r.example.com:5000").unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert!(
            f.helper_log("fake")
                .contains(r#""Username":"<token>","Secret":"refresh""#)
        );

        assert!(f.config.logout("r.example.com:5000").unwrap());
        assert!(f.helper_log("fake").contains("erase r.example.com:5000"));
        assert_eq!(f.read(), json!({"credsStore": "fake", "auths": {}}));
        assert_eq!(f.config.get("r.example.com:5000").unwrap(), None);
        assert!(
            !f.config.logout("r.example.com:5000").unwrap(),
            "helper had none"
        );
    }

    #[test]
    fn docker_hub_is_asked_of_helpers_by_its_index_key() {
        let f = Fixture::new();
        f.helper("fake", FAKE_HELPER);
        f.write(&json!({"credHelpers": {"docker.io": "fake"}}));
        f.config.login("docker.io", "hubuser", "pw").unwrap();
        assert_eq!(
            f.config.get("registry-1.docker.io").unwrap(),
            Some(basic("hubuser", "pw"))
        );
        let log = f.helper_log("fake");
        assert!(
            log.contains(r#""ServerURL":"https://index.docker.io/v1/""#),
            "{log}"
        );
        assert!(log.contains("get https://index.docker.io/v1/"), "{log}");
    }

    #[test]
    fn cred_helpers_override_creds_store() {
        let f = Fixture::new();
        f.helper("fake", FAKE_HELPER);
        f.write(&json!({
            "credsStore": "absent",
            "credHelpers": {"helped.example.com": "fake", "localhost:5000": ""},
            "auths": {"localhost:5000": {"auth": b64("file:pw")}}
        }));
        f.config.login("helped.example.com", "h", "pw").unwrap();
        assert_eq!(
            f.config.get("helped.example.com").unwrap(),
            Some(basic("h", "pw"))
        );
        assert_eq!(
            f.config.get("localhost:5000").unwrap(),
            Some(basic("file", "pw")),
            "an empty credHelpers entry means the file"
        );
        let err = f.config.get("other.example.com").unwrap_err();
        assert!(
            matches!(&err, CredentialError::HelperNotFound { program } if program == "docker-credential-absent"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "credential helper docker-credential-absent not found in PATH"
        );
    }

    #[test]
    fn helper_failures_are_reported_with_their_output() {
        let f = Fixture::new();
        f.helper(
            "failing",
            "#!/bin/sh\ncat >/dev/null\necho 'keychain is locked' >&2\nexit 3\n",
        );
        f.helper("garbled", "#!/bin/sh\ncat >/dev/null\necho 'not json'\n");
        f.helper("empty", "#!/bin/sh\ncat >/dev/null\necho '{}'\n");
        f.write(&json!({"credHelpers": {
            "failing.example.com": "failing",
            "garbled.example.com": "garbled",
            "empty.example.com": "empty",
        }}));

        let err = f.config.get("failing.example.com").unwrap_err();
        assert_eq!(
            err.to_string(),
            "credential helper docker-credential-failing get failed (exit status: 3): keychain is locked"
        );
        let before = fs::read(f.config.path()).unwrap();
        let err = f.config.login("failing.example.com", "u", "p").unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-failing store failed"),
            "{err}"
        );
        assert_eq!(
            fs::read(f.config.path()).unwrap(),
            before,
            "a failed store leaves the file alone"
        );
        let err = f.config.logout("failing.example.com").unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-failing erase failed"),
            "{err}"
        );

        let err = f.config.get("garbled.example.com").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "credential helper docker-credential-garbled get printed invalid json"
            ),
            "{err}"
        );
        assert_eq!(f.config.get("empty.example.com").unwrap(), None);
    }

    #[test]
    fn a_symlinked_config_is_written_through() {
        let f = Fixture::new();
        let real = f.dir.path().join("real-config.json");
        fs::write(&real, r#"{"psFormat": "x"}"#).unwrap();
        fs::create_dir_all(f.config.path().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, f.config.path()).unwrap();
        f.config.login("r.example.com", "u", "p").unwrap();
        assert!(fs::symlink_metadata(f.config.path()).unwrap().is_symlink());
        let written: Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
        assert_eq!(
            written,
            json!({"psFormat": "x", "auths": {"r.example.com": {"auth": b64("u:p")}}})
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!(
            "{:?} {:?}",
            basic("alice", "hunter2"),
            Credential::IdentityToken("tok-123".into())
        );
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
    }
}
