//! [`RegistryClient`]: one registry's transport, authentication and the distribution-API calls
//! the engine is made of.
//!
//! `oci-client` sends the calls it does well (blob `HEAD`, streamed blob `GET` with `Range`,
//! manifest `PUT`), with the token hoist's [`Authenticator`] obtained put into its token cache
//! before each call. The calls it lacks go through reqwest with the same token: manifest `GET`
//! with every media type (exact bytes), uploads (`POST`, `PATCH` with `Content-Range`, upload
//! status, `PUT ?digest=`) and cross-repository mounts (`201` versus `202`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hoist_oci::{Digest, media_type};
use oci_client::RegistryOperation;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Authenticator, Authorization, Scope};
use super::error::{TransferError, truncate};
use super::store::ByteStream;
use crate::credentials::{Credential, DockerConfig};
use crate::endpoint::{Endpoint, Endpoints, Scheme};

/// Retries for connection errors and 5xx answers, with exponential backoff.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    /// The first delay; each next one doubles, up to `max_delay`.
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        self.initial_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay)
    }
}

/// Settings of a [`RegistryClient`].
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    /// Connect timeout (none by default).
    pub connect_timeout: Option<Duration>,
}

/// A client for one registry. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    base: Url,
    http: reqwest::Client,
    oci: oci_client::Client,
    auth: Authenticator,
    retry: RetryPolicy,
}

/// What a mount attempt did.
pub(crate) enum Mount {
    Mounted,
    /// The registry did not mount, and opened an upload session instead.
    Session(Url),
    /// Not mountable from there (unknown blob, repository, or no access).
    Refused,
}

impl RegistryClient {
    /// A client for `host` (a reference's registry: `docker.io`, `localhost:5000`, ...). Reads the
    /// `certs.d` files for the host, so it blocks briefly; see [`RegistryClient::connect`].
    pub fn new(
        host: &str,
        endpoints: &Endpoints,
        credential: Option<Credential>,
        options: ClientOptions,
    ) -> Result<Self, TransferError> {
        let endpoint = endpoints.resolve(host)?;
        let tls = endpoints.tls(host)?;
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("hoist/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = options.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let probe = match tls.identity()? {
            Some(_) => Some(
                reqwest::Client::builder()
                    .tls_certs_merge(tls.root_certificates()?)
                    .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(30)))
                    .build()
                    .map_err(TransferError::Client)?,
            ),
            None => None,
        };
        let http = tls.apply(builder)?.build().map_err(TransferError::Client)?;
        let oci_config = ClientConfig {
            protocol: match endpoint.scheme() {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            extra_root_certificates: tls
                .ca_certs()
                .iter()
                .map(|f| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: f.pem.clone(),
                })
                .collect(),
            connect_timeout: options.connect_timeout,
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let oci = oci_client::Client::try_from(oci_config).map_err(|e| {
            TransferError::Oci(format!("configuring the registry client: {e}").to_lowercase())
        })?;
        let base_url = endpoint.base_url();
        let base = Url::parse(&format!("{base_url}/"))
            .map_err(|e| TransferError::Protocol(format!("bad registry url {base_url}: {e}")))?;
        let mut auth = Authenticator::new(http.clone(), base_url, credential);
        if let Some(probe) = probe {
            auth = auth.with_probe(probe);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                base,
                http,
                oci,
                auth,
                retry: options.retry,
            }),
        })
    }

    /// A client for `host` with the credential docker's config holds for it (helpers run off the
    /// async threads).
    pub async fn connect(
        host: &str,
        endpoints: &Endpoints,
        config: &DockerConfig,
        options: ClientOptions,
    ) -> Result<Self, TransferError> {
        let (host, endpoints, config) = (host.to_owned(), endpoints.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let credential = config.get(&host)?;
            Self::new(&host, &endpoints, credential, options)
        })
        .await
        .map_err(|e| TransferError::Join(e.to_string()))?
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Runs `op` until it succeeds, fails with an error that is not retryable, or runs out of
    /// tries.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, TransferError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TransferError>>,
    {
        let policy = &self.inner.retry;
        let mut retry = 0;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && retry + 1 < policy.attempts => {
                    tracing::debug!(error = %e, retry, "retrying");
                    tokio::time::sleep(policy.delay(retry)).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// Whether `url` is on the registry itself (credentials never go anywhere else).
    fn is_registry_url(&self, url: &Url) -> bool {
        let base = &self.inner.base;
        url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
    }

    /// Sends a request with the authorization `scopes` need; on a `401`, refreshes it once.
    async fn send<F>(
        &self,
        method: Method,
        url: &str,
        scopes: &[Scope],
        build: F,
    ) -> Result<Response, TransferError>
    where
        F: Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    {
        let parsed =
            Url::parse(url).map_err(|e| TransferError::Protocol(format!("bad url {url}: {e}")))?;
        let authenticate = self.is_registry_url(&parsed);
        for attempt in 0..2 {
            let auth = if authenticate {
                self.inner.auth.authorization(scopes).await?
            } else {
                Authorization::None
            };
            let req = auth.apply(build(
                self.inner.http.request(method.clone(), parsed.clone()),
            ));
            let resp = req
                .send()
                .await
                .map_err(|source| TransferError::Connection {
                    method: method.to_string(),
                    url: url.to_owned(),
                    source,
                })?;
            if resp.status() == StatusCode::UNAUTHORIZED && authenticate && attempt == 0 {
                self.inner.auth.unauthorized(scopes, Some(resp.headers()));
                continue;
            }
            return Ok(resp);
        }
        Err(TransferError::Unauthorized {
            url: url.to_owned(),
        })
    }

    /// The error for an unexpected answer.
    async fn unexpected(method: &str, url: &str, resp: Response) -> TransferError {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let errors = super::error::parse_registry_errors(&body);
        match (status, errors) {
            (StatusCode::NOT_FOUND, _) => TransferError::NotFound {
                url: url.to_owned(),
            },
            (StatusCode::UNAUTHORIZED, _) => TransferError::Unauthorized {
                url: url.to_owned(),
            },
            (StatusCode::FORBIDDEN, None) => TransferError::Registry {
                method: method.to_owned(),
                url: url.to_owned(),
                status,
                errors: super::error::denied(),
            },
            // What docker prints: the registry's code and message.
            (status, Some(errors)) => TransferError::Registry {
                method: method.to_owned(),
                url: url.to_owned(),
                status,
                errors,
            },
            (status, None) => TransferError::Status {
                method: method.to_owned(),
                url: url.to_owned(),
                status,
                detail: truncate(&String::from_utf8_lossy(&body)),
            },
        }
    }

    fn location(&self, resp: &Response) -> Result<Url, TransferError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                TransferError::Protocol(format!("{} answered without a location", resp.url()))
            })?;
        resp.url()
            .join(loc)
            .map_err(|e| TransferError::Protocol(format!("bad location {loc:?}: {e}")))
    }

    fn oci_ref(&self, repo: &str, reference: &str) -> oci_client::Reference {
        let host = self.inner.endpoint.api_host().to_owned();
        if reference.contains(':') {
            oci_client::Reference::with_digest(host, repo.to_owned(), reference.to_owned())
        } else {
            oci_client::Reference::with_tag(host, repo.to_owned(), reference.to_owned())
        }
    }

    /// Runs an `oci-client` call with hoist's authorization for `scopes` in its token cache.
    async fn oci_call<T, F, Fut>(
        &self,
        oref: &oci_client::Reference,
        scopes: &[Scope],
        call: F,
    ) -> Result<T, TransferError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        for attempt in 0..2 {
            let token = match self.inner.auth.authorization(scopes).await? {
                Authorization::None => None,
                Authorization::Basic { username, password } => {
                    Some(RegistryTokenType::Basic(username, password))
                }
                Authorization::Bearer(token) => {
                    Some(RegistryTokenType::Bearer(RegistryToken::Token { token }))
                }
            };
            if let Some(token) = token {
                // oci-client consults its token cache only for registries it has an
                // authentication for; "anonymous" keeps it from any dance of its own while the
                // cache holds hoist's token.
                self.inner
                    .oci
                    .store_auth_if_needed(
                        oref.resolve_registry(),
                        &oci_client::secrets::RegistryAuth::Anonymous,
                    )
                    .await;
                for op in [RegistryOperation::Pull, RegistryOperation::Push] {
                    self.inner.oci.tokens.insert(oref, op, token.clone()).await;
                }
            }
            match call().await.map_err(TransferError::from) {
                Err(TransferError::Unauthorized { .. }) if attempt == 0 => {
                    self.inner.auth.unauthorized(scopes, None);
                }
                other => return other,
            }
        }
        Err(TransferError::Unauthorized {
            url: format!("{}v2/{}", self.inner.base, oref.repository()),
        })
    }

    /// Whether the repository has the blob (`HEAD`).
    pub(crate) async fn blob_exists(
        &self,
        repo: &str,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<bool, TransferError> {
        let oref = self.oci_ref(repo, digest.as_str());
        let scopes = std::slice::from_ref(scope);
        self.retrying(|| {
            self.oci_call(&oref, scopes, || {
                self.inner.oci.blob_exists(&oref, digest.as_str())
            })
        })
        .await
    }

    /// The blob's bytes from `offset`, and whether the registry honoured the offset (`206`);
    /// on `200` the stream starts at byte 0.
    pub(crate) async fn open_blob(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(ByteStream, bool), TransferError> {
        let oref = self.oci_ref(repo, digest.as_str());
        let scopes = [Scope::pull(repo)];
        let resp = self
            .oci_call(&oref, &scopes, || {
                self.inner
                    .oci
                    .pull_blob_stream_partial(&oref, digest.as_str(), offset, None)
            })
            .await?;
        Ok(match resp {
            BlobResponse::Full(s) => (s.stream, false),
            BlobResponse::Partial(s) => (s.stream, true),
        })
    }

    /// A manifest's exact bytes, media type and digest, verified against `pinned` (the digest the
    /// reference or the parent index names) and against `Docker-Content-Digest`.
    pub(crate) async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        pinned: Option<&Digest>,
    ) -> Result<(Bytes, String, Digest), TransferError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let scopes = [Scope::pull(repo)];
        let accept = media_type::MANIFEST_TYPES.join(", ");
        let (bytes, mt, header) = self
            .retrying(|| async {
                let resp = self
                    .send(Method::GET, &url, &scopes, |r| r.header(ACCEPT, &accept))
                    .await?;
                if resp.status() != StatusCode::OK {
                    return Err(Self::unexpected("GET", &url, resp).await);
                }
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let mt = header(CONTENT_TYPE.as_str()).unwrap_or_default();
                let digest_header = header("docker-content-digest");
                if resp
                    .content_length()
                    .is_some_and(|n| n > super::MAX_MANIFEST_SIZE)
                {
                    return Err(TransferError::Protocol(format!(
                        "{url}: manifest larger than {} bytes",
                        super::MAX_MANIFEST_SIZE
                    )));
                }
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|source| TransferError::Connection {
                        method: "GET".into(),
                        url: url.clone(),
                        source,
                    })?;
                Ok((bytes, mt, digest_header))
            })
            .await?;
        let verify = |expected: &Digest| -> Result<(), TransferError> {
            let actual = Digest::of(expected.algorithm(), &bytes);
            if &actual != expected {
                return Err(TransferError::Verify {
                    digest: expected.clone(),
                    detail: format!("manifest from {url} has digest {actual}"),
                });
            }
            Ok(())
        };
        if let Some(pinned) = pinned {
            verify(pinned)?;
        }
        if let Some(h) = header.as_deref().and_then(|h| Digest::parse(h).ok()) {
            verify(&h)?;
        }
        let digest = match pinned {
            Some(d) => d.clone(),
            None => Digest::sha256_of(&bytes),
        };
        let mt = mt.split(';').next().unwrap_or_default().trim().to_owned();
        Ok((bytes, mt, digest))
    }

    /// `GET /v2/` with this client's credential, as `docker login` checks one: `Ok` when the
    /// registry accepts it (or needs none), [`TransferError::Unauthorized`] when it refuses it.
    /// For a Bearer registry the token endpoint is asked for a token with no scope.
    pub async fn check_credentials(&self) -> Result<(), TransferError> {
        let url = self.url("v2/");
        let resp = self
            .retrying(|| self.send(Method::GET, &url, &[], |r| r))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::unexpected("GET", &url, resp).await)
        }
    }

    /// Stores a manifest's exact bytes under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), TransferError> {
        let oref = self.oci_ref(repo, reference);
        let scopes = [Scope::push(repo)];
        let content_type = reqwest::header::HeaderValue::from_str(media_type)
            .map_err(|_| TransferError::Protocol(format!("bad media type {media_type:?}")))?;
        self.retrying(|| {
            self.oci_call(&oref, &scopes, || {
                self.inner
                    .oci
                    .push_manifest_raw(&oref, bytes.clone(), content_type.clone())
            })
        })
        .await?;
        Ok(())
    }

    /// Opens an upload session.
    pub(crate) async fn start_upload(&self, repo: &str) -> Result<Url, TransferError> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let scopes = [Scope::push(repo)];
        self.retrying(|| async {
            let resp = self
                .send(Method::POST, &url, &scopes, |r| r.header(CONTENT_LENGTH, 0))
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(Self::unexpected("POST", &url, resp).await);
            }
            self.location(&resp)
        })
        .await
    }

    /// Asks the registry to mount `digest` from repository `from` into `repo`.
    pub(crate) async fn mount(
        &self,
        repo: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<Mount, TransferError> {
        let mut url = Url::parse(&self.url(&format!("v2/{repo}/blobs/uploads/")))
            .map_err(|e| TransferError::Protocol(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let url = url.to_string();
        let scopes = [Scope::push(repo), Scope::pull(from)];
        self.retrying(|| async {
            let resp = match self
                .send(Method::POST, &url, &scopes, |r| r.header(CONTENT_LENGTH, 0))
                .await
            {
                Err(TransferError::Unauthorized { .. }) => return Ok(Mount::Refused),
                other => other?,
            };
            match resp.status() {
                StatusCode::CREATED => Ok(Mount::Mounted),
                StatusCode::ACCEPTED => Ok(Mount::Session(self.location(&resp)?)),
                s if s.is_client_error() => Ok(Mount::Refused),
                _ => Err(Self::unexpected("POST", &url, resp).await),
            }
        })
        .await
    }

    /// Sends a whole blob into a session and closes it (`PUT ?digest=`). Not retried here: a
    /// failed session is replaced by the caller.
    pub(crate) async fn put_blob(
        &self,
        repo: &str,
        session: &Url,
        digest: &Digest,
        body: Bytes,
    ) -> Result<(), TransferError> {
        let mut url = session.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let url = url.to_string();
        let scopes = [Scope::push(repo)];
        let resp = self
            .send(Method::PUT, &url, &scopes, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::unexpected("PUT", &url, resp).await);
        }
        Ok(())
    }

    /// Sends one chunk at `offset`; returns the session's next location and the offset the
    /// registry now holds.
    pub(crate) async fn patch_chunk(
        &self,
        repo: &str,
        session: &Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<(Url, u64), TransferError> {
        let url = session.to_string();
        let scopes = [Scope::push(repo)];
        let end = offset + chunk.len() as u64;
        let resp = self
            .send(Method::PATCH, &url, &scopes, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{}", end - 1))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(chunk.clone())
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::unexpected("PATCH", &url, resp).await);
        }
        let next = self.location(&resp)?;
        let held = range_end(&resp).unwrap_or(end);
        Ok((next, held))
    }

    /// Where an upload session stands: its location and how many bytes the registry holds, or
    /// `None` when the session is gone.
    pub(crate) async fn upload_status(
        &self,
        repo: &str,
        session: &Url,
    ) -> Result<Option<(Url, u64)>, TransferError> {
        let url = session.to_string();
        let scopes = [Scope::push(repo)];
        self.retrying(|| async {
            let resp = self.send(Method::GET, &url, &scopes, |r| r).await?;
            match resp.status() {
                StatusCode::NO_CONTENT | StatusCode::OK => {
                    let loc = self.location(&resp).unwrap_or_else(|_| session.clone());
                    Ok(Some((loc, range_end(&resp).unwrap_or(0))))
                }
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(Self::unexpected("GET", &url, resp).await),
            }
        })
        .await
    }

    /// Closes a chunked session (`PUT ?digest=` with no body).
    pub(crate) async fn finish_upload(
        &self,
        repo: &str,
        session: &Url,
        digest: &Digest,
    ) -> Result<(), TransferError> {
        self.put_blob(repo, session, digest, Bytes::new()).await
    }
}

/// The end of a `Range: 0-N` header as a count of bytes held (`N + 1`).
fn range_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(RANGE)?.to_str().ok()?;
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (_, end) = v.split_once('-')?;
    end.trim().parse::<u64>().ok().map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<_> = (0..5).map(|r| p.delay(r).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn clients_use_plain_http_only_for_loopback() {
        let e = Endpoints::new();
        let local =
            RegistryClient::new("127.0.0.1:5000", &e, None, ClientOptions::default()).unwrap();
        assert_eq!(local.endpoint().base_url(), "http://127.0.0.1:5000");
        let hub = RegistryClient::new("docker.io", &e, None, ClientOptions::default()).unwrap();
        assert_eq!(hub.endpoint().base_url(), "https://registry-1.docker.io");
        let url = Url::parse("https://registry-1.docker.io/v2/x").unwrap();
        assert!(hub.is_registry_url(&url));
        let elsewhere = Url::parse("https://cdn.example.com/blob").unwrap();
        assert!(!hub.is_registry_url(&elsewhere));
    }
}
