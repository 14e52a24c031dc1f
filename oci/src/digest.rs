//! Content digests: parsing, hashing while streaming, verifying at EOF.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm hoist accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a digest, or content does not match one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected algorithm:hex")]
    Format(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("invalid digest {0:?}: {1} needs {2} lowercase hex characters")]
    Encoded(String, Algorithm, usize),
    #[error("invalid digest hash state")]
    State,
}

/// A validated content address: `sha256:<64 hex>` or `sha512:<128 hex>`.
///
/// The string form is kept as given (it is already canonical: lowercase hex, known algorithm),
/// so `Display` and `as_str` never allocate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    full: String,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(s.to_owned()))?;
        // The OCI grammar: algorithm-component ([a-z0-9]+) separated by [+._-].
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let enc_ok = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Format(s.to_owned()));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        let want = algorithm.hex_len();
        if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::Encoded(s.to_owned(), algorithm, want));
        }
        Ok(Digest {
            algorithm,
            full: s.to_owned(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(data);
        d.finish()
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut d = Digester::new(algorithm);
        d.update(data);
        d.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part after the `:`.
    pub fn hex(&self) -> &str {
        &self.full[self.algorithm.as_str().len() + 1..]
    }

    /// The whole `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Whether `data` hashes to this digest.
    pub fn matches(&self, data: &[u8]) -> bool {
        Digest::of(self.algorithm, data) == *self
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Hashes bytes as they stream through and counts them.
///
/// Its state can be saved with [`Digester::state`] and restored with [`Digester::resume`], so a
/// chunked upload can persist its partial hash between requests and across restarts.
#[derive(Clone)]
pub struct Digester {
    hasher: Hasher,
    len: u64,
}

/// The saved state of a [`Digester`]: algorithm, bytes hashed so far and the hash's internal state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigesterState {
    pub algorithm: Algorithm,
    pub len: u64,
    pub state: Vec<u8>,
}

impl Digester {
    pub fn new(algorithm: Algorithm) -> Self {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        };
        Digester { hasher, len: 0 }
    }

    pub fn sha256() -> Self {
        Digester::new(Algorithm::Sha256)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
        self.len += data.len() as u64;
    }

    /// How many bytes went through.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything so far, leaving the digester usable.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.hasher {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            full: format!("{}:{hex}", algorithm.as_str()),
        }
    }

    /// Saves the partial hash state.
    pub fn state(&self) -> DigesterState {
        let state = match &self.hasher {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        };
        DigesterState {
            algorithm: self.algorithm(),
            len: self.len,
            state,
        }
    }

    /// Restores a digester saved with [`Digester::state`].
    pub fn resume(saved: &DigesterState) -> Result<Self, DigestError> {
        let hasher = match saved.algorithm {
            Algorithm::Sha256 => {
                let arr = saved
                    .state
                    .as_slice()
                    .try_into()
                    .map_err(|_| DigestError::State)?;
                Hasher::Sha256(Sha256::deserialize(arr).map_err(|_| DigestError::State)?)
            }
            Algorithm::Sha512 => {
                let arr = saved
                    .state
                    .as_slice()
                    .try_into()
                    .map_err(|_| DigestError::State)?;
                Hasher::Sha512(Sha512::deserialize(arr).map_err(|_| DigestError::State)?)
            }
        };
        Ok(Digester {
            hasher,
            len: saved.len,
        })
    }
}

impl io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes what it yields and fails at EOF when the content does not match the
/// expected digest or size. Reading past the expected size fails at once, so a lying source cannot
/// make the caller buffer more than it asked for.
pub struct VerifyingReader<R> {
    inner: R,
    digester: Digester,
    expected: Digest,
    expected_size: Option<u64>,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            digester: Digester::new(expected.algorithm()),
            expected,
            expected_size,
            done: false,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        if let Some(size) = self.expected_size
            && self.digester.len() > size
        {
            return Err(invalid(format!(
                "content of {} is larger than the expected {size} bytes",
                self.expected
            )));
        }
        if n == 0 {
            self.done = true;
            if let Some(size) = self.expected_size
                && self.digester.len() != size
            {
                return Err(invalid(format!(
                    "content of {} is {} bytes, expected {size}",
                    self.expected,
                    self.digester.len()
                )));
            }
            let got = self.digester.current();
            if got != self.expected {
                return Err(invalid(format!(
                    "digest mismatch: expected {}, got {got}",
                    self.expected
                )));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_digests() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY);
        let sha512 = Digest::of(Algorithm::Sha512, b"");
        assert_eq!(sha512.hex().len(), 128);
        assert_eq!(Digest::parse(sha512.as_str()).unwrap(), sha512);
    }

    #[test]
    fn rejects_invalid_digests() {
        let cases = [
            ("", "format"),
            ("sha256", "format"),
            ("sha256:", "format"),
            (":abc", "format"),
            ("SHA256:abc", "format"),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported"),
            ("sha256:abc", "encoded"),
            (&EMPTY.to_uppercase().replace("SHA256", "sha256"), "encoded"),
            (&format!("{EMPTY}0"), "encoded"),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
                "encoded",
            ),
        ];
        for (s, kind) in cases {
            let err = Digest::parse(s).unwrap_err();
            let got = match err {
                DigestError::Format(_) => "format",
                DigestError::UnsupportedAlgorithm(_) => "unsupported",
                DigestError::Encoded(..) => "encoded",
                DigestError::State => "state",
            };
            assert_eq!(got, kind, "{s:?}");
        }
    }

    #[test]
    fn digester_matches_one_shot_and_counts() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut d = Digester::sha256();
        for chunk in data.chunks(777) {
            d.update(chunk);
        }
        assert_eq!(d.len(), data.len() as u64);
        assert_eq!(d.finish(), Digest::sha256_of(&data));
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
    }

    #[test]
    fn digester_state_round_trips_mid_stream() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
            let mut d = Digester::new(alg);
            d.update(&data[..3333]);
            let saved = d.state();
            let mut resumed = Digester::resume(&saved).unwrap();
            assert_eq!(resumed.len(), 3333);
            resumed.update(&data[3333..]);
            assert_eq!(resumed.finish(), Digest::of(alg, &data));
        }
        let bad = DigesterState {
            algorithm: Algorithm::Sha256,
            len: 0,
            state: vec![1, 2, 3],
        };
        assert!(Digester::resume(&bad).is_err());
    }

    #[test]
    fn verifying_reader_accepts_and_rejects() {
        let data = b"hello world".to_vec();
        let digest = Digest::sha256_of(&data);
        let mut out = Vec::new();
        VerifyingReader::new(&data[..], digest.clone(), Some(11))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);

        let err = VerifyingReader::new(&b"hello worle"[..], digest.clone(), None)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");

        let err = VerifyingReader::new(&data[..], digest.clone(), Some(10))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("larger"), "{err}");

        let err = VerifyingReader::new(&data[..], digest, Some(12))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("expected 12"), "{err}");
    }

    #[test]
    fn serde_goes_through_validation() {
        let d: Digest = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY}\""));
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
