//! Container commands: ps, logs, exec, stop, kill, start, restart, wait, rm, diff, commit,
//! container prune / ls / inspect, and the container side of `hoist inspect`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hoist_runtime::container::{self, Container, ContainerStore, ExecOptions, logs};
use serde_json::{Value, json};

use crate::home;
use crate::images_format::{ellipsis, human_size, now_unix, table};
use crate::run::stores;
use hoist_engine::{Host, inspect};

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Run a command in a running container
    #[command(override_usage = "hoist exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
    Exec(ExecArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Start one or more stopped containers
    Start(crate::attach::StartArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(DiffArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerGroup),
}

/// `hoist container ...`.
#[derive(Subcommand)]
pub enum ContainerGroup {
    /// List containers
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Start one or more stopped containers
    Start(crate::attach::StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    #[command(flatten)]
    Procs(crate::procs::ProcsCommand),
    #[command(flatten)]
    Cp(crate::cp::CpCommand),
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container ids
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Filter output (status=, name=, label=, ancestor=, id=, exited=, before=, since=)
    #[arg(short, long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since a time (RFC 3339, Unix timestamp) or a duration before now (10m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a time (RFC 3339, Unix timestamp) or a duration before now (10m)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Username or UID (NAME|UID[:GROUP|GID])
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Run without the container's seccomp profile
    #[arg(long)]
    privileged: bool,
    /// The container, then the command and its arguments: everything after CONTAINER belongs
    /// to the command
    #[arg(
        value_names = ["CONTAINER", "COMMAND"],
        required = true,
        num_args = 2..,
        trailing_var_arg = true
    )]
    argv: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    /// Signal to send (default: the container's stop signal)
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output: json, or a Go template
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove the anonymous volumes of the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Author
    #[arg(short, long)]
    author: Option<String>,
    container: String,
    /// The new image's name (NAME[:TAG])
    reference: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn print_out(s: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

fn open() -> Result<(
    std::path::PathBuf,
    ContainerStore,
    hoist_runtime::volume::VolumeStore,
)> {
    let home = home::hoist_home()?;
    let (c, v) = stores(&home)?;
    Ok((home, c, v))
}

pub fn run(cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Ps(a) | ContainerCommand::Container(ContainerGroup::Ls(a)) => ps(a),
        ContainerCommand::Logs(a) | ContainerCommand::Container(ContainerGroup::Logs(a)) => {
            logs_cmd(a)
        }
        ContainerCommand::Exec(a) => exec_cmd(a),
        ContainerCommand::Stop(a) | ContainerCommand::Container(ContainerGroup::Stop(a)) => {
            let home = home::hoist_home()?;
            for_each(&a.containers, |_, c| {
                stop(&home, c, a.time, a.signal.as_deref())
            })
        }
        ContainerCommand::Kill(a) => {
            let sig = container::parse_signal(&a.signal)
                .with_context(|| format!("invalid signal {:?}", a.signal))?;
            for_each(&a.containers, |store, c| {
                store.thaw_if_paused(c)?;
                kill(c, sig)
            })
        }
        ContainerCommand::Start(a) | ContainerCommand::Container(ContainerGroup::Start(a)) => {
            if a.attaches() {
                return crate::attach::start_attached(&a);
            }
            let home = home::hoist_home()?;
            for_each(&a.containers, |_, c| start(&home, c))
        }
        ContainerCommand::Pause(a) => for_each(&a.containers, |store, c| {
            store.pause(c.id())?;
            print_out(&format!("{}\n", c.name()))
        }),
        ContainerCommand::Unpause(a) => for_each(&a.containers, |store, c| {
            store.unpause(c.id())?;
            print_out(&format!("{}\n", c.name()))
        }),
        ContainerCommand::Restart(a) => {
            let home = home::hoist_home()?;
            for_each(&a.containers, |store, c| {
                stop(&home, c, a.time, a.signal.as_deref())?;
                let c = store.load(c.id())?;
                start(&home, &c)
            })
        }
        ContainerCommand::Wait(a) => for_each(&a.containers, |store, c| {
            let code = hoist_engine::containers::wait_exit(store, c.id(), None)?;
            print_out(&format!("{code}\n"))
        }),
        ContainerCommand::Rm(a) | ContainerCommand::Container(ContainerGroup::Rm(a)) => rm(a),
        ContainerCommand::Container(ContainerGroup::Procs(c)) => crate::procs::run(c),
        ContainerCommand::Diff(a) => diff(a),
        ContainerCommand::Commit(a) => commit(a),
        ContainerCommand::Container(ContainerGroup::Prune(a)) => prune(a),
        ContainerCommand::Container(ContainerGroup::Cp(c)) => crate::cp::run(c),
        ContainerCommand::Container(ContainerGroup::Inspect(a)) => {
            let (_, store, _) = open()?;
            let mut out = Vec::new();
            for n in &a.containers {
                let c = store.get(n)?;
                let mut v = inspect::container(&c, &Host::from_env()?.endpoints_of(&c)?);
                if a.size {
                    // docker's -s: the writable layer, and it with the image.
                    let (rw, root_fs) = inspect::container_sizes(&c);
                    v["SizeRw"] = json!(rw);
                    v["SizeRootFs"] = json!(root_fs);
                }
                out.push(v);
            }
            let f = crate::format::Format::parse(a.format.as_deref())?;
            if matches!(
                f,
                crate::format::Format::Raw(_) | crate::format::Format::Table(_)
            ) {
                return crate::format::print(&f, &out, &[]);
            }
            print_json(&Value::Array(out))
        }
    }
}

fn print_json(v: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).context("encoding the output")?;
    s.push('\n');
    print_out(&s)
}

/// Runs `f` on each named container, printing the name on success (as docker does), reporting
/// failures and failing at the end.
fn for_each(
    names: &[String],
    mut f: impl FnMut(&ContainerStore, &Container) -> Result<()>,
) -> Result<()> {
    let (_, store, _) = open()?;
    let mut failed = None;
    for n in names {
        let r = store
            .get(n)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(&store, &c));
        if let Err(e) = r
            && let Some(prev) = failed.replace(e)
        {
            eprintln!("{}", crate::error_line(&prev));
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `ps`'s COMMAND: the daemon's summary (arguments with a space in single quotes), cut to 20
/// characters with `…` unless `no_trunc`, then Go-quoted, as docker prints it.
pub(crate) fn ps_command(c: &Container, no_trunc: bool) -> String {
    let cmd = crate::format::docker_command(&c.config.path, &c.config.args);
    crate::format::go_quote(&if no_trunc { cmd } else { ellipsis(&cmd, 20) })
}

fn ps(a: PsArgs) -> Result<()> {
    let (_, store, _) = open()?;
    let filters = crate::filter::Filters::parse(&a.filter, crate::listing::PS_FILTERS)?;
    let format = crate::format::Format::parse(a.format.as_deref())?;
    let all = store.list()?;
    // Like docker: a status filter looks at every container, not just the running ones.
    let every = a.all || filters.has("status") || filters.has("exited");
    let created_of = |key: &str| -> Result<Option<i64>> {
        match filters.values(key).last() {
            None => Ok(None),
            Some(n) => Ok(Some(store.get(n)?.config.created_unix)),
        }
    };
    let (before, since) = (created_of("before")?, created_of("since")?);
    let mut shown: Vec<&Container> = Vec::new();
    for c in &all {
        if (every || c.state.running())
            && before.is_none_or(|t| c.config.created_unix < t)
            && since.is_none_or(|t| c.config.created_unix > t)
            && crate::listing::ps_keep(&filters, c)?
        {
            shown.push(c);
        }
    }
    if a.quiet {
        let s: String = shown
            .iter()
            .map(|c| format!("{}\n", if a.no_trunc { c.id() } else { c.short_id() }))
            .collect();
        return print_out(&s);
    }
    let now = now_unix();
    let endpoints = Host::from_env()?.all_endpoints()?;
    let ports_of = |c: &Container| {
        crate::listing::ps_ports(c, endpoints.get(c.id()).map_or(&[][..], Vec::as_slice))
    };
    // Like docker: a template that shows the size asks for it.
    let want_size = a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let size_of = |c: &Container| want_size.then(|| inspect::container_sizes(c));
    if !format.is_default() {
        let rows: Vec<Value> = shown
            .iter()
            .map(|c| crate::listing::ps_row(c, a.no_trunc, now, size_of(c), &ports_of(c)))
            .collect();
        return crate::format::print(&format, &rows, crate::listing::PS_HEADERS);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|c| {
            let mut row = vec![
                if a.no_trunc {
                    c.id().to_owned()
                } else {
                    c.short_id().to_owned()
                },
                c.config.image.clone(),
                ps_command(c, a.no_trunc),
                format!(
                    "{} ago",
                    container::human_duration(now - c.config.created_unix)
                ),
                c.state.describe(now),
                ports_of(c),
                c.name().to_owned(),
            ];
            if let Some((rw, virt)) = size_of(c) {
                row.push(format!(
                    "{} (virtual {})",
                    human_size(rw, 3),
                    human_size(virt, 3)
                ));
            }
            row
        })
        .collect();
    let mut header = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if a.size {
        header.push("SIZE");
    }
    print_out(&table(&header, &rows))
}

fn format_record(r: &logs::Record, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}", r.time, r.log)
    } else {
        r.log.clone()
    }
}

fn write_record(r: &logs::Record, timestamps: bool) -> std::io::Result<()> {
    let s = format_record(r, timestamps);
    if r.stream == "stderr" {
        let mut e = std::io::stderr().lock();
        e.write_all(s.as_bytes())?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(s.as_bytes())?;
        o.flush()
    }
}

/// `pod logs`: the logs of the container `id`.
pub(crate) fn logs_for(id: &str, follow: bool, tail: &str, timestamps: bool) -> Result<()> {
    logs_cmd(LogsArgs {
        follow,
        tail: tail.to_owned(),
        timestamps,
        since: None,
        until: None,
        container: id.to_owned(),
    })
}

/// `pod exec`: `argv` in the container `id`.
pub(crate) fn exec_for(id: &str, argv: &[String], interactive: bool, tty: bool) -> Result<()> {
    let mut all = vec![id.to_owned()];
    all.extend(argv.iter().cloned());
    exec_cmd(ExecArgs {
        interactive,
        tty,
        env: Vec::new(),
        user: None,
        workdir: None,
        privileged: false,
        argv: all,
    })
}

fn logs_cmd(a: LogsArgs) -> Result<()> {
    let (_, store, _) = open()?;
    let c = store.get(&a.container)?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .with_context(|| format!("invalid --tail {n:?}: a number or \"all\""))?,
        ),
    };
    let path = c.log_path();
    let now = now_unix();
    let since = a
        .since
        .as_deref()
        .map(|t| crate::filter::parse_time(t, now).context("invalid --since"))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|t| crate::filter::parse_time(t, now).context("invalid --until"))
        .transpose()?;
    let records: Vec<logs::Record> = logs::read_all(&path)
        .context("reading the logs")?
        .into_iter()
        .filter(|r| {
            let t = record_time(r);
            since.is_none_or(|s| t.is_some_and(|t| t >= s))
                && until.is_none_or(|u| t.is_some_and(|t| t < u))
        })
        .collect();
    let skip = tail.map_or(0, |t| records.len().saturating_sub(t));
    for r in &records[skip..] {
        write_record(r, a.timestamps).context("writing the logs")?;
    }
    if !a.follow {
        return Ok(());
    }
    let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if !path.exists() {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
    }
    let id = c.id().to_owned();
    logs::follow(
        &path,
        offset,
        || store.state(&id).map(|s| !s.running()).unwrap_or(true),
        |r| write_record(r, a.timestamps),
    )
    .context("following the logs")
}

/// A log record's time, in seconds since the epoch.
fn record_time(r: &logs::Record) -> Option<f64> {
    crate::filter::parse_time(&r.time, 0).ok()
}

fn exec_cmd(a: ExecArgs) -> Result<()> {
    let (_, store, _) = open()?;
    let c = store.get(&a.argv[0])?;
    let mut env = Vec::new();
    for e in &a.env {
        if let Some(kv) = hoist_runtime::spec::env_entry(e, |k| std::env::var(k).ok())
            .map_err(|reason| anyhow::anyhow!("invalid environment variable {e:?}: {reason}"))?
        {
            env.push(kv);
        }
    }
    let o = ExecOptions {
        args: a.argv[1..].to_vec(),
        env,
        user: a.user,
        workdir: a.workdir,
        tty: a.tty,
        interactive: a.interactive,
        privileged: a.privileged,
    };
    // docker: a process that could not start exits 126.
    let code = container::exec(&c, &o)
        .with_context(|| format!("exec in {}", c.name()))
        .map_err(|e| e.context(crate::Status(126)))?;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn kill(c: &Container, sig: i32) -> Result<()> {
    // An explicit kill: no restart follows (one between two runs only ends its loop).
    if c.state.running() {
        container::restart::request_stop(c);
    }
    if !(c.state.running() && c.state.restarting) {
        hoist_engine::containers::signal(c, sig)?;
    }
    print_out(&format!("{}\n", c.name()))
}

/// docker stop: the stop signal, `time` seconds, then SIGKILL.
fn stop(home: &Path, c: &Container, time: Option<u64>, sig: Option<&str>) -> Result<()> {
    Host::new(home.to_path_buf()).stop(c, time, sig)?;
    print_out(&format!("{}\n", c.name()))
}

fn start(home: &Path, c: &Container) -> Result<()> {
    Host::new(home.to_path_buf()).start(c)?;
    print_out(&format!("{}\n", c.name()))
}

fn rm(a: RmArgs) -> Result<()> {
    let host = Host::from_env()?;
    let mut failed = None;
    for n in &a.containers {
        let r = host
            .remove_container(n, a.force, a.volumes)
            .map_err(anyhow::Error::from)
            .and_then(|()| print_out(&format!("{n}\n")));
        if let Err(e) = r
            && let Some(prev) = failed.replace(e)
        {
            eprintln!("{}", crate::error_line(&prev));
        }
    }
    failed.map_or(Ok(()), Err)
}

fn diff(a: DiffArgs) -> Result<()> {
    let (_, store, _) = open()?;
    let c = store.get(&a.container)?;
    let changes = hoist_runtime::rootfs::diff(&c.upper(), &c.lowers())
        .with_context(|| format!("comparing the filesystem of {}", c.name()))?;
    let s: String = changes
        .iter()
        .map(|ch| format!("{} {}\n", ch.kind.letter(), ch.path.display()))
        .collect();
    print_out(&s)
}

fn prune(a: PruneArgs) -> Result<()> {
    if !a.force && !crate::confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(());
    }
    let (removed, reclaimed) = Host::from_env()?.prune_containers()?;
    let mut out = String::new();
    if !removed.is_empty() {
        out.push_str("Deleted Containers:\n");
        for id in &removed {
            out.push_str(id);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reclaimed, 4)
    ));
    print_out(&out)
}

/// `hoist inspect NAME`: the container's JSON, if NAME is a container.
pub fn inspect_container(name: &str) -> Result<Option<Value>> {
    let host = Host::from_env()?;
    match host.containers()?.get(name) {
        Ok(c) => Ok(Some(inspect::container(&c, &host.endpoints_of(&c)?))),
        Err(container::ContainerError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn commit(a: CommitArgs) -> Result<()> {
    let (home, store, _) = open()?;
    let c = store.get(&a.container)?;
    let reference = a
        .reference
        .as_deref()
        .map(|r| hoist_oci::Reference::parse(r).with_context(|| format!("invalid reference {r:?}")))
        .transpose()?;
    let host = Host::new(home);
    let id = home::runtime()?.block_on(host.commit(
        &c,
        reference.as_ref(),
        a.message.as_deref(),
        a.author.as_deref(),
    ))?;
    print_out(&format!("{id}\n"))
}
