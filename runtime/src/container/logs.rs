//! Container logs: docker's json-file format, one JSON object a line
//! (`{"log":"hi\n","stream":"stdout","time":"2026-11-22T05:36:37.123456789Z"}`), in
//! `container.log`, rotated to `container.log.1`, `.2`, ... when it reaches a size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;

/// The longest line kept whole; longer output is split into several records, as docker does.
pub const MAX_LINE: usize = 16 * 1024;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends records to a container's log, rotating it. Shared by the stdout and stderr pumps.
pub struct LogWriter {
    inner: Mutex<Inner>,
}

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

/// `path.N`
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogWriter {
    /// Opens (appending to) `path`; rotates when a file would exceed `max_size` bytes, keeping
    /// `max_files` files in all (at least 1).
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<LogWriter> {
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            inner: Mutex::new(Inner {
                path: path.to_owned(),
                file,
                size,
                max_size: max_size.max(1024),
                max_files: max_files.max(1),
            }),
        })
    }

    /// Writes one record of `stream` (`stdout`/`stderr`).
    pub fn write(&self, stream: &str, bytes: &[u8]) -> io::Result<()> {
        let rec = Record {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.to_owned(),
            time: super::rfc3339(SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&rec).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut g = self.inner.lock();
        if g.size > 0 && g.size + line.len() as u64 > g.max_size {
            g.rotate()?;
        }
        g.file.write_all(&line)?;
        g.size += line.len() as u64;
        Ok(())
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files > 1 {
            for n in (1..self.max_files - 1).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = File::options()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Splits a stream into log records at newlines (and at [`MAX_LINE`]); the rest at EOF.
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    pub fn new() -> Self {
        LineSplitter { buf: Vec::new() }
    }

    /// Feeds `data`; calls `out` with each complete line (newline included).
    pub fn feed(&mut self, data: &[u8], mut out: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
            out(&self.buf[start..=start + i]);
            start += i + 1;
        }
        while self.buf.len() - start >= MAX_LINE {
            out(&self.buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.buf.drain(..start);
    }

    /// The unterminated rest.
    pub fn finish(&mut self, mut out: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            out(&self.buf);
            self.buf.clear();
        }
    }
}

/// Copies `from` into the log as `stream` until EOF, and also to `tee` when given.
pub fn pump(mut from: impl Read, log: &LogWriter, stream: &str, mut tee: Option<&mut dyn Write>) {
    let mut split = LineSplitter::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EIO on a pty master once the slave side is closed: the end.
            Err(_) => break,
        };
        if let Some(t) = tee.as_deref_mut()
            && t.write_all(&buf[..n]).and_then(|()| t.flush()).is_err()
        {
            tee = None;
        }
        split.feed(&buf[..n], |line| {
            let _ = log.write(stream, line);
        });
    }
    split.finish(|line| {
        let _ = log.write(stream, line);
    });
}

/// The log files of `path`, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() {
        out.push(rotated(path, n));
        n += 1;
    }
    out.reverse();
    if path.exists() {
        out.push(path.to_owned());
    }
    out
}

/// Every record in the logs, oldest first.
pub fn read_all(path: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for f in files(path) {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            if let Ok(r) = serde_json::from_str::<Record>(&line?) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Follows `path` from byte `offset` of the current file: calls `out` with each new record,
/// until `done()` says the writer has finished and everything has been read. Rotation (the
/// file replaced) is followed.
pub fn follow(
    path: &Path,
    mut offset: u64,
    done: impl Fn() -> bool,
    mut out: impl FnMut(&Record) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut file = File::open(path)?;
    let mut ino = file.metadata()?.ino();
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut pending = String::new();
    loop {
        let finished = done();
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n > 0 {
            offset += n as u64;
            pending.push_str(&line);
            if pending.ends_with('\n') {
                if let Ok(r) = serde_json::from_str::<Record>(pending.trim_end()) {
                    out(&r)?;
                }
                pending.clear();
            }
            continue;
        }
        // At the end of this file: a rotation replaced it?
        if let Ok(m) = std::fs::metadata(path)
            && m.ino() != ino
        {
            let f = File::open(path)?;
            ino = f.metadata()?.ino();
            reader = BufReader::new(f);
            offset = 0;
            pending.clear();
            continue;
        }
        if finished {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _ = offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_newlines_and_at_the_limit() {
        let mut s = LineSplitter::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        s.feed(b"a\nb", |l| got.push(l.to_vec()));
        s.feed(b"c\n\nd", |l| got.push(l.to_vec()));
        s.finish(|l| got.push(l.to_vec()));
        assert_eq!(
            got,
            [
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"d".to_vec()
            ]
        );
        let mut got = Vec::new();
        s.feed(&vec![b'x'; MAX_LINE + 5], |l| got.push(l.len()));
        s.finish(|l| got.push(l.len()));
        assert_eq!(got, [MAX_LINE, 5]);
    }

    #[test]
    fn records_rotate_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let w = LogWriter::open(&path, 2048, 3).unwrap();
        for i in 0..100 {
            w.write(
                if i % 2 == 0 { "stdout" } else { "stderr" },
                format!("line {i}\n").as_bytes(),
            )
            .unwrap();
        }
        let files = files(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 2048);
        }
        let recs = read_all(&path).unwrap();
        // The oldest went with rotation; the rest are in order and end with the last.
        assert!(recs.len() < 100 && recs.len() > 20);
        assert_eq!(recs.last().unwrap().log, "line 99\n");
        assert_eq!(recs.last().unwrap().stream, "stderr");
        let nums: Vec<usize> = recs
            .iter()
            .map(|r| r.log.trim().strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(recs[0].time.ends_with('Z'));
    }

    #[test]
    fn pump_tees_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let w = LogWriter::open(&path, 1 << 20, 1).unwrap();
        let mut tee = Vec::new();
        pump(&b"hello\nworld"[..], &w, "stdout", Some(&mut tee));
        assert_eq!(tee, b"hello\nworld");
        let recs = read_all(&path).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].log, "world");
    }

    #[test]
    fn follow_reads_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let w = LogWriter::open(&path, 1 << 20, 1).unwrap();
        w.write("stdout", b"one\n").unwrap();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            w.write("stdout", b"two\n").unwrap();
            f2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut got = Vec::new();
        follow(
            &path,
            0,
            || flag.load(std::sync::atomic::Ordering::SeqCst),
            |r| {
                got.push(r.log.clone());
                Ok(())
            },
        )
        .unwrap();
        writer.join().unwrap();
        assert_eq!(got, ["one\n", "two\n"]);
    }
}
