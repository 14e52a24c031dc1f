//! The ops of a Dockerfile build, each with its cache key: [`source`] (a base image, `scratch`),
//! [`meta`] (config-only instructions, `WORKDIR`), [`copy`] (`COPY`/`ADD`), [`run`] (`RUN`),
//! [`merge`] (`COPY --link`).

pub(crate) mod copy;
pub(crate) mod merge;
pub(crate) mod meta;
pub(crate) mod run;
pub(crate) mod source;

use crate::build::Result;
use crate::graph::OpError;
use crate::tree::View;

pub(crate) fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// A source path relative to the root (`/`, `.` and `..` resolved, never above the root).
pub(crate) fn normalize_src(s: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// `--chown=user[:group]`: numbers as given; names through the image's /etc/passwd and
/// /etc/group (found through the layers).
pub(crate) fn resolve_chown(spec: &str, view: &View) -> Result<(u32, u32), OpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // Through the layers, symlinks resolved inside the image's root: an /etc/passwd that links
    // to /etc/shadow reads the image's shadow, never the host's.
    let read = |f: &str| -> Option<String> { view.read_to_string(f, 4 << 20).ok().flatten() };
    let find = |file: &str, name: &str| -> Result<(u32, Option<u32>), OpError> {
        let text = read(file).ok_or_else(|| {
            format!(
                "unable to convert {name:?} to an id: the image has no /{file} (use numeric ids)"
            )
        })?;
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id: u32 = f[2]
                    .parse()
                    .map_err(|_| format!("/{file}: bad id for {name}"))?;
                let gid = f.get(3).and_then(|g| g.parse().ok());
                return Ok((id, gid));
            }
        }
        Err(format!("unable to find {name:?} in /{file}").into())
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (u, g) = find("etc/passwd", user)?;
            (u, g)
        }
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find("etc/group", g)?.0,
        },
        None => primary_gid.unwrap_or(uid),
    };
    Ok((uid, gid))
}
