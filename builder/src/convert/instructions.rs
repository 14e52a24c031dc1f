//! One Dockerfile instruction -> its vertex (or vertices) in the graph: one function per
//! instruction (`COPY`/`ADD` in [`super::copy`], `RUN` in [`super::run`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::build::{BuildError, BuildOptions, BuildServices, Result};
use crate::context::Context;
use crate::convert::{StageState, instr_error};
use crate::dockerfile::{self, ArgDecl, Command, Dockerfile, Instr, Instruction};
use crate::graph::{Graph, VertexId};
use crate::ops::clean_abs;
use crate::ops::meta::{MetaChange, MetaOp, WorkdirOp, meta_created_by};
use crate::snapshot::Snapshot;

/// What every instruction of a build is converted with (the build's, not one stage's).
pub(crate) struct Converter<'a> {
    pub(crate) env: &'a Arc<BuildServices>,
    pub(crate) context: &'a Arc<Context>,
    pub(crate) df: &'a Dockerfile,
    pub(crate) file: &'a str,
    pub(crate) escape: char,
    /// Global args (`ARG` before the first `FROM`), with `--build-arg` values.
    pub(crate) global: &'a BTreeMap<String, Option<String>>,
    pub(crate) predefined: &'a BTreeMap<String, String>,
    pub(crate) opts: &'a BuildOptions,
    /// The last vertex and state of each stage converted so far.
    pub(crate) tips: &'a [Option<(VertexId, StageState)>],
    /// The source vertices of images named by `COPY --from` or `RUN --mount=from=`.
    pub(crate) from_images: &'a HashMap<String, VertexId>,
}

impl Converter<'_> {
    /// The vertex `--from=NAME` reads: a converted stage (by name or index), else an image.
    pub(crate) fn input_named(&self, f: &str) -> Option<VertexId> {
        let lower = f.to_ascii_lowercase();
        self.df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| f.parse::<usize>().ok())
            .and_then(|j| self.tips.get(j).and_then(|t| t.as_ref()))
            .map(|(v, _)| *v)
            .or_else(|| self.from_images.get(f).copied())
    }
}

/// One instruction being converted: the stage's tip it goes on and its progress label.
pub(crate) struct Step<'a> {
    pub(crate) cx: &'a Converter<'a>,
    pub(crate) instr: &'a Instr,
    pub(crate) tip: VertexId,
    pub(crate) label: String,
}

impl Step<'_> {
    /// An error at the instruction's line.
    pub(crate) fn err(&self, m: String) -> BuildError {
        instr_error(self.cx.file, self.instr, m)
    }

    /// A word expanded with the stage's args and environment, docker's rules.
    pub(crate) fn ex(&self, w: &str, st: &StageState) -> Result<String> {
        dockerfile::expand(w, &|k| st.lookup(k), self.cx.escape)
            .map_err(|e| self.err(e.to_string()))
    }

    /// A config-only vertex on the tip, with its history entry.
    fn meta(&self, graph: &mut Graph<Snapshot>, change: MetaChange) -> VertexId {
        let history = meta_created_by(&change);
        graph.add(
            Arc::new(MetaOp {
                name: self.instr.source.clone(),
                change,
                history,
            }),
            vec![self.tip],
            self.label.clone(),
        )
    }
}

/// The instruction's vertex (the last one when it makes several) on the stage's tip.
pub(crate) fn convert(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
) -> Result<VertexId> {
    let v = match &step.instr.kind {
        Instruction::Arg(decls) => arg(step, graph, st, decls)?,
        Instruction::Env(pairs) => env(step, graph, st, pairs)?,
        Instruction::Label(pairs) => label(step, graph, st, pairs)?,
        Instruction::Maintainer(m) => step.meta(graph, MetaChange::Author(m.clone())),
        Instruction::Expose(ports) => expose(step, graph, st, ports)?,
        Instruction::Volume(vols) => volume(step, graph, st, vols)?,
        Instruction::User(u) => user(step, graph, st, u)?,
        Instruction::Workdir(w) => workdir(step, graph, st, w)?,
        Instruction::Stopsignal(s) => step.meta(graph, MetaChange::StopSignal(step.ex(s, st)?)),
        Instruction::Shell(s) => shell(step, graph, st, s),
        Instruction::Cmd(c) => cmd(step, graph, st, c),
        Instruction::Entrypoint(c) => entrypoint(step, graph, st, c),
        Instruction::Healthcheck(h) => step.meta(
            graph,
            MetaChange::Healthcheck(serde_json::to_value(HealthJson::from(h)).unwrap_or_default()),
        ),
        Instruction::Onbuild(inner) => onbuild(step, graph, st, inner),
        Instruction::Copy(c) | Instruction::Add(c) => super::copy::copy(step, graph, st, c)?,
        Instruction::Run(r) => super::run::run(step, graph, st, r)?,
    };
    Ok(v)
}

/// `ARG`: the stage's args (a `--build-arg`, else the default, else the global value); an empty
/// history entry, as BuildKit's (`ARG A=default`, the default not the value).
fn arg(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    decls: &[ArgDecl],
) -> Result<VertexId> {
    let mut written = Vec::new();
    for a in decls {
        let value = match step.cx.opts.build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => match &a.default {
                Some(d) => Some(step.ex(d, st)?),
                None => step
                    .cx
                    .global
                    .get(&a.name)
                    .cloned()
                    .flatten()
                    .or_else(|| step.cx.predefined.get(&a.name).cloned()),
            },
        };
        written.push(match &a.default {
            Some(d) => format!("{}={}", a.name, step.ex(d, st)?),
            None => a.name.clone(),
        });
        st.args.insert(a.name.clone(), value);
    }
    Ok(step.meta(graph, MetaChange::Arg(written.join(" "))))
}

/// `ENV`: every value is expanded against the environment before this ENV, as BuildKit's
/// (`ENV A=2 B=$A` after `A=1` sets B=1).
fn env(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    pairs: &[(String, String)],
) -> Result<VertexId> {
    let mut set = Vec::new();
    for (k, v) in pairs {
        set.push((step.ex(k, st)?, step.ex(v, st)?));
    }
    for (k, v) in &set {
        st.env.retain(|(n, _)| n != k);
        st.env.push((k.clone(), v.clone()));
    }
    Ok(step.meta(graph, MetaChange::Env(set)))
}

/// `LABEL`: keys and values expanded.
fn label(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    pairs: &[(String, String)],
) -> Result<VertexId> {
    let mut set = Vec::new();
    for (k, v) in pairs {
        set.push((step.ex(k, st)?, step.ex(v, st)?));
    }
    Ok(step.meta(graph, MetaChange::Labels(set)))
}

/// `EXPOSE`: each word expanded into words, each a port spec ([`expose_ports`]).
fn expose(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    ports: &[String],
) -> Result<VertexId> {
    let mut out = Vec::new();
    for p in ports {
        for w in dockerfile::expand_words(p, &|k| st.lookup(k), step.cx.escape)
            .map_err(|e| step.err(e.to_string()))?
        {
            out.extend(expose_ports(&w).map_err(|e| step.err(e))?);
        }
    }
    Ok(step.meta(graph, MetaChange::Expose(out)))
}

/// `VOLUME`: paths expanded, none empty.
fn volume(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    vols: &[String],
) -> Result<VertexId> {
    let mut out = Vec::new();
    for v in vols {
        let v = step.ex(v, st)?;
        if v.trim().is_empty() {
            return Err(step.err("VOLUME specified can not be an empty string".into()));
        }
        out.push(v);
    }
    Ok(step.meta(graph, MetaChange::Volumes(out)))
}

/// `USER`: the stage's user from here on.
fn user(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    u: &str,
) -> Result<VertexId> {
    let u = step.ex(u, st)?;
    st.user = u.clone();
    Ok(step.meta(graph, MetaChange::User(u)))
}

/// `WORKDIR`: as BuildKit 0.8, an absolute path is kept as written, a relative one joined to the
/// current workdir and cleaned. The directory is made (with its parents, owned by USER) in a
/// layer of its own, an empty one when it exists; `/` is config only.
fn workdir(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    w: &str,
) -> Result<VertexId> {
    let w = step.ex(w, st)?;
    let abs = if w.starts_with('/') {
        w
    } else {
        let j = clean_abs(&format!("{}/{w}", st.workdir));
        if j.is_empty() { "/".to_owned() } else { j }
    };
    st.workdir = abs.clone();
    if abs == "/" {
        return Ok(step.meta(graph, MetaChange::Workdir(abs)));
    }
    Ok(graph.add(
        Arc::new(WorkdirOp {
            env: step.cx.env.clone(),
            name: step.instr.source.clone(),
            created_by: format!("WORKDIR {abs}"),
            path: abs,
            user: st.user.clone(),
        }),
        vec![step.tip],
        step.label.clone(),
    ))
}

/// `SHELL`: the shell of later shell forms.
fn shell(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    s: &[String],
) -> VertexId {
    st.shell = s.to_vec();
    step.meta(graph, MetaChange::Shell(s.to_vec()))
}

/// `CMD`: a later ENTRYPOINT of the stage keeps it.
fn cmd(step: &Step<'_>, graph: &mut Graph<Snapshot>, st: &mut StageState, c: &Command) -> VertexId {
    st.cmd_set = true;
    step.meta(graph, MetaChange::Cmd(command_args(c, &st.shell)))
}

/// `ENTRYPOINT`: clears a CMD the stage inherited, not one it set.
fn entrypoint(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    c: &Command,
) -> VertexId {
    step.meta(
        graph,
        MetaChange::Entrypoint {
            args: command_args(c, &st.shell),
            keep_cmd: st.cmd_set,
        },
    )
}

/// `ONBUILD`: a trigger for the stages and images built on this one.
fn onbuild(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &mut StageState,
    inner: &Instr,
) -> VertexId {
    st.onbuild.push(inner.source.clone());
    step.meta(graph, MetaChange::OnBuild(inner.source.clone()))
}

/// The ports one EXPOSE word names, as docker's `nat.ParsePortSpecs` reads it: `80`,
/// `80/udp`, a range `8000-8002/tcp` (one port each), an `ip:host:container` spec's container
/// part; the number normalised (`080` is `80`), the protocol lowercased.
pub(crate) fn expose_ports(spec: &str) -> std::result::Result<Vec<String>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let container = parts[parts.len() - 1];
    let (port, proto) = match container.split_once('/') {
        _ if container.is_empty() || container.starts_with('/') => ("", ""),
        None => (container, "tcp"),
        Some((p, "")) => (p, "tcp"),
        Some((p, proto)) => (p, proto.split('/').next().unwrap_or(proto)),
    };
    if port.is_empty() {
        return Err(format!("EXPOSE {spec}: no port specified"));
    }
    // Go's ParseUint: digits only (no sign), at most 65535.
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let range = |r: &str| match r.split_once('-') {
        None => number(r).map(|p| (p, p)),
        Some((a, b)) => match (number(a), number(b.split('-').next().unwrap_or(b))) {
            (Some(a), Some(b)) if a <= b => Some((a, b)),
            _ => None,
        },
    };
    if parts.len() >= 2 {
        let host = parts[parts.len() - 2];
        if !host.is_empty() && range(host).is_none() {
            return Err(format!("EXPOSE {spec}: invalid hostPort: {host}"));
        }
    }
    let (start, end) =
        range(port).ok_or_else(|| format!("EXPOSE {spec}: invalid containerPort: {port}"))?;
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {spec}: invalid proto: {proto}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

pub(crate) fn command_args(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(a) => a.clone(),
        Command::Shell(s) => {
            let mut a = shell.to_vec();
            a.push(s.clone());
            a
        }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthJson {
    pub(crate) test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retries: Option<u32>,
}

impl From<&dockerfile::Healthcheck> for HealthJson {
    fn from(h: &dockerfile::Healthcheck) -> Self {
        HealthJson {
            test: h.test.clone(),
            interval: h.interval,
            timeout: h.timeout,
            start_period: h.start_period,
            start_interval: h.start_interval,
            retries: h.retries,
        }
    }
}
