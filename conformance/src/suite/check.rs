//! Assertions over responses. Each returns `Err(one-line reason)` on failure.

use super::Outcome;
use super::http::Resp;

/// The error codes of distribution-spec v1.1 ("Error Codes").
pub(crate) const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// The codes the official conformance suite accepts (its `errorCodes`): the spec's, less
/// `TOOMANYREQUESTS`, plus two legacy ones.
pub(crate) const OFFICIAL_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

pub(crate) fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}

/// The status is one of `want`.
pub(crate) fn status(r: &Resp, want: &[u16]) -> Outcome {
    if want.contains(&r.status) {
        return Ok(());
    }
    let want = want
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ");
    let body = r.snippet();
    if body.is_empty() {
        Err(format!("{}: expected {want}, got {}", r.desc, r.status))
    } else {
        Err(format!(
            "{}: expected {want}, got {}: {body}",
            r.desc, r.status
        ))
    }
}

/// The status is 2xx.
pub(crate) fn success(r: &Resp) -> Outcome {
    ensure((200..300).contains(&r.status), || {
        format!(
            "{}: expected 2xx, got {}: {}",
            r.desc,
            r.status,
            r.snippet()
        )
    })
}

/// The status is 2xx or one of `also`.
pub(crate) fn success_or(r: &Resp, also: &[u16]) -> Outcome {
    if (200..300).contains(&r.status) || also.contains(&r.status) {
        return Ok(());
    }
    let also = also
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(format!(
        "{}: expected 2xx or {also}, got {}: {}",
        r.desc,
        r.status,
        r.snippet()
    ))
}

/// A header that must be present and non-empty; returns its value.
pub(crate) fn header<'r>(r: &'r Resp, name: &str) -> Result<&'r str, String> {
    match r.header(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{}: missing {name} header", r.desc)),
    }
}

/// A header with exactly this value.
pub(crate) fn header_eq(r: &Resp, name: &str, want: &str) -> Outcome {
    match r.header(name) {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(format!("{}: {name} is {v:?}, expected {want:?}", r.desc)),
        None => Err(format!(
            "{}: missing {name} header, expected {want:?}",
            r.desc
        )),
    }
}

/// A header that, if present, has this value (for SHOULD headers the official suite checks so).
pub(crate) fn header_eq_if_present(r: &Resp, name: &str, want: &str) -> Outcome {
    match r.header(name) {
        Some(v) if !v.is_empty() && v != want => {
            Err(format!("{}: {name} is {v:?}, expected {want:?}", r.desc))
        }
        _ => Ok(()),
    }
}

/// The body is exactly `want`.
pub(crate) fn body_eq(r: &Resp, want: &[u8]) -> Outcome {
    ensure(r.body.as_ref() == want, || {
        format!(
            "{}: body differs from what was pushed ({} bytes, expected {})",
            r.desc,
            r.body.len(),
            want.len()
        )
    })
}

/// The `Content-Length` header equals `want`.
pub(crate) fn content_length(r: &Resp, want: usize) -> Outcome {
    header_eq(r, "content-length", &want.to_string())
}

/// The error codes of an error body (`{"errors":[{"code": ...}]}`), as the official suite reads
/// them: lenient about the other fields.
pub(crate) fn error_codes(r: &Resp) -> Result<Vec<String>, String> {
    let v = r.json()?;
    let errors = v.get("errors").and_then(|e| e.as_array()).ok_or_else(|| {
        format!(
            "{}: error body has no errors array: {}",
            r.desc,
            r.snippet()
        )
    })?;
    Ok(errors
        .iter()
        .map(|e| {
            e.get("code")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect())
}

/// A spec error body (distribution-spec "Error Codes"): JSON `{"errors":[...]}` with at least
/// one error, every `code` one of the spec's codes, `message` a string when present (`detail` is
/// optional and free-form); returns the codes.
pub(crate) fn error_body(r: &Resp) -> Result<Vec<String>, String> {
    let v = r.json()?;
    let errors = v.get("errors").and_then(|e| e.as_array()).ok_or_else(|| {
        format!(
            "{}: error body has no errors array: {}",
            r.desc,
            r.snippet()
        )
    })?;
    ensure(!errors.is_empty(), || {
        format!("{}: errors array is empty", r.desc)
    })?;
    let mut codes = Vec::new();
    for e in errors {
        let code = e
            .get("code")
            .and_then(|c| c.as_str())
            .ok_or_else(|| format!("{}: error without a string code: {e}", r.desc))?;
        ensure(SPEC_ERROR_CODES.contains(&code), || {
            format!(
                "{}: error code {code} is not a distribution-spec code",
                r.desc
            )
        })?;
        ensure(e.get("message").is_none_or(|m| m.is_string()), || {
            format!(
                "{}: error {code} has a message that is not a string",
                r.desc
            )
        })?;
        codes.push(code.to_owned());
    }
    Ok(codes)
}

/// hoist's error body contract, stricter than the spec: every error has all of `code`,
/// `message` (a string) and `detail`.
pub(crate) fn error_body_full(r: &Resp) -> Result<Vec<String>, String> {
    let codes = error_body(r)?;
    let v = r.json()?;
    for e in v
        .get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or_default();
        ensure(e.get("message").is_some_and(|m| m.is_string()), || {
            format!("{}: error {code} has no message", r.desc)
        })?;
        ensure(e.get("detail").is_some(), || {
            format!("{}: error {code} has no detail", r.desc)
        })?;
    }
    Ok(codes)
}

/// The status is `want_status` and the body is a spec error body whose first code is `code`.
pub(crate) fn error(r: &Resp, want_status: u16, code: &str) -> Outcome {
    status(r, &[want_status])?;
    first_code(r, &error_body(r)?, code)
}

/// Like [`error`], with hoist's full body shape (`code`, `message`, `detail`).
pub(crate) fn error_full(r: &Resp, want_status: u16, code: &str) -> Outcome {
    status(r, &[want_status])?;
    first_code(r, &error_body_full(r)?, code)
}

fn first_code(r: &Resp, codes: &[String], code: &str) -> Outcome {
    ensure(codes.first().map(String::as_str) == Some(code), || {
        format!(
            "{}: error code is {}, expected {code}",
            r.desc,
            codes.join(",")
        )
    })
}

/// A header's value is a `<url>; rel="next"` link (RFC 5988); returns the URL.
pub(crate) fn next_link(r: &Resp) -> Result<Option<String>, String> {
    let Some(link) = r.header("link") else {
        return Ok(None);
    };
    for part in link.split(',') {
        let part = part.trim();
        let Some(end) = part.find('>') else { continue };
        if !part.starts_with('<') {
            continue;
        }
        let url = &part[1..end];
        let params = &part[end + 1..];
        let is_next = params
            .split(';')
            .map(str::trim)
            .any(|p| p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next"));
        if is_next {
            return Ok(Some(url.to_owned()));
        }
    }
    Err(format!(
        "{}: Link header {link:?} has no <url>; rel=\"next\"",
        r.desc
    ))
}
