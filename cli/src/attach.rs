//! `hoist attach`, `hoist create` and `hoist start -a/-i`: the client side of a detached
//! container's attach socket (`hoist_runtime::container::attach`), as docker's: the container's
//! output from now on, stdin to it when it keeps stdin open (`-i`), signals forwarded (without a
//! tty), the window size followed (with one), the detach keys (`ctrl-p,ctrl-q`) leaving it
//! running, and its exit code as ours.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hoist_runtime::container::{self, Container, ContainerStore, attach};
use parking_lot::Mutex;

use crate::home;

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    container: String,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl StartArgs {
    pub fn attaches(&self) -> bool {
        self.attach || self.interactive
    }
}

/// docker's `--detach-keys`: `ctrl-p,ctrl-q` (the default), `a`, `ctrl-@`...
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let b = match key.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => {
                let c = k.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => bail!("invalid detach keys {spec:?}: unknown character {k:?}"),
                }
            }
            None if key.len() == 1 => key.as_bytes()[0],
            _ => bail!("invalid detach keys {spec:?}: want keys like ctrl-p,ctrl-q or a"),
        };
        out.push(b);
    }
    Ok(out)
}

/// Checks docker's preconditions for attaching to `c`.
fn check_attachable(c: &Container) -> Result<()> {
    if !c.state.running() {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if c.state.paused {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    Ok(())
}

/// `hoist attach CONTAINER`.
pub fn attach_cmd(a: AttachArgs) -> Result<()> {
    let home = home::hoist_home()?;
    let (store, _) = crate::run::stores(&home)?;
    let c = store.get(&a.container)?;
    check_attachable(&c)?;
    let conn =
        attach::connect(&c.dir).with_context(|| format!("attaching to container {}", c.name()))?;
    let keys = parse_detach_keys(a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
    let stdin = c.config.options.interactive && !a.no_stdin;
    let code = relay(&store, &c, conn, stdin, a.sig_proxy, &keys)?;
    exit(code)
}

/// `hoist start -a/-i CONTAINER`: starts it attached (the process waits for this client, so no
/// output is missed); a running container is attached to.
pub fn start_attached(a: &StartArgs) -> Result<()> {
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let home = home::hoist_home()?;
    let (store, _) = crate::run::stores(&home)?;
    let c = store.get(&a.containers[0])?;
    let keys = parse_detach_keys(a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
    let stdin = a.interactive && c.config.options.interactive;
    if c.state.running() {
        check_attachable(&c)?;
        let conn = attach::connect(&c.dir)
            .with_context(|| format!("attaching to container {}", c.name()))?;
        let code = relay(&store, &c, conn, stdin, true, &keys)?;
        exit(code)
    }
    let mut child = hoist_engine::Host::new(home).spawn_supervisor(c.id(), true)?;
    // The supervisor listens once the container is created; until then it may still fail.
    let deadline = Instant::now() + Duration::from_secs(60);
    let conn = loop {
        match attach::connect(&c.dir) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => bail!("attaching to container {}: {e}", c.name()),
        }
        if let Some(status) = child.try_wait().context("waiting for the supervisor")? {
            let st = store.raw_state(c.id())?;
            let why = if st.error.is_empty() {
                let log = c.dir.join("supervisor.log");
                std::fs::read_to_string(log).unwrap_or_default()
            } else {
                st.error
            };
            return Err(crate::run::start_failed(anyhow::anyhow!(
                "starting container {}: {} (supervisor {status})",
                c.name(),
                why.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let c = store.load(c.id())?;
    let code = relay(&store, &c, conn, stdin, true, &keys)?;
    // The supervisor records the end; reap it so it is no zombie of ours.
    let _ = child.wait();
    exit(code)
}

fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// What ended an attachment.
enum End {
    Exited(i32),
    Detached,
}

/// Relays between this terminal and the attach socket until the container exits (its code) or
/// the detach keys are typed (0).
fn relay(
    store: &ContainerStore,
    c: &Container,
    conn: UnixStream,
    stdin: bool,
    sig_proxy: bool,
    keys: &[u8],
) -> Result<i32> {
    let tty = c.config.options.tty;
    if tty && stdin && !rustix::termios::isatty(rustix::stdio::stdin()) {
        bail!("the input device is not a TTY");
    }
    let writer = Arc::new(Mutex::new(
        conn.try_clone().context("duplicating the attach socket")?,
    ));
    let raw = (tty && stdin).then(container::RawMode::enter);
    // Signals: with a tty they are keys the pty turns into signals; without one they are sent
    // to the container (--sig-proxy). SIGWINCH follows the window size.
    if tty || sig_proxy {
        forward_signals(c, writer.clone(), tty, sig_proxy);
    }
    if tty {
        send_winsize(&writer);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<End>();
    if stdin {
        let w = writer;
        let keys = if tty { keys.to_vec() } else { Vec::new() };
        let done = done_tx.clone();
        std::thread::spawn(move || {
            if pump_stdin(&w, &keys) {
                let _ = done.send(End::Detached);
            }
        });
    }
    std::thread::spawn(move || {
        let _ = done_tx.send(read_output(conn));
    });
    let end = done_rx.recv().unwrap_or(End::Exited(-1));
    drop(raw);
    match end {
        End::Detached => Ok(0),
        End::Exited(code) if code >= 0 => Ok(code),
        // The socket closed without an exit code: what the container's state says.
        End::Exited(_) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let st = store.raw_state(c.id())?;
                if !st.running() {
                    if !st.error.is_empty() {
                        return Err(crate::run::start_failed(anyhow::anyhow!(
                            "container {}: {}",
                            c.name(),
                            st.error
                        )));
                    }
                    return Ok(st.exit_code.unwrap_or(0));
                }
                if Instant::now() > deadline {
                    bail!("container {}: the attach socket closed", c.name());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Copies the container's output to ours until its exit code arrives (`-1`: the socket closed
/// first).
fn read_output(mut conn: UnixStream) -> End {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        match attach::read_frame(&mut conn) {
            Ok(Some((attach::STDOUT, data))) => {
                let _ = out.write_all(&data).and_then(|()| out.flush());
            }
            Ok(Some((attach::STDERR, data))) => {
                let _ = err.write_all(&data).and_then(|()| err.flush());
            }
            Ok(Some((attach::EXIT, data))) if data.len() == 4 => {
                return End::Exited(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return End::Exited(-1),
        }
    }
}

/// docker's escape proxy: input passes through but for the detach sequence, which ends the
/// attachment; a partial sequence is held back until it completes or breaks.
struct EscapeScan {
    keys: Vec<u8>,
    held: usize,
}

impl EscapeScan {
    /// What to send of `input`, and whether the detach keys were typed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + self.held);
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if b == self.keys[0] {
                self.held = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Our stdin to the container until it ends; `true` when the detach keys were typed (with a
/// tty only, as docker's).
fn pump_stdin(w: &Mutex<UnixStream>, keys: &[u8]) -> bool {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 4096];
    let mut scan = EscapeScan {
        keys: keys.to_vec(),
        held: 0,
    };
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let (out, detached) = scan.feed(&buf[..n]);
        if !out.is_empty() && attach::write_frame(&mut *w.lock(), attach::STDIN, &out).is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
}

fn send_winsize(w: &Mutex<UnixStream>) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stdin()) {
        let mut p = Vec::with_capacity(4);
        p.extend_from_slice(&ws.ws_row.to_be_bytes());
        p.extend_from_slice(&ws.ws_col.to_be_bytes());
        let _ = attach::write_frame(&mut *w.lock(), attach::RESIZE, &p);
    }
}

/// SIGWINCH follows the window size (with a tty); without one the other signals go to the
/// container's init (with `proxy`), as docker's attach does.
fn forward_signals(c: &Container, w: Arc<Mutex<UnixStream>>, tty: bool, proxy: bool) {
    let pid = c.state.init.map(|p| p.pid).filter(|_| proxy && !tty);
    attach::forward_signals(pid, move || {
        if tty {
            send_winsize(&w);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_sequence_ends_input_and_a_broken_one_passes_through() {
        let mut s = EscapeScan {
            keys: vec![16, 17],
            held: 0,
        };
        assert_eq!(s.feed(b"ab"), (b"ab".to_vec(), false));
        // A prefix is held back across reads, then sent when the sequence breaks.
        assert_eq!(s.feed(&[16]), (Vec::new(), false));
        assert_eq!(s.feed(b"x"), (vec![16, b'x'], false));
        // Two starts in a row: the first is sent, the second may still begin the sequence.
        assert_eq!(s.feed(&[16, 16]), (vec![16], false));
        assert_eq!(s.feed(&[17, b'z']), (Vec::new(), true));
        let mut none = EscapeScan {
            keys: Vec::new(),
            held: 0,
        };
        assert_eq!(none.feed(&[16, 17]), (vec![16, 17], false));
    }

    #[test]
    fn detach_keys_parse_as_docker_reads_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-_").unwrap(),
            vec![b'a', 0, 31]
        );
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("ab").is_err());
        assert!(parse_detach_keys("ctrl-1").is_err());
    }
}
