//! Conversion of a Dockerfile into the op graph (as BuildKit's `dockerfile2llb`): base images are
//! resolved first (from the local store; pulled through the caller's
//! [`Puller`](crate::build::Puller) when missing or with `--pull`), so the environment each
//! instruction sees is known and words are expanded at conversion time with docker's rules. Each
//! stage becomes a chain of vertices: the source (an image, `scratch`, or an earlier stage's last
//! vertex), then one vertex per instruction. `RUN` and `COPY`/`ADD` are cacheable ops producing a
//! layer; the other instructions are config-only ops (a history entry with `empty_layer`). Only the
//! stages the target needs are converted.

mod base;
mod copy;
mod instructions;
mod run;

use base::{base_config, can_run, empty_config, image_snapshot, resolve_image, state_of};
use instructions::{Converter, Step};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_oci::Reference;
use hoist_storage::images::Platform;
use serde_json::Value;

use crate::build::{BuildError, BuildOptions, BuildServices, Plan, Result};
use crate::cache::BuildCache;
use crate::context::Context;
use crate::dockerfile::{self, Dockerfile, Instr, Instruction};
use crate::graph::{Graph, KeyBuilder, VertexId};
use crate::ops::meta::{MetaChange, MetaOp};
use crate::ops::source::SourceOp;
use crate::snapshot::Snapshot;

// Conversion
pub(crate) struct StageState {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) args: BTreeMap<String, Option<String>>,
    pub(crate) workdir: String,
    pub(crate) user: String,
    pub(crate) shell: Vec<String>,
    pub(crate) config: Value,
    /// A CMD was set in this stage: a later ENTRYPOINT keeps it (BuildKit's `cmdSet`; an
    /// ENTRYPOINT clears only a CMD the stage inherited).
    pub(crate) cmd_set: bool,
    /// The stage's ONBUILD triggers (its own ONBUILD lines): a stage built `FROM` it runs them.
    pub(crate) onbuild: Vec<String>,
}

impl StageState {
    fn lookup(&self, k: &str) -> Option<String> {
        // Args first, then ENV overrides them, as docker does.
        if let Some((_, v)) = self.env.iter().rev().find(|(n, _)| n == k) {
            return Some(v.clone());
        }
        self.args.get(k).cloned().flatten()
    }
}

pub(crate) fn predefined_args(platform: &Platform) -> BTreeMap<String, String> {
    let p = match &platform.variant {
        Some(v) => format!("{}/{}/{v}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    };
    let mut m = BTreeMap::new();
    for prefix in ["TARGET", "BUILD"] {
        m.insert(format!("{prefix}PLATFORM"), p.clone());
        m.insert(format!("{prefix}OS"), platform.os.clone());
        m.insert(format!("{prefix}ARCH"), platform.architecture.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        );
    }
    m
}

/// Proxy and platform args docker provides without an `ARG` line.
pub(crate) const IMPLICIT_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub(crate) enum Base {
    Scratch,
    Stage(usize),
    Image(Box<(Reference, hoist_storage::images::Image, Value)>),
}

pub(crate) fn instr_error(file: &str, i: &Instr, message: impl Into<String>) -> BuildError {
    BuildError::Instruction {
        file: file.to_owned(),
        line: i.line,
        source_line: i.source.clone(),
        message: message.into(),
    }
}

/// Each stage's base (expanded), the earlier stages it reads and its `FROM --platform=`.
struct StageDeps {
    bases: Vec<String>,
    deps: Vec<Vec<usize>>,
    platforms: Vec<Option<Platform>>,
}

/// Converts the Dockerfile into a graph for `opts.target` (the last stage by default).
pub async fn plan(env: &Arc<BuildServices>, opts: &BuildOptions) -> Result<Plan> {
    let df = dockerfile::parse(&opts.dockerfile, &opts.dockerfile_name)?;
    if df.stages.is_empty() {
        return Err(BuildError::NoStages);
    }
    let file = opts.dockerfile_name.clone();
    let escape = df.directives.escape;
    let predefined = predefined_args(&env.platform);
    let global = global_args(&df, opts, &predefined, &file)?;
    let target = match &opts.target {
        Some(t) => df
            .stage(t)
            .map(|(i, _)| i)
            .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
        None => df.stages.len() - 1,
    };
    let StageDeps {
        bases,
        deps,
        mut platforms,
    } = stage_deps(&df, &global, &file)?;
    let needed = needed_stages(target, &deps);
    let mut resolved = Vec::new();
    let mut resolved_bases = resolve_bases(
        env,
        &df,
        opts,
        &needed,
        &bases,
        &mut platforms,
        &mut resolved,
    )
    .await?;
    let mut from_image_sources = Vec::new();
    for f in from_image_refs(&df, &needed, &global, &file)? {
        let (reference, image, config) = resolve_image(env, &f, opts.pull, None).await?;
        resolved.push(format!("[internal] load metadata for {reference}"));
        from_image_sources.push((f, reference, image, config));
    }

    // Convert.
    let context = Context::from_dir(&opts.context_dir, opts.dockerfile_path.as_deref())?;
    let hashes = hash_cache_path(&env.cache, context.root());
    let context = Arc::new(context.with_hash_cache(hashes));
    let mut graph: Graph<Snapshot> = Graph::new();
    let mut lines = HashMap::new();
    let mut from_images: HashMap<String, VertexId> = HashMap::new();
    for (name, reference, image, config) in from_image_sources {
        let v = add_image_source(&mut graph, &reference, &image, config, "[internal]".into())?;
        from_images.insert(name, v);
    }
    let mut tips: Vec<Option<(VertexId, StageState)>> =
        (0..df.stages.len()).map(|_| None).collect();
    for i in 0..df.stages.len() {
        if !needed[i] {
            continue;
        }
        let base = resolved_bases[i].take().expect("needed stage resolved");
        let cx = Converter {
            env,
            context: &context,
            df: &df,
            file: &file,
            escape,
            global: &global,
            predefined: &predefined,
            opts,
            tips: &tips,
            from_images: &from_images,
        };
        let tip = convert_stage(&cx, &mut graph, &mut lines, i, base, platforms[i].as_ref())?;
        tips[i] = Some(tip);
    }
    let (target_vertex, _) = tips[target].take().expect("target converted");
    Ok(Plan {
        graph: Arc::new(graph),
        target: target_vertex,
        resolved,
        context: Some(context),
        lines,
        file,
    })
}

/// Global args: the predefined ones, then each `ARG` before the first `FROM` (its default
/// expanded), overridden by `--build-arg`.
fn global_args(
    df: &Dockerfile,
    opts: &BuildOptions,
    predefined: &BTreeMap<String, String>,
    file: &str,
) -> Result<BTreeMap<String, Option<String>>> {
    let escape = df.directives.escape;
    let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (k, v) in predefined {
        global.insert(k.clone(), Some(v.clone()));
    }
    for a in &df.global_args {
        let lookup = |k: &str| global.get(k).cloned().flatten();
        let value = match opts.build_args.get(&a.name) {
            Some(v) => Some(v.clone()),
            None => match &a.default {
                Some(d) => Some(
                    dockerfile::expand(d, &lookup, escape)
                        .map_err(|e| BuildError::Other(format!("{file}: ARG {}: {e}", a.name)))?,
                ),
                None => None,
            },
        };
        global.insert(a.name.clone(), value);
    }
    Ok(global)
}

/// The index of the stage named `name` (case-insensitive).
fn stage_index(df: &Dockerfile, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// An error at a stage's `FROM` line.
fn from_error(file: &str, s: &dockerfile::Stage, message: String) -> BuildError {
    BuildError::Instruction {
        file: file.to_owned(),
        line: s.line,
        source_line: s.source.clone(),
        message,
    }
}

/// Bases and dependencies of each stage: its base, the earlier stages its `FROM`, `COPY --from`
/// and `RUN --mount=from=` name, and its `FROM --platform=` (the platform whose image the stage
/// starts from).
fn stage_deps(
    df: &Dockerfile,
    global: &BTreeMap<String, Option<String>>,
    file: &str,
) -> Result<StageDeps> {
    let escape = df.directives.escape;
    let lookup = |k: &str| global.get(k).cloned().flatten();
    let mut out = StageDeps {
        bases: Vec::with_capacity(df.stages.len()),
        deps: vec![Vec::new(); df.stages.len()],
        platforms: vec![None; df.stages.len()],
    };
    for (i, s) in df.stages.iter().enumerate() {
        let base = dockerfile::expand(&s.base, &lookup, escape)
            .map_err(|e| from_error(file, s, e.to_string()))?;
        let deps = &mut out.deps[i];
        if let Some(j) = stage_index(df, &base).filter(|&j| j < i) {
            deps.push(j);
        }
        for instr in &s.instructions {
            let from = match &instr.kind {
                Instruction::Copy(c) | Instruction::Add(c) => c.from.clone(),
                _ => None,
            };
            if let Some(f) = from {
                if let Some(j) = stage_index(df, &f).filter(|&j| j < i) {
                    deps.push(j);
                } else if let Ok(n) = f.parse::<usize>()
                    && n < i
                {
                    deps.push(n);
                }
            }
            if let Instruction::Run(r) = &instr.kind {
                for m in &r.mounts {
                    if let Some(f) = &m.from
                        && let Some(j) = stage_index(df, f).filter(|&j| j < i)
                    {
                        deps.push(j);
                    }
                }
            }
        }
        if let Some(p) = &s.platform {
            let p = dockerfile::expand(p, &lookup, escape)
                .map_err(|e| from_error(file, s, e.to_string()))?;
            let parsed = Platform::parse(&p)
                .map_err(|e| from_error(file, s, format!("FROM --platform={p}: {e}")))?;
            out.platforms[i] = Some(parsed);
        }
        out.bases.push(base);
    }
    Ok(out)
}

/// The stages `target` needs (itself and what it reads, transitively).
fn needed_stages(target: usize, deps: &[Vec<usize>]) -> Vec<bool> {
    let mut needed = vec![false; deps.len()];
    let mut stack = vec![target];
    while let Some(s) = stack.pop() {
        if !std::mem::replace(&mut needed[s], true) {
            stack.extend(deps[s].iter().copied());
        }
    }
    needed
}

/// Resolves the bases of the needed stages (a stage based on another inherits its platform);
/// each image resolved adds its `load metadata` line to `resolved`.
async fn resolve_bases(
    env: &Arc<BuildServices>,
    df: &Dockerfile,
    opts: &BuildOptions,
    needed: &[bool],
    bases: &[String],
    platforms: &mut [Option<Platform>],
    resolved: &mut Vec<String>,
) -> Result<Vec<Option<Base>>> {
    let mut resolved_bases: Vec<Option<Base>> = (0..df.stages.len()).map(|_| None).collect();
    for i in 0..df.stages.len() {
        if !needed[i] {
            continue;
        }
        let base = &bases[i];
        resolved_bases[i] = Some(if base == "scratch" {
            Base::Scratch
        } else if let Some(j) = stage_index(df, base).filter(|&j| j < i) {
            if platforms[i].is_none() {
                platforms[i] = platforms[j].clone();
            }
            Base::Stage(j)
        } else {
            let (reference, image, config) =
                resolve_image(env, base, opts.pull, platforms[i].as_ref()).await?;
            resolved.push(format!("[internal] load metadata for {reference}"));
            Base::Image(Box::new((reference, image, config)))
        });
    }
    Ok(resolved_bases)
}

/// Images named by COPY --from or RUN --mount from= (not stages) in the needed stages.
fn from_image_refs(
    df: &Dockerfile,
    needed: &[bool],
    global: &BTreeMap<String, Option<String>>,
    file: &str,
) -> Result<Vec<String>> {
    let escape = df.directives.escape;
    let mut from_image_refs: Vec<String> = Vec::new();
    for (i, s) in df.stages.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        for instr in &s.instructions {
            let froms: Vec<&String> = match &instr.kind {
                Instruction::Copy(c) | Instruction::Add(c) => c.from.iter().collect(),
                // RUN --mount=...,from=IMAGE (bind, cache).
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                let lookup = |k: &str| global.get(k).cloned().flatten();
                let f = dockerfile::expand(f, &lookup, escape)
                    .map_err(|e| instr_error(file, instr, e.to_string()))?;
                let is_stage = stage_index(df, &f).is_some_and(|j| j < i)
                    || f.parse::<usize>().is_ok_and(|n| n < i);
                if !is_stage && !from_image_refs.contains(&f) {
                    from_image_refs.push(f);
                }
            }
        }
    }
    Ok(from_image_refs)
}

/// A source vertex for an image (keyed by its digest).
fn add_image_source(
    graph: &mut Graph<Snapshot>,
    reference: &Reference,
    image: &hoist_storage::images::Image,
    config: Value,
    label: String,
) -> Result<VertexId> {
    let snap = image_snapshot(image, config)?;
    let mut k = KeyBuilder::new("image");
    k.str(image.digest.as_str());
    Ok(graph.add(
        Arc::new(SourceOp {
            name: format!("FROM {reference}@{}", image.digest),
            key: k.finish(),
            snapshot: snap,
        }),
        vec![],
        label,
    ))
}

/// The `[stage k/steps]` progress label of a stage's steps.
fn stage_label(stage: &dockerfile::Stage, i: usize, stage_count: usize, k: usize) -> String {
    let steps = 1 + stage
        .instructions
        .iter()
        .filter(|x| is_step(&x.kind))
        .count();
    match (&stage.name, stage_count) {
        (_, 1) => format!("[{k}/{steps}]"),
        (Some(n), _) => format!("[{n} {k}/{steps}]"),
        (None, _) => format!("[stage-{i} {k}/{steps}]"),
    }
}

/// Converts stage `i`: its source, its base's ONBUILD triggers, then its instructions. Returns
/// its last vertex and state.
fn convert_stage(
    cx: &Converter<'_>,
    graph: &mut Graph<Snapshot>,
    lines: &mut HashMap<VertexId, usize>,
    i: usize,
    base: Base,
    platform: Option<&Platform>,
) -> Result<(VertexId, StageState)> {
    let stage = &cx.df.stages[i];
    let label = |k: usize| stage_label(stage, i, cx.df.stages.len(), k);
    let (mut tip, mut st, onbuild) = stage_source(cx, graph, i, base, platform, label(1))?;
    // Args of the stage: only what it declares (global values for global names).
    st.args.clear();
    for k in IMPLICIT_ARGS {
        if let Some(v) = cx.opts.build_args.get(*k) {
            st.args.insert((*k).to_owned(), Some(v.clone()));
        }
    }
    let mut step = 1;
    for instr in onbuild.iter().chain(&stage.instructions) {
        if is_step(&instr.kind) {
            step += 1;
        }
        if let (Instruction::Run(_), Some(p)) = (&instr.kind, platform)
            && !can_run(&cx.env.platform, p)
        {
            return Err(instr_error(
                cx.file,
                instr,
                format!(
                    "RUN in a {p} stage: this host runs {} programs, and no emulator for {} is registered (binfmt_misc)",
                    cx.env.platform, p.architecture
                ),
            ));
        }
        let before = graph.len();
        let s = Step {
            cx,
            instr,
            tip,
            label: if is_step(&instr.kind) {
                label(step)
            } else {
                String::new()
            },
        };
        tip = instructions::convert(&s, graph, &mut st)?;
        // Every vertex the instruction made (a linked COPY makes two) names its line.
        for v in before..graph.len() {
            lines.insert(VertexId(v), instr.line);
        }
    }
    Ok((tip, st))
}

/// The first vertex of stage `i` (its base: `scratch`, an earlier stage, an image), the state
/// it starts with, and the base's ONBUILD triggers (run first in this stage, not inherited).
fn stage_source(
    cx: &Converter<'_>,
    graph: &mut Graph<Snapshot>,
    _i: usize,
    base: Base,
    platform: Option<&Platform>,
    label: String,
) -> Result<(VertexId, StageState, Vec<Instr>)> {
    let mut onbuild: Vec<Instr> = Vec::new();
    let (tip, st) = match base {
        Base::Scratch => {
            let snap = Snapshot {
                layers: Vec::new(),
                config: empty_config(platform.unwrap_or(&cx.env.platform)),
            };
            let v = graph.add(
                Arc::new(SourceOp {
                    name: "FROM scratch".into(),
                    key: b"scratch".to_vec(),
                    snapshot: snap.clone(),
                }),
                vec![],
                "",
            );
            (v, state_of(&snap.config, cx.global))
        }
        Base::Stage(j) => {
            let (v, prev) = cx.tips[j].as_ref().expect("earlier stage converted");
            let st = StageState {
                env: prev.env.clone(),
                args: BTreeMap::new(),
                workdir: prev.workdir.clone(),
                user: prev.user.clone(),
                shell: prev.shell.clone(),
                config: prev.config.clone(),
                cmd_set: false,
                onbuild: Vec::new(),
            };
            // The base stage's ONBUILD triggers run first here and are not inherited, as
            // for an image base (BuildKit reads them from the stage's image config).
            let mut v = *v;
            if !prev.onbuild.is_empty() {
                for t in &prev.onbuild {
                    let of = cx.df.stages[j]
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("stage {j}"));
                    onbuild.extend(onbuild_trigger(t, &of)?);
                }
                v = graph.add(
                    Arc::new(MetaOp {
                        name: "ONBUILD triggers".into(),
                        change: MetaChange::ClearOnBuild,
                        history: None,
                    }),
                    vec![v],
                    String::new(),
                );
            }
            (v, st)
        }
        Base::Image(b) => {
            let (reference, image, mut config) = *b;
            // The base's ONBUILD triggers run first in this stage, and are not inherited.
            if let Some(triggers) = config["config"]
                .as_object_mut()
                .and_then(|c| c.remove("OnBuild"))
                .and_then(|t| t.as_array().cloned())
            {
                for t in triggers.iter().filter_map(|t| t.as_str()) {
                    onbuild.extend(onbuild_trigger(t, &reference.to_string())?);
                }
            }
            let config = base_config(config);
            let st = state_of(&config, cx.global);
            let v = add_image_source(graph, &reference, &image, config, label)?;
            (v, st)
        }
    };
    Ok((tip, st, onbuild))
}

/// Where the file-hash cache of a context directory persists: `$HOIST_HOME/builder/hashes/<sha256
/// of the context's canonical path>.json` (see [`Context::with_hash_cache`]; it only saves
/// re-reading unchanged files, keys are always content digests).
pub(crate) fn hash_cache_path(cache: &BuildCache, root: &Path) -> PathBuf {
    let d = hoist_oci::Digest::sha256_of(root.as_os_str().as_encoded_bytes());
    cache.dir().join("hashes").join(format!("{}.json", d.hex()))
}

/// The instructions of one ONBUILD trigger (`ENV A=1`) of `of` (an image or a stage).
pub(crate) fn onbuild_trigger(trigger: &str, of: &str) -> Result<Vec<Instr>> {
    let parsed = dockerfile::parse(
        &format!("FROM scratch\n{trigger}\n"),
        &format!("ONBUILD trigger of {of}"),
    )?;
    Ok(parsed
        .stages
        .into_iter()
        .next()
        .map(|s| s.instructions)
        .unwrap_or_default())
}

pub(crate) fn is_step(k: &Instruction) -> bool {
    matches!(
        k,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
    )
}
