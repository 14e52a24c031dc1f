//! Deterministic layer compression: gzip (zlib-rs, level 6 unless told otherwise, parallel
//! members for large layers), zstd (level 3), or none.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use hoist_oci::compression::Compression;

/// The zstd level of every layer hoist writes.
const ZSTD_LEVEL: i32 = 3;
/// The compressors are fed fixed pieces of this size: their output depends on how input is split.
const PIECE: usize = 64 * 1024;
/// Uncompressed bytes per gzip member. Fixed, so the bytes do not depend on the core count.
pub(crate) const MEMBER: usize = 16 * 1024 * 1024;

/// One gzip member of `data`: no name, zero mtime, OS unknown, at `level`, fed in 64 KiB pieces.
pub(crate) fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(data.len() / 3 + 64),
            flate2::Compression::new(level),
        );
    for piece in data.chunks(PIECE) {
        enc.write_all(piece)?;
    }
    enc.finish()
}

pub(crate) enum Compressor<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd {
        enc: zstd::stream::write::Encoder<'static, W>,
        buf: Vec<u8>,
    },
}

impl<W: Write> Compressor<W> {
    pub(crate) fn new(c: Compression, gzip_level: u32, out: W) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Compressor::None(out),
            Compression::Gzip => {
                if !(1..=9).contains(&gzip_level) {
                    return Err(io::Error::other(format!(
                        "gzip level {gzip_level} is out of range (1 to 9)"
                    )));
                }
                Compressor::Gzip(ParallelGzip::new(out, gzip_level))
            }
            Compression::Zstd => Compressor::Zstd {
                enc: zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?,
                buf: Vec::with_capacity(PIECE),
            },
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd { mut enc, buf } => {
                enc.write_all(&buf)?;
                enc.finish()
            }
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(data),
            Compressor::Gzip(g) => g.write(data),
            Compressor::Zstd { enc, buf } => {
                let n = data.len().min(PIECE - buf.len());
                buf.extend_from_slice(&data[..n]);
                if buf.len() == PIECE {
                    enc.write_all(buf)?;
                    buf.clear();
                }
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(g) => g.out.flush(),
            Compressor::Zstd { enc, .. } => enc.get_mut().flush(),
        }
    }
}

/// gzip as concatenated members of [`MEMBER`] input bytes each, compressed on up to one thread
/// per core while the caller keeps producing input. The output is the same whatever the number
/// of cores; a stream under [`MEMBER`] bytes is one plain gzip member.
pub(crate) struct ParallelGzip<W: Write> {
    out: W,
    buf: Vec<u8>,
    inflight: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    max_inflight: usize,
    level: u32,
}

impl<W: Write> ParallelGzip<W> {
    pub(crate) fn new(out: W, level: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParallelGzip {
            out,
            buf: Vec::new(),
            inflight: VecDeque::new(),
            max_inflight: cores.clamp(1, 16),
            level,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        let chunk = std::mem::take(&mut self.buf);
        while self.inflight.len() >= self.max_inflight {
            self.drain_one()?;
        }
        let level = self.level;
        self.inflight
            .push_back(std::thread::spawn(move || gzip_member(&chunk, level)));
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(h) = self.inflight.pop_front() {
            let bytes = h
                .join()
                .map_err(|_| io::Error::other("a gzip worker thread panicked"))??;
            self.out.write_all(&bytes)?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<W> {
        if self.inflight.is_empty() {
            // Small: one member, compressed here.
            let bytes = gzip_member(&self.buf, self.level)?;
            self.out.write_all(&bytes)?;
        } else {
            if !self.buf.is_empty() {
                self.submit()?;
            }
            while !self.inflight.is_empty() {
                self.drain_one()?;
            }
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(MEMBER);
        }
        let n = data.len().min(MEMBER - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MEMBER {
            self.submit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use hoist_oci::compression::GZIP_LEVEL;
    use std::io::Read;

    pub(in crate::rootfs) fn pseudo(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 & 0x3f)
            .collect()
    }

    #[test]
    fn parallel_gzip_is_members_of_fixed_size_and_round_trips() {
        let data = pseudo(MEMBER * 2 + 12345);
        let mut g = ParallelGzip::new(Vec::new(), GZIP_LEVEL);
        for c in data.chunks(777_777) {
            g.write_all(c).unwrap();
        }
        let out = g.finish().unwrap();
        // The same as members computed one by one, however many cores.
        let mut expected = Vec::new();
        for c in data.chunks(MEMBER) {
            expected.extend(gzip_member(c, GZIP_LEVEL).unwrap());
        }
        assert_eq!(out, expected);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn small_gzip_is_one_member() {
        let data = pseudo(100_000);
        let mut g = ParallelGzip::new(Vec::new(), GZIP_LEVEL);
        g.write_all(&data).unwrap();
        assert_eq!(g.finish().unwrap(), gzip_member(&data, GZIP_LEVEL).unwrap());
    }
}
