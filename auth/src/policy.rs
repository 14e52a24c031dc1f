//! Who may do what: the pure permission evaluation, table-tested.

use crate::actions::{Actions, Scope};

/// What kind of caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityKind {
    /// No credentials: public repositories only.
    Anonymous,
    /// A user; `admin` users may do everything.
    User,
    /// A robot account of organisation `org` (named `org+name`); its scopes are its rights.
    Robot { org: String },
}

/// The personal access token (or robot token, or refresh token) a request authenticated with:
/// its scopes cap the subject's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCap {
    pub id: String,
    pub scopes: Vec<Scope>,
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdentityKind,
    /// User or robot name; empty when anonymous.
    pub name: String,
    /// A site administrator (user `admin` and any user made admin).
    pub admin: bool,
    pub cap: Option<TokenCap>,
    /// The subject's id in the identity store (never reused), when it came from there.
    pub uid: Option<i64>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            kind: IdentityKind::Anonymous,
            name: String::new(),
            admin: false,
            cap: None,
            uid: None,
        }
    }

    pub fn user(name: &str, admin: bool) -> Identity {
        Identity {
            kind: IdentityKind::User,
            name: name.to_owned(),
            admin,
            cap: None,
            uid: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == IdentityKind::Anonymous
    }

    /// A site administrator not limited by a token's scopes.
    pub fn is_site_admin(&self) -> bool {
        self.admin && self.kind == IdentityKind::User && self.cap.is_none()
    }

    /// Whether the caller may use the administration API: a user not limited by a token's
    /// scopes (a password login, or a refresh token of one). Personal access tokens, robot
    /// tokens and what was obtained through them never may.
    pub fn may_administer(&self) -> bool {
        self.kind == IdentityKind::User && self.cap.is_none()
    }

    /// How the audit log names the caller.
    pub fn audit_name(&self) -> &str {
        if self.name.is_empty() {
            "-"
        } else {
            &self.name
        }
    }
}

/// The namespace of a repository: its first path component.
pub fn namespace(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// The actions `id` holds on `repo`, given the grants of the caller's teams (or the robot's
/// scopes, as `(pattern, actions)`) and whether the repository is public:
///
/// - an admin user: everything;
/// - a user: everything in their own namespace, plus every team grant whose pattern matches;
/// - a robot: its scopes;
/// - a token's scopes cap all of the above;
/// - `push` implies `pull`, in a grant, a robot's scopes and a token's scopes;
/// - anyone, anonymous included, may pull a public repository.
pub fn evaluate(id: &Identity, grants: &[(String, Actions)], public: bool, repo: &str) -> Actions {
    let from_grants = || {
        grants
            .iter()
            .filter(|(p, _)| crate::pattern_matches(p, repo))
            .fold(Actions::NONE, |acc, (_, a)| acc.union(*a))
            .implied()
    };
    let mut a = match &id.kind {
        IdentityKind::Anonymous => Actions::NONE,
        IdentityKind::User if id.admin => Actions::ALL,
        IdentityKind::User if namespace(repo) == id.name => Actions::ALL,
        IdentityKind::User | IdentityKind::Robot { .. } => from_grants(),
    };
    if let Some(cap) = &id.cap {
        let capped = cap
            .scopes
            .iter()
            .fold(Actions::NONE, |acc, s| acc.union(s.actions_on(repo)))
            .implied();
        a = a.intersect(capped);
    }
    if public {
        a = a.union(Actions::PULL);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(s: &str) -> Actions {
        Actions::parse(s).unwrap()
    }

    #[test]
    fn permission_table() {
        let admin = Identity::user("admin", true);
        let alice = Identity::user("alice", false);
        let anon = Identity::anonymous();
        let robot = Identity {
            kind: IdentityKind::Robot { org: "acme".into() },
            name: "acme+ci".into(),
            admin: false,
            cap: None,
            uid: Some(1),
        };
        let alice_pat = Identity {
            cap: Some(TokenCap {
                id: "t1".into(),
                scopes: vec![Scope::parse("repository:acme/*:pull").unwrap()],
            }),
            ..alice.clone()
        };
        let admin_pat = Identity {
            cap: Some(TokenCap {
                id: "t2".into(),
                scopes: vec![Scope::parse("repository:acme/app:pull,push").unwrap()],
            }),
            ..admin.clone()
        };
        let team = vec![
            ("acme/*".to_owned(), acts("pull")),
            ("acme/app".to_owned(), acts("push")),
            ("acme/tools-*".to_owned(), acts("pull,push,delete")),
        ];
        let robot_scopes = vec![("acme/app".to_owned(), acts("pull,push"))];
        // `push` alone implies `pull` (a push reads: blob HEADs, mounts).
        let push_only = vec![("acme/ci".to_owned(), acts("push"))];
        let push_pat = Identity {
            cap: Some(TokenCap {
                id: "t3".into(),
                scopes: vec![Scope::parse("repository:acme/*:push").unwrap()],
            }),
            ..alice.clone()
        };
        let none: Vec<(String, Actions)> = Vec::new();
        // (identity, grants, public, repo, expected)
        type Row<'a> = (
            &'a Identity,
            &'a Vec<(String, Actions)>,
            bool,
            &'a str,
            &'a str,
        );
        let table: Vec<Row<'_>> = vec![
            (
                &admin,
                &none,
                false,
                "anything/at/all",
                "pull,push,delete,admin",
            ),
            (&admin_pat, &none, false, "acme/app", "pull,push"),
            (&admin_pat, &none, false, "acme/other", ""),
            (&admin_pat, &none, true, "acme/other", "pull"),
            (&alice, &none, false, "alice/app", "pull,push,delete,admin"),
            (&alice, &none, false, "alice", "pull,push,delete,admin"),
            (&alice, &none, false, "alicex/app", ""),
            (&alice, &none, false, "bob/app", ""),
            (&alice, &none, true, "bob/app", "pull"),
            (&alice, &team, false, "acme/app", "pull,push"),
            (&alice, &team, false, "acme/lib", "pull"),
            (&alice, &team, false, "acme/tools-x", "pull,push,delete"),
            (&alice, &team, false, "other/app", ""),
            (&alice_pat, &team, false, "acme/app", "pull"),
            (&alice_pat, &team, false, "alice/app", ""),
            (&alice_pat, &team, true, "alice/app", "pull"),
            (&anon, &team, false, "acme/app", ""),
            (&anon, &none, true, "acme/app", "pull"),
            (&robot, &robot_scopes, false, "acme/app", "pull,push"),
            (&robot, &robot_scopes, false, "acme/lib", ""),
            (&robot, &robot_scopes, true, "acme/lib", "pull"),
            (&robot, &robot_scopes, false, "acme+ci/x", ""),
            (&alice, &push_only, false, "acme/ci", "pull,push"),
            (&alice, &push_only, false, "acme/other", ""),
            (&robot, &push_only, false, "acme/ci", "pull,push"),
            (&push_pat, &push_only, false, "acme/ci", "pull,push"),
            (&push_pat, &team, false, "acme/lib", "pull"),
        ];
        for (id, grants, public, repo, want) in table {
            assert_eq!(
                evaluate(id, grants, public, repo),
                acts(want),
                "{} ({:?}) on {repo} public={public}",
                id.audit_name(),
                id.cap
            );
        }
        assert!(admin.is_site_admin());
        assert!(!admin_pat.is_site_admin());
        assert!(!alice.is_site_admin());
        assert!(alice.may_administer() && admin.may_administer());
        assert!(!alice_pat.may_administer() && !admin_pat.may_administer());
        assert!(!robot.may_administer() && !anon.may_administer());
        assert_eq!(anon.audit_name(), "-");
    }
}
