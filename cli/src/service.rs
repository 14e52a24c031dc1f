//! `hoist system service ...`: what docker's daemon does for restart policies when the host
//! starts, for a toolchain with no daemon. `start` brings back the containers whose policy says
//! so; `install` writes a systemd unit that runs it at boot (podman's `podman-restart.service`
//! is the same idea).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use hoist_engine::Host;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Start the containers whose restart policy brings them back when the host starts
    /// (always; unless-stopped unless stopped by hand; on-failure after a failure)
    Start,
    /// Install a systemd unit that runs `hoist system service start` at boot
    Install(UnitArgs),
    /// Remove the unit `install` wrote
    Uninstall(UnitArgs),
}

#[derive(Args)]
pub struct UnitArgs {
    /// Where the unit goes
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// Write the unit only (no `systemctl enable`/`disable`)
    #[arg(long)]
    no_enable: bool,
}

pub fn run(cmd: ServiceCommand) -> Result<()> {
    match cmd {
        ServiceCommand::Start => start(),
        ServiceCommand::Install(a) => install(&a),
        ServiceCommand::Uninstall(a) => uninstall(&a),
    }
}

fn start() -> Result<()> {
    let host = Host::from_env()?;
    let (started, failed) = host.start_at_boot()?;
    for name in &started {
        println!("{name}");
    }
    for f in &failed {
        eprintln!("hoist: {f}");
    }
    if !failed.is_empty() {
        bail!("{} of the containers to start did not start", failed.len());
    }
    Ok(())
}

/// root's default home.
const SYSTEM_HOME: &str = "/var/lib/hoist";

/// The unit's name: `hoist.service` for the system home, `hoist-<hash>.service` for another
/// (one unit per home).
fn unit_name(home: &Path) -> String {
    if home == Path::new(SYSTEM_HOME) {
        return "hoist.service".to_owned();
    }
    let d = hoist_oci::Digest::sha256_of(home.as_os_str().as_encoded_bytes());
    format!("hoist-{}.service", &d.hex()[..10])
}

/// The systemd unit that starts `home`'s containers at boot with the binary `exe`.
pub fn unit(exe: &Path, home: &Path) -> String {
    format!(
        "# Written by `hoist system service install`.\n\
         [Unit]\n\
         Description=hoist: start the containers of {home} whose restart policy says so\n\
         Wants=network-online.target\n\
         After=network-online.target nftables.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         Environment=HOIST_HOME={home}\n\
         ExecStart={exe} system service start\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        home = home.display(),
        exe = exe.display(),
    )
}

/// Whether `systemctl` should be run: the default unit directory, systemd running here.
fn systemd_here(a: &UnitArgs) -> bool {
    !a.no_enable
        && a.unit_dir == Path::new("/etc/systemd/system")
        && Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<()> {
    let st = Command::new("systemctl")
        .args(args)
        .status()
        .context("running systemctl")?;
    if !st.success() {
        bail!("systemctl {}: {st}", args.join(" "));
    }
    Ok(())
}

fn install(a: &UnitArgs) -> Result<()> {
    let home = std::fs::canonicalize(crate::home::hoist_home()?)
        .context("the home (HOIST_HOME) does not exist")?;
    let exe = std::env::current_exe().context("finding the hoist binary")?;
    let name = unit_name(&home);
    std::fs::create_dir_all(&a.unit_dir)
        .with_context(|| format!("creating {}", a.unit_dir.display()))?;
    let path = a.unit_dir.join(&name);
    std::fs::write(&path, unit(&exe, &home))
        .with_context(|| format!("writing {}", path.display()))?;
    if systemd_here(a) {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", &name])?;
        println!("{name} installed and enabled ({})", path.display());
    } else {
        println!(
            "{name} written to {} (enable it with: systemctl enable {name})",
            path.display()
        );
    }
    Ok(())
}

fn uninstall(a: &UnitArgs) -> Result<()> {
    let home = std::fs::canonicalize(crate::home::hoist_home()?)
        .context("the home (HOIST_HOME) does not exist")?;
    let name = unit_name(&home);
    let path = a.unit_dir.join(&name);
    if !path.exists() {
        bail!("no unit {} installed", path.display());
    }
    if systemd_here(a) {
        systemctl(&["disable", &name])?;
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    if systemd_here(a) {
        systemctl(&["daemon-reload"])?;
    }
    println!("{name} removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_start_for_its_home_at_boot() {
        let u = unit(Path::new("/opt/hoist/hoist"), Path::new("/srv/hoist"));
        assert!(
            u.contains("ExecStart=/opt/hoist/hoist system service start\n"),
            "{u}"
        );
        assert!(u.contains("Environment=HOIST_HOME=/srv/hoist\n"), "{u}");
        assert!(u.contains("Type=oneshot\n") && u.contains("WantedBy=multi-user.target\n"));
        assert_eq!(unit_name(Path::new(SYSTEM_HOME)), "hoist.service");
        let other = unit_name(Path::new("/srv/hoist"));
        assert!(
            other.starts_with("hoist-") && other.ends_with(".service"),
            "{other}"
        );
    }
}
