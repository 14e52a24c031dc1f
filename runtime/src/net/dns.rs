//! The embedded DNS server of a user-defined network, as docker's and podman's (aardvark-dns):
//! the containers' names and aliases answered from the network's record file, other names
//! forwarded to the host's resolvers.
//!
//! It serves UDP and TCP on one address (the network's gateway, port 53) from std threads with
//! blocking sockets, so a synchronous supervisor can run it. Its sockets are bound with
//! `SO_REUSEADDR` and `SO_REUSEPORT`: several processes may serve the same address at once, all
//! answering the same; one stopping leaves the others serving.
//!
//! As docker's: a known name's A records have a TTL of 600 and other types of a known name get
//! NOERROR with no answers; a PTR query for a container's address gets its name; the rest is
//! forwarded to the upstream servers in order (SERVFAIL when none answers, or there are none).

#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::NetError;
use super::store::Network;

/// The TTL of the answers given here (docker's).
pub const TTL: u32 = 600;
/// How long each upstream server is waited for.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries being forwarded at once (from UDP); more are dropped, the client retries.
pub const MAX_FORWARDS: usize = 128;
/// TCP connections at once; more are closed on accept.
pub const MAX_TCP: usize = 64;
/// How long a TCP connection may be idle, or take to send a message.
pub const TCP_IDLE: Duration = Duration::from_secs(5);
/// How long a TCP connection may last in all.
pub const TCP_LIFETIME: Duration = Duration::from_secs(30);
/// The largest query taken (UDP or TCP); a longer one is dropped.
pub const MAX_QUERY: usize = 4096;
/// A UDP answer's size without EDNS (RFC 1035).
const UDP_PLAIN: usize = 512;

/// What the server answers for.
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `name` on the network (empty: no container of that name or alias).
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr>;
    /// The container name at `ip`, for PTR queries.
    fn reverse(&self, ip: Ipv4Addr) -> Option<String>;
}

/// A running server; stopped by [`DnsServer::stop`] or on drop.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Wakes the UDP and the TCP thread.
    wakes: [UnixDatagram; 2],
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    resolver: Arc<dyn Resolver>,
    upstream: Vec<SocketAddr>,
    stopping: AtomicBool,
    forwards: AtomicUsize,
    tcp: AtomicUsize,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// A socket bound to `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
fn reusable_socket(
    addr: SocketAddr,
    ty: rustix::net::SocketType,
) -> std::io::Result<std::os::fd::OwnedFd> {
    let family = if addr.is_ipv4() {
        rustix::net::AddressFamily::INET
    } else {
        rustix::net::AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, ty, rustix::net::SocketFlags::CLOEXEC, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::sockopt::set_socket_reuseport(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
}

/// A UDP and a TCP socket bound to `addr`; port 0 picks one free for both (a free UDP port may
/// be taken in TCP: then another is tried).
fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, std::os::fd::OwnedFd), NetError> {
    let mut tries = 0;
    loop {
        let udp: UdpSocket = reusable_socket(addr, rustix::net::SocketType::DGRAM)
            .map_err(io(format!("binding udp {addr}")))?
            .into();
        let local = udp.local_addr().map_err(io("reading the dns address"))?;
        match reusable_socket(local, rustix::net::SocketType::STREAM) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && tries < 16 => {
                tries += 1;
                tracing::debug!("tcp port {} taken ({e}), trying another", local.port());
            }
            Err(e) => return Err(io(format!("binding tcp {local}"))(e)),
        }
    }
}

/// Waits until `sock` is readable (true) or `wake` is (false: stop, or look at the channel).
fn wait_readable(sock: impl AsFd, wake: &UnixDatagram) -> (bool, bool) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [
        PollFd::new(&sock, PollFlags::IN),
        PollFd::new(wake, PollFlags::IN),
    ];
    let t = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&t)).is_err() {
        return (false, false);
    }
    let woke = !fds[1].revents().is_empty();
    (!fds[0].revents().is_empty(), woke)
}

impl DnsServer {
    /// Serves on UDP and TCP `addr` (`SO_REUSEADDR` + `SO_REUSEPORT`, so another process may
    /// serve the same address), forwarding other names to `upstream`, on background threads
    /// until `stop` or drop. Port 0 picks a free port (the same for UDP and TCP).
    pub fn start(
        addr: SocketAddr,
        resolver: Arc<dyn Resolver>,
        upstream: Vec<SocketAddr>,
    ) -> Result<DnsServer, NetError> {
        let (udp, tcp_fd) = bind_pair(addr)?;
        let local = udp.local_addr().map_err(io("reading the dns address"))?;
        rustix::net::listen(&tcp_fd, 128)
            .map_err(|e| io(format!("listening on tcp {local}"))(e.into()))?;
        let tcp: TcpListener = tcp_fd.into();
        tcp.set_nonblocking(true)
            .map_err(io("setting up the dns listener"))?;
        let (udp_wake, udp_woken) = UnixDatagram::pair().map_err(io("making a socket pair"))?;
        let (tcp_wake, tcp_woken) = UnixDatagram::pair().map_err(io("making a socket pair"))?;
        for s in [&udp_wake, &udp_woken, &tcp_wake, &tcp_woken] {
            s.set_nonblocking(true)
                .map_err(io("setting up a socket pair"))?;
        }
        let shared = Arc::new(Shared {
            resolver,
            // Never forwards to itself.
            upstream: upstream.into_iter().filter(|u| *u != local).collect(),
            stopping: AtomicBool::new(false),
            forwards: AtomicUsize::new(0),
            tcp: AtomicUsize::new(0),
        });
        let udp_thread = {
            let shared = shared.clone();
            let wake = udp_wake.try_clone().map_err(io("cloning a socket"))?;
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || serve_udp(udp, udp_woken, wake, shared))
                .map_err(io("starting the dns server"))?
        };
        let tcp_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("dns-tcp".into())
                .spawn(move || serve_tcp(tcp, tcp_woken, shared))
        };
        let mut server = DnsServer {
            addr: local,
            shared,
            wakes: [udp_wake, tcp_wake],
            threads: vec![udp_thread],
        };
        match tcp_thread {
            Ok(t) => server.threads.push(t),
            // Drop stops the UDP thread.
            Err(e) => return Err(io("starting the dns server")(e)),
        }
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the listening sockets are closed when this returns, so another server on
    /// the address takes every new query. Answers still being forwarded are dropped; a TCP
    /// connection already open ends within [`TCP_IDLE`].
    pub fn stop(self) {}

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for w in &self.wakes {
            let _ = w.send(&[0]);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A forwarded answer for the UDP thread to send.
type Reply = (Vec<u8>, SocketAddr);

fn serve_udp(sock: UdpSocket, woken: UnixDatagram, wake: UnixDatagram, shared: Arc<Shared>) {
    let wake = Arc::new(wake);
    let (tx, rx) = mpsc::channel::<Reply>();
    // One byte more than the largest query, to tell a longer one.
    let mut buf = vec![0u8; MAX_QUERY + 1];
    let _ = sock.set_nonblocking(true);
    while !shared.stopping.load(Ordering::SeqCst) {
        let (readable, woke) = wait_readable(&sock, &woken);
        if woke {
            let mut b = [0u8; 16];
            while woken.recv(&mut b).is_ok() {}
        }
        while let Ok((msg, to)) = rx.try_recv() {
            let _ = sock.send_to(&msg, to);
        }
        if !readable {
            continue;
        }
        // Several may be waiting.
        for _ in 0..64 {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            if n > MAX_QUERY {
                continue;
            }
            match handle(&shared, &buf[..n], false) {
                Handled::Reply(r) => {
                    let _ = sock.send_to(&r, from);
                }
                Handled::Drop => {}
                Handled::Forward(q, limit) => {
                    if shared.forwards.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDS {
                        shared.forwards.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let (shared2, tx, wake) = (shared.clone(), tx.clone(), wake.clone());
                    let spawned = std::thread::Builder::new()
                        .name("dns-forward".into())
                        .spawn(move || {
                            let r = forward(&shared2, &q, Some(limit));
                            shared2.forwards.fetch_sub(1, Ordering::SeqCst);
                            if tx.send((r, from)).is_ok() {
                                let _ = wake.send(&[1]);
                            }
                        });
                    if spawned.is_err() {
                        shared.forwards.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

fn serve_tcp(listener: TcpListener, woken: UnixDatagram, shared: Arc<Shared>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let (readable, _) = wait_readable(&listener, &woken);
        if !readable {
            continue;
        }
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        if shared.tcp.fetch_add(1, Ordering::SeqCst) >= MAX_TCP {
            shared.tcp.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let shared2 = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || {
                serve_conn(conn, &shared2);
                shared2.tcp.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.tcp.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Fills `buf` from `s`, giving up at `deadline` (a trickle of bytes does not keep it going).
fn read_full(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    true
}

/// Reads a length-prefixed message of at most `max` bytes.
fn read_framed(s: &mut TcpStream, max: usize, deadline: Instant) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    if !read_full(s, &mut len, deadline) {
        return None;
    }
    let len = u16::from_be_bytes(len) as usize;
    if len > max {
        return None;
    }
    let mut msg = vec![0u8; len];
    read_full(s, &mut msg, deadline).then_some(msg)
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| std::io::Error::other("message too long"))?
        .to_be_bytes();
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len);
    out.extend_from_slice(msg);
    s.write_all(&out)
}

fn serve_conn(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_write_timeout(Some(TCP_IDLE));
    let end = Instant::now() + TCP_LIFETIME;
    while !shared.stopping.load(Ordering::SeqCst) {
        let deadline = end.min(Instant::now() + TCP_IDLE);
        let Some(q) = read_framed(&mut conn, MAX_QUERY, deadline) else {
            return;
        };
        let r = match handle(shared, &q, true) {
            Handled::Reply(r) => r,
            Handled::Drop => return,
            Handled::Forward(q, _) => forward(shared, &q, None),
        };
        if write_framed(&mut conn, &r).is_err() {
            return;
        }
    }
}

enum Handled {
    Reply(Vec<u8>),
    /// The query, and the size of a UDP answer the client takes.
    Forward(Vec<u8>, usize),
    Drop,
}

/// A message's id, and whether it is a query (the QR bit clear).
fn header(msg: &[u8]) -> Option<(u16, bool)> {
    (msg.len() >= 12).then(|| (u16::from_be_bytes([msg[0], msg[1]]), msg[2] & 0x80 == 0))
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    m.to_vec().ok()
}

/// An answer of `code` to a query whose header is all that is read.
fn error_reply(raw: &[u8], code: ResponseCode) -> Handled {
    let Some((id, true)) = header(raw) else {
        return Handled::Drop;
    };
    let op = OpCode::from_u8((raw[2] >> 3) & 0x0f);
    let mut m = Message::error_msg(id, op, code);
    m.metadata.recursion_desired = raw[2] & 0x01 != 0;
    m.metadata.recursion_available = true;
    encode(&m).map_or(Handled::Drop, Handled::Reply)
}

/// The IPv4 address of a `d.c.b.a.in-addr.arpa` name.
fn reverse_name(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut parts: Vec<u8> = Vec::with_capacity(4);
    for p in rest.split('.') {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts.push(p.parse().ok()?);
    }
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// Answers a query from the resolver, or tells to forward it.
fn handle(shared: &Shared, raw: &[u8], tcp: bool) -> Handled {
    let Some((_, true)) = header(raw) else {
        return Handled::Drop;
    };
    let Ok(q) = Message::from_vec(raw) else {
        return error_reply(raw, ResponseCode::FormErr);
    };
    if q.metadata.op_code != OpCode::Query {
        return error_reply(raw, ResponseCode::NotImp);
    }
    let [question] = q.queries.as_slice() else {
        return error_reply(raw, ResponseCode::FormErr);
    };
    let limit = match &q.edns {
        Some(e) => usize::from(e.max_payload()).max(UDP_PLAIN),
        None => UDP_PLAIN,
    };
    let qname = question.name().to_ascii().to_ascii_lowercase();
    let qname = qname.trim_end_matches('.');
    let mut answers = Vec::new();
    if question.query_type() == RecordType::PTR {
        match reverse_name(qname).and_then(|ip| shared.resolver.reverse(ip)) {
            Some(host) => {
                let Ok(target) = Name::from_ascii(format!("{}.", host.trim_end_matches('.')))
                else {
                    return error_reply(raw, ResponseCode::ServFail);
                };
                answers.push(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                ));
            }
            None => return Handled::Forward(raw.to_vec(), limit),
        }
    } else {
        let ips = if qname.is_empty() {
            Vec::new()
        } else {
            shared.resolver.lookup(qname)
        };
        if ips.is_empty() {
            return Handled::Forward(raw.to_vec(), limit);
        }
        if question.query_type() == RecordType::A {
            for ip in ips {
                answers.push(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::A(A(ip)),
                ));
            }
        }
        // Other types of a known name: NOERROR without answers (docker's).
    }
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    // As docker's embedded server answers (its `setCommonFlags`): recursion available, not
    // authoritative (busybox's nslookup prints "Non-authoritative answer:" for both).
    r.metadata.authoritative = false;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.checking_disabled = q.metadata.checking_disabled;
    r.add_query(question.clone());
    r.add_answers(answers);
    let Some(out) = encode(&r) else {
        return error_reply(raw, ResponseCode::ServFail);
    };
    if !tcp && out.len() > limit {
        return encode(&r.truncate()).map_or(Handled::Drop, Handled::Reply);
    }
    Handled::Reply(out)
}

/// A random query id for upstream (the client's is put back on the answer).
fn random_id() -> u16 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u16::from_be_bytes([b[0], b[1]])
}

/// Whether `r` answers query `id`, and with what code (its low four bits).
fn answers(r: &[u8], id: u16) -> Option<u8> {
    match header(r) {
        Some((rid, false)) if rid == id => Some(r[3] & 0x0f),
        _ => None,
    }
}

fn ask_udp(server: SocketAddr, q: &[u8], id: u16) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(server).ok()?;
    s.send(q).ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        let n = s.recv(&mut buf).ok()?;
        if answers(&buf[..n], id).is_some() {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

fn ask_tcp(server: SocketAddr, q: &[u8], id: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, UPSTREAM_TIMEOUT).ok()?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    s.set_write_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    write_framed(&mut s, q).ok()?;
    let r = read_framed(&mut s, usize::from(u16::MAX), deadline)?;
    answers(&r, id).is_some().then_some(r)
}

/// Forwards query `raw` to the upstream servers in order, as docker does: a server that fails,
/// or answers SERVFAIL or REFUSED, is passed over; a truncated UDP answer is asked again over
/// TCP, and relayed whole if it fits in `udp_limit` (else the truncated one is, for the client to
/// ask again over TCP). None answering: SERVFAIL. `udp_limit` none: the client asked over TCP.
fn forward(shared: &Shared, raw: &[u8], udp_limit: Option<usize>) -> Vec<u8> {
    let Some((client_id, _)) = header(raw) else {
        return Vec::new();
    };
    let id = random_id();
    let mut q = raw.to_vec();
    q[..2].copy_from_slice(&id.to_be_bytes());
    for &server in &shared.upstream {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let mut r = match udp_limit {
            None => ask_tcp(server, &q, id),
            Some(limit) => match ask_udp(server, &q, id) {
                Some(r) if r[2] & 0x02 != 0 => ask_tcp(server, &q, id)
                    .filter(|whole| whole.len() <= limit)
                    .or(Some(r)),
                r => r,
            },
        };
        let Some(r) = r.as_mut() else { continue };
        let code = r[3] & 0x0f;
        if code == ResponseCode::ServFail.low() || code == ResponseCode::Refused.low() {
            continue;
        }
        r[..2].copy_from_slice(&client_id.to_be_bytes());
        return std::mem::take(r);
    }
    match error_reply(raw, ResponseCode::ServFail) {
        Handled::Reply(r) => r,
        _ => Vec::new(),
    }
}

/// The `nameserver` lines of a resolv.conf as servers on port 53 (IPv4 and IPv6; a scoped
/// IPv6 address, `fe80::1%eth0`, is left out).
pub fn upstream_servers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver")
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// A Resolver over a network record file (`runtime::net::store`'s JSON, [`Network`]), re-read
/// when it changes (its mtime, size or inode: the store renames a new file over the old). A
/// missing or unreadable file resolves nothing. Besides [`Network::resolve`]'s names it answers
/// `NAME.NETWORK`, as docker does.
pub struct FileResolver {
    path: PathBuf,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    stamp: Option<(std::time::SystemTime, u64, u64)>,
    network: Option<Network>,
}

impl FileResolver {
    pub fn new(path: impl Into<PathBuf>) -> FileResolver {
        FileResolver {
            path: path.into(),
            cache: Mutex::new(Cached::default()),
        }
    }

    /// Runs `f` on the network as the file has it now.
    fn with<R>(&self, f: impl FnOnce(Option<&Network>) -> R) -> R {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
        if stamp != c.stamp || stamp.is_none() {
            c.network = std::fs::read(&self.path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            c.stamp = stamp;
        }
        f(c.network.as_ref())
    }
}

impl Resolver for FileResolver {
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self.with(|n| {
            let Some(n) = n else { return Vec::new() };
            let found = n.resolve(name);
            if !found.is_empty() {
                return found;
            }
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_suffix(&format!(".{}", n.name.to_ascii_lowercase())) {
                Some(short) if !short.is_empty() => n.resolve(short),
                _ => Vec::new(),
            }
        })
    }

    fn reverse(&self, ip: Ipv4Addr) -> Option<String> {
        self.with(|n| n?.name_of(ip).map(str::to_owned))
    }
}
