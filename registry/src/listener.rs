//! The bounded listener `hoist serve` accepts connections through: a connection limit, and
//! timeouts so that no client can hold a connection (and its file descriptor and memory)
//! without making progress.
//!
//! - **Connection limit:** at most `max_connections` are open; beyond it the listener stops
//!   accepting (new clients wait in the kernel's backlog) until one closes.
//! - **Header timeout:** once the first byte of a request arrives, its whole header must arrive
//!   within `header_timeout` (slowloris).
//! - **Idle timeout:** a connection with no request in progress is closed after `idle_timeout`
//!   (before its first request, and between keep-alive requests).
//! - **Body timeout:** a request body that makes no progress for `body_timeout` fails the
//!   request, and a client that takes no response bytes for `body_timeout` loses the
//!   connection.
//!
//! A request is "in progress" from the moment its handler is called until its response body
//! has been sent (or dropped): [`track`] counts them per connection, so the idle and header
//! timers never cut a slow handler or a long download.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The listener's limits (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// What one connection's IO and its requests share.
#[derive(Debug)]
struct ConnState {
    limits: ConnLimits,
    /// Requests whose handler runs or whose response body is still being sent.
    in_flight: AtomicUsize,
    clock: Mutex<Clock>,
    /// The user a verified TLS client certificate names, once the handshake is done.
    client_user: std::sync::OnceLock<String>,
    /// Whether the connection speaks TLS.
    tls: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Clock {
    /// When the connection last became idle (accepted, or its last request finished).
    idle_since: Instant,
    /// When the first byte of the next request's header arrived, while idle.
    head_since: Option<Instant>,
    /// The task reading the connection, woken when it becomes idle so the idle timer starts
    /// even on a connection whose read is already pending (HTTP/2).
    reader: Option<Waker>,
}

impl ConnState {
    fn new(limits: ConnLimits) -> Arc<ConnState> {
        Arc::new(ConnState {
            limits,
            in_flight: AtomicUsize::new(0),
            clock: Mutex::new(Clock {
                idle_since: Instant::now(),
                head_since: None,
                reader: None,
            }),
            client_user: std::sync::OnceLock::new(),
            tls: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The instant the connection must be closed at, if no request is in progress.
    fn idle_deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let clock = self.clock.lock().expect("clock lock");
        let idle = clock.idle_since + self.limits.idle_timeout;
        Some(match clock.head_since {
            Some(head) => idle.min(head + self.limits.header_timeout),
            None => idle,
        })
    }

    fn start_request(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn finish_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut clock = self.clock.lock().expect("clock lock");
            clock.idle_since = Instant::now();
            clock.head_since = None;
            if let Some(w) = clock.reader.take() {
                w.wake();
            }
        }
    }
}

/// The remote end of a connection: its address and the connection's shared state. Handlers
/// see it as `ConnectInfo<SocketAddr>` (inserted by [`track`]).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    conn: Arc<ConnState>,
}

impl Peer {
    /// The user the connection's TLS client certificate names (see [`crate::tls`]).
    pub fn client_user(&self) -> Option<&str> {
        self.conn.client_user.get().map(String::as_str)
    }
}

impl Connected<IncomingStream<'_, BoundedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener that enforces [`ConnLimits`], speaking TLS when it has an acceptor.
pub struct BoundedListener {
    inner: TcpListener,
    limits: ConnLimits,
    permits: Arc<Semaphore>,
    tls: Option<Arc<crate::tls::TlsAcceptor>>,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, limits: ConnLimits) -> BoundedListener {
        BoundedListener {
            inner,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            tls: None,
        }
    }

    /// Serves TLS: each connection's handshake runs on its own task (in the connection's first
    /// read), with the configuration current at its accept, and must finish, with the first
    /// request's header, within the header timeout.
    pub fn with_tls(mut self, tls: Arc<crate::tls::TlsAcceptor>) -> BoundedListener {
        self.tls = Some(tls);
        self
    }
}

impl Listener for BoundedListener {
    type Io = TimedIo;
    type Addr = Peer;

    async fn accept(&mut self) -> (TimedIo, Peer) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the listener never closes its semaphore");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = ConnState::new(self.limits);
                    let stream = match &self.tls {
                        None => Stream::Plain(stream),
                        Some(tls) => {
                            conn.clock.lock().expect("clock lock").head_since =
                                Some(Instant::now());
                            conn.tls.store(true, Ordering::Release);
                            Stream::Handshake(Box::new(
                                tokio_rustls::TlsAcceptor::from(tls.config()).accept(stream),
                            ))
                        }
                    };
                    let io = TimedIo {
                        stream,
                        conn: conn.clone(),
                        read_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                        write_timer: None,
                        _permit: permit,
                    };
                    return (io, Peer { addr, conn });
                }
                Err(e) => accept_failed(e).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer {
            addr: self.inner.local_addr()?,
            conn: ConnState::new(self.limits),
        })
    }
}

/// Out of descriptors (`EMFILE`/`ENFILE`) or memory: wait for connections to close rather than
/// spinning; a refused or reset connection is the client's problem.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A connection's byte stream: plain TCP, or TLS (its handshake first).
enum Stream {
    Plain(TcpStream),
    Handshake(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// The handshake failed; the connection is done.
    Failed,
}

impl Stream {
    /// Drives a TLS handshake to its end; ready at once for plain TCP. A finished handshake
    /// records the client certificate's user on `conn`.
    fn poll_ready(&mut self, cx: &mut Context<'_>, conn: &ConnState) -> Poll<io::Result<()>> {
        match self {
            Stream::Handshake(accept) => match Pin::new(&mut **accept).poll(cx) {
                Poll::Ready(Ok(tls)) => {
                    if let Some(user) = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::tls::client_user)
                    {
                        let _ = conn.client_user.set(user);
                    }
                    *self = Stream::Tls(Box::new(tls));
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "tls handshake failed");
                    *self = Stream::Failed;
                    Poll::Ready(Err(e))
                }
                Poll::Pending => Poll::Pending,
            },
            Stream::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the tls handshake failed",
            ))),
            Stream::Plain(_) | Stream::Tls(_) => Poll::Ready(Ok(())),
        }
    }

    /// Writes the front of `bufs`. On plain TCP, bytes of a mapped file (a blob,
    /// [`hoist_storage::driver::mapped`]) go from the page cache to the socket with `sendfile`,
    /// without a copy through user space: a write starts with such bytes or stops before them.
    fn poll_write_bufs(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use hoist_storage::driver::mapped;
        if let Stream::Plain(tcp) = self {
            let mut slices = bufs.iter().enumerate().filter(|(_, b)| !b.is_empty());
            if let Some((first, buf)) = slices.next() {
                if let Some(region) = mapped::find(buf.as_ptr()) {
                    return poll_sendfile(tcp, cx, &region, buf.len().min(region.remaining));
                }
                if let Some((next, _)) = slices.find(|(_, b)| mapped::find(b.as_ptr()).is_some()) {
                    return Pin::new(tcp).poll_write_vectored(cx, &bufs[first..next]);
                }
            }
        }
        self.io().poll_write_vectored(cx, bufs)
    }

    /// The ready stream, once [`Stream::poll_ready`] said so.
    fn io(&mut self) -> Pin<&mut (dyn Io + '_)> {
        match self {
            Stream::Plain(s) => Pin::new(s),
            Stream::Tls(s) => Pin::new(&mut **s),
            Stream::Handshake(_) | Stream::Failed => unreachable!("polled before the handshake"),
        }
    }
}

/// Sends `count` bytes of a mapped file's `region` to the socket.
fn poll_sendfile(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    region: &hoist_storage::driver::mapped::Region,
    count: usize,
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(tcp.poll_write_ready(cx))?;
        let mut offset = region.offset;
        let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(tcp, region.fd(), Some(&mut offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(n) => {
                metrics::counter!("hoist_http_sendfile_bytes_total").increment(n as u64);
                return Poll::Ready(Ok(n));
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// What a ready stream is.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection's socket with the idle, header and write-stall timers.
pub struct TimedIo {
    stream: Stream,
    conn: Arc<ConnState>,
    read_timer: Pin<Box<Sleep>>,
    /// Armed while a write is pending: the client has taken no bytes since then.
    write_timer: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

/// The most one read takes from a socket. hyper grows its read buffer (to ~400 KiB) while reads
/// fill it, and keeps it for the connection's life; reads of at most this much keep what a slow
/// or stalled connection holds near this size.
const READ_MAX: usize = 64 * 1024;

/// Reads into `buf`, at most `max` bytes.
fn read_at_most(
    stream: Pin<&mut (dyn Io + '_)>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    max: usize,
) -> Poll<io::Result<()>> {
    if buf.remaining() <= max {
        return stream.poll_read(cx, buf);
    }
    let n = {
        let mut part = buf.take(max);
        match stream.poll_read(cx, &mut part) {
            Poll::Ready(Ok(())) => part.filled().len(),
            other => return other,
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: the first `n` bytes of `buf`'s unfilled part were just filled (hence initialised)
    // through `part`, which borrows exactly that memory.
    unsafe {
        buf.assume_init(n);
    }
    buf.advance(n);
    Poll::Ready(Ok(()))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = match this.stream.poll_ready(cx, &this.conn) {
            Poll::Ready(Ok(())) => read_at_most(this.stream.io(), cx, buf, READ_MAX),
            other => other,
        };
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.conn.in_flight.load(Ordering::Acquire) == 0 {
                    let mut clock = this.conn.clock.lock().expect("clock lock");
                    clock.head_since.get_or_insert_with(Instant::now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.conn.clock.lock().expect("clock lock").reader = Some(cx.waker().clone());
                let Some(deadline) = this.conn.idle_deadline() else {
                    return Poll::Pending;
                };
                if deadline <= Instant::now() {
                    return Poll::Ready(Err(timed_out(
                        "connection idle or request header too slow",
                    )));
                }
                this.read_timer.as_mut().reset(deadline);
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(timed_out("connection idle or request header too slow")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl TimedIo {
    /// Runs a write, failing it once the client has taken nothing for `body_timeout`.
    fn poll_timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Stream, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let done = match self.stream.poll_ready(cx, &self.conn) {
            Poll::Ready(Ok(())) => op(&mut self.stream, cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        match done {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.conn.limits.body_timeout;
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out("client stopped reading"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_timed(cx, |s, cx| s.poll_write_bufs(cx, &[io::IoSlice::new(buf)]))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_timed(cx, |s, cx| s.poll_write_bufs(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Handshake(_) | Stream::Failed => false,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_timed(cx, |s, cx| s.io().poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_timed(cx, |s, cx| s.io().poll_shutdown(cx))
    }
}

/// The user a request's TLS client certificate names (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUser(pub String);

/// Marks a request that came over TLS (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls;

/// Middleware: counts the request as in progress on its connection until its response body is
/// done, bounds the wait for request body bytes, and exposes the peer's address as
/// `ConnectInfo<SocketAddr>`. Requests that did not come through a [`BoundedListener`]
/// (in-process tests) pass unchanged.
pub async fn track(mut req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>().cloned() else {
        return next.run(req).await;
    };
    req.extensions_mut().insert(ConnectInfo(peer.addr));
    if let Some(user) = peer.client_user() {
        req.extensions_mut().insert(ClientUser(user.to_owned()));
    }
    if peer.conn.tls.load(Ordering::Acquire) {
        req.extensions_mut().insert(Tls);
    }
    let guard = InFlight::new(peer.conn.clone());
    let limit = peer.conn.limits.body_timeout;
    let req = req.map(|body| {
        Body::new(StallGuard {
            inner: body,
            limit,
            timer: None,
        })
    });
    let resp = next.run(req).await;
    resp.map(|body| {
        Body::new(Guarded {
            inner: body,
            _guard: guard,
        })
    })
}

/// One request in progress on a connection.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(conn: Arc<ConnState>) -> InFlight {
        conn.start_request();
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish_request();
    }
}

/// The error a stalled request body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: no bytes for {0:?}")]
pub struct BodyStalled(Duration);

/// A request body that fails once it makes no progress for `limit`.
struct StallGuard {
    inner: Body,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for StallGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyStalled(limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in progress until it is sent or dropped.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection limit (not the
/// descriptor table) is what bounds connections. Returns the new soft limit (`None`: unlimited).
pub fn raise_nofile_limit() -> io::Result<Option<u64>> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim)?;
    }
    Ok(lim.current)
}

/// Makes the allocator give large freed blocks (request and write buffers, argon2's 19 MiB
/// working memory) back to the system at once: glibc's default raises its mmap threshold after
/// the first large free, after which such blocks come from arenas that never shrink, and a burst
/// of uploads or logins would leave the server at its peak RSS for good.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 128 KiB, glibc's initial threshold, fixed (setting it turns off the dynamic raise);
        // and trim the heap top once 1 MiB is free.
        #[allow(unsafe_code)]
        // SAFETY: mallopt only changes allocator parameters, under glibc's arena locks, and is
        // harmless if it fails (it returns 0).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        }
    }
}
