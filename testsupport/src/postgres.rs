//! A private PostgreSQL server for tests: `initdb` into a temporary directory, `postgres` on a
//! free port of 127.0.0.1 (and a Unix socket in the same directory), a fresh database per test,
//! stopped when the last handle goes.
//!
//! The binaries come from Debian's `postgresql` package (`/usr/lib/postgresql/VERSION/bin`, the
//! newest version installed); `.ci/peers.sh` installs it. A missing server fails the test, it
//! never skips. PostgreSQL refuses to run as root: as root, the server's directory belongs to
//! `nobody` and every PostgreSQL program runs as `nobody` through `setpriv` (util-linux).
//!
//! ```no_run
//! let db = hoist_testsupport::postgres::database();
//! // connect to db.url(): postgres://postgres@127.0.0.1:PORT/NAME
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::peers::run;

/// The user PostgreSQL runs as when the tests run as root.
const NOBODY: u32 = 65534;
/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory of the newest installed PostgreSQL's programs.
pub fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                .then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no {}/VERSION/bin/postgres): run .ci/peers.sh as root \
             (it installs Debian's postgresql package)",
            root.display()
        ),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// A PostgreSQL program as the server's user: `nobody` when the tests run as root.
fn pg_command(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    if is_root() {
        cmd.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups");
    }
    cmd.arg("--").arg(program);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// Waits for the server's log to say it is ready; its text when it exits or times out first.
fn wait_ready(child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("ready to accept connections") {
            return Ok(());
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || Instant::now() > deadline {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running private server.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Child>,
    next: AtomicU32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Initialises a cluster in a temporary directory and starts it; fails the test when
    /// PostgreSQL is missing or does not come up.
    pub fn start() -> Server {
        Server::start_with(None)
    }

    /// [`Server::start`] with TLS on (`ssl=on`) with `server`'s certificate and key, and
    /// TCP connections without TLS refused (`pg_hba.conf`: `hostssl` only; the Unix socket
    /// stays open, for `createdb`).
    pub fn start_tls(server: &crate::pki::Pair) -> Server {
        Server::start_with(Some(server))
    }

    fn start_with(tls: Option<&crate::pki::Pair>) -> Server {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("hoist-pg-")
            .tempdir()
            .expect("tempdir");
        if is_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY))
                .expect("handing the server's directory to nobody");
        }
        let data = dir.path().join("data");
        run(pg_command(&bin.join("initdb"))
            .current_dir(dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]));
        let mut tls_args = Vec::new();
        if let Some(pair) = tls {
            let (cert, key) = pair.write(dir.path(), "server");
            // PostgreSQL refuses a key others can read, or one not its user's.
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the server key");
            if is_root() {
                for f in [&cert, &key] {
                    std::os::unix::fs::chown(f, Some(NOBODY), Some(NOBODY))
                        .expect("handing the server's certificate to nobody");
                }
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("writing pg_hba.conf");
            tls_args = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log_path = dir.path().join(format!("postgres-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("creating the server log");
            let mut child = pg_command(&bin.join("postgres"))
                .current_dir(dir.path())
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                // A test server: durability is not the point, speed is.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
                .args(&tls_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
            match wait_ready(&mut child, &log_path) {
                Ok(()) => {
                    return Server {
                        dir,
                        port,
                        child: Mutex::new(child),
                        next: AtomicU32::new(0),
                    };
                }
                Err(log) => {
                    // Another process may have taken the port between the probe and the bind.
                    last_log = log;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("postgres did not start:\n{last_log}")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `name` (user `postgres`, no password).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` with `psql` in database `db` over the server's Unix socket; returns what it
    /// printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = pg_command(&bin_dir().join("psql"))
            .current_dir(self.dir.path())
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a database with a fresh name and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        run(pg_command(&bin_dir().join("createdb"))
            .current_dir(self.dir.path())
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", &name]));
        self.url(&name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // SIGINT: PostgreSQL's fast shutdown (clients are disconnected, the server exits).
        if let Ok(pid) = i32::try_from(child.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// One database on the server the tests of this process share.
#[derive(Debug, Clone)]
pub struct Database {
    server: Arc<Server>,
    url: String,
}

impl Database {
    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server it lives on.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());

/// A fresh database on this process's shared server, started on first use and stopped when the
/// last [`Database`] is dropped.
pub fn database() -> Database {
    let server = {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        match shared.upgrade() {
            Some(s) => s,
            None => {
                let s = Arc::new(Server::start());
                *shared = Arc::downgrade(&s);
                s
            }
        }
    };
    let url = server.create_database();
    Database { server, url }
}
