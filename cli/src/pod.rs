//! `hoist pod run|ls|inspect|logs|exec|stop|rm` (PODS.md), and the pod's own processes
//! (`__pod`, `__pause`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hoist_engine::Host;
use hoist_engine::pods::{Phase, Pod};
use serde_json::{Value, json};

use crate::images_format::table;

#[derive(Subcommand)]
pub enum PodCommand {
    /// Manage pods
    #[command(subcommand)]
    Pod(PodGroup),
    /// A pod's supervisor (internal)
    #[command(name = "__pod", hide = true)]
    Supervise { id: String },
    /// A pod's infra process (internal)
    #[command(name = "__pause", hide = true)]
    Pause { hostname: String, netns: PathBuf },
}

#[derive(Subcommand)]
pub enum PodGroup {
    /// Run a pod from a Kubernetes Pod manifest (the subset PODS.md lists)
    Run(RunArgs),
    /// List pods
    #[command(alias = "ps", alias = "list")]
    Ls,
    /// Display detailed information on one or more pods
    Inspect {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Fetch the logs of a pod's container
    Logs(LogsArgs),
    /// Run a command in a pod's container
    #[command(override_usage = "hoist pod exec POD -c CONTAINER -- COMMAND [ARG...]")]
    Exec(ExecArgs),
    /// Stop one or more pods
    Stop {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove one or more pods
    Rm {
        /// Stop a running pod first
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    net: crate::transfer::NetArgs,
    /// The network the pod is on: bridge (the default network) or a network's name
    #[arg(long, default_value = "bridge")]
    network: String,
    /// The Pod manifest (YAML)
    file: PathBuf,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The container
    #[arg(short, long)]
    container: String,
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    pod: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The container
    #[arg(short, long)]
    container: String,
    /// Keep stdin open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    pod: String,
    /// The command and its arguments
    #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
    command: Vec<String>,
}

fn print_out(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

pub fn run(cmd: PodCommand) -> Result<()> {
    let group = match cmd {
        PodCommand::Supervise { id } => {
            return Ok(std::sync::Arc::new(Host::from_env()?).pod_supervise(&id)?);
        }
        PodCommand::Pause { hostname, netns } => {
            return Ok(hoist_engine::pods::pause(&hostname, &netns)?);
        }
        PodCommand::Pod(g) => g,
    };
    let host = Host::from_env()?;
    match group {
        PodGroup::Run(a) => pod_run(&host, a),
        PodGroup::Ls => {
            let rows: Vec<Vec<String>> = host
                .pods()?
                .iter()
                .map(|p| {
                    vec![
                        p.record.id[..12].to_owned(),
                        p.record.name.clone(),
                        phase_of(p).to_owned(),
                        p.record.created.clone(),
                        p.record.members.len().to_string(),
                    ]
                })
                .collect();
            print_out(&table(
                &["POD ID", "NAME", "STATUS", "CREATED", "# OF CONTAINERS"],
                &rows,
            ))
        }
        PodGroup::Inspect { pods } => {
            let mut out = Vec::new();
            for p in &pods {
                out.push(inspect_json(&host, &host.pod(p)?)?);
            }
            let mut s = serde_json::to_string_pretty(&out).context("encoding the output")?;
            s.push('\n');
            print_out(&s)
        }
        PodGroup::Logs(a) => {
            let c = host.pod_container(&a.pod, &a.container)?;
            crate::containers::logs_for(c.id(), a.follow, &a.tail, a.timestamps)
        }
        PodGroup::Exec(a) => {
            let c = host.pod_container(&a.pod, &a.container)?;
            crate::containers::exec_for(c.id(), &a.command, a.interactive, a.tty)
        }
        PodGroup::Stop { pods } => {
            for p in &pods {
                let pod = host.pod_stop(p)?;
                print_out(&format!("{}\n", pod.record.name))?;
            }
            Ok(())
        }
        PodGroup::Rm { force, pods } => {
            for p in &pods {
                let name = host.pod_remove(p, force)?;
                print_out(&format!("{name}\n"))?;
            }
            Ok(())
        }
    }
}

/// The phase, as the pod's supervisor left it (a pod whose supervisor died: Failed).
fn phase_of(p: &Pod) -> &'static str {
    match p.state.phase {
        Phase::Pending | Phase::Running if !p.running() && p.state.supervisor.is_some() => "Failed",
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
    }
}

fn pod_run(host: &Host, a: RunArgs) -> Result<()> {
    let yaml = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let file = a.file.display().to_string();
    let spec = hoist_engine::pods::spec::parse(&yaml, &file)?;
    let rt = crate::home::runtime()?;
    let id = rt.block_on(async {
        // Images not in the local store are pulled first, as `run` pulls them.
        let store = host.images().await?;
        for c in spec.init_containers.iter().chain(&spec.containers) {
            let r = hoist_oci::Reference::parse(&c.image)
                .with_context(|| format!("container {}: invalid image {:?}", c.name, c.image))?;
            if store
                .image(&r, &hoist_storage::images::Platform::host())
                .await
                .is_err()
            {
                crate::transfer::pull(&c.image, None, false, &a.net, true).await?;
            }
        }
        anyhow::Ok(host.pod_run(&yaml, &file, &a.network).await?)
    })?;
    print_out(&format!("{id}\n"))
}

fn inspect_json(host: &Host, p: &Pod) -> Result<Value> {
    let containers = host.containers()?;
    let members: Vec<Value> = p
        .record
        .members
        .iter()
        .map(|m| {
            let st = p.state.members.get(&m.name).cloned().unwrap_or_default();
            let state = containers
                .load(&m.id)
                .map(|c| c.state.status_name().to_owned())
                .unwrap_or_else(|_| "removed".to_owned());
            json!({
                "Name": m.name,
                "Id": m.id,
                "Init": m.init,
                "State": state,
                "RestartCount": st.restarts,
                "ExitCode": st.exit_code,
            })
        })
        .collect();
    Ok(json!({
        "Id": p.record.id,
        "Name": p.record.name,
        "Created": p.record.created,
        "Phase": phase_of(p),
        "File": p.record.file,
        "IPAddress": p.state.ip.map(|i| i.to_string()).unwrap_or_default(),
        "InfraPid": p.state.infra_pid,
        "Error": p.state.error,
        "Containers": members,
    }))
}
