//! Platforms (`os/architecture[/variant]`) and choosing a manifest from an index, as containerd's
//! `platforms` package does: the OS and architecture must match; a variant asked for must match
//! (with `arm64` meaning `arm64/v8` and `arm` meaning `arm/v7`); an older ARM variant is accepted
//! when no better one exists (`arm/v7` runs `v6` and `v5`).

use std::fmt;

use crate::spec::image::ImageIndex;

/// A platform string that is not `[os/]arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(pub String);

/// A platform, with OCI names (`linux`, `amd64`, `arm64`, `v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// The OCI architecture name of a Rust `std::env::consts::ARCH`.
pub fn oci_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "powerpc" => "ppc",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" => "mips64le",
        other => other,
    }
}

impl Platform {
    /// This machine: linux and its architecture (`arm` is taken as `arm/v7`).
    pub fn host() -> Self {
        let architecture = oci_arch(std::env::consts::ARCH).to_owned();
        let variant = (architecture == "arm").then(|| "v7".to_owned());
        Platform {
            os: "linux".to_owned(),
            architecture,
            variant,
        }
    }

    /// Parses `os/arch[/variant]` (`linux/arm64`, `linux/arm/v7`); a bare `arch` means linux.
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || PlatformError(s.to_owned());
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        let architecture = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            "i386" => "386".to_owned(),
            other => other.to_owned(),
        };
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant: variant.map(str::to_ascii_lowercase),
        })
    }

    /// The variant with defaults filled in: `arm64` is `v8`, `arm` is `v7`.
    fn normal_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, v) => v,
        }
    }

    /// How well an entry of `candidate` serves this platform: `None` when it cannot run here,
    /// higher is better.
    pub fn score(&self, candidate: &Platform) -> Option<u32> {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return None;
        }
        let (want, have) = (self.normal_variant(), candidate.normal_variant());
        match (want, have) {
            (w, h) if w == h => Some(100),
            (Some(w), Some(h)) if self.architecture == "arm" => {
                // An ARM CPU of variant vN runs binaries for older variants.
                let (w, h) = (arm_level(w)?, arm_level(h)?);
                (h < w).then(|| 100 - (w - h))
            }
            _ => None,
        }
    }
}

fn arm_level(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The candidate (by position) that best serves `platform`, if any; `None` candidates (entries
/// without a platform) never match.
pub fn best<I: IntoIterator<Item = Option<Platform>>>(
    platform: &Platform,
    candidates: I,
) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    for (i, candidate) in candidates.into_iter().enumerate() {
        if let Some(score) = candidate.and_then(|c| platform.score(&c))
            && best.is_none_or(|(s, _)| score > s)
        {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The index entry (by position) that best serves `platform`, if any. Entries without a platform
/// (and attestation manifests, whose platform is `unknown/unknown`) never match.
pub fn choose(index: &ImageIndex, platform: &Platform) -> Option<usize> {
    best(
        platform,
        index.manifests().iter().map(|m| {
            m.platform().as_ref().map(|p| Platform {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[&str]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parts: Vec<&str> = p.split('/').collect();
                let mut platform = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                if let Some(v) = parts.get(2) {
                    platform["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": crate::media_type::OCI_MANIFEST,
                    "digest": crate::Digest::sha256_of(&[i as u8]).to_string(),
                    "size": 1,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media_type::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn host_uses_oci_names() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert_eq!(h.architecture, oci_arch(std::env::consts::ARCH));
        assert_ne!(h.architecture, "x86_64");
        assert_ne!(h.architecture, "aarch64");
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        for bad in ["", "linux/", "a/b/c/d", "/amd64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn choose_matches_os_arch_and_variant() {
        let idx = index(&[
            "unknown/unknown",
            "linux/amd64",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64/v8",
            "windows/amd64",
        ]);
        assert_eq!(choose(&idx, &p("linux/amd64")), Some(1));
        assert_eq!(choose(&idx, &p("windows/amd64")), Some(5));
        // arm64 without a variant means v8.
        assert_eq!(choose(&idx, &p("linux/arm64")), Some(4));
        assert_eq!(choose(&idx, &p("linux/arm")), Some(3));
        assert_eq!(choose(&idx, &p("linux/arm/v6")), Some(2));
        // An ARMv8 32-bit CPU takes the newest older variant.
        assert_eq!(choose(&idx, &p("linux/arm/v8")), Some(3));
        assert_eq!(choose(&idx, &p("linux/arm/v5")), None);
        assert_eq!(choose(&idx, &p("linux/s390x")), None);
        let only_v6 = index(&["linux/arm/v6", "linux/arm64"]);
        assert_eq!(choose(&only_v6, &p("linux/arm/v7")), Some(0));
        assert_eq!(choose(&only_v6, &p("linux/arm64/v8")), Some(1));
    }
}
