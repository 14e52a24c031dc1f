//! Plain HTTP(S) downloads for `ADD URL` in builds: one GET, streamed into a writer, hashed as it
//! goes, with the `Last-Modified` time docker gives the file.

use std::io::Write;

use futures::StreamExt;
use hoist_oci::{Digest, Digester};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: writing the download: {source}")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// What [`fetch`] downloaded.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    /// `Last-Modified`, seconds since the epoch.
    pub last_modified: Option<i64>,
}

/// Downloads `url` into `out`, following redirects.
pub async fn fetch(url: &str, mut out: impl Write) -> Result<Fetched, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_owned(),
        source,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(http)?;
    let resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let mut digester = Digester::sha256();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        digester.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).map_err(|source| FetchError::Write {
            url: url.to_owned(),
            source,
        })?;
    }
    out.flush().map_err(|source| FetchError::Write {
        url: url.to_owned(),
        source,
    })?;
    Ok(Fetched {
        digest: digester.finish(),
        size,
        last_modified,
    })
}
