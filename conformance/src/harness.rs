//! Start a registry under test on a loopback port the OS picks, and stop it on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running registry process. It is killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// `http://host:port`.
    pub url: String,
    /// Its data directory (removed on drop).
    pub data: tempfile::TempDir,
    /// Which implementation this is, for reports.
    pub kind: &'static str,
    /// Every line the process wrote to stdout and stderr so far.
    output: Arc<Mutex<String>>,
    /// Files the server reads that live outside its data directory (removed on drop).
    _secrets: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `hoist serve --listen 127.0.0.1:0` on a fresh data directory.
    pub fn hoist(bin: &Path) -> Result<Server> {
        Self::hoist_with(bin, &[])
    }

    /// Like [`Server::hoist`], with extra arguments for `hoist serve`.
    pub fn hoist_with(bin: &Path, extra: &[&str]) -> Result<Server> {
        let data = tempfile::tempdir()?;
        Self::hoist_on(bin, data, extra)
    }

    /// Starts `hoist serve` on an existing data directory (to test restarts).
    pub fn hoist_on(bin: &Path, data: tempfile::TempDir, extra: &[&str]) -> Result<Server> {
        let cmd = Self::hoist_command(bin, data.path(), extra);
        Self::spawn(cmd, data, "hoist")
    }

    fn hoist_command(bin: &Path, data: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("HOIST_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        cmd
    }

    /// Like [`Server::hoist_with`], with extra environment variables for `hoist serve` (open
    /// mode: e.g. the storage and database settings of a replica).
    pub fn hoist_with_env(bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Server> {
        let data = tempfile::tempdir()?;
        let mut cmd = Self::hoist_command(bin, data.path(), extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, data, "hoist")
    }

    /// Starts `hoist serve` in closed mode: `--admin-password-file` names a file holding
    /// `admin_password` (mode 0600, in a directory of its own), so user `admin` exists from the
    /// first start and auth is on for every route.
    pub fn hoist_with_admin(bin: &Path, admin_password: &str, extra: &[&str]) -> Result<Server> {
        Self::hoist_with_admin_env(bin, admin_password, extra, &[])
    }

    /// Like [`Server::hoist_with_admin`], with extra environment variables for `hoist serve`
    /// (`RUST_LOG` among them overrides the test default).
    pub fn hoist_with_admin_env(
        bin: &Path,
        admin_password: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let secrets = tempfile::tempdir()?;
        let file = secrets.path().join("admin-password");
        std::fs::write(&file, format!("{admin_password}\n"))?;
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let file = file
            .to_str()
            .context("temporary path is not utf-8")?
            .to_owned();
        let mut args = vec!["--admin-password-file", file.as_str()];
        args.extend_from_slice(extra);
        let data = tempfile::tempdir()?;
        let mut cmd = Self::hoist_command(bin, data.path(), &args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut server = Self::spawn(cmd, data, "hoist")?;
        server._secrets = Some(secrets);
        Ok(server)
    }

    /// Starts the CNCF registry (`docker-registry` from Debian) with deletes enabled.
    pub fn distribution() -> Result<Server> {
        Self::distribution_with("")
    }

    /// Like [`Server::distribution`], with `extra` appended to its YAML configuration (top-level
    /// sections such as `auth:`).
    pub fn distribution_with(extra: &str) -> Result<Server> {
        let data = tempfile::tempdir()?;
        let config = data.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n{extra}",
                data.path().join("store").display()
            ),
        )?;
        let bin = which("docker-registry")
            .context("docker-registry is not installed (apt-get install docker-registry)")?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg(&config);
        Self::spawn(cmd, data, "distribution")
    }

    fn spawn(mut cmd: Command, data: tempfile::TempDir, kind: &'static str) -> Result<Server> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {kind}"))?;
        let (tx, rx) = mpsc::channel::<String>();
        let output = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            let output = output.clone();
            std::thread::spawn(move || {
                let echo = std::env::var_os("HOIST_TEST_LOG").is_some();
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    {
                        let mut all = output.lock().unwrap_or_else(|e| e.into_inner());
                        all.push_str(&line);
                        all.push('\n');
                    }
                    if echo {
                        eprintln!("[{kind}] {line}");
                    }
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        drop(tx);
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("{kind} did not report its listening address ({status})");
        };
        Ok(Server {
            child,
            url: format!("http://{addr}"),
            addr,
            data,
            kind,
            output,
            _secrets: None,
        })
    }

    /// Everything the process has written to stdout and stderr so far, line by line.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(mut self) -> Result<(std::process::ExitStatus, tempfile::TempDir)> {
        let pid = self.child.id().to_string();
        Command::new("kill").arg("-TERM").arg(&pid).status()?;
        let status = self.child.wait()?;
        let data = std::mem::replace(&mut self.data, tempfile::tempdir()?);
        Ok((status, data))
    }

    /// The process id, for tests that measure or signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failing test shows what the server said, which is most of the diagnosis.
            eprintln!("--- {} output\n{}", self.kind, self.output());
        }
    }
}

/// Finds `listening on HOST:PORT` in a log line (hoist's and the CNCF registry's form).
fn listening_addr(line: &str) -> Option<String> {
    let at = line.find("listening on ")? + "listening on ".len();
    let rest = &line[at..];
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    let port = addr.rsplit_once(':')?.1;
    if port.is_empty() || port == "0" || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(addr)
}

/// Finds a program on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        assert_eq!(
            listening_addr(
                r#"time="x" level=info msg="listening on 127.0.0.1:46161" go.version=1"#
            )
            .as_deref(),
            Some("127.0.0.1:46161")
        );
        assert_eq!(
            listening_addr("INFO hoist serve: listening on http://127.0.0.1:5000").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(listening_addr("listening on 127.0.0.1:0"), None);
        assert_eq!(listening_addr("nothing here"), None);
    }
}
