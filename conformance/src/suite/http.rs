//! A small HTTP layer for the suite: requests against the registry's base URL or an upload
//! `Location`, and fully-read responses that describe themselves in failure messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::Credentials;
use super::auth::{self, Authorization};

pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    credentials: Option<Credentials>,
    /// How the registry wants the credentials, learned once and shared with isolated clients.
    auth: Arc<auth::State>,
}

impl Http {
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Result<Http, String> {
        let base =
            Url::parse(base_url).map_err(|e| format!("invalid registry url {base_url}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "invalid registry url {base_url}: want http or https"
            ));
        }
        Ok(Http {
            client: client()?,
            base,
            credentials,
            auth: Arc::default(),
        })
    }

    /// The same registry through a client of its own (its own connections), for requests that
    /// may leave a connection unusable.
    pub fn isolated(&self) -> Result<Http, String> {
        Ok(Http {
            client: client()?,
            base: self.base.clone(),
            credentials: self.credentials.clone(),
            auth: self.auth.clone(),
        })
    }

    pub fn get(&self, target: &str) -> Req<'_> {
        self.req(Method::GET, target)
    }

    pub fn head(&self, target: &str) -> Req<'_> {
        self.req(Method::HEAD, target)
    }

    pub fn post(&self, target: &str) -> Req<'_> {
        self.req(Method::POST, target)
    }

    pub fn put(&self, target: &str) -> Req<'_> {
        self.req(Method::PUT, target)
    }

    pub fn patch(&self, target: &str) -> Req<'_> {
        self.req(Method::PATCH, target)
    }

    pub fn delete(&self, target: &str) -> Req<'_> {
        self.req(Method::DELETE, target)
    }

    /// A request to `target`: a path (`/v2/...`) or an absolute URL, such as an upload `Location`.
    pub fn req(&self, method: Method, target: &str) -> Req<'_> {
        Req {
            http: self,
            method,
            target: target.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// The path (and query) of a `Location` value, relative or absolute.
    pub fn relative(&self, location: &str) -> String {
        match self.base.join(location) {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            },
            Err(_) => location.to_owned(),
        }
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("building the http client: {e}"))
}

#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, one chunk per part.
    Stream(Vec<Vec<u8>>),
}

pub(crate) struct Req<'a> {
    http: &'a Http,
    method: Method,
    target: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Body>,
}

impl Req<'_> {
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(Body::Bytes(body.into()));
        self
    }

    /// A streamed body without `Content-Length`.
    pub fn stream(mut self, parts: Vec<Vec<u8>>) -> Self {
        self.body = Some(Body::Stream(parts));
        self
    }

    pub async fn send(self) -> Result<Resp, String> {
        let mut url = self
            .http
            .base
            .join(&self.target)
            .map_err(|e| format!("invalid request target {}: {e}", self.target))?;
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.query {
                pairs.append_pair(k, v);
            }
        }
        let desc = describe(&self.method, &url);
        let http = self.http;
        let Some(creds) = &http.credentials else {
            return self.send_with(url, &desc, &Authorization::None).await;
        };
        let first = http
            .auth
            .authorization(&http.client, &http.base, creds, &url, None)
            .await
            .map_err(|e| format!("{desc}: {e}"))?;
        let resp = self
            .clone_parts()
            .send_with(url.clone(), &desc, &first)
            .await?;
        // A Bearer token may have expired, or lack a scope the registry names: once more with a
        // fresh token for the scope the challenge asks for.
        if resp.status != 401 || !matches!(first, Authorization::Bearer(_)) {
            return Ok(resp);
        }
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_default()
            .to_owned();
        let fresh = http
            .auth
            .authorization(&http.client, &http.base, creds, &url, Some(&challenge))
            .await
            .map_err(|e| format!("{desc}: {e}"))?;
        self.send_with(url, &desc, &fresh).await
    }

    /// The same request again (the body is kept in memory, so it can be sent twice).
    fn clone_parts(&self) -> Req<'_> {
        Req {
            http: self.http,
            method: self.method.clone(),
            target: self.target.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    async fn send_with(self, url: Url, desc: &str, auth: &Authorization) -> Result<Resp, String> {
        let desc = desc.to_owned();
        let mut rb = self.http.client.request(self.method.clone(), url);
        rb = auth.apply(rb);
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
            headers.append(name, value);
        }
        rb = rb.headers(headers);
        rb = match self.body {
            Some(Body::Bytes(b)) => rb.body(b),
            Some(Body::Stream(parts)) => {
                let chunks = parts
                    .into_iter()
                    .map(|p| Ok::<_, std::io::Error>(Bytes::from(p)));
                rb.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            }
            // An empty POST, PUT or PATCH still says `Content-Length: 0` (the spec asks it of the
            // POST that opens a chunked upload; proxies may refuse a bodiless POST without it).
            None if matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
                && !self
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length")) =>
            {
                rb.header("content-length", "0")
            }
            None => rb,
        };
        let resp = rb
            .send()
            .await
            .map_err(|e| format!("{desc}: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            format!(
                "{desc}: got {status} but reading the body failed: {}",
                error_chain(&e)
            )
        })?;
        Ok(Resp {
            desc,
            status,
            headers,
            body,
        })
    }
}

/// A response, read whole.
pub(crate) struct Resp {
    /// `METHOD /path?query`, for failure messages.
    pub desc: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The response body, shortened and on one line, for failure messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.chars().count() > 200 {
            let cut: String = flat.chars().take(200).collect();
            format!("{cut}...")
        } else {
            flat
        }
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("{}: body is not json ({e}): {}", self.desc, self.snippet()))
    }
}

/// `METHOD /path?query`, with very long path segments and query values shortened (upload
/// state tokens, 256-character names) so failure reasons stay readable.
fn describe(method: &Method, url: &Url) -> String {
    let path: Vec<String> = url.path().split('/').map(|s| shorten(s, 72)).collect();
    let mut out = format!("{method} {}", path.join("/"));
    let pairs: Vec<String> = url
        .query_pairs()
        .map(|(k, v)| format!("{k}={}", shorten(&v, 72)))
        .collect();
    if !pairs.is_empty() {
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(16).collect();
    format!("{head}...({} chars)", s.chars().count())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
