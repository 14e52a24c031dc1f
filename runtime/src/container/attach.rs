//! Attaching to a detached container (`hoist attach`, `hoist start -a`): its supervisor listens
//! on `attach.sock` in the container's directory; each client gets the container's output from
//! the moment it connects and, when the container keeps stdin open (`-i`), writes to its stdin
//! (or its pty with `-t`). The container's exit code ends every attachment.
//!
//! Frames both ways are `[kind: u8][len: u32 BE][payload]`: stdout, stderr and the exit code
//! (i32 BE) from the supervisor; stdin bytes and a window size (rows, cols: u16 BE) from the
//! client. A slow client never blocks the container: each has a bounded queue, and one that falls
//! behind by more than it holds is disconnected.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const STDIN: u8 = 0;
pub const RESIZE: u8 = 4;

/// The largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;
/// Frames queued for one client before it counts as stuck.
const QUEUE: usize = 128;
/// Clients one container serves at once.
const MAX_CLIENTS: usize = 32;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// A path to `name` in `dir` short enough for a unix socket address (108 bytes) however deep
/// `dir` is: through a descriptor of `dir` (`/proc/self/fd/N/name`). The descriptor must stay
/// open while the path is used.
fn short_path(dir: &Path, name: &str) -> io::Result<(OwnedFd, PathBuf)> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
    Ok((fd, p))
}

pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// The next frame; `None` at a clean end of the stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes: more than {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

struct Client {
    id: u64,
    tx: SyncSender<(u8, Vec<u8>)>,
}

#[derive(Default)]
struct Clients {
    list: Vec<Client>,
    next: u64,
    /// Clients that ever connected (for [`Hub::wait_client`]).
    seen: u64,
    closed: bool,
}

/// The supervisor's side: the listening socket and the attached clients.
pub struct Hub {
    clients: Mutex<Clients>,
    joined: Condvar,
    /// Where client input goes: the container's stdin pipe or its pty master.
    input: Mutex<Option<File>>,
    pty: Option<Arc<OwnedFd>>,
    path: PathBuf,
}

impl Hub {
    /// Listens on `dir/attach.sock` (replacing a stale one), readable by its owner only.
    pub fn listen(
        dir: &Path,
        input: Option<File>,
        pty: Option<Arc<OwnedFd>>,
    ) -> io::Result<Arc<Hub>> {
        let (dirfd, path) = short_path(dir, SOCKET)?;
        match rustix::fs::unlinkat(&dirfd, SOCKET, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(&path)?;
        rustix::fs::chmodat(
            &dirfd,
            SOCKET,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::AtFlags::empty(),
        )?;
        let hub = Arc::new(Hub {
            clients: Mutex::new(Clients::default()),
            joined: Condvar::new(),
            input: Mutex::new(input),
            pty,
            path: dir.join(SOCKET),
        });
        let h = hub.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if h.clients.lock().closed {
                    return;
                }
                h.serve(conn);
            }
        });
        Ok(hub)
    }

    fn serve(self: &Arc<Self>, conn: UnixStream) {
        let (tx, rx) = sync_channel(QUEUE);
        let id = {
            let mut c = self.clients.lock();
            if c.list.len() >= MAX_CLIENTS {
                return;
            }
            c.next += 1;
            c.seen += 1;
            let id = c.next;
            c.list.push(Client { id, tx });
            id
        };
        self.joined.notify_all();
        let Ok(mut reader) = conn.try_clone() else {
            self.drop_client(id);
            return;
        };
        std::thread::spawn(move || send_frames(conn, rx));
        let hub = self.clone();
        std::thread::spawn(move || {
            while let Ok(Some((kind, payload))) = read_frame(&mut reader) {
                match kind {
                    STDIN => {
                        let mut input = hub.input.lock();
                        if let Some(f) = input.as_mut()
                            && f.write_all(&payload).is_err()
                        {
                            *input = None;
                        }
                    }
                    RESIZE if payload.len() == 4 => {
                        if let Some(m) = &hub.pty {
                            let ws = rustix::termios::Winsize {
                                ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                                ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            };
                            let _ = rustix::termios::tcsetwinsize(m.as_fd(), ws);
                        }
                    }
                    _ => {}
                }
            }
            hub.drop_client(id);
        });
    }

    fn drop_client(&self, id: u64) {
        self.clients.lock().list.retain(|c| c.id != id);
    }

    /// Sends `data` of `stream` to every client; one whose queue is full is disconnected.
    pub fn broadcast(&self, kind: u8, data: &[u8]) {
        let mut c = self.clients.lock();
        c.list
            .retain(|cl| match cl.tx.try_send((kind, data.to_vec())) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// Waits until a client has connected (`hoist start -a` attaches before the process runs),
    /// at most `timeout`. Whether one did.
    pub fn wait_client(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.clients.lock();
        while c.seen == 0 {
            if self.joined.wait_until(&mut c, deadline).timed_out() {
                return c.seen > 0;
            }
        }
        true
    }

    /// The container ended with `code`: every client gets it after the output before it, and
    /// the socket goes away.
    pub fn finish(&self, code: i32) {
        let mut c = self.clients.lock();
        c.closed = true;
        for cl in c.list.drain(..) {
            let _ = cl.tx.try_send((EXIT, code.to_be_bytes().to_vec()));
        }
        drop(c);
        *self.input.lock() = None;
        let _ = std::fs::remove_file(&self.path);
    }

    /// A writer for [`super::logs::pump`]'s tee: what the container writes on `stream`.
    pub fn writer(self: &Arc<Self>, kind: u8) -> HubWriter {
        HubWriter {
            hub: self.clone(),
            kind,
        }
    }
}

fn send_frames(mut conn: UnixStream, rx: Receiver<(u8, Vec<u8>)>) {
    // A client that stops reading is cut off once its queue fills; a write timeout keeps this
    // thread from hanging on it in between.
    let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
    for (kind, data) in rx {
        if write_frame(&mut conn, kind, &data).is_err() || kind == EXIT {
            break;
        }
    }
    // Both directions: the client sees the end, and the thread reading its input stops.
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// Writes into a [`Hub`] as one of the container's streams; never fails, never blocks.
pub struct HubWriter {
    hub: Arc<Hub>,
    kind: u8,
}

impl Write for HubWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hub.broadcast(self.kind, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// For an attached client: blocks the forwarded signals in this thread (threads spawned after
/// inherit it) and handles them in a thread of their own: SIGWINCH calls `on_winch`, the others
/// go to `pid` when given (docker's `--sig-proxy`), else are ignored.
pub fn forward_signals(pid: Option<i32>, on_winch: impl Fn() + Send + 'static) {
    let set = super::forwarded();
    let _ = set.thread_block();
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = set.wait() else { return };
            if sig == nix::sys::signal::Signal::SIGWINCH {
                on_winch();
                continue;
            }
            if let Some(pid) = pid
                && crate::exec::signal_pid(pid, sig as i32).is_err()
            {
                return;
            }
        }
    });
}

/// The client's side: a connection to a running container's supervisor.
pub fn connect(dir: &Path) -> io::Result<UnixStream> {
    let (_dirfd, path) = short_path(dir, SOCKET)?;
    UnixStream::connect(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_huge_one_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").unwrap();
        write_frame(&mut buf, EXIT, &7i32.to_be_bytes()).unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((EXIT, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut huge = vec![STDIN];
        huge.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(read_frame(&mut &huge[..]).is_err());
    }

    #[test]
    fn clients_get_output_input_reaches_the_container_and_the_exit_code_ends_it() {
        // A directory deeper than a unix socket address holds.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d".repeat(100)).join("e".repeat(60));
        std::fs::create_dir_all(&dir).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let hub = Hub::listen(&dir, Some(File::from(w)), None).unwrap();
        let mut a = connect(&dir).unwrap();
        let mut b = connect(&dir).unwrap();
        assert!(hub.wait_client(Duration::from_secs(10)));
        // Both registered before output flows.
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.clients.lock().list.len() < 2 {
            assert!(Instant::now() < deadline, "clients never registered");
            std::thread::sleep(Duration::from_millis(5));
        }
        write_frame(&mut a, STDIN, b"typed\n").unwrap();
        let mut got = [0u8; 6];
        File::from(r).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"typed\n");
        hub.writer(STDOUT).write_all(b"out").unwrap();
        hub.writer(STDERR).write_all(b"err").unwrap();
        hub.finish(3);
        for c in [&mut a, &mut b] {
            assert_eq!(read_frame(c).unwrap(), Some((STDOUT, b"out".to_vec())));
            assert_eq!(read_frame(c).unwrap(), Some((STDERR, b"err".to_vec())));
            assert_eq!(
                read_frame(c).unwrap(),
                Some((EXIT, 3i32.to_be_bytes().to_vec()))
            );
            assert_eq!(read_frame(c).unwrap(), None);
        }
        assert!(
            !dir.join(SOCKET).exists(),
            "the socket outlived the container"
        );
    }

    #[test]
    fn a_client_that_never_reads_is_cut_off_without_blocking_the_container() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = Hub::listen(tmp.path(), None, None).unwrap();
        let _stuck = connect(tmp.path()).unwrap();
        assert!(hub.wait_client(Duration::from_secs(10)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while hub.clients.lock().list.is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        // Far more than the socket buffer and the queue hold: broadcasting never waits for a
        // client (try_send), and the stuck one is dropped.
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..2000 {
            hub.broadcast(STDOUT, &chunk);
        }
        assert!(
            hub.clients.lock().list.is_empty(),
            "the stuck client is still attached"
        );
    }
}
