//! The messages between the caller and the init helper / container init over the sync socket:
//! a tag byte, a little-endian u32 length, the payload.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};

use super::ExecError;

/// What the init helper is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Create a container from a bundle.
    Create {
        id: String,
        bundle: PathBuf,
        rootfs: PathBuf,
        spec: Box<Spec>,
        /// The pty slave to bind-mount at /dev/console.
        console: Option<PathBuf>,
    },
    /// Run a process in the namespaces of a running container.
    Exec {
        target_pid: i32,
        process: Box<Process>,
        seccomp: Option<Box<LinuxSeccomp>>,
    },
}

#[derive(Debug, PartialEq)]
pub(crate) enum Msg {
    /// helper -> caller: write the uid/gid maps of my (new) user namespace.
    NeedMaps,
    /// caller -> helper: done.
    MapsDone,
    /// helper -> caller: the container init's pid.
    Pid(i32),
    /// init -> caller: set up, blocked before exec.
    Ready,
    /// caller -> init (after Ready): make `/dev/pts/N` of the container's devpts the process's
    /// terminal (stdio and `/dev/console`); the caller holds its master.
    Pty(u32),
    /// caller -> init: exec now.
    Start,
    /// helper or init -> caller: what failed.
    Error(String),
}

const T_REQUEST: u8 = b'Q';
const T_NEED_MAPS: u8 = b'U';
const T_MAPS_DONE: u8 = b'u';
const T_PID: u8 = b'P';
const T_READY: u8 = b'R';
const T_START: u8 = b'S';
const T_PTY: u8 = b'T';
const T_ERROR: u8 = b'E';

fn io_err(what: &str, e: io::Error) -> ExecError {
    ExecError::io(format!("sync socket: {what}"), e)
}

fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(tag);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Reads one frame; `None` at a clean EOF before its first byte.
fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > 64 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

pub(crate) fn encode(msg: &Msg) -> (u8, Vec<u8>) {
    match msg {
        Msg::NeedMaps => (T_NEED_MAPS, Vec::new()),
        Msg::MapsDone => (T_MAPS_DONE, Vec::new()),
        Msg::Pid(p) => (T_PID, p.to_le_bytes().to_vec()),
        Msg::Ready => (T_READY, Vec::new()),
        Msg::Start => (T_START, Vec::new()),
        Msg::Pty(n) => (T_PTY, n.to_le_bytes().to_vec()),
        Msg::Error(e) => (T_ERROR, e.as_bytes().to_vec()),
    }
}

fn decode(tag: u8, payload: Vec<u8>) -> io::Result<Msg> {
    Ok(match tag {
        T_NEED_MAPS => Msg::NeedMaps,
        T_MAPS_DONE => Msg::MapsDone,
        T_PID if payload.len() == 4 => Msg::Pid(i32::from_le_bytes([
            payload[0], payload[1], payload[2], payload[3],
        ])),
        T_READY => Msg::Ready,
        T_START => Msg::Start,
        T_PTY if payload.len() == 4 => Msg::Pty(u32::from_le_bytes([
            payload[0], payload[1], payload[2], payload[3],
        ])),
        T_ERROR => Msg::Error(String::from_utf8_lossy(&payload).into_owned()),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown message tag {tag}"),
            ));
        }
    })
}

pub(crate) fn send(w: &mut impl Write, msg: &Msg) -> Result<(), ExecError> {
    let (tag, payload) = encode(msg);
    write_frame(w, tag, &payload).map_err(|e| io_err("send", e))
}

pub(crate) fn send_request(w: &mut impl Write, req: &Request) -> Result<(), ExecError> {
    let payload = serde_json::to_vec(req)
        .map_err(|e| ExecError::Config(format!("serialise the init request: {e}")))?;
    write_frame(w, T_REQUEST, &payload).map_err(|e| io_err("send the request", e))
}

pub(crate) fn recv_request(r: &mut impl Read) -> io::Result<Request> {
    match read_frame(r)? {
        Some((T_REQUEST, payload)) => serde_json::from_slice(&payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Some((tag, _)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a request, got tag {tag}"),
        )),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Receives a message; EOF is an error naming that the other side went away.
pub(crate) fn recv(r: &mut impl Read) -> Result<Msg, ExecError> {
    match recv_or_eof(r)? {
        Some(m) => Ok(m),
        None => Err(ExecError::Init(
            "the init process exited without a word (see its stderr)".into(),
        )),
    }
}

pub(crate) fn recv_or_eof(r: &mut impl Read) -> Result<Option<Msg>, ExecError> {
    match read_frame(r).map_err(|e| io_err("receive", e))? {
        None => Ok(None),
        Some((tag, payload)) => decode(tag, payload)
            .map(Some)
            .map_err(|e| io_err("decode", e)),
    }
}

/// Init side: plain io results.
pub(crate) fn recv_io(r: &mut impl Read) -> io::Result<Msg> {
    match read_frame(r)? {
        Some((tag, payload)) => decode(tag, payload),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

pub(crate) fn send_io(w: &mut impl Write, msg: &Msg) -> io::Result<()> {
    let (tag, payload) = encode(msg);
    write_frame(w, tag, &payload)
}
