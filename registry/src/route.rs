//! `/v2/*` routing as a pure function: the path is parsed from its end, since repository names
//! contain slashes.

use axum::http::Method;
use hoist_oci::{Digest, RepoName};
use hoist_storage::content::Reference;

use crate::error::{ApiError, Code};

/// A parsed distribution API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: RepoName },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: RepoName, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

impl Route {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        }
    }
}

fn name(s: &str) -> Result<RepoName, ApiError> {
    RepoName::parse(s).map_err(|e| ApiError::new(Code::NameInvalid, e.to_string()))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::new(Code::DigestInvalid, e.to_string()))
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no route for /v2/{path}"))
}

fn upload_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses the part of a path after `/v2/` and checks the method is one the route takes.
pub fn parse_v2(method: &Method, rest: &str) -> Result<Route, ApiError> {
    let route = parse_path(method, rest)?;
    let allowed: &[Method] = match &route {
        // The CNCF registry answers `/v2/` whatever the method.
        Route::Base => return Ok(route),
        Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => {
            &[Method::GET, Method::HEAD]
        }
        Route::Manifest { .. } => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
        Route::Blob { .. } => &[Method::GET, Method::HEAD, Method::DELETE],
        Route::UploadStart { .. } => &[Method::POST],
        Route::Upload { .. } => &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
    };
    if allowed.contains(method) {
        Ok(route)
    } else {
        Err(ApiError::new(
            Code::MethodNotAllowed,
            format!("{method} is not allowed on /v2/{rest}"),
        ))
    }
}

fn parse_path(method: &Method, rest: &str) -> Result<Route, ApiError> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags { name: name(n)? });
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::UploadStart { name: name(n)? });
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Err(not_found(rest));
    };
    let Some((n, kind)) = head.rsplit_once('/') else {
        return Err(not_found(rest));
    };
    match kind {
        "manifests" => {
            let name = name(n)?;
            let reference = Reference::parse(last).map_err(|e| match ApiError::from(e) {
                // A tag that cannot exist names no manifest; only a push is told it is invalid.
                err if err.code == Code::TagInvalid && *method != Method::PUT => {
                    ApiError::new(Code::ManifestUnknown, err.detail)
                }
                err => err,
            })?;
            Ok(Route::Manifest { name, reference })
        }
        "blobs" => Ok(Route::Blob {
            name: name(n)?,
            digest: digest(last)?,
        }),
        "referrers" => Ok(Route::Referrers {
            name: name(n)?,
            digest: digest(last)?,
        }),
        "uploads" => {
            let Some(n) = n.strip_suffix("/blobs") else {
                return Err(not_found(rest));
            };
            if !upload_id_ok(last) {
                return Err(ApiError::new(
                    Code::BlobUploadUnknown,
                    format!("no upload {last:?}"),
                ));
            }
            Ok(Route::Upload {
                name: name(n)?,
                id: last.to_owned(),
            })
        }
        _ => Err(not_found(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(m: Method, p: &str) -> Route {
        parse_v2(&m, p).unwrap_or_else(|e| panic!("{m} {p}: {e}"))
    }

    fn code(m: Method, p: &str) -> Code {
        parse_v2(&m, p).unwrap_err().code
    }

    fn n(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        let d = Digest::parse(D).unwrap();
        let table: Vec<(Method, String, Route)> = vec![
            (Method::GET, "".into(), Route::Base),
            (Method::HEAD, "/".into(), Route::Base),
            (Method::GET, "_catalog".into(), Route::Catalog),
            (
                Method::GET,
                "a/b/tags/list".into(),
                Route::Tags { name: n("a/b") },
            ),
            (
                Method::GET,
                "a/b/c/manifests/latest".into(),
                Route::Manifest {
                    name: n("a/b/c"),
                    reference: Reference::parse("latest").unwrap(),
                },
            ),
            (
                Method::PUT,
                format!("x/manifests/{D}"),
                Route::Manifest {
                    name: n("x"),
                    reference: Reference::Digest(d.clone()),
                },
            ),
            (
                Method::GET,
                format!("x/y/blobs/{D}"),
                Route::Blob {
                    name: n("x/y"),
                    digest: d.clone(),
                },
            ),
            (
                Method::POST,
                "x/blobs/uploads/".into(),
                Route::UploadStart { name: n("x") },
            ),
            (
                Method::POST,
                "x/blobs/uploads".into(),
                Route::UploadStart { name: n("x") },
            ),
            (
                Method::PATCH,
                "x/blobs/uploads/0f3c-11".into(),
                Route::Upload {
                    name: n("x"),
                    id: "0f3c-11".into(),
                },
            ),
            (
                Method::GET,
                format!("x/referrers/{D}"),
                Route::Referrers {
                    name: n("x"),
                    digest: d,
                },
            ),
            // A repository may itself be called "blobs" or "manifests".
            (
                Method::GET,
                "blobs/tags/list".into(),
                Route::Tags { name: n("blobs") },
            ),
            (
                Method::GET,
                "manifests/manifests/v1".into(),
                Route::Manifest {
                    name: n("manifests"),
                    reference: Reference::parse("v1").unwrap(),
                },
            ),
        ];
        for (m, p, want) in table {
            assert_eq!(ok(m.clone(), &p), want, "{m} {p}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            code(Method::GET, "x/blobs/sha256:nothex"),
            Code::DigestInvalid
        );
        assert_eq!(code(Method::GET, "x/blobs/nocolon"), Code::DigestInvalid);
        assert_eq!(
            code(Method::GET, "x/referrers/sha256:zz"),
            Code::DigestInvalid
        );
        assert_eq!(
            code(Method::GET, "x/manifests/sha256:zz"),
            Code::DigestInvalid
        );
        assert_eq!(code(Method::GET, "UPPER/tags/list"), Code::NameInvalid);
        assert_eq!(
            code(Method::GET, format!("Bad/blobs/{D}").as_str()),
            Code::NameInvalid
        );
        assert_eq!(code(Method::PUT, "x/manifests/-tag"), Code::TagInvalid);
        assert_eq!(code(Method::GET, "x/manifests/-tag"), Code::ManifestUnknown);
        assert_eq!(code(Method::POST, "x/tags/list"), Code::MethodNotAllowed);
        assert_eq!(
            code(Method::PUT, format!("x/blobs/{D}").as_str()),
            Code::MethodNotAllowed
        );
        assert_eq!(code(Method::GET, "x"), Code::NotFound);
        assert_eq!(code(Method::GET, "x/whatever/y"), Code::NotFound);
        assert_eq!(code(Method::GET, "x/uploads/y"), Code::NotFound);
        assert_eq!(
            code(Method::GET, "x/blobs/uploads/a%2Fb"),
            Code::BlobUploadUnknown
        );
    }
}
