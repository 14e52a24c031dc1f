//! The auth service's tests. Those that are not about SQLite's files run on both backends (the
//! `sqlite` and `postgres` modules at the end).

use super::*;
use hoist_testsupport::postgres::Database;
use rusqlite::params;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// What a test's store lives in: a directory, and on PostgreSQL a fresh database.
struct Store {
    dir: tempfile::TempDir,
    db: Option<Database>,
}

impl Store {
    fn new(backend: Backend) -> Store {
        Store {
            dir: tempfile::tempdir().unwrap(),
            db: (backend == Backend::Postgres).then(hoist_testsupport::postgres::database),
        }
    }

    /// Opens the store (again: another replica, on PostgreSQL).
    fn open(&self) -> Auth {
        match &self.db {
            None => Auth::open(self.dir.path(), AuthConfig::default()).unwrap(),
            Some(db) => Auth::open_postgres(db.url(), 4, None, AuthConfig::default()).unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn open_on(backend: Backend) -> (Store, Auth) {
    let store = Store::new(backend);
    let auth = store.open();
    assert!(auth.ensure_admin("admin-password").unwrap());
    assert!(!auth.ensure_admin("other-password").unwrap());
    (store, auth)
}

fn open() -> (tempfile::TempDir, Auth) {
    let (store, auth) = open_on(Backend::Sqlite);
    (store.dir, auth)
}

fn admin() -> Identity {
    Identity::user("admin", true)
}

#[test]
fn files_are_private_and_users_persist() {
    let (dir, auth) = open();
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    drop(auth);
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{:?} is {mode:o}", entry.file_name());
    }
    assert!(Auth::exists_with_users(dir.path()));
    let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
    assert!(auth.login("alice", "alice-password", "t").is_ok());
    assert!(!Auth::exists_with_users(&dir.path().join("nothing")));
}

fn cached_credentials_are_dropped_when_anything_changes(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    let alice = auth.login("alice", "alice-password", "t").unwrap();
    assert_eq!((alice.name.as_str(), alice.admin), ("alice", false));
    assert!(alice.uid.is_some());
    // Served from the cache.
    assert!(auth.login("alice", "alice-password", "t").is_ok());
    auth.set_password(&alice, "alice", "new-password").unwrap();
    assert!(matches!(
        auth.login("alice", "alice-password", "t"),
        Err(LoginError::Refused)
    ));
    assert!(auth.login("alice", "new-password", "t").is_ok());
    auth.remove_user(&admin(), "alice").unwrap();
    assert!(matches!(
        auth.login("alice", "new-password", "t"),
        Err(LoginError::Refused)
    ));
}

fn who_may_administer_what(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    let a = admin();
    for u in ["alice", "bob"] {
        auth.add_user(&a, u, &format!("{u}-password")).unwrap();
    }
    let alice = Identity::user("alice", false);
    let bob = Identity::user("bob", false);
    assert!(matches!(
        auth.add_user(&alice, "eve", "eve-password"),
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        auth.create_org(&alice, "acme"),
        Err(AuthError::Forbidden(_))
    ));
    auth.create_org(&a, "acme").unwrap();
    assert!(matches!(
        auth.create_org(&a, "acme"),
        Err(AuthError::Conflict(_))
    ));
    assert!(matches!(
        auth.create_org(&a, "alice"),
        Err(AuthError::Conflict(_))
    ));
    assert!(matches!(
        auth.add_user(&a, "acme", "acme-password"),
        Err(AuthError::Conflict(_))
    ));
    assert!(matches!(
        auth.add_user(&a, "Eve", "eve-password"),
        Err(AuthError::Invalid { .. })
    ));
    assert!(matches!(
        auth.add_user(&a, "eve", "short"),
        Err(AuthError::Invalid { .. })
    ));
    assert!(matches!(
        auth.create_team(&alice, "acme", "owners"),
        Err(AuthError::Forbidden(_))
    ));
    auth.create_team(&a, "acme", "owners").unwrap();
    auth.add_member(&a, "acme", "owners", "alice").unwrap();
    auth.add_grant(&a, "acme", "owners", "acme/*", Actions::ALL)
        .unwrap();
    // alice now administers acme, not other organisations, and not the site.
    assert!(auth.is_org_admin(&alice, "acme").unwrap());
    auth.create_team(&alice, "acme", "devs").unwrap();
    auth.add_member(&alice, "acme", "devs", "bob").unwrap();
    auth.add_grant(&alice, "acme", "devs", "acme/app", Actions::PUSH)
        .unwrap();
    auth.add_grant(&alice, "acme", "devs", "acme/app", Actions::PULL)
        .unwrap();
    assert_eq!(
        auth.allowed(&bob, "acme/app").unwrap(),
        Actions::parse("pull,push").unwrap()
    );
    assert!(matches!(
        auth.add_grant(&alice, "acme", "devs", "other/*", Actions::PULL),
        Err(AuthError::Invalid { .. })
    ));
    assert!(matches!(
        auth.add_member(&bob, "acme", "devs", "bob"),
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        auth.add_member(&a, "acme", "nope", "bob"),
        Err(AuthError::NotFound(_))
    ));
    assert!(matches!(
        auth.add_member(&a, "acme", "devs", "nobody"),
        Err(AuthError::NotFound(_))
    ));
    assert!(matches!(
        auth.create_team(&a, "nope", "x"),
        Err(AuthError::NotFound(_))
    ));
    assert!(matches!(
        auth.list_users(&alice),
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        auth.remove_user(&a, "admin"),
        Err(AuthError::Forbidden(_))
    ));
    assert!(matches!(
        auth.set_password(&bob, "alice", "whatever-1"),
        Err(AuthError::Forbidden(_))
    ));
    // Visibility needs admin on the repository.
    assert!(matches!(
        auth.set_visibility(&bob, "acme/app", true),
        Err(AuthError::Forbidden(_))
    ));
    auth.set_visibility(&alice, "acme/app", true).unwrap();
    assert!(auth.is_public("acme/app").unwrap());
    auth.set_visibility(&bob, "bob/x", true).unwrap();
    // Leaving the team ends its grants.
    auth.remove_member(&alice, "acme", "devs", "bob").unwrap();
    assert_eq!(auth.allowed(&bob, "acme/lib").unwrap(), Actions::NONE);
    assert!(matches!(
        auth.audit_log(&alice, 10),
        Err(AuthError::Forbidden(_))
    ));
    assert!(!auth.audit_log(&a, 10).unwrap().is_empty());
}

fn tokens_are_hashed_scoped_expiring_and_revocable(backend: Backend) {
    let (dir, auth) = open_on(backend);
    let a = admin();
    auth.add_user(&a, "alice", "alice-password").unwrap();
    auth.create_org(&a, "acme").unwrap();
    let alice = Identity::user("alice", false);
    let t = auth
        .create_token(
            &alice,
            "ci",
            &["repository:alice/*:pull".into()],
            Some(3600),
        )
        .unwrap();
    assert!(t.token.starts_with("hpat."));
    // Only its hash is stored.
    let secret = t.token.rsplit('.').next().unwrap();
    for f in ["auth.db", "auth.db-wal"] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
        assert!(backend == Backend::Postgres || !bytes.is_empty() || f != "auth.db");
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{f}"
        );
    }
    for row in auth
        .db
        .query("SELECT hash, scopes, name FROM tokens", db::vals![])
        .unwrap()
    {
        assert_ne!(row.blob(0).unwrap(), secret.as_bytes());
        for i in [1, 2] {
            let text = row.opt_text(i).unwrap().unwrap_or_default();
            assert!(!text.contains(secret), "{text}");
        }
    }
    let id = auth.login("alice", &t.token, "t").unwrap();
    assert_eq!(id.cap.as_ref().unwrap().id, t.id);
    assert_eq!(auth.allowed(&id, "alice/app").unwrap(), Actions::PULL);
    assert!(matches!(
        auth.login("bob", &t.token, "t"),
        Err(LoginError::Refused)
    ));
    let mut tampered = t.token.clone();
    // Its last character changed (to one it certainly is not).
    tampered.pop();
    tampered.push(if t.token.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(
        auth.login("alice", &tampered, "t2"),
        Err(LoginError::Refused)
    ));
    // Invalid requests.
    assert!(auth.create_token(&alice, "x", &[], None).is_err());
    assert!(
        auth.create_token(&alice, "x", &["registry:catalog:*".into()], None)
            .is_err()
    );
    assert!(
        auth.create_token(&alice, "x", &["repository:a:pull".into()], Some(0))
            .is_err()
    );
    assert!(
        auth.create_token(&id, "x", &["repository:a:pull".into()], None)
            .is_err()
    );
    assert!(
        auth.create_robot(&a, "acme", "ci", &["repository:other/*:pull".into()], None)
            .is_err()
    );
    assert!(
        auth.create_robot(
            &alice,
            "acme",
            "ci",
            &["repository:acme/*:pull".into()],
            None
        )
        .is_err()
    );
    // Expiry: a token whose time has passed no longer logs in.
    let short = auth
        .create_token(
            &alice,
            "short",
            &["repository:alice/*:pull".into()],
            Some(1),
        )
        .unwrap();
    auth.db
        .execute(
            "UPDATE tokens SET expires_at = 1 WHERE id = ?",
            db::vals![&short.id],
        )
        .unwrap();
    assert!(matches!(
        auth.login("alice", &short.token, "t3"),
        Err(LoginError::Refused)
    ));
    // Revocation, and refresh tokens issued through it go with it.
    let issued = auth.issue(&id, &[], true, "t").unwrap();
    let refresh = issued.refresh_token.unwrap();
    assert!(auth.refresh_login(&refresh, "", "t").is_ok());
    auth.revoke_token(&alice, &t.id).unwrap();
    assert!(auth.login("alice", &t.token, "t4").is_err());
    assert!(auth.refresh_login(&refresh, "", "t").is_err());
    assert!(matches!(
        auth.revoke_token(&alice, &t.id),
        Err(AuthError::NotFound(_))
    ));
    let listed = auth.list_tokens(&alice).unwrap();
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["short"]
    );
    // A robot: its scopes are its rights; revoking its token removes it.
    let r = auth
        .create_robot(
            &a,
            "acme",
            "ci",
            &["repository:acme/ci-*:pull,push".into()],
            None,
        )
        .unwrap();
    assert_eq!(r.name, "acme+ci");
    let robot = auth.login("acme+ci", &r.token, "t").unwrap();
    assert_eq!(
        auth.allowed(&robot, "acme/ci-x").unwrap(),
        Actions::parse("pull,push").unwrap()
    );
    assert_eq!(auth.allowed(&robot, "acme/app").unwrap(), Actions::NONE);
    assert!(matches!(
        auth.create_robot(&a, "acme", "ci", &["repository:acme/*:pull".into()], None),
        Err(AuthError::Conflict(_))
    ));
    auth.revoke_token(&a, &r.id).unwrap();
    assert!(auth.login("acme+ci", &r.token, "t5").is_err());
}

fn a_lockout_holds_for_cached_credentials_too(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    assert!(auth.login("alice", "alice-password", "10.0.0.1").is_ok());
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(auth.login("alice", "wrong-password", "10.0.0.2"));
    }
    assert!(matches!(outcomes[0], Err(LoginError::Refused)));
    assert!(matches!(outcomes[4], Err(LoginError::Limited(_))));
    assert!(matches!(
        auth.login("alice", "alice-password", "10.0.0.1"),
        Err(LoginError::Limited(_))
    ));
    // Another user is not affected.
    assert!(auth.login("admin", "admin-password", "10.0.0.1").is_ok());
}

/// Two processes on one store (replicas on one PostgreSQL, or two on one data directory): the
/// failures one counts add up with the other's, a lockout holds on both, and a change made
/// through one drops what the other cached.
fn the_limiter_and_the_cache_hold_across_replicas(backend: Backend) {
    let (store, a) = open_on(backend);
    let b = store.open();
    a.add_user(&admin(), "alice", "alice-password").unwrap();
    // b caches alice's password; a changes it; b no longer takes the old one.
    assert!(b.login("alice", "alice-password", "10.0.0.1").is_ok());
    assert!(b.login("alice", "alice-password", "10.0.0.1").is_ok());
    let alice = a.login("alice", "alice-password", "10.0.0.1").unwrap();
    a.set_password(&alice, "alice", "new-password").unwrap();
    assert!(matches!(
        b.login("alice", "alice-password", "10.0.0.1"),
        Err(LoginError::Refused)
    ));
    assert!(b.login("alice", "new-password", "10.0.0.1").is_ok());
    // Five failures, alternating between the replicas (from different addresses, so only the
    // per-user count can lock): the fifth locks alice on both.
    let outcomes: Vec<_> = (0..5)
        .map(|i| {
            let r = if i % 2 == 0 { &a } else { &b };
            r.login("alice", "wrong-password", &format!("10.0.1.{i}"))
        })
        .collect();
    assert!(
        outcomes[..4]
            .iter()
            .all(|o| matches!(o, Err(LoginError::Refused))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[4], Err(LoginError::Limited(_))),
        "{outcomes:?}"
    );
    for r in [&a, &b] {
        assert!(matches!(
            r.login("alice", "new-password", "10.0.0.1"),
            Err(LoginError::Limited(_))
        ));
    }
    // A removed user's cached credentials stop working on the other replica at once.
    assert!(a.login("admin", "admin-password", "10.0.0.9").is_ok());
    b.add_user(&admin(), "bob", "bob-password").unwrap();
    assert!(a.login("bob", "bob-password", "10.0.0.9").is_ok());
    b.remove_user(&admin(), "bob").unwrap();
    assert!(matches!(
        a.login("bob", "bob-password", "10.0.0.9"),
        Err(LoginError::Refused)
    ));
}

fn pat_expiry(auth: &Auth, id: &str) -> i64 {
    auth.db
        .query_opt("SELECT expires_at FROM tokens WHERE id = ?", db::vals![id])
        .unwrap()
        .unwrap()
        .int(0)
        .unwrap()
}

fn expire_now(auth: &Auth, id: &str) {
    // Behind the service's back, as the clock does it: no change is announced.
    auth.db
        .execute(
            "UPDATE tokens SET expires_at = ? WHERE id = ?",
            db::vals![now() as i64 - 1, id],
        )
        .unwrap();
}

fn a_cached_token_login_is_checked_for_expiry_every_time(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    let alice = Identity::user("alice", false);
    let t = auth
        .create_token(&alice, "ci", &["repository:alice/*:pull".into()], None)
        .unwrap();
    assert!(auth.login("alice", &t.token, "t").is_ok());
    assert!(auth.login("alice", &t.token, "t").is_ok(), "cached");
    expire_now(&auth, &t.id);
    assert!(
        matches!(auth.login("alice", &t.token, "t"), Err(LoginError::Refused)),
        "an expired token is refused even while it is cached"
    );
}

fn refresh_tokens_and_registry_tokens_end_with_their_parent(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    let alice = Identity::user("alice", false);
    let scope = ["repository:alice/*:pull".to_owned()];
    // A short parent: what comes from it expires no later than it does.
    let short = auth.create_token(&alice, "short", &scope, Some(3)).unwrap();
    let id = auth.login("alice", &short.token, "t").unwrap();
    let issued = auth
        .issue(
            &id,
            &[Scope::parse("repository:alice/app:pull").unwrap()],
            true,
            "t",
        )
        .unwrap();
    let refresh = issued.refresh_token.clone().unwrap();
    let (_, rid, _) = split_token(&refresh).unwrap();
    assert!(pat_expiry(&auth, rid) <= pat_expiry(&auth, &short.id));
    let claims = auth.verify(&issued.token).unwrap();
    assert!(claims.exp as i64 <= pat_expiry(&auth, &short.id));
    assert!(issued.expires_in <= 3);
    // Valid while the parent is.
    assert!(auth.refresh_login(&refresh, "", "t").is_ok());
    assert!(auth.login("alice", &refresh, "t").is_ok());
    assert!(auth.identity_of(&claims).is_ok());
    // The parent expires: the refresh token (as a grant and as a password) and the
    // registry token issued through it end with it.
    expire_now(&auth, &short.id);
    assert!(auth.refresh_login(&refresh, "", "t").is_err());
    assert!(auth.login("alice", &refresh, "t2").is_err());
    assert!(auth.identity_of(&claims).is_err());
    // A refresh token of a refresh token (docker keeps refreshing) ends with the first
    // parent too.
    let long = auth.create_token(&alice, "long", &scope, None).unwrap();
    let id = auth.login("alice", &long.token, "t").unwrap();
    let refresh = auth
        .issue(&id, &[], true, "t")
        .unwrap()
        .refresh_token
        .unwrap();
    let via_refresh = auth.refresh_login(&refresh, "", "t").unwrap();
    let second = auth
        .issue(&via_refresh, &[], true, "t")
        .unwrap()
        .refresh_token
        .unwrap();
    let jwt = auth
        .issue(
            &via_refresh,
            &[Scope::parse("repository:alice/app:pull").unwrap()],
            false,
            "t",
        )
        .unwrap();
    let claims = auth.verify(&jwt.token).unwrap();
    assert!(auth.refresh_login(&second, "", "t").is_ok());
    assert!(auth.identity_of(&claims).is_ok());
    expire_now(&auth, &long.id);
    assert!(auth.refresh_login(&refresh, "", "t").is_err());
    assert!(auth.refresh_login(&second, "", "t").is_err());
    assert!(auth.identity_of(&claims).is_err());
}

fn a_removed_users_tokens_stay_dead_when_the_name_returns(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "bob", "bob-password").unwrap();
    let bob = auth.login("bob", "bob-password", "t").unwrap();
    let issued = auth
        .issue(
            &bob,
            &[Scope::parse("repository:bob/app:pull").unwrap()],
            true,
            "t",
        )
        .unwrap();
    let claims = auth.verify(&issued.token).unwrap();
    assert!(auth.identity_of(&claims).is_ok());
    // bob is the newest user: an id that is merely the next free row would come back.
    auth.remove_user(&admin(), "bob").unwrap();
    auth.add_user(&admin(), "bob", "bob-password").unwrap();
    assert!(
        auth.identity_of(&auth.verify(&issued.token).unwrap())
            .is_err(),
        "the old bob's token names the old bob"
    );
    let refresh = issued.refresh_token.unwrap();
    assert!(auth.refresh_login(&refresh, "", "t").is_err());
    // The new bob's tokens work.
    let bob = auth.login("bob", "bob-password", "t").unwrap();
    let fresh = auth.issue(&bob, &[], false, "t").unwrap();
    assert!(
        auth.identity_of(&auth.verify(&fresh.token).unwrap())
            .is_ok()
    );
    // Robots too: a revoked robot's token does not come back with a new robot of its name.
    auth.create_org(&admin(), "acme").unwrap();
    let scopes = ["repository:acme/*:pull".to_owned()];
    let r = auth
        .create_robot(&admin(), "acme", "ci", &scopes, None)
        .unwrap();
    let robot = auth.login("acme+ci", &r.token, "t").unwrap();
    let robot_jwt = auth.issue(&robot, &[], false, "t").unwrap();
    auth.revoke_token(&admin(), &r.id).unwrap();
    auth.create_robot(&admin(), "acme", "ci", &scopes, None)
        .unwrap();
    assert!(
        auth.identity_of(&auth.verify(&robot_jwt.token).unwrap())
            .is_err()
    );
}

fn only_a_password_login_gets_the_admin_api_scope(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    auth.add_user(&admin(), "alice", "alice-password").unwrap();
    let admin_scope = Scope::parse("registry:admin:*").unwrap();
    let has_admin = |id: &Identity| {
        auth.issue(id, std::slice::from_ref(&admin_scope), false, "t")
            .unwrap()
            .access
            .iter()
            .any(|a| a.kind == "registry" && a.name == "admin")
    };
    let by_password = auth.login("alice", "alice-password", "t").unwrap();
    assert!(has_admin(&by_password));
    assert!(has_admin(
        &auth.login("admin", "admin-password", "t").unwrap()
    ));
    let pat = auth
        .create_token(
            &by_password,
            "all",
            &["repository:alice/*:pull,push,delete,admin".into()],
            None,
        )
        .unwrap();
    let by_pat = auth.login("alice", &pat.token, "t").unwrap();
    assert!(!has_admin(&by_pat));
    assert!(!has_admin(&Identity::anonymous()));
    let refresh_of_pat = auth
        .issue(&by_pat, &[], true, "t")
        .unwrap()
        .refresh_token
        .unwrap();
    assert!(!has_admin(
        &auth.refresh_login(&refresh_of_pat, "", "t").unwrap()
    ));
    // A refresh token of a password login stands for the password (docker's identity
    // token), as `hoist admin` after `hoist login` needs.
    let refresh = auth
        .issue(&by_password, &[], true, "t")
        .unwrap()
        .refresh_token
        .unwrap();
    assert!(has_admin(&auth.refresh_login(&refresh, "", "t").unwrap()));
    auth.create_org(&admin(), "acme").unwrap();
    let r = auth
        .create_robot(
            &admin(),
            "acme",
            "ci",
            &["repository:acme/*:pull".into()],
            None,
        )
        .unwrap();
    assert!(!has_admin(&auth.login("acme+ci", &r.token, "t").unwrap()));
}

fn patterns_with_dot_or_empty_segments_are_refused_when_stored(backend: Backend) {
    let (_dir, auth) = open_on(backend);
    let a = admin();
    auth.add_user(&a, "alice", "alice-password").unwrap();
    auth.create_org(&a, "acme").unwrap();
    auth.create_team(&a, "acme", "devs").unwrap();
    let alice = Identity::user("alice", false);
    for bad in [
        "acme/../other",
        "acme/..",
        "acme/x/../../other",
        "acme//x",
        "acme/",
        "acme/./x",
        "acme/x/.",
        "acme/x//*",
    ] {
        let e = auth
            .add_grant(&a, "acme", "devs", bad, Actions::PULL)
            .unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid { value, .. } if value == bad),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains(bad), "{e}");
        let scope = format!("repository:{}:pull", bad.replacen("acme", "alice", 1));
        assert!(
            auth.create_token(&alice, "x", std::slice::from_ref(&scope), None)
                .is_err(),
            "{scope}"
        );
        assert!(
            auth.create_robot(&a, "acme", "ci", &[format!("repository:{bad}:pull")], None)
                .is_err(),
            "{bad}"
        );
    }
    for good in ["acme/*", "acme/app", "acme/team/*-dev", "acme/a.b/c"] {
        auth.add_grant(&a, "acme", "devs", good, Actions::PULL)
            .unwrap();
    }
}

#[test]
fn a_database_of_names_only_gets_ids_never_reused() {
    // The schema before users and robots had ids.
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE users(name TEXT PRIMARY KEY, hash TEXT NOT NULL,
                admin INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);
             CREATE TABLE orgs(name TEXT PRIMARY KEY, created INTEGER NOT NULL);
             CREATE TABLE teams(org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
                name TEXT NOT NULL, PRIMARY KEY(org, name));
             CREATE TABLE members(org TEXT NOT NULL, team TEXT NOT NULL,
                user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                PRIMARY KEY(org, team, user),
                FOREIGN KEY(org, team) REFERENCES teams(org, name) ON DELETE CASCADE);
             CREATE TABLE robots(name TEXT PRIMARY KEY,
                org TEXT NOT NULL REFERENCES orgs(name) ON DELETE CASCADE,
                scopes TEXT NOT NULL, created INTEGER NOT NULL);
             INSERT INTO orgs VALUES ('acme', 1);
             INSERT INTO teams VALUES ('acme', 'devs');
             INSERT INTO robots VALUES ('acme+ci', 'acme', '[\"repository:acme/*:pull\"]', 1);",
        )
        .unwrap();
        for (u, admin) in [("admin", 1), ("alice", 0), ("bob", 0)] {
            let h = password::hash(&format!("{u}-password")).unwrap();
            c.execute(
                "INSERT INTO users VALUES (?, ?, ?, 1)",
                params![u, h, admin],
            )
            .unwrap();
        }
        c.execute("INSERT INTO members VALUES ('acme', 'devs', 'bob')", [])
            .unwrap();
    }
    let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
    let a = auth.login("admin", "admin-password", "t").unwrap();
    assert!(a.is_site_admin());
    let bob = auth.login("bob", "bob-password", "t").unwrap();
    assert!(bob.uid.is_some());
    // Memberships survived and still cascade.
    auth.add_grant(&a, "acme", "devs", "acme/*", Actions::PULL)
        .unwrap();
    assert_eq!(auth.allowed(&bob, "acme/app").unwrap(), Actions::PULL);
    let jwt = auth.issue(&bob, &[], false, "t").unwrap();
    auth.remove_user(&a, "bob").unwrap();
    auth.add_user(&a, "bob", "bob-password").unwrap();
    let new_bob = auth.login("bob", "bob-password", "t").unwrap();
    assert!(
        new_bob.uid > bob.uid,
        "{:?} after {:?}",
        new_bob.uid,
        bob.uid
    );
    assert_eq!(auth.allowed(&new_bob, "acme/app").unwrap(), Actions::NONE);
    assert!(auth.identity_of(&auth.verify(&jwt.token).unwrap()).is_err());
    let robot = auth.subject("acme+ci", None).unwrap().unwrap();
    assert!(robot.uid.is_some());
    drop(auth);
    // Opening again changes nothing.
    let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
    assert_eq!(
        auth.login("bob", "bob-password", "t").unwrap().uid,
        new_bob.uid
    );
}

#[test]
fn names() {
    for ok in ["a", "alice", "a.b", "a_b-c9"] {
        assert!(check_name("n", ok).is_ok(), "{ok}");
    }
    for bad in ["", "A", "-a", "a-", "a..b", "a/b", "a+b", &"x".repeat(65)] {
        assert!(check_name("n", bad).is_err(), "{bad}");
    }
}

/// Two replicas on one PostgreSQL database: one signing key, one set of users and tokens.
#[test]
fn replicas_share_users_tokens_and_the_signing_key() {
    let store = Store::new(Backend::Postgres);
    let (a, b) = (store.open(), store.open());
    assert!(!a.has_users().unwrap());
    assert!(a.ensure_admin("admin-password").unwrap());
    assert!(!b.ensure_admin("admin-password").unwrap());
    assert!(b.has_users().unwrap());
    assert_eq!(a.keys().kid(), b.keys().kid());
    a.add_user(&admin(), "alice", "alice-password").unwrap();
    let alice = b.login("alice", "alice-password", "t").unwrap();
    let issued = b.issue(&alice, &[], true, "t").unwrap();
    let claims = a.verify(&issued.token).unwrap();
    assert_eq!(a.identity_of(&claims).unwrap().name, "alice");
    let refresh = issued.refresh_token.unwrap();
    assert!(a.refresh_login(&refresh, "", "t").is_ok());
    drop((a, b));
    // Opening again changes nothing.
    let c = store.open();
    assert!(c.login("alice", "alice-password", "t").is_ok());
    assert!(c.verify(&issued.token).is_ok());
}

/// On PostgreSQL every call hands its query to the store's own runtime: it works from a plain
/// thread, a current-thread runtime, a worker of a multi-threaded one and its blocking pool.
#[test]
fn calls_work_from_any_context() {
    let (store, auth) = open_on(Backend::Postgres);
    let url = store.db.as_ref().unwrap().url().to_owned();
    let auth = std::sync::Arc::new(auth);
    assert!(auth.is_org_admin(&admin(), "x").unwrap());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { auth.note_repo("a/b").unwrap() });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = auth.clone();
        tokio::spawn(async move { a.note_repo("c/d").unwrap() })
            .await
            .unwrap();
        let a = auth.clone();
        tokio::task::spawn_blocking(move || a.list_users(&admin()).unwrap())
            .await
            .unwrap();
        // Opening and dropping a store on a worker is fine too.
        tokio::spawn(async move {
            let other = Auth::open_postgres(&url, 1, None, AuthConfig::default()).unwrap();
            assert!(other.has_users().unwrap());
            drop(other);
        })
        .await
        .unwrap();
    });
    drop(rt);
    assert!(!auth.is_public("a/b").unwrap());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Sqlite);
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Postgres);
            })*
        }
    };
}

on_both_backends!(
    cached_credentials_are_dropped_when_anything_changes,
    who_may_administer_what,
    tokens_are_hashed_scoped_expiring_and_revocable,
    a_lockout_holds_for_cached_credentials_too,
    the_limiter_and_the_cache_hold_across_replicas,
    a_cached_token_login_is_checked_for_expiry_every_time,
    refresh_tokens_and_registry_tokens_end_with_their_parent,
    a_removed_users_tokens_stay_dead_when_the_name_returns,
    only_a_password_login_gets_the_admin_api_scope,
    patterns_with_dot_or_empty_segments_are_refused_when_stored,
);
