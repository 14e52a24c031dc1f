//! `hoist version` and `hoist info` (`system info`): docker's shapes, hoist's facts. hoist has
//! no daemon: the "server" is this binary and the local store it opens.

use anyhow::{Context, Result};
use clap::Args;
use hoist_storage::images::ImageStore;
use serde_json::{Value, json};

use crate::format::Format;

#[derive(Args)]
pub struct VersionArgs {
    /// Format output: json, or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output: json, or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Prints `v` with `--format`, else `plain`.
fn print(format: Option<&str>, v: &Value, plain: String) -> Result<()> {
    let out = match Format::parse(format)? {
        Format::Default => plain,
        Format::Json => format!(
            "{}\n",
            serde_json::to_string(v).context("encoding the output")?
        ),
        f => f.render(std::slice::from_ref(v), &[])?,
    };
    print!("{out}");
    std::io::Write::flush(&mut std::io::stdout()).context("writing to stdout")
}

pub fn version(a: &VersionArgs) -> Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let part = json!({
        "Version": version,
        "ApiVersion": "1.47",
        "Os": std::env::consts::OS,
        "Arch": arch(),
        "KernelVersion": kernel(),
    });
    let mut server = part.clone();
    server["Components"] = json!([{"Name": "hoist", "Version": version}]);
    let v = json!({"Client": part, "Server": server});
    let plain = format!(
        "Client:\n Version:           {version}\n API version:       1.47\n OS/Arch:           {}/{}\n\nServer:\n hoist:\n  Version:          {version}\n  OS/Arch:          {}/{}\n  Kernel version:   {}\n",
        std::env::consts::OS,
        arch(),
        std::env::consts::OS,
        arch(),
        kernel()
    );
    print(a.format.as_deref(), &v, plain)
}

pub async fn info(a: &InfoArgs, images: ImageStore) -> Result<()> {
    let host = hoist_engine::Host::from_env()?;
    let home = host.home();
    let containers = host.containers()?.list()?;
    let running = containers.iter().filter(|c| c.state.running()).count();
    let paused = containers
        .iter()
        .filter(|c| c.state.running() && c.state.paused)
        .count();
    let ids: std::collections::BTreeSet<_> = images
        .list()
        .await
        .context("listing images")?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let ncpu = std::thread::available_parallelism().map_or(1, usize::from);
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let v = json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running - paused,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running,
        "Images": ids.len(),
        "Driver": "overlay2",
        "DockerRootDir": home,
        "OSType": std::env::consts::OS,
        "Architecture": std::env::consts::ARCH,
        "NCPU": ncpu,
        "MemTotal": mem_total,
        "KernelVersion": kernel(),
        "OperatingSystem": std::env::consts::OS,
        "Name": name,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "LoggingDriver": "json-file",
        "CgroupVersion": "2",
    });
    let plain = format!(
        "Server:\n Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n Storage Driver: overlay2\n Logging Driver: json-file\n Kernel Version: {}\n OSType: {}\n Architecture: {}\n CPUs: {ncpu}\n Total Memory: {}\n Name: {name}\n Hoist Root Dir: {}\n",
        containers.len(),
        running - paused,
        paused,
        containers.len() - running,
        ids.len(),
        env!("CARGO_PKG_VERSION"),
        kernel(),
        std::env::consts::OS,
        std::env::consts::ARCH,
        crate::images_format::human_size(mem_total, 4),
        home.display()
    );
    print(a.format.as_deref(), &v, plain)
}
