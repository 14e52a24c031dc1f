//! Turning a command's output into text, and small text helpers for assertions.

use std::path::Path;
use std::process::Output;

/// A command's stdout then its stderr, as text (for assertion messages and searching both).
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The rest of the line of `/proc/self/status`-like text that starts with `key`, trimmed.
pub fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// A path as `&str`, for argument lists.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// GET / from `addr`, retried until the server answers 200 (it is started detached); 20 s at
/// most.
pub fn http_get(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(
            |mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            },
        );
        match got {
            Ok(body) if body.contains("200") => return body,
            _ if Instant::now() > deadline => panic!("no answer from {addr}: {got:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
