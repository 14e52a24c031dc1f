//! What the engine needs to read in manifests: the blobs and child manifests they name, and index
//! platforms. Manifests are never re-serialised: the bytes pushed and stored are the bytes read.

use std::fmt;
use std::str::FromStr;

use hoist_oci::{Digest, media_type};
use serde::{Deserialize, Serialize};

use super::error::TransferError;

/// The largest manifest the engine reads (as the registry: 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A content descriptor: what a manifest says of a blob or child manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(default)]
    pub platform: Option<PlatformJson>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct PlatformJson {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// The references of an image manifest or an index.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ManifestRefs {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
}

impl ManifestRefs {
    pub(crate) fn parse(digest: &Digest, bytes: &[u8]) -> Result<Self, TransferError> {
        serde_json::from_slice(bytes).map_err(|e| TransferError::Manifest {
            digest: digest.clone(),
            detail: e.to_string(),
        })
    }

    /// Whether this is an index (by its media type, or `manifests` without `config`).
    pub(crate) fn is_index(&self, http_media_type: &str) -> bool {
        let mt = self.media_type.as_deref().unwrap_or(http_media_type);
        media_type::is_index(mt) || (self.config.is_none() && !self.manifests.is_empty())
    }

    /// The blobs an image manifest references: config first, then layers.
    pub(crate) fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers)
    }
}

/// A platform to choose from an index: `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform hoist runs on, in OCI's names (`linux/amd64`, `linux/arm64`, ...).
    pub fn host() -> Self {
        let architecture = hoist_oci::platform::oci_arch(std::env::consts::ARCH);
        Self {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// As the shared matcher names it.
    fn oci(&self) -> hoist_oci::platform::Platform {
        hoist_oci::platform::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// Whether an index entry's platform can serve this one ([`hoist_oci::platform`]'s rules).
    #[cfg(test)]
    fn matches(&self, p: &PlatformJson) -> bool {
        self.oci().score(&p.oci()).is_some()
    }
}

impl PlatformJson {
    fn oci(&self) -> hoist_oci::platform::Platform {
        hoist_oci::platform::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.oci().fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?} (expected os/architecture[/variant])")]
pub struct PlatformError(String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

/// Picks the entry for `wanted` from an index.
pub(crate) fn choose<'a>(
    entries: &'a [IndexEntry],
    wanted: &Platform,
) -> Result<&'a IndexEntry, TransferError> {
    hoist_oci::platform::best(
        &wanted.oci(),
        entries
            .iter()
            .map(|e| e.platform.as_ref().map(PlatformJson::oci)),
    )
    .map(|i| &entries[i])
    .ok_or_else(|| TransferError::NoPlatform {
        wanted: wanted.to_string(),
        available: entries
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//x".parse::<Platform>().is_err());
        let any: Platform = "linux/arm64".parse().unwrap();
        let entry = PlatformJson {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert!(any.matches(&entry));
        assert!(p.matches(&entry));
        let v7: Platform = "linux/arm64/v7".parse().unwrap();
        assert!(!v7.matches(&entry));
    }

    #[test]
    fn host_platform_uses_oci_names() {
        let h = Platform::host();
        assert_eq!(h.os, std::env::consts::OS);
        assert_ne!(h.architecture, "x86_64");
        assert_ne!(h.architecture, "aarch64");
    }

    #[test]
    fn choose_reports_what_the_index_has() {
        let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let d = Digest::sha256_of(json);
        let refs = ManifestRefs::parse(&d, json).unwrap();
        assert!(refs.is_index(""));
        let arm = choose(&refs.manifests, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.descriptor.size, 2);
        let err = choose(&refs.manifests, &"windows/amd64".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no manifest for platform windows/amd64 in the index (it has: linux/amd64, linux/arm64/v8)"
        );
    }
}
