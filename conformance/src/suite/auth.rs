//! Credentials for registries that want them: Basic on every request, or, when the registry
//! challenges with `Bearer realm=...`, tokens from its token endpoint (asked with the Basic
//! credentials, as docker does), one per set of scopes, cached until shortly before they expire.
//!
//! Which one is learned once per run: `GET /v2/` without credentials; a `401` with a Bearer
//! challenge means tokens, anything else means Basic (an open registry ignores it, as before).
//! Each request asks for `pull,push,delete` on the repository its path names (the token endpoint
//! grants what the user may do of that), `pull` on a mount's `from`, and `registry:catalog:*` for
//! the catalog.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use super::Credentials;

/// What goes in a request's `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Authorization {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl Authorization {
    pub fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::None => rb,
            Self::Basic { username, password } => rb.basic_auth(username, Some(password)),
            Self::Bearer(token) => rb.bearer_auth(token),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The learned mode and the token cache, shared by a run's clients.
#[derive(Default)]
pub(crate) struct State {
    mode: tokio::sync::OnceCell<Mode>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl State {
    /// The authorization for a request to `url`. `challenge` is the `WWW-Authenticate` value of
    /// a `401` the previous try got: the cached token is then not reused, and the scope the
    /// challenge names is asked for too.
    pub async fn authorization(
        &self,
        client: &reqwest::Client,
        base: &Url,
        creds: &Credentials,
        url: &Url,
        challenge: Option<&str>,
    ) -> Result<Authorization, String> {
        let mode = self
            .mode
            .get_or_try_init(|| probe(client, base))
            .await?
            .clone();
        let (realm, service) = match mode {
            Mode::Basic => {
                return Ok(Authorization::Basic {
                    username: creds.username.clone(),
                    password: creds.password.clone(),
                });
            }
            Mode::Bearer { realm, service } => (realm, service),
        };
        let mut scopes = scopes_for(url);
        if let Some(extra) = challenge
            .and_then(parse_bearer)
            .and_then(|p| p.get("scope").cloned())
        {
            scopes.extend(extra.split(' ').map(str::to_owned));
        }
        scopes.sort();
        scopes.dedup();
        let key = scopes.join(" ");
        if challenge.is_none()
            && let Some((token, until)) = self.tokens.lock().expect("token cache").get(&key)
            && *until > Instant::now()
        {
            return Ok(Authorization::Bearer(token.clone()));
        }
        let (token, lifetime) =
            match fetch(client, &realm, service.as_deref(), creds, &scopes).await {
                Err(e) if e.status == Some(400) && !scopes.is_empty() => {
                    // A scope the token endpoint will not parse (an invalid repository name):
                    // authenticate without it and let the registry answer the request.
                    fetch(client, &realm, service.as_deref(), creds, &[]).await
                }
                other => other,
            }
            .map_err(|e| e.message)?;
        self.tokens
            .lock()
            .expect("token cache")
            .insert(key, (token.clone(), Instant::now() + lifetime.mul_f32(0.8)));
        Ok(Authorization::Bearer(token))
    }
}

struct FetchError {
    status: Option<u16>,
    message: String,
}

async fn probe(client: &reqwest::Client, base: &Url) -> Result<Mode, String> {
    let url = base
        .join("/v2/")
        .map_err(|e| format!("invalid registry url {base}: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET /v2/ (learning how to authenticate): {e}"))?;
    if resp.status().as_u16() == 401 {
        for value in resp.headers().get_all("www-authenticate") {
            if let Some(p) = value.to_str().ok().and_then(parse_bearer)
                && let Some(realm) = p.get("realm")
            {
                return Ok(Mode::Bearer {
                    realm: realm.clone(),
                    service: p.get("service").cloned(),
                });
            }
        }
    }
    Ok(Mode::Basic)
}

async fn fetch(
    client: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    creds: &Credentials,
    scopes: &[String],
) -> Result<(String, Duration), FetchError> {
    let mut url = Url::parse(realm).map_err(|e| FetchError {
        status: None,
        message: format!("invalid token realm {realm:?}: {e}"),
    })?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        q.append_pair("account", &creds.username);
        for s in scopes {
            q.append_pair("scope", s);
        }
    }
    let what = format!("token endpoint {realm} (scopes {:?})", scopes.join(" "));
    let resp = client
        .get(url)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(|e| FetchError {
            status: None,
            message: format!("{what}: {e}"),
        })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| FetchError {
        status: Some(status),
        message: format!("{what}: reading the body: {e}"),
    })?;
    if status != 200 {
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(FetchError {
            status: Some(status),
            message: format!("{what}: got {status}: {text}"),
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| FetchError {
        status: Some(status),
        message: format!("{what}: invalid json: {e}"),
    })?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FetchError {
            status: Some(status),
            message: format!("{what}: the response has no token"),
        })?;
    let lifetime = Duration::from_secs(parsed.expires_in.filter(|&s| s > 0).unwrap_or(60));
    Ok((token, lifetime))
}

/// The scopes a request to `url` needs.
pub(crate) fn scopes_for(url: &Url) -> Vec<String> {
    let path = url.path();
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Vec::new();
    };
    if rest.is_empty() {
        return Vec::new();
    }
    if rest == "_catalog" {
        return vec!["registry:catalog:*".into()];
    }
    let cut = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .max();
    let Some(cut) = cut else {
        return Vec::new();
    };
    let name = &rest[..cut];
    let mut out = vec![format!("repository:{name}:pull,push,delete")];
    if let Some((_, from)) = url.query_pairs().find(|(k, _)| k == "from")
        && from != name
    {
        out.push(format!("repository:{from}:pull"));
    }
    out
}

/// The parameters of a `Bearer` challenge (keys lowercased), or `None` for another scheme.
fn parse_bearer(value: &str) -> Option<HashMap<String, String>> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(hoist_oci::www_authenticate::parse_params(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(u: &str) -> Vec<String> {
        scopes_for(&Url::parse(u).unwrap())
    }

    #[test]
    fn scopes_follow_the_path() {
        assert!(scopes("http://r/v2/").is_empty());
        assert_eq!(scopes("http://r/v2/_catalog?n=1"), ["registry:catalog:*"]);
        assert_eq!(
            scopes("http://r/v2/a/blobs/b/manifests/latest"),
            ["repository:a/blobs/b:pull,push,delete"]
        );
        assert_eq!(
            scopes("http://r/v2/a/b/blobs/uploads/?mount=sha256:x&from=c/d"),
            ["repository:a/b:pull,push,delete", "repository:c/d:pull"]
        );
        assert_eq!(
            scopes("http://r/v2/x/tags/list"),
            ["repository:x:pull,push,delete"]
        );
        assert_eq!(
            scopes("http://r/v2/x/referrers/sha256:abc"),
            ["repository:x:pull,push,delete"]
        );
    }

    #[test]
    fn bearer_challenges_parse() {
        let p = parse_bearer(
            r#"Bearer realm="http://127.0.0.1:1/token",service="127.0.0.1:1",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "127.0.0.1:1");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(parse_bearer(r#"Basic realm="x""#).is_none());
    }
}
