//! What a login costs: argon2id hashing and verification, a cached Basic login, token signing and
//! verification. `cargo bench -p hoist-auth --bench login`.

use std::time::{Duration, Instant};

use hoist_auth::{Actions, Auth, AuthConfig, Identity, Scope, password};

fn time<T>(what: &str, n: u32, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let per = start.elapsed() / n;
    println!("{what:<40} {:>12.1} µs", per.as_secs_f64() * 1e6);
}

fn main() {
    let hash = password::hash("correct horse battery staple").unwrap();
    time("argon2id hash", 20, || {
        password::hash("correct horse battery staple").unwrap()
    });
    time("argon2id verify", 20, || {
        password::verify("correct horse battery staple", &hash)
    });

    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::open(dir.path(), AuthConfig::default()).unwrap();
    auth.ensure_admin("admin-password").unwrap();
    let cold = AuthConfig {
        credential_cache_ttl: Duration::ZERO,
        ..AuthConfig::default()
    };
    let uncached = Auth::open(dir.path(), cold).unwrap();
    time("basic login, not cached", 20, || {
        uncached.login("admin", "admin-password", "bench").unwrap()
    });
    auth.login("admin", "admin-password", "bench").unwrap();
    time("basic login, cached", 10_000, || {
        auth.login("admin", "admin-password", "bench").unwrap()
    });
    let id = Identity::user("admin", true);
    time("permission check (sqlite)", 10_000, || {
        auth.allowed(&id, "acme/app").unwrap()
    });
    let scopes = [Scope::repository(
        "acme/app",
        Actions::PULL.union(Actions::PUSH),
    )];
    time("token issue (es256 sign + audit)", 500, || {
        auth.issue(&id, &scopes, false, "bench").unwrap()
    });
    let t = auth.issue(&id, &scopes, false, "bench").unwrap().token;
    time("token verify (es256)", 5_000, || auth.verify(&t).unwrap());
}
