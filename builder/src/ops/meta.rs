//! Config-only ops (`ENV`, `LABEL`, `CMD`...: a history entry with `empty_layer`) and `WORKDIR`
//! (the directory made in a layer of its own).

use std::fs;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::build::{BuildServices, Result};
use crate::graph::{KeyBuilder, LogSink, Op, OpError, OpKind};
use crate::layer::{commit_layer, layer_dirs, layer_key, push_history};
use crate::ops::resolve_chown;
use crate::snapshot::Snapshot;
use crate::tree::{NewDir, Upper, View};

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) enum MetaChange {
    Env(Vec<(String, String)>),
    Labels(Vec<(String, String)>),
    Author(String),
    Expose(Vec<String>),
    Volumes(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Shell(Vec<String>),
    Cmd(Vec<String>),
    /// `keep_cmd`: a CMD was set earlier in the stage (an inherited one is cleared).
    Entrypoint {
        args: Vec<String>,
        keep_cmd: bool,
    },
    Healthcheck(Value),
    OnBuild(String),
    /// A stage built on another stage ran its ONBUILD triggers: they are not inherited.
    ClearOnBuild,
    /// No change: `ARG`'s history entry.
    Arg(String),
}

pub(crate) struct MetaOp {
    pub(crate) name: String,
    pub(crate) change: MetaChange,
    pub(crate) history: Option<String>,
}

/// The history entry BuildKit's dockerfile2llb writes for a config-only instruction (its Go
/// formatting: `EXPOSE map[80/tcp:{}]`, `CMD ["a" "b"]`, `VOLUME [/a /b]`); `ONBUILD` and
/// `HEALTHCHECK`'s own forms aside, none for `ONBUILD`.
pub(crate) fn meta_created_by(change: &MetaChange) -> Option<String> {
    let q = |a: &[String]| {
        a.iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pairs = |set: &[(String, String)]| {
        set.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(match change {
        MetaChange::Env(set) => format!("ENV {}", pairs(set)),
        MetaChange::Labels(set) => format!("LABEL {}", pairs(set)),
        MetaChange::Author(a) => format!("MAINTAINER {a}"),
        MetaChange::Expose(ports) => {
            let mut p: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
            p.sort();
            p.dedup();
            format!("EXPOSE map[{}]", p.join(" "))
        }
        MetaChange::Volumes(v) => format!("VOLUME [{}]", v.join(" ")),
        MetaChange::User(u) => format!("USER {u}"),
        MetaChange::Workdir(w) => format!("WORKDIR {w}"),
        MetaChange::StopSignal(s) => format!("STOPSIGNAL {s}"),
        MetaChange::Shell(s) => format!("SHELL [{}]", s.join(" ")),
        MetaChange::Cmd(a) => format!("CMD [{}]", q(a)),
        MetaChange::Entrypoint { args, .. } => format!("ENTRYPOINT [{}]", q(args)),
        MetaChange::Healthcheck(h) => {
            let d = |k: &str| {
                let ns = h[k].as_u64().unwrap_or(0);
                go_duration(ns)
            };
            let test: Vec<String> = h["Test"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "HEALTHCHECK &{{[{}] {:?} {:?} {:?} '\\x{:02x}'}}",
                q(&test),
                d("Interval"),
                d("Timeout"),
                d("StartPeriod"),
                h["Retries"].as_u64().unwrap_or(0)
            )
        }
        MetaChange::OnBuild(_) | MetaChange::ClearOnBuild => return None,
        MetaChange::Arg(a) => format!("ARG {a}"),
    })
}

/// A duration in nanoseconds as Go's `time.Duration` prints it (`5s`, `1m30s`, `0s`).
pub(crate) fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// The `created` time of the newest history entry: config-only steps reuse it, so a rebuild with
/// every layer cached gives the same image config (and id).
pub(crate) fn last_created(config: &Value) -> Value {
    config["history"]
        .as_array()
        .and_then(|h| h.iter().rev().find_map(|e| e.get("created").cloned()))
        .or_else(|| config.get("created").cloned())
        .unwrap_or(Value::Null)
}

impl Op<Snapshot> for MetaOp {
    fn kind(&self) -> OpKind {
        OpKind::Meta
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new("meta");
            k.bytes(&serde_json::to_vec(&self.change)?);
            k.opt(self.history.as_deref());
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        log: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        self.run_owned(inputs.to_vec(), log)
    }
    fn run_owned<'a>(
        &'a self,
        mut inputs: Vec<Arc<Snapshot>>,
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>>
    where
        Snapshot: Send + Sync + 'a,
    {
        async move {
            // Unshared (the solver's last reference): changed in place, not copied.
            let mut s = Arc::unwrap_or_clone(inputs.swap_remove(0));
            apply_meta(&mut s.config, &self.change);
            if let Some(h) = &self.history {
                let created = last_created(&s.config);
                push_history(&mut s.config, h, created, true);
            }
            Ok(s)
        }
        .boxed()
    }
}

pub(crate) fn apply_meta(config: &mut Value, change: &MetaChange) {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let c = config["config"].as_object_mut().expect("config object");
    match change {
        MetaChange::Env(set) => {
            // In place: a step costs what it changes, not the size of the environment.
            let env = c.entry("Env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            let env = env.as_array_mut().expect("env array");
            env.retain(Value::is_string);
            for (k, v) in set {
                let entry = Value::String(format!("{k}={v}"));
                let name = |e: &Value| {
                    let e = e.as_str().unwrap_or_default();
                    e.split_once('=').map_or(e, |(n, _)| n) == k
                };
                match env.iter().position(name) {
                    Some(i) => env[i] = entry,
                    None => env.push(entry),
                }
            }
        }
        MetaChange::Labels(set) => {
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in set {
                labels[k] = json!(v);
            }
        }
        MetaChange::Author(a) => {
            config["author"] = json!(a);
        }
        MetaChange::Expose(ports) => {
            let e = c.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            for p in ports {
                e[p] = json!({});
            }
        }
        MetaChange::Volumes(vols) => {
            let e = c.entry("Volumes").or_insert_with(|| json!({}));
            if !e.is_object() {
                *e = json!({});
            }
            for v in vols {
                e[v] = json!({});
            }
        }
        MetaChange::User(u) => {
            c.insert("User".into(), json!(u));
        }
        MetaChange::Workdir(w) => {
            c.insert("WorkingDir".into(), json!(w));
        }
        MetaChange::StopSignal(s) => {
            c.insert("StopSignal".into(), json!(s));
        }
        MetaChange::Shell(s) => {
            c.insert("Shell".into(), json!(s));
        }
        // An empty list is no value, as BuildKit's config (`omitempty`) writes it: `CMD []`
        // clears the inherited command.
        MetaChange::Cmd(a) if a.is_empty() => {
            c.remove("Cmd");
        }
        MetaChange::Cmd(a) => {
            c.insert("Cmd".into(), json!(a));
        }
        MetaChange::Entrypoint { args, keep_cmd } => {
            if args.is_empty() {
                c.remove("Entrypoint");
            } else {
                c.insert("Entrypoint".into(), json!(args));
            }
            // As BuildKit: a new ENTRYPOINT resets a CMD the stage inherited, not one it set.
            if !keep_cmd {
                c.remove("Cmd");
            }
        }
        MetaChange::Healthcheck(h) => {
            c.insert("Healthcheck".into(), h.clone());
        }
        MetaChange::Arg(_) => {}
        MetaChange::ClearOnBuild => {
            c.remove("OnBuild");
        }
        MetaChange::OnBuild(s) => {
            let e = c.entry("OnBuild").or_insert_with(|| json!([]));
            if !e.is_array() {
                *e = json!([]);
            }
            e.as_array_mut().expect("array").push(json!(s));
        }
    }
}

/// `WORKDIR DIR`: the working directory in the config, and DIR made in a layer of its own (its
/// missing parents too, 0755, owned by the stage's USER), as BuildKit's mkdir file op: an empty
/// layer when DIR exists, an error when a non-directory is in the way. Paths resolve inside the
/// root (a symlinked parent is followed there).
pub(crate) struct WorkdirOp {
    pub(crate) env: Arc<BuildServices>,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) user: String,
    pub(crate) created_by: String,
}

impl Op<Snapshot> for WorkdirOp {
    fn kind(&self) -> OpKind {
        OpKind::Copy
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move {
            let mut k = KeyBuilder::new("workdir");
            layer_key(&mut k, &self.env.layer_options);
            k.str(&self.path).str(&self.user);
            Ok(k.finish())
        }
        .boxed()
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            let parent = inputs[0].clone();
            let dirs = layer_dirs(&self.env, &parent).await?;
            let env = self.env.clone();
            tokio::task::block_in_place(|| -> Result<Snapshot, OpError> {
                let upper = env.temp_dir()?;
                let root = upper.path().join("upper");
                fs::create_dir(&root)?;
                let view = View::open(&dirs)?;
                let up = Upper::new(&root, &view)?;
                let resolved = up.view().resolve(&self.path, true)?;
                let mut exists = true;
                for i in 1..=resolved.len() {
                    match up.view().get(&resolved[..i])? {
                        Some(e) if e.meta.is_dir() => {}
                        Some(_) => {
                            return Err(format!(
                                "WORKDIR {}: /{} is not a directory",
                                self.path,
                                resolved[..i].join("/")
                            )
                            .into());
                        }
                        None => {
                            exists = false;
                            break;
                        }
                    }
                }
                if !exists {
                    let (uid, gid) = workdir_owner(&self.user, &view);
                    up.dir_all(
                        &self.path,
                        NewDir {
                            mode: 0o755,
                            uid,
                            gid,
                        },
                    )?;
                }
                let mut base = (*parent).clone();
                apply_meta(&mut base.config, &MetaChange::Workdir(self.path.clone()));
                commit_layer(&env, &base, &root, &self.created_by)
            })
        }
        .boxed()
    }
}

/// Who owns the directories WORKDIR makes: the stage's USER (`name`, `uid`, `user:group`)
/// through the image's /etc/passwd and /etc/group; root when there is none or the image does not
/// know the name, as BuildKit's file op reads it.
pub(crate) fn workdir_owner(user: &str, view: &View) -> (u32, u32) {
    if user.is_empty() {
        return (0, 0);
    }
    resolve_chown(user, view).unwrap_or_else(|e| {
        tracing::debug!("WORKDIR owner {user}: {e}: root");
        (0, 0)
    })
}
