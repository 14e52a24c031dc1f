//! hoist-registry: `hoist serve`, an OCI distribution-spec v1.1 registry.
//!
//! - [`route`]: `parse_v2(method, path) -> Route`, a pure, table-tested parser.
//! - [`api`]: one dispatcher and a handler per endpoint; handlers go through the content layer.
//! - [`error`]: the one table of error codes and statuses.
//! - [`auth`]: the [`auth::Grant`] extractor every request passes, the token endpoint, the JWKS.
//! - [`admin`]: the administration API under `/admin/v1` (closed mode).
//! - [`config`]: TOML + `HOIST_*` environment, defaults that need neither.
//! - [`forwarded`]: the client's address behind trusted load balancers (`X-Forwarded-For`).
//! - [`listener`]: the connection limit and the header, idle and body timeouts.
//! - `/metrics`: Prometheus text: requests by method, route kind and status, and latency.
//! - `/healthz` (the process answers) and `/readyz` (its metadata store answers): public, for
//!   load balancers and orchestrators.
//!
//! **Architecture Invariant:** this is the only crate that depends on axum, and no handler
//! touches a storage driver: everything goes through `hoist_storage::Store`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod forwarded;
pub mod listener;
pub mod route;
pub mod tls;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use hoist_auth::{Auth, AuthConfig, Limits};
use hoist_storage::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use config::{Config, ConfigError, LogFormat};

/// Shared state of a running registry.
pub struct App {
    pub store: Store,
    /// Closed mode: users, tokens and permissions. `None` runs open (no auth).
    pub auth: Option<Arc<Auth>>,
    /// The public base URL for the token realm (else built from `Host`).
    pub realm: Option<String>,
    /// Proxies whose `X-Forwarded-For` names the client ([`forwarded::client`]).
    pub trusted_proxies: Vec<forwarded::Cidr>,
}

impl App {
    /// An open registry (no auth).
    pub fn new(store: Store) -> App {
        App {
            store,
            auth: None,
            realm: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// A closed registry: every route checks `auth`.
    pub fn closed(store: Store, auth: Arc<Auth>, realm: Option<String>) -> App {
        App {
            store,
            auth: Some(auth),
            realm,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The auth settings a configuration names.
pub fn auth_config(config: &Config) -> AuthConfig {
    let lockout = Duration::from_secs(config.login_lockout_secs);
    AuthConfig {
        service: config.auth_service.clone(),
        issuer: config.auth_service.clone(),
        token_ttl: Duration::from_secs(config.token_ttl_secs),
        user_limits: Limits {
            max_failures: config.login_max_failures,
            window: Duration::from_secs(60),
            lockout,
        },
        addr_limits: Limits {
            max_failures: if config.login_max_failures_per_addr == 0 {
                config.login_max_failures.saturating_mul(6)
            } else {
                config.login_max_failures_per_addr
            },
            window: Duration::from_secs(60),
            lockout,
        },
        ..AuthConfig::default()
    }
}

/// The connection limits a configuration names.
pub fn conn_limits(config: &Config) -> listener::ConnLimits {
    listener::ConnLimits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_secs(config.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        body_timeout: Duration::from_secs(config.body_timeout_secs),
    }
}

/// Why the registry could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening storage at {path}: {source}")]
    Storage {
        path: std::path::PathBuf,
        #[source]
        source: hoist_storage::ContentError,
    },
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("auth: {0}")]
    Auth(#[from] hoist_auth::AuthError),
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("reading the admin password file {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {0} without authentication: configure an admin password \
         (--admin-password-file or HOIST_ADMIN_PASSWORD), or pass --insecure-no-auth"
    )]
    OpenNonLoopback(std::net::SocketAddr),
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's); then hoist's
        // metrics go there and /metrics shows what this handle saw.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn render_metrics(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: Request,
) -> Response {
    use axum::response::IntoResponse;
    let (parts, _) = req.into_parts();
    match auth::require_admin(&app, &parts).await {
        Ok(()) => metrics_handle().render().into_response(),
        Err(e) => e.into_response(),
    }
}

/// Liveness, for load balancers and orchestrators: the process answers. Public, and tells
/// nothing but `ok`.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the metadata store answers a query (an unreachable database makes the replica
/// unready, so a balancer stops sending it requests). Public; the error names only the part
/// that failed, and is logged in full.
async fn readyz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    use axum::response::IntoResponse;
    match app.store.catalog(Some(1), None).await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "metadata store unavailable\n",
            )
                .into_response()
        }
    }
}

async fn common_headers(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let kind = path
        .strip_prefix("/v2")
        .and_then(|rest| route::parse_v2(&method, rest).ok())
        .map(|r| r.kind())
        .unwrap_or(match path.as_str() {
            "/token" => "token",
            "/healthz" | "/readyz" => "health",
            _ => "other",
        });
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("hoist_http_requests_total", "method" => method.to_string(), "route" => kind, "status" => status)
        .increment(1);
    metrics::histogram!("hoist_http_request_duration_seconds", "method" => method.to_string(), "route" => kind)
        .record(elapsed.as_secs_f64());
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::info!(
        target: "hoist::request",
        %method,
        path,
        status = resp.status().as_u16(),
        micros = elapsed.as_micros() as u64,
    );
    resp
}

/// The registry's HTTP application.
pub fn router(app: Arc<App>) -> Router {
    metrics_handle();
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/token",
            get(auth::token_endpoint).post(auth::token_endpoint),
        )
        .route("/token/jwks", get(auth::jwks))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .merge(admin::routes())
        .route("/v2", any(api::dispatch))
        .route("/v2/", any(api::dispatch))
        .route("/v2/{*rest}", any(api::dispatch))
        .fallback(|| async { error::ApiError::new(error::Code::NotFound, "no such route") })
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(common_headers))
        .layer(middleware::from_fn(listener::track))
        .with_state(app)
}

/// TLS to the database when its configuration asks for it.
fn database_tls(
    db: &config::DatabaseConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, ServeError> {
    if !db.wants_tls() {
        return Ok(None);
    }
    Ok(Some(tls::database_client_config(db.ca_file.as_deref())?))
}

/// Opens the store named by `config`.
pub async fn open_store(config: &Config) -> Result<Store, ServeError> {
    let blobs = match config.storage.driver {
        config::StorageKind::Fs => hoist_storage::Blobs::Fs,
        config::StorageKind::S3 => hoist_storage::Blobs::S3(s3_config(config)),
    };
    let postgres = match &config.database {
        Some(db) => Some((db.url.0.as_str(), db.pool_size, database_tls(db)?)),
        None => None,
    };
    Store::open_backends(&config.data, blobs, postgres)
        .await
        .map_err(|source| ServeError::Storage {
            path: config.data.clone(),
            source,
        })
}

/// The object driver's settings from `[storage.s3]`: a plain-`http` endpoint is allowed when
/// the configuration names one.
fn s3_config(config: &Config) -> hoist_storage::S3Config {
    let s3 = &config.storage.s3;
    hoist_storage::S3Config {
        bucket: s3.bucket.clone(),
        endpoint: (!s3.endpoint.is_empty()).then(|| s3.endpoint.clone()),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.0.clone(),
        prefix: s3.prefix.clone(),
        allow_http: s3.endpoint.starts_with("http://"),
        redirect: s3.redirect,
    }
}

/// The admin password the configuration names: `HOIST_ADMIN_PASSWORD`, else the first line
/// of `admin_password_file`.
fn admin_password(config: &Config) -> Result<Option<String>, ServeError> {
    if let Some(p) = &config.admin_password {
        return Ok(Some(p.0.clone()));
    }
    let Some(path) = &config.admin_password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::PasswordFile {
        path: path.clone(),
        source,
    })?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        return Err(ServeError::PasswordFile {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(Some(line))
}

/// Decides the mode: closed when an admin password is configured or users exist already
/// (creating `admin` on first start); open otherwise, and only on loopback unless
/// `insecure_no_auth`.
pub fn open_auth(config: &Config) -> Result<Option<Arc<Auth>>, ServeError> {
    let password = admin_password(config)?;
    let open = || {
        if !config.listen.ip().is_loopback() && !config.insecure_no_auth {
            return Err(ServeError::OpenNonLoopback(config.listen));
        }
        tracing::warn!(
            "authentication is off: anyone who can reach {} may pull, push and delete \
             (configure an admin password to turn it on)",
            config.listen
        );
        Ok(None)
    };
    let auth = match &config.database {
        Some(db) => {
            let auth = Auth::open_postgres(
                &db.url.0,
                db.pool_size,
                database_tls(db)?,
                auth_config(config),
            )?;
            if password.is_none() && !auth.has_users()? {
                return open();
            }
            auth
        }
        None => {
            if password.is_none() && !Auth::exists_with_users(&config.data) {
                return open();
            }
            Auth::open(&config.data, auth_config(config))?
        }
    };
    if let Some(p) = password {
        if auth.ensure_admin(&p)? {
            tracing::info!("created the admin user");
        } else {
            tracing::info!("the admin user exists; the configured admin password is not applied");
        }
    }
    tracing::info!(service = %config.auth_service, "authentication is on");
    Ok(Some(Arc::new(auth)))
}

/// Uploads untouched this long are cancelled (the CNCF registry's default).
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Housekeeping: purges stale uploads hourly and collects garbage every `gc_interval`. Each
/// run is claimed in the metadata store first ([`Store::claim_task`]), so replicas sharing one
/// database (or processes sharing a data directory) run each once per period between them; each
/// run counts in `hoist_maintenance_runs_total{task}`.
async fn housekeeping(app: Arc<App>, gc_interval: Duration, gc_grace: Duration) {
    let hour = Duration::from_secs(3600);
    let tick = if gc_interval.is_zero() {
        hour
    } else {
        gc_interval.min(hour)
    };
    let mut every = tokio::time::interval(tick);
    let claim =
        async |task: &'static str, period: Duration| match app.store.claim_task(task, period).await
        {
            Ok(true) => {
                metrics::counter!("hoist_maintenance_runs_total", "task" => task).increment(1);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, task, "claiming a maintenance run");
                false
            }
        };
    loop {
        every.tick().await;
        if claim("purge-uploads", hour).await
            && let Err(e) = app.store.purge_stale_uploads(UPLOAD_MAX_AGE).await
        {
            tracing::warn!(error = %e, "purging stale uploads");
        }
        if !gc_interval.is_zero()
            && claim("gc", gc_interval).await
            && let Err(e) = app.store.gc(gc_grace).await
        {
            tracing::warn!(error = %e, "garbage collection");
        }
    }
}

/// Binds, prints `listening on ADDR`, and serves until `shutdown` resolves; in-flight requests
/// are allowed to finish.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = open_store(&config).await?;
    let auth = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_auth(&config))
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))??
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    listener::return_large_blocks_to_the_system();
    match listener::raise_nofile_limit() {
        Ok(Some(n)) if (n as usize) < config.max_connections + 64 => tracing::warn!(
            open_files = n,
            max_connections = config.max_connections,
            "the open-file limit is below max_connections: connections beyond it are refused"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "raising the open-file limit"),
    }
    let mut listener = listener::BoundedListener::new(listener, conn_limits(&config));
    let tls = match config.tls_files()? {
        Some(files) => {
            let acceptor = tls::TlsAcceptor::load(files)?;
            listener = listener.with_tls(acceptor.clone());
            Some(tokio::spawn(acceptor.watch()))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(data = %config.data.display(), scheme, "hoist registry listening on {addr}");
    // A plain line as well, for scripts and tests whatever the log format.
    eprintln!("hoist serve: listening on {addr} ({scheme})");
    let app = Arc::new(App {
        store,
        auth,
        realm: config.auth_realm.clone(),
        trusted_proxies: config.trusted_proxies()?,
    });
    let purger = tokio::spawn(housekeeping(
        app.clone(),
        Duration::from_secs(config.gc_interval_secs),
        Duration::from_secs(config.gc_grace_secs),
    ));
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<listener::Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    purger.abort();
    if let Some(watch) = tls {
        watch.abort();
    }
    tracing::info!("hoist registry stopped");
    Ok(())
}
