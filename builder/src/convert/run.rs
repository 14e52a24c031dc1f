//! `RUN` -> a [`RunOp`]: the command (the shell form through the stage's SHELL, heredocs
//! applied), its environment, network and mounts.

use std::sync::Arc;

use serde_json::Value;

use crate::build::Result;
use crate::convert::StageState;
use crate::convert::instructions::Step;
use crate::dockerfile::{self, Command};
use crate::graph::{Graph, VertexId};
use crate::ops::run::{RunMountSpec, RunOp};
use crate::run::RunRequest;
use crate::snapshot::Snapshot;

/// `RUN`: the step's request, and its mounts (`from=` stages and images are extra inputs).
pub(crate) fn run(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    r: &dockerfile::Run,
) -> Result<VertexId> {
    let network = match r.network.as_deref() {
        Some("none") => false,
        Some(_) => true,
        None => !step.cx.opts.network_none,
    };
    let (mounts, extra_inputs) = run_mounts(step, st, r)?;
    Ok(graph.add(
        Arc::new(RunOp {
            env: step.cx.env.clone(),
            name: step.instr.source.clone(),
            request: RunRequest {
                args: run_args(st, r),
                env: run_env(st),
                cwd: if st.workdir.is_empty() {
                    "/".into()
                } else {
                    st.workdir.clone()
                },
                user: st.user.clone(),
                network,
                binds: Vec::new(),
                tmpfs: Vec::new(),
                image_config: Value::Null,
            },
            mounts,
            secrets: step.cx.opts.secrets.clone(),
            ssh: step.cx.opts.ssh.clone(),
            context: step.cx.context.clone(),
            created_by: format!("RUN {}", run_created_by(r, st)),
        }),
        std::iter::once(step.tip).chain(extra_inputs).collect(),
        step.label.clone(),
    ))
}

/// The command's arguments: the shell form through the stage's SHELL (a shebang heredoc written
/// to a file and executed), the exec form as written.
fn run_args(st: &StageState, r: &dockerfile::Run) -> Vec<String> {
    match r.script() {
        Some(dockerfile::RunScript::Shell(s)) => {
            let mut a = st.shell.clone();
            a.push(s);
            a
        }
        Some(dockerfile::RunScript::Shebang(body)) => {
            let mut a = st.shell.clone();
            a.push(format!(
                "f=$(mktemp); cat > \"$f\" <<'HOIST_EOF'\n{body}HOIST_EOF\nchmod +x \"$f\"; \"$f\"; s=$?; rm -f \"$f\"; exit $s"
            ));
            a
        }
        None => match &r.command {
            Command::Exec(a) => a.clone(),
            Command::Shell(s) => vec![s.clone()],
        },
    }
}

/// `KEY=value`: the stage's environment, then the build args in scope it does not set (they
/// reach RUN's environment, not the image's).
fn run_env(st: &StageState) -> Vec<String> {
    let mut env_list: Vec<String> = st.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // Build args in scope reach RUN's environment (not the image's).
    for (k, v) in &st.args {
        if let Some(v) = v
            && !st.env.iter().any(|(n, _)| n == k)
        {
            env_list.push(format!("{k}={v}"));
        }
    }
    env_list
}

/// The mounts, expanded; a `from=` stage or image is an extra input of the op (its index in the
/// inputs in the spec).
fn run_mounts(
    step: &Step<'_>,
    st: &StageState,
    r: &dockerfile::Run,
) -> Result<(Vec<RunMountSpec>, Vec<VertexId>)> {
    let mut mounts = Vec::new();
    let mut extra_inputs = Vec::new();
    for m in &r.mounts {
        let target = m.target.as_deref().map(|t| step.ex(t, st)).transpose()?;
        // `from=` a stage or an image (bind, cache): an extra input.
        let from = match m.from.as_deref().map(|f| step.ex(f, st)).transpose()? {
            None => None,
            Some(f) => {
                if !matches!(
                    m.kind,
                    dockerfile::MountType::Bind | dockerfile::MountType::Cache
                ) {
                    return Err(step.err(format!(
                        "RUN --mount=type={},from={f}: from= is for bind and cache mounts only",
                        format!("{:?}", m.kind).to_lowercase()
                    )));
                }
                let v = step.cx.input_named(&f).ok_or_else(|| {
                    step.err(format!("RUN --mount from={f}: no such stage or image"))
                })?;
                extra_inputs.push(v);
                Some(extra_inputs.len())
            }
        };
        mounts.push(RunMountSpec {
            kind: m.kind,
            target,
            source: m.source.as_deref().map(|t| step.ex(t, st)).transpose()?,
            id: m.id.as_deref().map(|t| step.ex(t, st)).transpose()?,
            readonly: m.readonly,
            required: m.required,
            env: m.env.clone(),
            from,
            sharing: m.sharing.unwrap_or(dockerfile::CacheSharing::Shared),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
        });
    }
    Ok((mounts, extra_inputs))
}

/// BuildKit's `runCommandString`: `|N K=V ...` for the stage's declared ARGs (an ENV of the same
/// name wins), then the command's arguments (the SHELL's for the shell form) joined by spaces.
fn run_created_by(r: &dockerfile::Run, st: &StageState) -> String {
    let args: Vec<String> = st
        .args
        .iter()
        .map(|(k, v)| {
            let v = st
                .env
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| v.clone())
                .unwrap_or_default();
            format!("{k}={v}")
        })
        .collect();
    let prefix = if args.is_empty() {
        String::new()
    } else {
        format!("|{} {} ", args.len(), args.join(" "))
    };
    let cmd = match &r.command {
        Command::Shell(s) => format!("{} {s}", st.shell.join(" ")),
        Command::Exec(a) => a.join(" "),
    };
    format!("{prefix}{cmd} # buildkit")
}
