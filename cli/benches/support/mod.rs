//! Shared by the registry benches (`registry`, `scaleout`): per-round scores and the HTTP
//! steps of a blob upload.

use anyhow::{Context, Result, anyhow, bail, ensure};
use hoist_oci::Digest;
use reqwest::{Client, StatusCode, header};

/// One number per round of one measurement (higher is better), and the first error it met.
#[derive(Default)]
pub struct Rounds {
    values: Vec<f64>,
    err: Option<anyhow::Error>,
}

impl Rounds {
    pub fn record(&mut self, r: Result<f64>) {
        match r {
            Ok(v) => self.values.push(v),
            Err(e) => self.fail(e),
        }
    }

    pub fn fail(&mut self, e: anyhow::Error) {
        if self.err.is_none() {
            self.err = Some(e);
        }
    }

    pub fn median(&self) -> Result<f64> {
        if let Some(e) = &self.err {
            return Err(anyhow!("{e:#}"));
        }
        ensure!(!self.values.is_empty(), "no measurement");
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    }

    /// The rounds' numbers in order, then the median.
    pub fn line(&self, precision: usize) -> String {
        let rounds: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("{v:.precision$}"))
            .collect();
        match self.median() {
            Ok(m) => format!("{}  (median {m:.precision$})", rounds.join(" ")),
            Err(e) => format!("{}  error: {e:#}", rounds.join(" ")),
        }
    }
}

/// Resolves a `Location` header against the server's base URL.
pub fn location(base: &str, resp: &reqwest::Response) -> Result<String> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .context("no Location header")?
        .to_str()?;
    Ok(
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_owned()
        } else {
            format!("{base}{loc}")
        },
    )
}

pub fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

pub async fn expect(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<reqwest::Response> {
    if resp.status() != want {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{what}: expected {want}, got {status}: {body}");
    }
    Ok(resp)
}

pub async fn start_upload(client: &Client, base: &str, repo: &str) -> Result<String> {
    let resp = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, "0")
        .send()
        .await?;
    let resp = expect(
        resp,
        StatusCode::ACCEPTED,
        &format!("POST /v2/{repo}/blobs/uploads/"),
    )
    .await?;
    location(base, &resp)
}
