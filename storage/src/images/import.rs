//! `import TARBALL REF`: a rootfs tar (plain or gzipped) becomes a one-layer image, with
//! `--change` instructions applied to its config as `docker import` does.
//!
//! The layer is the input tar exactly as given, gzipped deterministically ([`super::io::gzip`]):
//! the same tarball gives the same layer digest. Its diff id is hashed while the bytes stream
//! from the input through the compressor into a spool file; the tar's headers are read on the way
//! so that a file that is not a tar is refused. Nothing is held in memory.
//!
//! Changes: `CMD`, `ENTRYPOINT` (JSON or shell form; shell form runs `/bin/sh -c`), `ENV`
//! (`K=V ...` or `K V`), `EXPOSE` (`80`, `53/udp`, `8000-8002/tcp`), `USER`, `WORKDIR` (relative
//! paths join the previous one), `LABEL` (`k=v ...`), `VOLUME` (JSON or words) and `STOPSIGNAL`.
//! Unlike docker, `$VAR` references are not expanded.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read};

use hoist_oci::time::rfc3339;
use hoist_oci::{Digest, HashingWriter, Reference, media_type};
use serde_json::{Value, json};

use super::io::{TeeReader, decompressed, gzip};
use super::{ImageError, ImageStore, Platform, Result, repo_name};

/// One `--change` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    User(String),
    Workdir(String),
    Label(Vec<(String, String)>),
    Volume(Vec<String>),
    StopSignal(String),
}

fn bad(change: &str, reason: impl Into<String>) -> ImageError {
    ImageError::Change {
        change: change.to_owned(),
        reason: reason.into(),
    }
}

/// Parses one `--change` instruction (`CMD ["/bin/sh"]`, `ENV A=1 B=2`, ...).
pub fn parse_change(s: &str) -> Result<Change> {
    let trimmed = s.trim();
    let (word, args) = match trimmed.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (trimmed, ""),
    };
    let keyword = word.to_ascii_uppercase();
    let needs_args = |a: &str| {
        if a.is_empty() {
            Err(bad(s, format!("{keyword} needs an argument")))
        } else {
            Ok(())
        }
    };
    match keyword.as_str() {
        "CMD" | "ENTRYPOINT" => {
            needs_args(args)?;
            let argv = match json_array(args) {
                Some(v) => v,
                None if args.starts_with('[') => {
                    return Err(bad(s, "invalid JSON array (use double quotes)"));
                }
                None => vec!["/bin/sh".to_owned(), "-c".to_owned(), args.to_owned()],
            };
            Ok(if keyword == "CMD" {
                Change::Cmd(argv)
            } else {
                Change::Entrypoint(argv)
            })
        }
        "ENV" | "LABEL" => {
            needs_args(args)?;
            let words = split_words(args).map_err(|e| bad(s, e))?;
            let pairs = if words[0].contains('=') {
                words
                    .iter()
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                        _ => Err(bad(s, format!("{w:?} is not KEY=VALUE"))),
                    })
                    .collect::<Result<Vec<_>>>()?
            } else if keyword == "ENV" && words.len() >= 2 {
                // The legacy form: `ENV KEY the rest is the value`.
                let key = &words[0];
                let value = args[args.find(char::is_whitespace).unwrap_or(args.len())..].trim();
                vec![(key.clone(), unquote(value).map_err(|e| bad(s, e))?)]
            } else {
                return Err(bad(s, format!("{keyword} needs KEY=VALUE")));
            };
            Ok(if keyword == "ENV" {
                Change::Env(pairs)
            } else {
                Change::Label(pairs)
            })
        }
        "EXPOSE" => {
            needs_args(args)?;
            let mut ports = Vec::new();
            for w in split_words(args).map_err(|e| bad(s, e))? {
                ports.extend(expose(&w).map_err(|e| bad(s, e))?);
            }
            Ok(Change::Expose(ports))
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" => {
            needs_args(args)?;
            let words = split_words(args).map_err(|e| bad(s, e))?;
            let [one] = words.as_slice() else {
                return Err(bad(s, format!("{keyword} takes exactly one argument")));
            };
            match keyword.as_str() {
                "USER" => Ok(Change::User(one.clone())),
                "WORKDIR" => Ok(Change::Workdir(one.clone())),
                _ => {
                    if !valid_signal(one) {
                        return Err(bad(s, format!("unknown signal {one:?}")));
                    }
                    Ok(Change::StopSignal(one.clone()))
                }
            }
        }
        "VOLUME" => {
            needs_args(args)?;
            let vols = match json_array(args) {
                Some(v) => v,
                None => split_words(args).map_err(|e| bad(s, e))?,
            };
            if vols.iter().any(String::is_empty) {
                return Err(bad(s, "a volume path is empty"));
            }
            Ok(Change::Volume(vols))
        }
        "" => Err(bad(s, "empty instruction")),
        "ONBUILD" | "HEALTHCHECK" | "SHELL" | "ARG" | "FROM" | "RUN" | "COPY" | "ADD"
        | "MAINTAINER" => Err(bad(
            s,
            format!(
                "{keyword} is not supported; use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR"
            ),
        )),
        other => Err(bad(s, format!("unknown instruction {other}"))),
    }
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// Splits on whitespace outside quotes; `"..."` and `'...'` group, `\` escapes outside single
/// quotes.
fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' | '\'' => {
                in_word = true;
                let quote = c;
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated {quote} quote")),
                        Some(q) if q == quote => break,
                        Some('\\') if quote == '"' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        Some(x) => cur.push(x),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err("no arguments".to_owned());
    }
    Ok(words)
}

/// Removes quotes from a whole value (`"a b"` → `a b`), keeping inner spaces.
fn unquote(s: &str) -> std::result::Result<String, String> {
    if s.starts_with('"') || s.starts_with('\'') {
        let words = split_words(s)?;
        if words.len() == 1 {
            return Ok(words.into_iter().next().expect("one word"));
        }
    }
    Ok(s.to_owned())
}

fn expose(w: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match w.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (w, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol {proto:?} in {w:?}"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {p:?}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if hi < lo {
        return Err(format!("invalid port range {ports:?}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP",
        "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    NAMES.contains(&name)
        || name
            .strip_prefix("RTMIN")
            .or_else(|| name.strip_prefix("RTMAX"))
            .is_some_and(|r| r.is_empty() || r.parse::<i32>().is_ok())
}

/// Sets `KEY=value` entries in the `Env` of an image config's `config` object: an entry replaces
/// the one of the same name, in its place at the end, as docker's `ENV`, `--change` and commit do.
pub fn merge_env(
    config: &mut serde_json::Map<String, Value>,
    entries: impl IntoIterator<Item = String>,
) {
    let mut env: Vec<String> = config
        .get("Env")
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    for kv in entries {
        let key = kv.split('=').next().unwrap_or(&kv).to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    config.insert("Env".into(), json!(env));
}

/// Applies changes to an image config's `config` object (docker's PascalCase keys).
pub(crate) fn apply_changes(config: &mut serde_json::Map<String, Value>, changes: &[Change]) {
    fn set_map(config: &mut serde_json::Map<String, Value>, key: &str, items: &[String]) {
        let entry = config
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        let map = entry.as_object_mut().expect("an object");
        for i in items {
            map.insert(i.clone(), json!({}));
        }
    }
    for c in changes {
        match c {
            Change::Cmd(v) => {
                config.insert("Cmd".into(), json!(v));
            }
            Change::Entrypoint(v) => {
                config.insert("Entrypoint".into(), json!(v));
            }
            Change::Env(pairs) => merge_env(config, pairs.iter().map(|(k, v)| format!("{k}={v}"))),
            Change::Label(pairs) => {
                let mut labels: BTreeMap<String, String> = config
                    .get("Labels")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default();
                labels.extend(pairs.iter().cloned());
                config.insert("Labels".into(), json!(labels));
            }
            Change::Expose(ports) => set_map(config, "ExposedPorts", ports),
            Change::Volume(vols) => set_map(config, "Volumes", vols),
            Change::User(u) => {
                config.insert("User".into(), json!(u));
            }
            Change::Workdir(w) => {
                let dir = if w.starts_with('/') {
                    w.clone()
                } else {
                    let base = config
                        .get("WorkingDir")
                        .and_then(Value::as_str)
                        .filter(|b| !b.is_empty())
                        .unwrap_or("/");
                    format!("{}/{w}", base.trim_end_matches('/'))
                };
                config.insert("WorkingDir".into(), json!(dir));
            }
            Change::StopSignal(s) => {
                config.insert("StopSignal".into(), json!(s));
            }
        }
    }
}

/// What an import produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub manifest: Digest,
    /// The image id (config digest).
    pub id: Digest,
    pub layer: Digest,
    pub diff_id: Digest,
}

impl ImageStore {
    /// `import TARBALL REF`: stores the rootfs tar `reader` (plain or gzipped) as a one-layer
    /// image for this host's platform, applies `changes`, and tags it as `reference`.
    pub async fn import<R: Read + Send + 'static>(
        &self,
        reader: R,
        reference: &Reference,
        changes: &[String],
    ) -> Result<Imported> {
        let changes = changes
            .iter()
            .map(|c| parse_change(c))
            .collect::<Result<Vec<_>>>()?;
        let tag = reference
            .tag()
            .ok_or_else(|| ImageError::TagRequired(reference.to_string()))?
            .clone();
        let repo = repo_name(reference)?;
        let tmp = self.tmp.clone();
        let (spool, layer, layer_size, diff_id) = tokio::task::spawn_blocking(move || {
            let spool = tempfile::NamedTempFile::new_in(&tmp).map_err(|e| {
                ImageError::io(format!("creating a spool file in {}", tmp.display()), e)
            })?;
            let file = spool
                .reopen()
                .map_err(|e| ImageError::io("opening the spool file", e))?;
            let out = gzip(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            )));
            let input = decompressed(reader, "the tarball")
                .map_err(|e| ImageError::io("reading the tarball", e))?;
            let mut archive = tar::Archive::new(TeeReader::new(input, out));
            let not_tar = |e: std::io::Error| {
                ImageError::Archive(format!("the tarball is not a tar archive: {e}"))
            };
            for entry in archive.entries().map_err(not_tar)? {
                entry.map_err(not_tar)?;
            }
            let (diff_id, _, out) = archive
                .into_inner()
                .drain()
                .map_err(|e| ImageError::io("reading the tarball", e))?;
            let hashed = out
                .finish()
                .map_err(|e| ImageError::io("compressing the layer", e))?;
            let (layer, size, buffered) = hashed.finish();
            let file = buffered
                .into_inner()
                .map_err(|e| ImageError::io("writing the spool file", e.into_error()))?;
            file.sync_all()
                .map_err(|e| ImageError::io("writing the spool file", e))?;
            Ok::<_, ImageError>((spool, layer, size, diff_id))
        })
        .await
        .map_err(|e| ImageError::io("import task", std::io::Error::other(e)))??;

        self.put_blob_file(&repo, &layer, spool.path()).await?;
        drop(spool);

        let platform = Platform::host();
        let created = rfc3339(crate::metadata::now());
        let mut inner = serde_json::Map::new();
        apply_changes(&mut inner, &changes);
        let mut config = json!({
            "created": created,
            "architecture": platform.architecture,
            "os": platform.os,
            "config": inner,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]},
            "history": [{
                "created": created,
                "created_by": "hoist import",
                "comment": "Imported from tarball",
            }],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        // Checked against the spec types, as everything read back will be.
        let config_bytes = serde_json::to_vec(&config).expect("JSON values serialise");
        super::parse_json::<hoist_oci::spec::image::ImageConfiguration>(
            &Digest::sha256_of(&config_bytes),
            &config_bytes,
        )?;
        let layers = vec![super::layer_descriptor(
            media_type::OCI_LAYER_GZIP,
            &layer,
            layer_size,
        )];
        let stored = self
            .put_image(&repo, media_type::OCI_MANIFEST, &config, layers, Some(&tag))
            .await?;
        let (digest, id) = (stored.manifest, stored.id);
        Ok(Imported {
            manifest: digest,
            id,
            layer,
            diff_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Change {
        parse_change(s).unwrap()
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn changes_parse_as_docker_has_them() {
        assert_eq!(c(r#"CMD ["/bin/sh"]"#), Change::Cmd(v(&["/bin/sh"])));
        assert_eq!(
            c("cmd echo hi"),
            Change::Cmd(v(&["/bin/sh", "-c", "echo hi"]))
        );
        assert_eq!(
            c(r#"ENTRYPOINT ["/app", "--x"]"#),
            Change::Entrypoint(v(&["/app", "--x"]))
        );
        assert_eq!(
            c(r#"ENV A=1 B="two words" C=x\ y"#),
            Change::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x y".into())
            ])
        );
        assert_eq!(
            c("ENV PATH /usr/bin:/bin  more"),
            Change::Env(vec![("PATH".into(), "/usr/bin:/bin  more".into())])
        );
        assert_eq!(
            c("EXPOSE 80 53/udp 8000-8001"),
            Change::Expose(v(&["80/tcp", "53/udp", "8000/tcp", "8001/tcp"]))
        );
        assert_eq!(c("USER 1000:1000"), Change::User("1000:1000".into()));
        assert_eq!(c("WORKDIR /app"), Change::Workdir("/app".into()));
        assert_eq!(
            c(r#"LABEL a=b "c d"=e"#),
            Change::Label(vec![("a".into(), "b".into()), ("c d".into(), "e".into())])
        );
        assert_eq!(c(r#"VOLUME ["/data"]"#), Change::Volume(v(&["/data"])));
        assert_eq!(c("VOLUME /a /b"), Change::Volume(v(&["/a", "/b"])));
        assert_eq!(
            c("STOPSIGNAL SIGQUIT"),
            Change::StopSignal("SIGQUIT".into())
        );
        assert_eq!(c("STOPSIGNAL 9"), Change::StopSignal("9".into()));
    }

    #[test]
    fn bad_changes_are_named() {
        for (change, needle) in [
            ("RUN echo", "not supported"),
            ("FOO bar", "unknown instruction FOO"),
            ("CMD", "needs an argument"),
            ("CMD ['/bin/sh']", "invalid JSON"),
            ("EXPOSE 99999", "invalid port"),
            ("EXPOSE 80/foo", "invalid protocol"),
            ("ENV =x", "not KEY=VALUE"),
            ("LABEL justakey", "needs KEY=VALUE"),
            ("USER a b", "exactly one"),
            ("STOPSIGNAL SIGFOO", "unknown signal"),
            (r#"ENV A="open"#, "unterminated"),
        ] {
            let err = parse_change(change).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{change:?}")), "{msg}");
            assert!(msg.contains(needle), "{change}: {msg}");
        }
    }

    #[test]
    fn changes_apply_to_the_config() {
        let mut config = serde_json::Map::new();
        let changes: Vec<Change> = [
            "ENV A=1 B=2",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub",
            "EXPOSE 80",
            "EXPOSE 443",
            "LABEL x=1",
            r#"CMD ["sh"]"#,
        ]
        .iter()
        .map(|s| c(s))
        .collect();
        apply_changes(&mut config, &changes);
        assert_eq!(
            Value::Object(config),
            json!({
                "Env": ["B=2", "A=3"],
                "WorkingDir": "/app/sub",
                "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
                "Labels": {"x": "1"},
                "Cmd": ["sh"],
            })
        );
    }
}
