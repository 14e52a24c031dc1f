//! Readers and writers that hash (sha256) and count what passes through them.

use std::io::{self, Read, Write};

use crate::{Digest, Digester};

/// A writer that hashes (sha256) and counts what passes through to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digester: Digester::sha256(),
        }
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let len = self.digester.len();
        (self.digester.finish(), len, self.inner)
    }

    /// The digester (digest and length of what was written) and the inner writer.
    pub fn into_parts(self) -> (Digester, W) {
        (self.digester, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) and counts what it yields from `inner`.
pub struct HashingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            digester: Digester::sha256(),
        }
    }

    /// The digest and size of what was read.
    pub fn finish(self) -> (Digest, u64) {
        let n = self.digester.len();
        (self.digester.finish(), n)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, out) = w.finish();
        assert_eq!((d, n), (Digest::sha256_of(b"hello world"), 11));
        assert_eq!(out, b"hello world");
        let mut r = HashingReader::new(&b"hello world"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (Digest::sha256_of(b"hello world"), 11));
    }
}
