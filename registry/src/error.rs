//! Every error the registry answers with comes from one table: code, HTTP status, message.
//! The body is `{"errors":[{"code","message","detail"}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hoist_storage::ContentError;

/// The distribution-spec error codes (plus the CNCF registry's `RANGE_INVALID`, `TAG_INVALID`,
/// `PAGINATION_NUMBER_INVALID` and `UNKNOWN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
    RangeInvalid,
    TagInvalid,
    PaginationNumberInvalid,
    Invalid,
    Conflict,
    Unknown,
}

/// (code, wire code, HTTP status, message). The one place statuses are decided.
const TABLE: &[(Code, &str, StatusCode, &str)] = &[
    (
        Code::BlobUnknown,
        "BLOB_UNKNOWN",
        StatusCode::NOT_FOUND,
        "blob unknown to registry",
    ),
    (
        Code::BlobUploadInvalid,
        "BLOB_UPLOAD_INVALID",
        StatusCode::BAD_REQUEST,
        "blob upload invalid",
    ),
    (
        Code::BlobUploadUnknown,
        "BLOB_UPLOAD_UNKNOWN",
        StatusCode::NOT_FOUND,
        "blob upload unknown to registry",
    ),
    (
        Code::DigestInvalid,
        "DIGEST_INVALID",
        StatusCode::BAD_REQUEST,
        "provided digest did not match uploaded content",
    ),
    (
        Code::ManifestBlobUnknown,
        "MANIFEST_BLOB_UNKNOWN",
        StatusCode::BAD_REQUEST,
        "manifest references a manifest or blob unknown to registry",
    ),
    (
        Code::ManifestInvalid,
        "MANIFEST_INVALID",
        StatusCode::BAD_REQUEST,
        "manifest invalid",
    ),
    (
        Code::ManifestTooLarge,
        "MANIFEST_INVALID",
        StatusCode::PAYLOAD_TOO_LARGE,
        "manifest too large",
    ),
    (
        Code::ManifestUnknown,
        "MANIFEST_UNKNOWN",
        StatusCode::NOT_FOUND,
        "manifest unknown to registry",
    ),
    (
        Code::NameInvalid,
        "NAME_INVALID",
        StatusCode::BAD_REQUEST,
        "invalid repository name",
    ),
    (
        Code::NameUnknown,
        "NAME_UNKNOWN",
        StatusCode::NOT_FOUND,
        "repository name not known to registry",
    ),
    (
        Code::SizeInvalid,
        "SIZE_INVALID",
        StatusCode::BAD_REQUEST,
        "provided length did not match content length",
    ),
    (
        Code::Unauthorized,
        "UNAUTHORIZED",
        StatusCode::UNAUTHORIZED,
        "authentication required",
    ),
    (
        Code::Denied,
        "DENIED",
        StatusCode::FORBIDDEN,
        "requested access to the resource is denied",
    ),
    (
        Code::Unsupported,
        "UNSUPPORTED",
        StatusCode::BAD_REQUEST,
        "the operation is unsupported",
    ),
    (
        Code::MethodNotAllowed,
        "UNSUPPORTED",
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    ),
    (
        Code::NotFound,
        "NOT_FOUND",
        StatusCode::NOT_FOUND,
        "no such route",
    ),
    (
        Code::TooManyRequests,
        "TOOMANYREQUESTS",
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests",
    ),
    (
        Code::RangeInvalid,
        "RANGE_INVALID",
        StatusCode::RANGE_NOT_SATISFIABLE,
        "invalid content range",
    ),
    (
        Code::TagInvalid,
        "TAG_INVALID",
        StatusCode::BAD_REQUEST,
        "manifest tag did not match URI",
    ),
    (
        Code::PaginationNumberInvalid,
        "PAGINATION_NUMBER_INVALID",
        StatusCode::BAD_REQUEST,
        "invalid number of results requested",
    ),
    (
        Code::Invalid,
        "INVALID",
        StatusCode::BAD_REQUEST,
        "invalid request",
    ),
    (
        Code::Conflict,
        "CONFLICT",
        StatusCode::CONFLICT,
        "already exists",
    ),
    (
        Code::Unknown,
        "UNKNOWN",
        StatusCode::INTERNAL_SERVER_ERROR,
        "unknown error",
    ),
];

impl Code {
    fn entry(self) -> &'static (Code, &'static str, StatusCode, &'static str) {
        TABLE
            .iter()
            .find(|e| e.0 == self)
            .expect("every code is in the table")
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        self.entry().1
    }

    pub fn status(self) -> StatusCode {
        self.entry().2
    }

    pub fn message(self) -> &'static str {
        self.entry().3
    }
}

/// An error answer: a code, a detail, and optional extra headers (a `Range` on a 416, a
/// `WWW-Authenticate` on a 401).
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), detail = %self.detail, "request failed");
        }
        let body = serde_json::json!({
            "errors": [{
                "code": self.code.as_str(),
                "message": self.code.message(),
                "detail": self.detail,
            }]
        });
        let mut resp = (status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// The wire code for an error answer that did not come from the table (a framework rejection:
/// an unknown method on `/token`, a malformed form or JSON body of the admin API).
fn code_for_status(status: StatusCode) -> Code {
    match status {
        StatusCode::UNAUTHORIZED => Code::Unauthorized,
        StatusCode::FORBIDDEN => Code::Denied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::CONFLICT => Code::Conflict,
        StatusCode::TOO_MANY_REQUESTS => Code::TooManyRequests,
        StatusCode::RANGE_NOT_SATISFIABLE => Code::RangeInvalid,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::Unsupported,
        s if s.is_server_error() => Code::Unknown,
        _ => Code::Invalid,
    }
}

/// Middleware: every answer with a status of 400 or more carries an OCI error body
/// (`{"errors":[{code,message,detail}]}`, `application/json`), as docker expects (it parses
/// the body of every refusal). Answers built from [`ApiError`] pass as they are; anything else
/// (axum's rejections: a method a route lacks, a form or JSON body it cannot read) gets the
/// body of the code its status stands for, its text as the detail; its status and other headers
/// are kept.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let code = code_for_status(status);
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or_default().to_lowercase()
    } else {
        text
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "errors": [{"code": code.as_str(), "message": code.message(), "detail": detail}]
    }))
    .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, axum::body::Body::from(body))
}

impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        let code = match &e {
            ContentError::BlobUnknown(_) => Code::BlobUnknown,
            ContentError::ManifestUnknown(_) => Code::ManifestUnknown,
            ContentError::NameUnknown(_) => Code::NameUnknown,
            ContentError::UploadUnknown(_) => Code::BlobUploadUnknown,
            ContentError::DigestMismatch { .. } | ContentError::DigestInvalid(_) => {
                Code::DigestInvalid
            }
            ContentError::RangeInvalid { .. } | ContentError::ChunkLength { .. } => {
                Code::RangeInvalid
            }
            ContentError::SizeInvalid { .. } => Code::SizeInvalid,
            ContentError::ManifestInvalid(_) => Code::ManifestInvalid,
            ContentError::ManifestTooLarge(_) => Code::ManifestTooLarge,
            ContentError::ManifestBlobUnknown(_) => Code::ManifestBlobUnknown,
            ContentError::TagInvalid(_) => Code::TagInvalid,
            ContentError::Body(_) => Code::BlobUploadInvalid,
            ContentError::Corrupt(_) | ContentError::Driver(_) | ContentError::Meta(_) => {
                Code::Unknown
            }
        };
        ApiError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_complete_and_statuses_are_sane() {
        let all = [
            Code::BlobUnknown,
            Code::BlobUploadInvalid,
            Code::BlobUploadUnknown,
            Code::DigestInvalid,
            Code::ManifestBlobUnknown,
            Code::ManifestInvalid,
            Code::ManifestTooLarge,
            Code::ManifestUnknown,
            Code::NameInvalid,
            Code::NameUnknown,
            Code::SizeInvalid,
            Code::Unauthorized,
            Code::Denied,
            Code::Unsupported,
            Code::MethodNotAllowed,
            Code::NotFound,
            Code::TooManyRequests,
            Code::RangeInvalid,
            Code::TagInvalid,
            Code::PaginationNumberInvalid,
            Code::Invalid,
            Code::Conflict,
            Code::Unknown,
        ];
        assert_eq!(all.len(), TABLE.len());
        for c in all {
            assert!(c.status().is_client_error() || c == Code::Unknown, "{c:?}");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch == '_')
            );
        }
        assert_eq!(Code::DigestInvalid.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Code::RangeInvalid.status(),
            StatusCode::RANGE_NOT_SATISFIABLE
        );
    }
}
