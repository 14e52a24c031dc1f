//! Registry tokens: ES256 JWTs signed with a key generated on first start, `kid` in the
//! header, the public key published as a JWKS.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::actions::{Actions, ResourceKind, Scope};

/// The private key file under the data directory (PKCS#8 DER, mode 0600).
pub const KEY_FILE: &str = "auth-token-key.p8";

/// One entry of a token's `access` claim (docker's format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn from_scope(s: &Scope) -> Access {
        let kind = match s.kind {
            ResourceKind::Repository => "repository",
            ResourceKind::Registry => "registry",
        };
        let actions = if s.kind == ResourceKind::Registry && s.actions == Actions::ALL {
            vec!["*".to_owned()]
        } else {
            s.actions.names().into_iter().map(str::to_owned).collect()
        };
        Access {
            kind: kind.to_owned(),
            name: s.name.clone(),
            actions,
        }
    }

    fn actions(&self) -> Actions {
        self.actions
            .iter()
            .filter_map(|a| Actions::parse_one(a).ok())
            .fold(Actions::NONE, Actions::union)
    }
}

/// A registry token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user or robot; empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
    /// The personal access token or robot token the token was issued for, if any (its scopes
    /// cap the subject's rights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// The subject's id (users and robots have ids never reused): a token of a removed subject
    /// stays dead when another of the same name is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
}

impl Claims {
    /// Whether the token grants `actions` on repository `name` (exact name, as docker scopes are).
    pub fn allows_repo(&self, name: &str, actions: Actions) -> bool {
        let granted = self
            .access
            .iter()
            .filter(|a| a.kind == "repository" && a.name == name)
            .map(Access::actions)
            .fold(Actions::NONE, Actions::union)
            .implied();
        granted.contains(actions)
    }

    /// Whether the token carries `registry:admin:*` (the administration API).
    pub fn allows_admin_api(&self) -> bool {
        self.access.iter().any(|a| {
            a.kind == "registry" && a.name == "admin" && a.actions().contains(Actions::ALL)
        })
    }

    /// Whether the token carries `registry:catalog:*`.
    pub fn allows_catalog(&self) -> bool {
        self.access.iter().any(|a| {
            a.kind == "registry" && a.name == "catalog" && a.actions().contains(Actions::ALL)
        })
    }
}

/// Signs and verifies tokens.
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Loads `<dir>/auth-token-key.p8`, generating it (0600) on first start.
    pub fn load_or_generate(dir: &Path) -> Result<TokenKeys, AuthError> {
        let path = dir.join(KEY_FILE);
        let io = |e: std::io::Error| AuthError::Io {
            path: path.display().to_string(),
            source: e,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = TokenKeys::generate_pkcs8()?;
                let tmp = dir.join(format!("{KEY_FILE}.tmp"));
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(io)?;
                    f.write_all(&bytes).map_err(io)?;
                    f.sync_all().map_err(io)?;
                }
                std::fs::rename(&tmp, &path).map_err(io)?;
                tracing::info!(target: "hoist::audit", path = %path.display(), "generated the token signing key");
                bytes
            }
            Err(e) => return Err(io(e)),
        };
        TokenKeys::from_pkcs8(&pkcs8).map_err(|e| match e {
            AuthError::Crypto(m) => AuthError::Crypto(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// A new P-256 private key, PKCS#8.
    pub fn generate_pkcs8() -> Result<Vec<u8>, AuthError> {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|_| AuthError::Crypto("generating the token signing key".into()))?;
        Ok(doc.as_ref().to_vec())
    }

    /// From a PKCS#8 P-256 private key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<TokenKeys, AuthError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| AuthError::Crypto(format!("not a p-256 pkcs8 key: {e}")))?;
        let encoding = EncodingKey::from_ec_der(pkcs8);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| AuthError::Crypto(format!("public key: {e}")))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| AuthError::Crypto(format!("key thumbprint: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk)
            .map_err(|e| AuthError::Crypto(format!("verification key: {e}")))?;
        Ok(TokenKeys {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set (`/token/jwks`).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Crypto(format!("signing a token: {e}")))
    }

    /// Verifies signature, algorithm, `kid`, `exp`, `nbf`, `iss` and `aud`.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("malformed token: {e}")))?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(AuthError::InvalidToken("unknown key id".into()));
        }
        let mut v = Validation::new(Algorithm::ES256);
        // The issuer is the verifier (one clock): a token is refused from the second it expires.
        v.leeway = 0;
        v.validate_nbf = true;
        v.set_audience(&[audience]);
        v.set_issuer(&[issuer]);
        v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::InvalidToken(e.to_string().to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(exp_in: i64) -> Claims {
        let t = now();
        Claims {
            iss: "hoist".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: (t as i64 + exp_in) as u64,
            nbf: t - 1,
            iat: t,
            jti: "j1".into(),
            access: vec![Access::from_scope(
                &Scope::parse("repository:alice/app:pull,push").unwrap(),
            )],
            tid: None,
            uid: Some(7),
        }
    }

    #[test]
    fn key_is_generated_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = TokenKeys::load_or_generate(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = TokenKeys::load_or_generate(dir.path()).unwrap();
        assert_eq!(k1.kid(), k2.kid());
        let t = k1.sign(&claims(300)).unwrap();
        assert_eq!(
            k2.verify(&t, "hoist", "registry").unwrap(),
            claims_like(&t, &k2)
        );
        let jwks = serde_json::to_value(k1.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], k1.kid());
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "no private part: {jwks}"
        );
        std::fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        assert!(TokenKeys::load_or_generate(dir.path()).is_err());
    }

    fn claims_like(t: &str, k: &TokenKeys) -> Claims {
        k.verify(t, "hoist", "registry").unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let k = TokenKeys::load_or_generate(dir.path()).unwrap();
        let c = claims(300);
        let t = k.sign(&c).unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(k.kid()));
        let back = k.verify(&t, "hoist", "registry").unwrap();
        assert_eq!(back, c);
        assert!(back.allows_repo("alice/app", Actions::PUSH));
        assert!(!back.allows_repo("alice/app", Actions::DELETE));
        assert!(!back.allows_repo("alice/other", Actions::PULL));
        assert!(!back.allows_catalog());
        assert!(!back.allows_admin_api());

        // Expired (beyond the leeway).
        let expired = k.sign(&claims(-60)).unwrap();
        assert!(k.verify(&expired, "hoist", "registry").is_err());
        // Not yet valid.
        let mut early = claims(300);
        early.nbf = now() + 120;
        assert!(
            k.verify(&k.sign(&early).unwrap(), "hoist", "registry")
                .is_err()
        );
        // Wrong audience, wrong issuer.
        assert!(k.verify(&t, "hoist", "other-registry").is_err());
        assert!(k.verify(&t, "someone-else", "registry").is_err());
        // Tampered payload: widen the access claim, keep the signature.
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert!(k.verify(&forged, "hoist", "registry").is_err());
        // Signed by another key (same kid forged into the header).
        let other_dir = tempfile::tempdir().unwrap();
        let other = TokenKeys::load_or_generate(other_dir.path()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(k.kid().to_owned());
        let foreign = jsonwebtoken::encode(&header, &c, &other.encoding).unwrap();
        assert!(k.verify(&foreign, "hoist", "registry").is_err());
        // alg=none and garbage.
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(k.verify(&none, "hoist", "registry").is_err());
        assert!(k.verify("not.a.token", "hoist", "registry").is_err());
    }

    #[test]
    fn catalog_access() {
        let mut c = claims(300);
        c.access.push(Access::from_scope(&Scope::catalog()));
        assert_eq!(c.access[1].actions, vec!["*"]);
        assert!(c.allows_catalog());
        assert!(!c.allows_admin_api());
        c.access.push(Access::from_scope(&Scope::admin_api()));
        assert!(c.allows_admin_api());
        // Just expired: no leeway.
        let dir = tempfile::tempdir().unwrap();
        let k = TokenKeys::load_or_generate(dir.path()).unwrap();
        let mut just = claims(0);
        just.exp = now() - 1;
        assert!(
            k.verify(&k.sign(&just).unwrap(), "hoist", "registry")
                .is_err()
        );
    }
}
