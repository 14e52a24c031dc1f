//! Hostile clients cannot exhaust `hoist serve`: idle and slowloris connections are closed by
//! the idle and header timeouts, the connection limit holds, a stalled upload holds little
//! memory and keeps what arrived, a client that stops reading loses its connection, and
//! through all of it other clients are answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hoist_conformance::harness::Server;

fn hoist() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoist"))
}

/// Starts `hoist serve` with `config` (TOML) as its configuration file.
fn serve(config: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("hoist.toml");
    std::fs::write(&file, config).unwrap();
    let server = Server::hoist_with(hoist(), &["--config", file.to_str().unwrap()]).unwrap();
    (server, dir)
}

/// Lets this test process open as many sockets as the hard limit allows.
fn raise_own_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).unwrap();
}

fn kib_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// One `GET /v2/` on a fresh connection: its status line and how long it took, or why not.
fn probe(addr: &str, within: Duration) -> Result<(String, Duration), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| {
        format!(
            "no answer within {within:?} ({e}); got {:?}",
            String::from_utf8_lossy(&buf)
        )
    })?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or_default().to_owned();
    Ok((line, started.elapsed()))
}

/// Whether the server closed `s` within `within` (EOF or reset rather than a timeout).
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or similar before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Sends probes while `attack` holds its connections, and asserts each is answered quickly.
fn assert_answers_during(addr: &str, probes: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..probes {
        let (line, took) = probe(addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("probe {i} during the attack: {e}"));
        assert!(line.contains(" 200 "), "probe {i}: {line}");
        worst = worst.max(took);
    }
    worst
}

#[test]
fn idle_connections_are_closed_and_others_are_answered_meanwhile() {
    raise_own_nofile_limit();
    let (server, _cfg) = serve("idle_timeout_secs = 8\nheader_timeout_secs = 30\n");
    let pid = server.pid();
    // The descriptor limit was raised at start, so it is not the bound on connections.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "soft limit not raised to the hard one: {line}"
    );

    // More idle connections than the usual 1024-descriptor soft limit.
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..1100)
        .map(|i| TcpStream::connect(&server.addr).unwrap_or_else(|e| panic!("idle {i}: {e}")))
        .collect();
    let worst = assert_answers_during(&server.addr, 20);
    eprintln!("1100 idle connections: 20 probes answered, worst {worst:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the probes took past the idle timeout; the test proves nothing"
    );

    // All of them are closed by the idle timeout (8 s), well before 15 s.
    let mut open = 0;
    for s in &mut idle {
        if !closed_by_server(s, Duration::from_secs(15).saturating_sub(started.elapsed())) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} idle connections still open after 15 s");
    drop(idle);
    // And the server let go of their descriptors.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open_fds(pid) <= 100,
        "{} descriptors still open",
        open_fds(pid)
    );
}

#[test]
fn slowloris_headers_are_cut_by_the_header_timeout() {
    let (server, _cfg) = serve("idle_timeout_secs = 60\nheader_timeout_secs = 2\n");
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Trickle a header byte on each connection every 250 ms, as slowloris does, for 8 s.
    let mut cut = vec![None; slow.len()];
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(8) {
        for (i, s) in slow.iter_mut().enumerate() {
            if cut[i].is_none() && s.write_all(b"X-a: b\r\n").is_err() {
                cut[i] = Some(started.elapsed());
            }
        }
        if probes < 10 {
            let (line, took) = probe(&server.addr, Duration::from_secs(3)).unwrap();
            assert!(line.contains(" 200 "), "{line}");
            assert!(took < Duration::from_secs(2), "a probe took {took:?}");
            probes += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A write may still succeed after the close (it fails on the next one); the read sees it.
    let mut still_open = 0;
    for s in &mut slow {
        if !closed_by_server(s, Duration::from_millis(200)) {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "{still_open} of 200 slowloris connections outlived the 2 s header timeout by 6 s"
    );
    let first_cut = cut.iter().flatten().min().copied();
    eprintln!("200 slowloris connections, first cut at {first_cut:?}; {probes} probes answered");
    assert!(
        first_cut.is_some_and(|t| t >= Duration::from_secs(1)),
        "connections were cut before their header timeout: {first_cut:?}"
    );
}

#[test]
fn the_connection_limit_holds_and_frees_with_the_idle_timeout() {
    let (server, _cfg) = serve("max_connections = 20\nidle_timeout_secs = 2\n");
    let pid = server.pid();
    let baseline = open_fds(pid);
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The 21st client waits in the backlog: not served while the 20 are open...
    let at_limit = open_fds(pid);
    assert!(
        at_limit <= baseline + 20,
        "{at_limit} descriptors with 20 connections (baseline {baseline})"
    );
    match probe(&server.addr, Duration::from_millis(800)) {
        Err(e) => assert!(e.contains("no answer"), "{e}"),
        Ok((line, _)) => panic!("a 21st connection was served past the limit: {line}"),
    }
    // ...and served once the idle timeout closes them.
    let (line, took) = probe(&server.addr, Duration::from_secs(6)).unwrap();
    assert!(line.contains(" 200 "), "{line}");
    eprintln!("21st connection served after {took:?}");
    drop(idle);
}

/// Starts an upload and returns its location path.
fn start_upload(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        b"POST /v2/bounds/stall/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn stalled_uploads_hold_little_memory_and_keep_what_arrived() {
    raise_own_nofile_limit();
    const STALLED: usize = 400;
    const SENT: usize = 3 << 19; // 1.5 MiB of a declared 4 MiB
    let (server, _cfg) = serve("body_timeout_secs = 12\nidle_timeout_secs = 60\n");
    let pid = server.pid();
    let locations: Vec<String> = (0..STALLED).map(|_| start_upload(&server.addr)).collect();
    let before = kib_field(pid, "VmRSS:");
    let chunk = vec![0x5au8; SENT];
    let started = Instant::now();
    let stalled: Vec<TcpStream> = locations
        .iter()
        .map(|loc| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            let head = format!(
                "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n",
                4 << 20
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&chunk).unwrap();
            s
        })
        .collect();
    // Let the server take in what was sent (bounded wait for RSS to settle).
    let mut during = kib_field(pid, "VmRSS:");
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = kib_field(pid, "VmRSS:");
        if now.abs_diff(during) < 1024 {
            break;
        }
        during = now;
    }
    let during = kib_field(pid, "VmRSS:");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sending took past the body timeout; the measurement is not of stalled uploads"
    );
    let per_upload = during.saturating_sub(before) / STALLED as u64;
    eprintln!(
        "{STALLED} stalled PATCH uploads: RSS {before} KiB -> {during} KiB, {per_upload} KiB each"
    );
    assert!(
        per_upload < 400,
        "each stalled upload holds {per_upload} KiB (RSS {before} -> {during} KiB)"
    );
    // Others are answered meanwhile.
    assert_answers_during(&server.addr, 5);

    // After the body timeout the PATCHes fail, and what arrived is kept: the upload is at
    // 1.5 MiB and can resume.
    let mut stalled = stalled;
    for s in &mut stalled {
        assert!(
            closed_by_server(s, Duration::from_secs(20)),
            "a stalled upload outlived the body timeout"
        );
    }
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        locations[0]
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    let range = format!("range: 0-{}", SENT - 1);
    assert!(text.to_ascii_lowercase().contains(&range), "{text}");
}

#[test]
fn a_client_that_stops_reading_loses_its_connection() {
    let (server, _cfg) = serve("body_timeout_secs = 2\n");
    let pid = server.pid();
    // A 64 MiB blob: more than the socket buffers hold.
    let data = vec![7u8; 64 << 20];
    let digest = hoist_oci::Digest::sha256_of(&data);
    let mut up = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "POST /v2/bounds/slow/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    up.write_all(head.as_bytes()).unwrap();
    up.write_all(&data).unwrap();
    let mut text = String::new();
    up.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    // A HEAD of the blob first, on a connection that closes: whatever serving the blob opens
    // and keeps (pooled database readers) is in the baseline.
    let mut warm = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "HEAD /v2/bounds/slow/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    warm.write_all(head.as_bytes()).unwrap();
    let mut text = String::new();
    warm.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = open_fds(pid);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let req = format!("GET /v2/bounds/slow/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(open_fds(pid) > baseline, "the download is not open");
    // Never read: within the body timeout (2 s) plus margin, the server lets go of it.
    let deadline = Instant::now() + Duration::from_secs(8);
    while open_fds(pid) > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open_fds(pid) <= baseline,
        "the server still holds the connection of a client that stopped reading"
    );
    drop(s);
}
