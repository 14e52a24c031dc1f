//! Personal access tokens and robot accounts, their listing and revocation, and the audit log.

use super::*;

impl Auth {
    /// Creates a personal access token for the calling user (not with a token).
    pub fn create_token(
        &self,
        actor: &Identity,
        name: &str,
        scopes: &[String],
        expires_in_secs: Option<u64>,
    ) -> Result<CreatedToken, AuthError> {
        if actor.kind != IdentityKind::User || actor.cap.is_some() {
            return Err(AuthError::Forbidden(
                "personal access tokens are created by a user signed in with a password".into(),
            ));
        }
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid {
                what: "token name",
                value: name.to_owned(),
                reason: "expected 1 to 100 printable characters".into(),
            });
        }
        let scopes = Self::parse_token_scopes(scopes, None)?;
        let expires_at = now() + Self::lifetime(expires_in_secs)?;
        self.insert_token(PAT, &actor.name, name, &scopes, expires_at)
    }

    /// Creates robot `org+name` with `scopes` (all under `org/`) and its token.
    pub fn create_robot(
        &self,
        actor: &Identity,
        org: &str,
        name: &str,
        scopes: &[String],
        expires_in_secs: Option<u64>,
    ) -> Result<CreatedToken, AuthError> {
        self.require_org_admin(actor, org)?;
        check_name("robot name", name)?;
        let scopes = Self::parse_token_scopes(scopes, Some(org))?;
        let expires_at = now() + Self::lifetime(expires_in_secs)?;
        let full = format!("{org}+{name}");
        let n = self.db.execute(
            "INSERT OR IGNORE INTO robots(name, org, scopes, created) VALUES (?, ?, ?, ?)",
            vals![&full, org, scopes_json(&scopes), now() as i64],
        )?;
        if n == 0 {
            return Err(AuthError::Conflict(format!("robot {full}")));
        }
        self.changed();
        self.insert_token(ROBOT, &full, name, &scopes, expires_at)
    }

    /// The caller's personal access tokens (an administrator's own, like anyone's).
    pub fn list_tokens(&self, actor: &Identity) -> Result<Vec<TokenInfo>, AuthError> {
        if actor.is_anonymous() {
            return Err(AuthError::Forbidden("listing tokens needs a user".into()));
        }
        self.db
            .query(
                "SELECT id, name, scopes, expires_at FROM tokens
                 WHERE owner = ? AND kind IN (?, ?) ORDER BY created, id",
                vals![&actor.name, PAT, ROBOT],
            )?
            .iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.text(0)?,
                    name: r.text(1)?,
                    scopes: serde_json::from_str(&r.text(2).unwrap_or_default())
                        .unwrap_or_default(),
                    expires_at: r.opt_int(3)?.map(|e| rfc3339(e.max(0) as u64)),
                })
            })
            .collect()
    }

    /// Revokes a token (and refresh tokens issued through it): its owner, an administrator, or
    /// for a robot's token an administrator of the robot's organisation.
    pub fn revoke_token(&self, actor: &Identity, id: &str) -> Result<(), AuthError> {
        let row = self
            .token_row(id)?
            .filter(|r| r.kind == PAT || r.kind == ROBOT)
            .ok_or_else(|| AuthError::NotFound(format!("token {id}")))?;
        let own = !actor.is_anonymous() && actor.name == row.owner;
        let org_admin = match row.owner.split_once('+') {
            Some((org, _)) => self.is_org_admin(actor, org)?,
            None => false,
        };
        if !(own || org_admin || actor.is_site_admin()) {
            // Someone else's token: indistinguishable from a missing one.
            return Err(AuthError::NotFound(format!("token {id}")));
        }
        // Everything issued through it goes with it (refresh tokens of refresh tokens too).
        let r = self.delete_tokens_where("SELECT CAST(?1 AS TEXT)", vals![id]);
        if r.is_ok() && row.kind == ROBOT {
            let deleted = self
                .db
                .execute("DELETE FROM robots WHERE name = ?", vals![&row.owner]);
            self.changed();
            return deleted.map(|_| ());
        }
        self.changed();
        r
    }

    /// The newest `limit` audit records, newest first (administrators only).
    pub fn audit_log(&self, actor: &Identity, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        self.require_site_admin(actor, "reading the audit log")?;
        self.db
            .query(
                "SELECT time, actor, action, target, outcome, remote FROM audit
                 ORDER BY id DESC LIMIT ?",
                vals![limit.min(10_000) as i64],
            )?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    time: rfc3339(r.int(0)?.max(0) as u64),
                    actor: r.text(1)?,
                    action: r.text(2)?,
                    target: r.text(3)?,
                    outcome: r.text(4)?,
                    remote: r.text(5)?,
                })
            })
            .collect()
    }
}
