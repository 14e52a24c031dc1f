//! How image references name local repositories.
//!
//! A local store holds images of every registry in one `Store`, so a local repository is the
//! registry host followed by the repository: `docker.io/library/alpine`,
//! `localhost__5000/team/app`. The host is encoded into the repository-name grammar reversibly:
//! it is already lowercase, and its `:` (before a port) becomes `__`, which a host name never
//! contains (host labels are letters, digits and `-`). IPv6 literal hosts have no encoding and are
//! refused.

use hoist_oci::{DEFAULT_REGISTRY, Reference, RepoName, Tag};

use super::ImageError;

/// The local repository that holds the images of `reference`'s repository.
pub fn repo_name(reference: &Reference) -> Result<RepoName, ImageError> {
    let host = reference.registry();
    if host.starts_with('[') {
        return Err(ImageError::Ipv6Host(reference.to_string()));
    }
    let encoded = host.to_ascii_lowercase().replace(':', "__");
    let name = format!("{encoded}/{}", reference.repository());
    RepoName::parse(&name).map_err(|e| ImageError::Name {
        reference: reference.to_string(),
        reason: e.to_string(),
    })
}

/// The registry host and repository a local repository stands for.
pub fn split_repo(repo: &str) -> Option<(String, &str)> {
    let (host, path) = repo.split_once('/')?;
    Some((host.replace("__", ":"), path))
}

/// The reference (`registry/repository[:tag]`) a local repository and tag stand for.
pub fn reference_of(repo: &str, tag: Option<&str>) -> Option<Reference> {
    let (host, path) = split_repo(repo)?;
    let parsed = Reference::parse(&format!("{host}/{path}")).ok()?;
    match tag {
        Some(t) => Some(parsed.with_tag(Tag::parse(t).ok()?)),
        None => Some(parsed),
    }
}

/// The familiar form of a local repository (`alpine`, `localhost:5000/team/app`), as `docker
/// images` shows it in its REPOSITORY column.
pub fn familiar_repo(repo: &str) -> String {
    let Some((host, path)) = split_repo(repo) else {
        return repo.to_owned();
    };
    if host == DEFAULT_REGISTRY {
        path.strip_prefix("library/").unwrap_or(path).to_owned()
    } else {
        format!("{host}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn hosts_are_encoded_reversibly() {
        for (reference, repo, familiar) in [
            ("alpine", "docker.io/library/alpine", "alpine"),
            (
                "acme/web-api:12.0",
                "docker.io/acme/web-api",
                "acme/web-api",
            ),
            (
                "localhost:5000/team/app:1",
                "localhost__5000/team/app",
                "localhost:5000/team/app",
            ),
            (
                "Registry.ACME.com:443/engineering/web-app",
                "registry.acme.com__443/engineering/web-app",
                "registry.acme.com:443/engineering/web-app",
            ),
            (
                "gcr.io/gnschenker/sample-app:1.1",
                "gcr.io/gnschenker/sample-app",
                "gcr.io/gnschenker/sample-app",
            ),
            ("127.0.0.1:5000/x", "127.0.0.1__5000/x", "127.0.0.1:5000/x"),
        ] {
            let reference = r(reference);
            let name = repo_name(&reference).unwrap();
            assert_eq!(name.as_str(), repo);
            assert_eq!(familiar_repo(repo), familiar);
            let back = reference_of(repo, reference.tag().map(Tag::as_str)).unwrap();
            assert_eq!(back.registry(), reference.registry());
            assert_eq!(back.repository(), reference.repository());
            assert_eq!(back.tag(), reference.tag());
        }
    }

    #[test]
    fn ipv6_hosts_are_refused() {
        let err = repo_name(&r("[::1]:5000/app:1")).unwrap_err();
        assert!(matches!(err, ImageError::Ipv6Host(_)), "{err}");
        assert!(err.to_string().contains("ipv6"), "{err}");
    }

    #[test]
    fn names_over_the_limit_are_refused() {
        let long = format!("registry.example.com:5000/{}", "a".repeat(240));
        let err = repo_name(&r(&long)).unwrap_err();
        assert!(matches!(err, ImageError::Name { .. }), "{err}");
    }
}
