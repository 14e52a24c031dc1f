//! Blocking I/O helpers for archives: hashing readers and writers, compression sniffing,
//! deterministic gzip.

use std::io::{self, BufReader, Read, Write};

use hoist_oci::compression::{Compression, GZIP_LEVEL, sniff_reader};
use hoist_oci::{Digest, Digester};

/// The size of the pieces the compressor is fed.
const GZIP_CHUNK: usize = 64 * 1024;

/// A deterministic gzip encoder: a fixed header (no name, zero mtime, unknown OS), and input fed
/// to the compressor in fixed 64 KiB pieces, because zlib-rs's output depends on how the input is
/// split between calls. The same bytes in give the same bytes out, however they are written.
pub struct Gzip<W: Write> {
    enc: flate2::write::GzEncoder<W>,
    buf: Vec<u8>,
}

/// A [`Gzip`] encoder writing into `out`.
pub fn gzip<W: Write>(out: W) -> Gzip<W> {
    Gzip {
        enc: flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(out, flate2::Compression::new(GZIP_LEVEL)),
        buf: Vec::with_capacity(GZIP_CHUNK),
    }
}

impl<W: Write> Gzip<W> {
    /// Compresses what is buffered, writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.enc.write_all(&self.buf)?;
        }
        self.enc.finish()
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(GZIP_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_CHUNK {
            self.enc.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Flushing the compressor would change its output; only what it already wrote is flushed.
        self.enc.get_mut().flush()
    }
}

/// A reader that yields the uncompressed bytes of a plain, gzip or zstd stream (`what` names it
/// in errors).
pub fn decompressed<'a, R: Read + Send + 'a>(
    r: R,
    what: &str,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    match sniff_reader(&mut r)? {
        Compression::None => Ok(Box::new(r)),
        Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(r))),
        Compression::Zstd => Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(r).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{what}: starting zstd decompression: {e}"),
                )
            })?,
        )),
    }
}

/// A reader that hashes what it yields and copies it into a writer (a tee).
pub struct TeeReader<R, W> {
    inner: R,
    out: W,
    digester: Digester,
}

impl<R: Read, W: Write> TeeReader<R, W> {
    pub fn new(inner: R, out: W) -> Self {
        TeeReader {
            inner,
            out,
            digester: Digester::sha256(),
        }
    }

    /// Reads what is left, then returns the digest and size of everything read, and the writer.
    pub fn drain(mut self) -> io::Result<(Digest, u64, W)> {
        io::copy(&mut self, &mut io::sink())?;
        let len = self.digester.len();
        Ok((self.digester.finish(), len, self.out))
    }
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_oci::time::rfc3339;

    #[test]
    fn times_round_trip() {
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let s = rfc3339(secs);
            assert_eq!(super::super::parse_rfc3339(&s), Some(secs), "{s}");
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            super::super::parse_rfc3339("2024-01-02T03:04:05.123456789+01:00"),
            super::super::parse_rfc3339("2024-01-02T02:04:05Z")
        );
        assert_eq!(super::super::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn gzip_is_deterministic_and_sniffed() {
        let data = b"some layer bytes".repeat(100);
        let enc = |d: &[u8]| {
            let mut g = gzip(Vec::new());
            g.write_all(d).unwrap();
            g.finish().unwrap()
        };
        let (a, b) = (enc(&data), enc(&data));
        assert_eq!(a, b);
        // However the input is split, the output is the same.
        let big: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(7919) % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let whole = enc(&big);
        for piece in [1usize, 511, 8192, 100_000] {
            let mut g = gzip(Vec::new());
            for c in big.chunks(piece) {
                g.write_all(c).unwrap();
            }
            assert_eq!(g.finish().unwrap(), whole, "pieces of {piece}");
        }
        assert_eq!(sniff_reader(&mut &a[..]).unwrap(), Compression::Gzip);
        assert_eq!(sniff_reader(&mut &data[..]).unwrap(), Compression::None);
        let mut out = Vec::new();
        decompressed(&a[..], "x")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(sniff_reader(&mut &z[..]).unwrap(), Compression::Zstd);
        let mut out = Vec::new();
        decompressed(&z[..], "x")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // A truncated frame is an error, not a short read.
        let mut out = Vec::new();
        let cut = &z[..z.len() - 4];
        assert!(
            decompressed(cut, "x")
                .and_then(|mut r| r.read_to_end(&mut out))
                .is_err()
        );
    }
}
