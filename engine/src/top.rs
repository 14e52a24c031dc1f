//! `top`: a running container's processes as `ps` shows them, its rows only (docker's daemon's
//! `ContainerTop`).

use std::path::PathBuf;
use std::process::Command;

use hoist_runtime::container::Container;
use hoist_runtime::exec::CgroupPaths;

use crate::{EngineError, Host, Result, ResultExt, bail};

/// The host pids of a running container's processes (its cgroup's).
fn container_pids(c: &Container) -> Result<Vec<i32>> {
    let cg = CgroupPaths::for_container(c.id(), Some(&PathBuf::from(format!("/hoist/{}", c.id()))))
        .with_ctx(|| format!("the cgroups of {}", c.name()))?;
    let mut pids = cg.pids();
    if pids.is_empty()
        && let Some(init) = c.state.init
    {
        pids.push(init.pid);
    }
    Ok(pids)
}

/// docker's refusal of `KEY=PID...` ps options other than `pid=` (they would rename the PID
/// column the rows are picked by).
fn validate_ps_args(args: &str) -> Result<()> {
    let words: Vec<&str> = args.split_ascii_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        // `\s+([^\s]*)=\s*(PID[^\s]*)`: a word after whitespace, `=`, then PID... (maybe in
        // the next word).
        if i == 0 && !args.starts_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        let v = if v.is_empty() {
            words.get(i + 1).copied().unwrap_or("")
        } else {
            v
        };
        if v.starts_with("PID") && k != "pid" {
            bail!("specifying \"{k}={v}\" is not allowed");
        }
    }
    Ok(())
}

/// The titles and rows of `ps` output whose PID is one of `pids`, as docker's daemon keeps them:
/// thread lines (`-` as PID) stay with the process before them, and cells past the last title
/// are joined into its column (CMD has spaces).
pub fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::Invalid("couldn't find PID field in ps output".into()))?;
    let mut rows = Vec::new();
    let mut kept = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col) else {
            continue;
        };
        let keep = if *pid == "-" {
            kept
        } else {
            let p: i32 = pid
                .parse()
                .map_err(|e| EngineError::Invalid(format!("unexpected pid '{pid}': {e}")))?;
            kept = pids.contains(&p);
            kept
        };
        if keep {
            let last = titles.len().saturating_sub(1).min(fields.len());
            let mut row: Vec<String> = fields[..last].iter().map(|s| (*s).to_owned()).collect();
            row.push(fields[last..].join(" "));
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

impl Host {
    /// `ps` run with `ps_args` (default `-ef`) on the processes of the running container
    /// `name`: the titles and the container's rows.
    pub fn top(&self, name: &str, ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        // docker joins the options with spaces and the daemon splits them again.
        let joined = ps_args.join(" ");
        let joined = if joined.is_empty() {
            "-ef".to_owned()
        } else {
            joined
        };
        validate_ps_args(&joined)?;
        let c = self.containers()?.get(name)?;
        if !c.state.running() {
            bail!("container {} is not running", c.id());
        }
        let pids = container_pids(&c)?;
        let args: Vec<&str> = joined.split(' ').collect();
        let q = format!(
            "-q{}",
            pids.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut out = Command::new("ps")
            .args(&args)
            .arg(&q)
            .output()
            .ctx("running ps")?;
        if !out.status.success() {
            // Some options (f) cannot go with -q: docker runs ps again without it.
            out = Command::new("ps").args(&args).output().ctx("running ps")?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let first = err.lines().next().unwrap_or_default();
                if first.is_empty() {
                    bail!("ps: {}", out.status);
                }
                bail!("ps: {first}");
            }
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
root           1       0  0 13:00 ?        00:00:01 /sbin/init splash\n\
root        3598    3577  4 14:01 ?        00:00:00 sleep 1000\n\
root        3601    3598  0 14:01 ?        00:00:00 sh -c echo a  b\n\
root        3700       1  0 14:01 ?        00:00:00 other\n";

    #[test]
    fn ps_rows_of_the_container() {
        let (titles, rows) = parse_ps(PS, &[3598, 3601]).unwrap();
        assert_eq!(
            titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], "3598");
        assert_eq!(rows[0][7], "sleep 1000");
        // The command's words are one cell, single-spaced as docker's daemon joins them.
        assert_eq!(rows[1][7], "sh -c echo a b");
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn thread_lines_follow_their_process() {
        let ps = "PID TID CMD\n3598 - sleep\n- 3598 -\n- 3599 -\n3700 - other\n- 3700 -\n";
        let (_, rows) = parse_ps(ps, &[3598]).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], ["-", "3599", "-"]);
    }

    #[test]
    fn ps_option_rules() {
        assert!(validate_ps_args("-ef").is_ok());
        assert!(validate_ps_args("-o pid,comm").is_ok());
        assert!(validate_ps_args("-o pid=PID").is_ok());
        let e = validate_ps_args("-o user=PID").unwrap_err();
        assert_eq!(e.to_string(), "specifying \"user=PID\" is not allowed");
        assert!(validate_ps_args("-o user= PIDX").is_err());
    }
}
