//! Image references with docker's normalisation:
//! `[REGISTRY/][NAMESPACE/]NAME[:TAG][@DIGEST]`.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, DigestError, NameError, RepoName, Tag};

/// The registry an unqualified reference points at.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag an untagged, undigested reference gets.
pub const DEFAULT_TAG: &str = "latest";

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {0:?}: a reference has no scheme; drop the {1}://")]
    Scheme(String, String),
    #[error("invalid reference: empty")]
    Empty,
    #[error("invalid reference {0:?}: bad registry host")]
    Registry(String),
    #[error("invalid reference {reference:?}: {source}")]
    Name {
        reference: String,
        source: NameError,
    },
    #[error("invalid reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

/// A normalised image reference. The registry is lowercased (unless only its capitals make it a
/// host, as in docker's `MyReg/app`: then it is kept as written), `docker.io` is filled in when none is
/// given, single-component Docker Hub names get `library/`, and `latest` is the tag when neither tag
/// nor digest is given.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: RepoName,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

fn looks_like_host(s: &str) -> bool {
    s.contains('.')
        || s.contains(':')
        || s == "localhost"
        || s.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // An IPv6 literal: [::1]:5000 or [::1].
        _ if host.starts_with('[') => {
            let Some(end) = host.find(']') else {
                return false;
            };
            let rest = &host[end + 1..];
            return rest.is_empty()
                || rest
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        }
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

impl Reference {
    /// Parses and normalises a reference.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(ReferenceError::Scheme(s.to_owned(), scheme.to_owned()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    reference: s.to_owned(),
                    source,
                })?;
                (r, Some(digest))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = Tag::parse(&rest[at + 1..]).map_err(|source| ReferenceError::Name {
                    reference: s.to_owned(),
                    source,
                })?;
                (&rest[..at], Some(tag))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if looks_like_host(first) => {
                if !valid_host(first) {
                    return Err(ReferenceError::Registry(s.to_owned()));
                }
                // Lowercased, unless that makes it no longer read as a host (`MyReg/app`: only
                // its capitals make it one), so that the printed form parses back to it.
                let lower = first.to_ascii_lowercase();
                let host = if looks_like_host(&lower) {
                    lower
                } else {
                    first.to_owned()
                };
                let host = match host.as_str() {
                    "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_owned(),
                    _ => host,
                };
                (host, path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let repository = RepoName::parse(&path).map_err(|source| ReferenceError::Name {
            reference: s.to_owned(),
            source,
        })?;
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag::parse(DEFAULT_TAG).expect("default tag is valid")),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, lowercased where it stays a host (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same reference with another tag and no digest.
    pub fn with_tag(&self, tag: Tag) -> Self {
        Reference {
            tag: Some(tag),
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference pinned to a digest.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The short form docker shows: no `docker.io/`, no `library/`, as far as the short form
    /// still parses back to this reference (`library/a/b` keeps its `library/`, and a Docker Hub
    /// path whose first component looks like a host keeps `docker.io/`).
    pub fn familiar(&self) -> String {
        let repo = self.repository.as_str();
        let mut out = if self.registry == DEFAULT_REGISTRY {
            match repo.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_owned(),
                _ => match repo.split_once('/') {
                    Some((first, _)) if looks_like_host(first) => {
                        format!("{DEFAULT_REGISTRY}/{repo}")
                    }
                    _ => repo.to_owned(),
                },
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t.as_str());
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d.as_str());
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let cases: &[(&str, &str)] = &[
            ("alpine", "docker.io/library/alpine:latest"),
            ("ubuntu:16.04", "docker.io/library/ubuntu:16.04"),
            ("acme/web-api:12.0", "docker.io/acme/web-api:12.0"),
            (
                "gcr.io/gnschenker/sample-app:1.1",
                "gcr.io/gnschenker/sample-app:1.1",
            ),
            (
                "registry.acme.com/engineering/web-app:1.0",
                "registry.acme.com/engineering/web-app:1.0",
            ),
            ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("Registry.ACME.com/x", "registry.acme.com/x:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("docker.io/alpine:3.7", "docker.io/library/alpine:3.7"),
            ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
            ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ];
        for (input, want) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("localhost:5000/team/app@{D}")).unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository().as_str(), "team/app");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.target(), D);

        let r = Reference::parse(&format!("app:1@{D}")).unwrap();
        assert_eq!(r.tag().unwrap().as_str(), "1");
        assert_eq!(r.target(), D);
        assert_eq!(r.familiar(), format!("app:1@{D}"));
        assert_eq!(
            Reference::parse("alpine").unwrap().familiar(),
            "alpine:latest"
        );
        assert_eq!(
            Reference::parse("acme/x:2")
                .unwrap()
                .with_tag(Tag::parse("3").unwrap())
                .familiar(),
            "acme/x:3"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = Reference::parse("https://registry.acme.com/a").unwrap_err();
        assert!(matches!(e, ReferenceError::Scheme(..)));
        assert!(e.to_string().contains("scheme"), "{e}");
        assert!(matches!(
            Reference::parse("").unwrap_err(),
            ReferenceError::Empty
        ));
        assert!(matches!(
            Reference::parse("Alpine").unwrap_err(),
            ReferenceError::Name { .. }
        ));
        assert!(matches!(
            Reference::parse("a:b:c").unwrap_err(),
            ReferenceError::Name { .. }
        ));
        assert!(matches!(
            Reference::parse("a@sha256:xyz").unwrap_err(),
            ReferenceError::Digest { .. }
        ));
        assert!(matches!(
            Reference::parse("bad_host.com:x/a").unwrap_err(),
            ReferenceError::Registry(_)
        ));
        assert!(matches!(
            Reference::parse("a:b/c").unwrap_err(),
            ReferenceError::Registry(_)
        ));
    }
}
