//! `COPY` and `ADD` -> a [`CopyOp`] (and a [`MergeOp`] onto the parent with `--link`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::build::Result;
use crate::convert::StageState;
use crate::convert::instructions::Step;
use crate::dockerfile::{self, Instruction};
use crate::graph::{Graph, VertexId};
use crate::ops::copy::{CopyFrom, CopyOp};
use crate::ops::merge::MergeOp;
use crate::snapshot::Snapshot;

/// `COPY`/`ADD`: sources and destination expanded against the stage (a relative destination
/// under its workdir), the source (the context, a stage or an image) resolved.
pub(crate) fn copy(
    step: &Step<'_>,
    graph: &mut Graph<Snapshot>,
    st: &StageState,
    c: &dockerfile::Copy,
) -> Result<VertexId> {
    let is_add = matches!(step.instr.kind, Instruction::Add(_));
    let mut sources = Vec::new();
    for s in &c.sources {
        sources.push(step.ex(s, st)?);
    }
    let dest_raw = step.ex(&c.dest, st)?;
    let dest = if dest_raw.starts_with('/') {
        dest_raw.clone()
    } else {
        format!("{}/{}", st.workdir.trim_end_matches('/'), dest_raw)
    };
    // `.` (the workdir) is a directory, as BuildKit's dockerfile2llb reads it.
    let dest_is_dir = dest_raw.ends_with('/')
        || dest_raw.ends_with("/.")
        || dest_raw == "."
        || dest_raw.is_empty()
        || sources.len() + c.heredocs.len() > 1;
    let chown = c.chown.as_deref().map(|s| step.ex(s, st)).transpose()?;
    let chmod = copy_chmod(step, st, c)?;
    let mut heredocs = Vec::new();
    for h in &c.heredocs {
        let content = if h.expand {
            dockerfile::expand_heredoc(&h.content, &|k| st.lookup(k), step.cx.escape)
                .map_err(|e| step.err(e.to_string()))?
        } else {
            h.content.clone()
        };
        heredocs.push((h.name.clone(), content));
    }
    let (from, from_input) = copy_from(step, st, c)?;
    // `--link --chown=NAME` needs the parent's /etc/passwd and /etc/group: only then is
    // the parent an input of the linked copy.
    let link_parent = c.link
        && chown
            .as_deref()
            .is_some_and(|spec| spec.split(':').any(|part| part.parse::<u32>().is_err()));
    // BuildKit's form: the sources and destination expanded, the flags left out.
    let copy_created_by = format!(
        "{} {} {} # buildkit",
        if is_add { "ADD" } else { "COPY" },
        sources.join(" "),
        dest_raw
    );
    let op = CopyOp {
        env: step.cx.env.clone(),
        name: step.instr.source.clone(),
        is_add,
        sources,
        heredocs,
        dest,
        dest_is_dir,
        chown,
        chmod,
        exclude: c.exclude.clone(),
        parents: c.parents,
        link: c.link,
        link_parent,
        from,
        created_by: copy_created_by,
        checksum: c.checksum.as_deref().map(|s| step.ex(s, st)).transpose()?,
        fetched: parking_lot::Mutex::new(HashMap::new()),
        keep_git_dir: c.keep_git_dir,
        git: parking_lot::Mutex::new(Vec::new()),
    };
    let mut inputs = Vec::new();
    if !c.link || link_parent {
        inputs.push(step.tip);
    }
    inputs.extend(from_input);
    let copied = graph.add(Arc::new(op), inputs, step.label.clone());
    Ok(if c.link {
        // The linked layer goes on the parent; cheap, so recomputed, never cached.
        graph.add(
            Arc::new(MergeOp {
                name: step.instr.source.clone(),
            }),
            vec![step.tip, copied],
            String::new(),
        )
    } else {
        copied
    })
}

/// `--chmod=`: an octal mode, at most 0o7777.
fn copy_chmod(step: &Step<'_>, st: &StageState, c: &dockerfile::Copy) -> Result<Option<u32>> {
    Ok(
        match c.chmod.as_deref().map(|s| step.ex(s, st)).transpose()? {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        step.err(format!("invalid --chmod={m}: expected an octal mode"))
                    })?,
            ),
            None => None,
        },
    )
}

/// Where the files come from: the context, or (`--from=`) a stage or an image, then the op's
/// second input.
fn copy_from(
    step: &Step<'_>,
    st: &StageState,
    c: &dockerfile::Copy,
) -> Result<(CopyFrom, Option<VertexId>)> {
    match c.from.as_deref().map(|f| step.ex(f, st)).transpose()? {
        None => Ok((CopyFrom::Context(step.cx.context.clone()), None)),
        Some(f) => match step.cx.input_named(&f) {
            Some(v) => Ok((CopyFrom::Input, Some(v))),
            None => Err(step.err(format!("COPY --from={f}: no such stage or image"))),
        },
    }
}
