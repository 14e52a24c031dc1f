//! Actions on repositories, scopes (`repository:NAME:ACTIONS`) and repository patterns.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::AuthError;

/// A set of actions on a repository: `pull`, `push`, `delete`, `admin`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

const NAMES: [(Actions, &str); 4] = [
    (Actions::PULL, "pull"),
    (Actions::PUSH, "push"),
    (Actions::DELETE, "delete"),
    (Actions::ADMIN, "admin"),
];

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ADMIN: Actions = Actions(8);
    pub const ALL: Actions = Actions(15);

    /// Whether every action of `other` is in `self`.
    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// With what an action implies: `push` implies `pull` (as in Harbor: whoever may write a
    /// repository may read it, and a push reads: blob HEADs, mounts, manifest checks).
    pub fn implied(self) -> Actions {
        if self.contains(Actions::PUSH) {
            self.union(Actions::PULL)
        } else {
            self
        }
    }

    /// The bits, as stored.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From stored bits; unknown bits are dropped.
    pub fn from_bits(bits: i64) -> Actions {
        Actions((bits & 15) as u8)
    }

    /// Parses one action name (`*` is every action).
    pub fn parse_one(s: &str) -> Result<Actions, AuthError> {
        let s = s.trim();
        if s == "*" {
            return Ok(Actions::ALL);
        }
        NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| AuthError::Invalid {
                what: "action",
                value: s.to_owned(),
                reason: "expected pull, push, delete, admin or *".into(),
            })
    }

    /// Parses `pull,push` (empty is no action).
    pub fn parse(s: &str) -> Result<Actions, AuthError> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .try_fold(
                Actions::NONE,
                |acc, p| Ok(acc.union(Actions::parse_one(p)?)),
            )
    }

    /// Parses a list of action names, as the admin API sends them.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Actions, AuthError> {
        names.iter().try_fold(Actions::NONE, |acc, n| {
            Ok(acc.union(Actions::parse(n.as_ref())?))
        })
    }

    /// The action names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(a, _)| self.contains(*a))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actions({self})")
    }
}

/// What a scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// `repository:NAME:ACTIONS` (NAME may be a pattern in token and robot scopes).
    Repository,
    /// `registry:catalog:*`.
    Registry,
}

/// One `type:name:actions` scope, as docker's token protocol and hoist's token scopes write it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ResourceKind,
    pub name: String,
    pub actions: Actions,
}

impl Scope {
    pub fn repository(name: impl Into<String>, actions: Actions) -> Scope {
        Scope {
            kind: ResourceKind::Repository,
            name: name.into(),
            actions,
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope {
            kind: ResourceKind::Registry,
            name: "catalog".into(),
            actions: Actions::ALL,
        }
    }

    /// `registry:admin:*`: the administration API (`/admin/v1`, `/metrics`), which only a
    /// password login (or a refresh token of one) is granted.
    pub fn admin_api() -> Scope {
        Scope {
            kind: ResourceKind::Registry,
            name: "admin".into(),
            actions: Actions::ALL,
        }
    }

    /// Parses `repository:NAME:ACTIONS` (also `repository(plugin):...`), `registry:catalog:*` or
    /// `registry:admin:*`.
    pub fn parse(s: &str) -> Result<Scope, AuthError> {
        let invalid = |reason: &str| AuthError::Invalid {
            what: "scope",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected type:name:actions"))?;
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        let kind = match kind.split('(').next().unwrap_or(kind) {
            "repository" => ResourceKind::Repository,
            "registry" => ResourceKind::Registry,
            _ => return Err(invalid("the type is not repository or registry")),
        };
        let actions = Actions::parse(actions).map_err(|e| invalid(&e.to_string()))?;
        if name.len() > 512 || name.chars().any(|c| c.is_whitespace() || c == '"') {
            return Err(invalid("the name has spaces, quotes or is too long"));
        }
        Ok(Scope {
            kind,
            name: name.to_owned(),
            actions,
        })
    }

    /// Parses every scope in a space-separated list (the form `scope` parameter); empty parts
    /// are skipped.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, AuthError> {
        s.split_whitespace().map(Scope::parse).collect()
    }

    /// The actions this scope grants on `repo` (its name read as a pattern).
    pub fn actions_on(&self, repo: &str) -> Actions {
        if self.kind == ResourceKind::Repository && pattern_matches(&self.name, repo) {
            self.actions
        } else {
            Actions::NONE
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ResourceKind::Repository => "repository",
            ResourceKind::Registry => "registry",
        };
        if self.kind == ResourceKind::Registry && self.actions == Actions::ALL {
            return write!(f, "{kind}:{}:*", self.name);
        }
        write!(f, "{kind}:{}:{}", self.name, self.actions)
    }
}

/// Whether repository `name` matches `pattern`, where `*` matches any run of characters
/// (slashes included): `acme/*` matches `acme/app` and `acme/team/app`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Checks a repository pattern: repository-name characters and `*`, in `/`-separated segments
/// none of which is empty, `.` or `..` (nor holds `..`). Every stored pattern (team grants,
/// token and robot scopes) passes here.
pub fn check_pattern(pattern: &str) -> Result<(), AuthError> {
    let invalid = |reason: &str| AuthError::Invalid {
        what: "pattern",
        value: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    let chars_ok = !pattern.is_empty()
        && pattern.len() <= 255
        && pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b));
    if !chars_ok {
        return Err(invalid(
            "expected lowercase repository name characters and *",
        ));
    }
    if pattern.split('/').any(str::is_empty) {
        return Err(invalid("a path segment is empty"));
    }
    if pattern.contains("..") || pattern.split('/').any(|seg| seg == ".") {
        return Err(invalid("a path segment is . or holds .."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_print() {
        assert_eq!(
            Actions::parse("pull,push").unwrap(),
            Actions::PULL.union(Actions::PUSH)
        );
        assert_eq!(Actions::parse("*").unwrap(), Actions::ALL);
        assert_eq!(Actions::parse("").unwrap(), Actions::NONE);
        assert_eq!(Actions::ALL.to_string(), "pull,push,delete,admin");
        assert!(
            Actions::parse("pull,fly")
                .unwrap_err()
                .to_string()
                .contains("fly")
        );
        assert!(Actions::ALL.contains(Actions::DELETE));
        assert!(!Actions::PULL.contains(Actions::PUSH));
        assert!(Actions::PULL.contains(Actions::NONE));
    }

    #[test]
    fn scopes_parse() {
        let s = Scope::parse("repository:acme/app:pull,push").unwrap();
        assert_eq!(
            s,
            Scope::repository("acme/app", Actions::parse("pull,push").unwrap())
        );
        assert_eq!(s.to_string(), "repository:acme/app:pull,push");
        let p = Scope::parse("repository(plugin):x:pull").unwrap();
        assert_eq!(p.kind, ResourceKind::Repository);
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap(),
            Scope::catalog()
        );
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
        assert!(Scope::parse("repository:x").is_err());
        assert!(Scope::parse("bogus:x:pull").is_err());
        assert!(Scope::parse("repository::pull").is_err());
        assert_eq!(
            Scope::parse_list(" repository:a:pull  repository:b:push ")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            Scope::parse("repository:acme/*:pull")
                .unwrap()
                .actions_on("acme/x/y"),
            Actions::PULL
        );
        assert_eq!(
            Scope::parse("repository:acme/*:pull")
                .unwrap()
                .actions_on("other/x"),
            Actions::NONE
        );
    }

    #[test]
    fn patterns() {
        for (p, n, want) in [
            ("acme/*", "acme/app", true),
            ("acme/*", "acme/team/app", true),
            ("acme/*", "acme", false),
            ("acme/*", "acmeco/app", false),
            ("acme/app", "acme/app", true),
            ("acme/app", "acme/app2", false),
            ("acme/*-dev", "acme/x-dev", true),
            ("acme/*-dev", "acme/x-prod", false),
            ("*", "anything/at/all", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(pattern_matches(p, n), want, "{p} vs {n}");
        }
        for ok in ["acme/*", "acme/app", "*", "acme/a.b/*-dev", "acme/a_b.c-d"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Acme/*",
            "",
            "acme/../x",
            "acme/..",
            "..",
            "../acme",
            "acme//x",
            "acme/",
            "/acme",
            "acme/./x",
            ".",
            "acme/.",
            "acme/x..y",
            "acme/*/",
        ] {
            let e = check_pattern(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
