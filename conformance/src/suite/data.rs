//! Test content: the official suite's fixtures (configs, layer, manifests, referrers artifacts),
//! made unique per run, and small helpers to build more.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hoist_oci::Digest;
use serde::Serialize;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub(crate) const OCTET: &str = "application/octet-stream";

/// Every manifest media type, for `Accept`.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The official suite's non-existent manifest reference.
pub(crate) const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
/// The official suite's invalid manifest body.
pub(crate) const INVALID_MANIFEST: &[u8] = b"blablabla";
/// The official suite's tag.
pub(crate) const TEST_TAG: &str = "tagtest0";
pub(crate) const EMPTY_LAYER_TAG: &str = "emptylayer";
pub(crate) const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
pub(crate) const REF_TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
pub(crate) const REF_TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";
pub(crate) const REF_TYPE_INDEX: &str = "application/vnd.food.stand";

/// A gzipped tarball holding one small text file (the official suite's layer).
const LAYER_BASE64: &str = "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0\
     WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD\
     jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA";

/// Content and its digest.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub content: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(content: impl Into<Vec<u8>>) -> Blob {
        let content = content.into();
        let digest = Digest::sha256_of(&content).to_string();
        Blob { content, digest }
    }

    pub fn len(&self) -> usize {
        self.content.len()
    }
}

/// A blob split in two chunks for chunked uploads.
#[derive(Clone, Debug)]
pub(crate) struct Chunked {
    pub blob: Blob,
    pub chunk1: Vec<u8>,
    pub chunk2: Vec<u8>,
    pub range1: String,
    pub range2: String,
}

impl Chunked {
    /// `size` pseudo-random bytes, split after `size / 2 + 1` as the official suite does.
    pub fn random(size: usize, seed: &str) -> Chunked {
        let blob = Blob::new(random_bytes(size, seed));
        let cut = size / 2 + 1;
        Chunked {
            chunk1: blob.content[..cut].to_vec(),
            chunk2: blob.content[cut..].to_vec(),
            range1: format!("0-{}", cut - 1),
            range2: format!("{cut}-{}", size - 1),
            blob,
        }
    }
}

/// The official suite's fixtures, unique to one run.
pub(crate) struct Data {
    /// One config per workflow (index 0..=4 as in the official suite).
    pub configs: Vec<Blob>,
    pub layer: Blob,
    /// One image manifest per workflow, each `configs[i]` plus `layer`.
    pub manifests: Vec<Blob>,
    /// An image manifest with no layers (config 1).
    pub empty_layer_manifest: Blob,
    /// 42 random bytes (streamed upload, cross-mount).
    pub blob_a: Blob,
    /// 42 random bytes in two chunks.
    pub chunked: Chunked,
    pub empty_json: Blob,
    pub ref_blob_a: Blob,
    pub ref_blob_b: Blob,
    /// Artifact with `config.mediaType` = type A, subject `manifests[4]`.
    pub refs_a_config: Blob,
    pub refs_b_config: Blob,
    /// Artifact with `artifactType` = type A, empty config, subject `manifests[4]`.
    pub refs_a_layer: Blob,
    pub refs_b_layer: Blob,
    /// Like `refs_b_layer`, with subject `manifests[3]` (not pushed at that time), no annotations.
    pub refs_c_layer: Blob,
    /// An index artifact with subject `manifests[4]`.
    pub refs_index: Blob,
    /// Expected annotation value per referrer digest.
    pub annotations: BTreeMap<String, String>,
    /// The digest of `hello world` (never pushed).
    pub dummy_digest: String,
}

/// Number of per-workflow configs and manifests the suite uses.
const WORKFLOWS: usize = 5;

impl Data {
    pub fn new(run_id: &str) -> Data {
        let configs: Vec<Blob> = (0..WORKFLOWS)
            .map(|i| {
                let author = hex_of(&random_bytes(8, &format!("{run_id}-author-{i}")));
                Blob::new(pretty(&ImageConfig {
                    author,
                    architecture: "amd64".into(),
                    os: "linux".into(),
                    rootfs: RootFs {
                        kind: "layers".into(),
                        diff_ids: Vec::new(),
                    },
                }))
            })
            .collect();
        let layer = Blob::new(base64_decode(LAYER_BASE64).expect("layer fixture is valid base64"));
        let layer_desc = Descriptor::new(OCI_LAYER_GZIP, &layer);
        let config_desc = |c: &Blob| Descriptor {
            data: Some(base64_encode(&c.content)),
            new_unspecified_field: Some(base64_encode(b"hello world")),
            ..Descriptor::new(OCI_CONFIG, c)
        };
        let manifests: Vec<Blob> = configs
            .iter()
            .map(|c| {
                Blob::new(pretty(&Manifest {
                    schema_version: 2,
                    media_type: Some(OCI_MANIFEST.into()),
                    artifact_type: None,
                    config: config_desc(c),
                    layers: vec![layer_desc.clone()],
                    subject: None,
                    annotations: None,
                }))
            })
            .collect();
        let empty_layer_manifest = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: config_desc(&configs[1]),
            layers: Vec::new(),
            subject: None,
            annotations: None,
        }));

        let empty_json = Blob::new(b"{}".to_vec());
        let empty_desc = Descriptor::new(OCI_EMPTY, &empty_json);
        let ref_blob_a = Blob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = Blob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let subject4 = Descriptor::new(OCI_MANIFEST, &manifests[4]);
        let subject3 = Descriptor::new(OCI_MANIFEST, &manifests[3]);
        let note = |v: &str| Some(BTreeMap::from([(ANNOTATION_KEY.to_owned(), v.to_owned())]));

        let refs_a_config = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(REF_TYPE_A, &ref_blob_a),
            layers: vec![empty_desc.clone()],
            subject: Some(subject4.clone()),
            annotations: note("test config a"),
        }));
        let refs_b_config = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(REF_TYPE_B, &ref_blob_b),
            layers: vec![empty_desc.clone()],
            subject: Some(subject4.clone()),
            annotations: note("test config b"),
        }));
        let refs_a_layer = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(REF_TYPE_A.into()),
            config: empty_desc.clone(),
            layers: vec![Descriptor::new(REF_TYPE_A, &ref_blob_a)],
            subject: Some(subject4.clone()),
            annotations: note("test layer a"),
        }));
        let refs_b_layer = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(REF_TYPE_B.into()),
            config: empty_desc.clone(),
            layers: vec![Descriptor::new(REF_TYPE_B, &ref_blob_b)],
            subject: Some(subject4.clone()),
            annotations: note("test layer b"),
        }));
        let refs_c_layer = Blob::new(pretty(&Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(REF_TYPE_B.into()),
            config: empty_desc,
            layers: vec![Descriptor::new(REF_TYPE_B, &ref_blob_b)],
            subject: Some(subject3),
            annotations: None,
        }));
        let refs_index = Blob::new(pretty(&Index {
            schema_version: 2,
            media_type: OCI_INDEX.into(),
            artifact_type: Some(REF_TYPE_INDEX.into()),
            manifests: vec![
                Descriptor::new(OCI_MANIFEST, &refs_a_config),
                Descriptor::new(OCI_MANIFEST, &refs_a_layer),
            ],
            subject: Some(subject4),
            annotations: note("test index"),
        }));
        let annotations = BTreeMap::from([
            (refs_a_config.digest.clone(), "test config a".to_owned()),
            (refs_b_config.digest.clone(), "test config b".to_owned()),
            (refs_a_layer.digest.clone(), "test layer a".to_owned()),
            (refs_b_layer.digest.clone(), "test layer b".to_owned()),
            (refs_index.digest.clone(), "test index".to_owned()),
        ]);

        Data {
            configs,
            layer,
            manifests,
            empty_layer_manifest,
            blob_a: Blob::new(random_bytes(42, &format!("{run_id}-a"))),
            chunked: Chunked::random(42, &format!("{run_id}-b")),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_b_config,
            refs_a_layer,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotations,
            dummy_digest: Digest::sha256_of(b"hello world").to_string(),
        }
    }
}

/// A descriptor as the official suite writes it: `newUnspecifiedField` is always present
/// (`null` unless set), to check registries keep unknown fields.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(rename = "newUnspecifiedField")]
    pub new_unspecified_field: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: &str, blob: &Blob) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: blob.digest.clone(),
            size: blob.len(),
            annotations: None,
            data: None,
            artifact_type: None,
            new_unspecified_field: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct ImageConfig {
    author: String,
    architecture: String,
    os: String,
    rootfs: RootFs,
}

#[derive(Debug, Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// JSON indented with tabs, as Go's `json.MarshalIndent(v, "", "\t")`.
fn pretty<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("fixtures serialise");
    out
}

/// A fresh random id for a run: 12 hex digits from the clock, the process and a counter.
pub(crate) fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{nanos}-{}-{n}", std::process::id());
    Digest::sha256_of(seed.as_bytes()).hex()[..12].to_owned()
}

/// `n` pseudo-random bytes derived from `seed` (SHA-256 in counter mode).
pub(crate) fn random_bytes(n: usize, seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while out.len() < n {
        let d = Digest::sha256_of(format!("{seed}/{i}").as_bytes());
        out.extend(hex_decode(d.hex()));
        i += 1;
    }
    out.truncate(n);
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (as Go encodes `[]byte` in JSON).
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "h", "he", "hel", "hello world"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    #[test]
    fn fixtures_match_the_official_ones() {
        let d = Data::new("t");
        assert_eq!(
            d.empty_json.digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(&d.layer.content[..2], &[0x1f, 0x8b], "layer is gzip");
        assert_eq!(d.chunked.chunk1.len(), 22);
        assert_eq!(d.chunked.range1, "0-21");
        assert_eq!(d.chunked.range2, "22-41");
        assert_eq!(d.configs.len(), 5);
        let m: serde_json::Value = serde_json::from_slice(&d.manifests[0].content).unwrap();
        assert_eq!(m["config"]["newUnspecifiedField"], "aGVsbG8gd29ybGQ=");
        assert!(m["layers"][0]["newUnspecifiedField"].is_null());
        assert_ne!(
            Data::new("u").configs[0].digest,
            d.configs[0].digest,
            "unique per run"
        );
    }
}
