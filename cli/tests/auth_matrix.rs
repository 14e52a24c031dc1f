//! The access matrix of a closed `hoist serve`: identities × repositories × endpoints, each cell
//! asserted (status, and for the token endpoint exactly which actions were granted), over Basic
//! credentials on every request and over Bearer tokens from the token endpoint.
//!
//! The expectations come from two literal tables: what each identity may do on each repository
//! ([`PERMS`], from the grants the setup makes), and what each endpoint needs and answers on
//! success ([`Ep::needs`], [`Ep::success`]). A failure names its cell:
//! `identity/mode/endpoint/repository`.

mod auth_support;

use std::net::IpAddr;

use auth_support::*;
use hoist_client::admin::{Action, Visibility};
use hoist_conformance::harness::Server;
use hoist_oci::Digest;
use reqwest::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Admin,
    /// Member of team acme/readers (`acme/*` pull).
    Puller,
    /// Member of team acme/writers (`acme/*` pull,push).
    Pusher,
    /// Member of team acme/cleaners (`acme/*` pull,delete).
    Deleter,
    /// A user in no team.
    Outsider,
    /// alice: owner of namespace `alice`, in no team.
    Owner,
    /// Robot acme+ci with scope `repository:acme/*:pull`.
    Robot,
    /// A writers member's personal access token, expired.
    ExpiredPat,
    /// A writers member's personal access token, revoked.
    RevokedPat,
}

const EVERYONE: [Who; 10] = [
    Who::Anonymous,
    Who::Admin,
    Who::Puller,
    Who::Pusher,
    Who::Deleter,
    Who::Outsider,
    Who::Owner,
    Who::Robot,
    Who::ExpiredPat,
    Who::RevokedPat,
];

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Anonymous => "anonymous",
            Who::Admin => "admin",
            Who::Puller => "team-pull",
            Who::Pusher => "team-push",
            Who::Deleter => "team-delete",
            Who::Outsider => "non-member",
            Who::Owner => "namespace-owner",
            Who::Robot => "robot-pull-scope",
            Who::ExpiredPat => "expired-pat",
            Who::RevokedPat => "revoked-pat",
        }
    }

    /// Credentials the registry must refuse.
    fn invalid(self) -> bool {
        matches!(self, Who::ExpiredPat | Who::RevokedPat)
    }

    /// Each identity's requests leave from addresses of its own, ten cells an address, so
    /// refused logins never reach the per-address limit (30 a minute) nor count against
    /// another identity.
    fn source(self, cell: usize) -> IpAddr {
        let i = EVERYONE.iter().position(|w| *w == self).unwrap() as u8;
        IpAddr::from([127, 0, 10 + i, 1 + (cell / 10) as u8])
    }
}

const APP: &str = "acme/app";
const OWN: &str = "alice/own";
/// Where mounts come from.
const BASE: &str = "acme/base";

/// What each identity may do, literally, from the grants `setup` makes. Absent = nothing.
const PERMS: &[(Who, &str, &[&str])] = &[
    (Who::Admin, APP, &["delete", "pull", "push"]),
    (Who::Admin, OWN, &["delete", "pull", "push"]),
    (Who::Admin, BASE, &["delete", "pull", "push"]),
    (Who::Puller, APP, &["pull"]),
    (Who::Puller, BASE, &["pull"]),
    (Who::Pusher, APP, &["pull", "push"]),
    (Who::Pusher, BASE, &["pull", "push"]),
    (Who::Deleter, APP, &["delete", "pull"]),
    (Who::Deleter, BASE, &["delete", "pull"]),
    (Who::Owner, OWN, &["delete", "pull", "push"]),
    (Who::Robot, APP, &["pull"]),
    (Who::Robot, BASE, &["pull"]),
];

fn perms(who: Who, repo: &str) -> Vec<&'static str> {
    PERMS
        .iter()
        .find(|(w, r, _)| *w == who && *r == repo)
        .map(|(_, _, a)| a.to_vec())
        .unwrap_or_default()
}

fn may(who: Who, repo: &str, action: &str) -> bool {
    perms(who, repo).contains(&action)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Basic credentials on every request.
    Basic,
    /// A token from the token endpoint for the scopes the request needs.
    Bearer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ep {
    Base,
    Catalog,
    TagsList,
    ManifestGet,
    ManifestHead,
    ManifestPut,
    ManifestDelete,
    BlobGet,
    BlobHead,
    BlobDelete,
    UploadPost,
    UploadPatch,
    UploadPut,
    Mount,
    Referrers,
    TokenScopes,
    /// The token endpoint asked `pull,push` (what docker asks to push).
    TokenPullPush,
}

const ENDPOINTS: [Ep; 17] = [
    Ep::Base,
    Ep::Catalog,
    Ep::TagsList,
    Ep::ManifestGet,
    Ep::ManifestHead,
    Ep::ManifestPut,
    Ep::ManifestDelete,
    Ep::BlobGet,
    Ep::BlobHead,
    Ep::BlobDelete,
    Ep::UploadPost,
    Ep::UploadPatch,
    Ep::UploadPut,
    Ep::Mount,
    Ep::Referrers,
    Ep::TokenScopes,
    Ep::TokenPullPush,
];

impl Ep {
    /// For the token-endpoint columns, the actions asked for.
    fn asks(self) -> Option<&'static [&'static str]> {
        match self {
            Ep::TokenScopes => Some(&["delete", "pull", "push"]),
            Ep::TokenPullPush => Some(&["pull", "push"]),
            _ => None,
        }
    }

    /// Whether the endpoint names a repository (the others run once per identity).
    fn per_repo(self) -> bool {
        !matches!(self, Ep::Base | Ep::Catalog)
    }

    /// The action it needs on the repository.
    fn needs(self) -> Option<&'static str> {
        match self {
            Ep::Base | Ep::Catalog | Ep::TokenScopes | Ep::TokenPullPush => None,
            Ep::TagsList
            | Ep::ManifestGet
            | Ep::ManifestHead
            | Ep::BlobGet
            | Ep::BlobHead
            | Ep::Referrers => Some("pull"),
            Ep::ManifestPut | Ep::UploadPost | Ep::UploadPatch | Ep::UploadPut | Ep::Mount => {
                Some("push")
            }
            Ep::ManifestDelete | Ep::BlobDelete => Some("delete"),
        }
    }

    fn success(self) -> u16 {
        match self {
            Ep::ManifestPut | Ep::UploadPut | Ep::Mount => 201,
            Ep::ManifestDelete | Ep::BlobDelete | Ep::UploadPost | Ep::UploadPatch => 202,
            _ => 200,
        }
    }
}

/// A mount the caller may push to but whose source they may not pull: the registry does not
/// mount, and opens an upload session instead, as the distribution spec says of a mount it
/// cannot do.
const MOUNT_WITHOUT_SOURCE_PULL: u16 = 202;

/// The status a cell must answer.
fn expected(who: Who, mode: Mode, ep: Ep, repo: &str) -> u16 {
    if who.invalid() {
        return 401;
    }
    if who == Who::Anonymous {
        // Nothing in this matrix is public: every route needs credentials, and the token
        // endpoint gives an anonymous caller a token granting nothing.
        return if ep.asks().is_some() { 200 } else { 401 };
    }
    // Bearer tokens were asked for every action: the token endpoint granted all the caller may
    // do, so a missing action is one the caller may not do: 403 as with Basic.
    let refused = 403;
    let _ = mode;
    match ep {
        Ep::Base | Ep::Catalog | Ep::TokenScopes | Ep::TokenPullPush => 200,
        Ep::Mount => {
            if !may(who, repo, "push") {
                refused
            } else if may(who, BASE, "pull") {
                201
            } else {
                MOUNT_WITHOUT_SOURCE_PULL
            }
        }
        ep => {
            if may(who, repo, ep.needs().unwrap()) {
                ep.success()
            } else {
                refused
            }
        }
    }
}

/// Per-cell things made beforehand by the admin, so no cell depends on another.
struct CellFixture {
    /// An untagged manifest to delete.
    manifest_to_delete: Digest,
    /// A blob to delete.
    blob_to_delete: Digest,
    /// Upload sessions to PATCH and to PUT.
    patch_session: String,
    put_session: String,
    /// A blob in BASE only, to mount.
    mountable: Digest,
}

/// Cells per identity over Basic: 15 endpoints on 2 repositories, plus base and catalog.
const BASIC_CELLS: usize = 15 * 2 + 2;

struct World {
    server: Server,
    service: String,
    /// Credentials of each identity. The refused identities have one per cell (users each with
    /// an expired or a revoked token), since five refused logins of one user lock that user.
    creds: Vec<(Who, Vec<Auth>)>,
    /// The tagged image of each matrix repository.
    images: Vec<(&'static str, Pushed)>,
}

impl World {
    fn auth(&self, who: Who, cell: usize) -> Auth {
        let pool = &self.creds.iter().find(|(w, _)| *w == who).unwrap().1;
        pool[cell % pool.len()].clone()
    }

    fn image(&self, repo: &str) -> &Pushed {
        &self.images.iter().find(|(r, _)| *r == repo).unwrap().1
    }
}

async fn setup() -> World {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    let pw = |u: &str| format!("{u}-Pw-31415");
    let exp_users: Vec<String> = (0..BASIC_CELLS).map(|i| format!("exp{i}")).collect();
    let rev_users: Vec<String> = (0..BASIC_CELLS).map(|i| format!("rev{i}")).collect();
    let mut users: Vec<&str> = vec!["puller", "pusher", "deleter", "outsider", "alice"];
    users.extend(exp_users.iter().map(String::as_str));
    users.extend(rev_users.iter().map(String::as_str));
    for u in &users {
        admin.add_user(u, &pw(u)).await.expect("adding a user");
    }
    let mut writers: Vec<&str> = vec!["pusher"];
    writers.extend(exp_users.iter().map(String::as_str));
    writers.extend(rev_users.iter().map(String::as_str));
    admin.create_org("acme").await.expect("org");
    for (team, actions, members) in [
        ("readers", vec![Action::Pull], vec!["puller"]),
        ("writers", vec![Action::Pull, Action::Push], writers.clone()),
        (
            "cleaners",
            vec![Action::Pull, Action::Delete],
            vec!["deleter"],
        ),
    ] {
        admin.create_team("acme", team).await.expect("team");
        admin
            .grant("acme", team, "acme/*", &actions)
            .await
            .expect("grant");
        for m in members {
            admin.add_member("acme", team, m).await.expect("member");
        }
    }
    let robot = admin
        .create_robot("acme", "ci", &["repository:acme/*:pull".to_owned()], None)
        .await
        .expect("robot");
    let scopes = ["repository:acme/*:pull,push".to_owned()];
    let mut expired = Vec::new();
    for u in &exp_users {
        let t = admin_api(&server, u, &pw(u))
            .create_token("short", &scopes, Some(std::time::Duration::from_secs(1)))
            .await
            .expect("expiring token");
        expired.push(Auth::basic(u, &t.token));
    }
    let mut revoked = Vec::new();
    for u in &rev_users {
        let api = admin_api(&server, u, &pw(u));
        let t = api
            .create_token("gone", &scopes, None)
            .await
            .expect("token to revoke");
        // Valid before it is revoked.
        let r = send(
            &client(),
            &server.url,
            Method::GET,
            "/v2/acme/app/tags/list",
            &Auth::basic(u, &t.token),
            &[],
            None,
        )
        .await;
        assert!(
            r.status == 200 || r.status == 404,
            "{u}'s token before revocation: {}",
            r.status
        );
        api.revoke_token(&t.id).await.expect("revoke");
        revoked.push(Auth::basic(u, &t.token));
    }

    let images = vec![
        (APP, push_image(&server, APP, "v1", &Auth::admin()).await),
        (
            OWN,
            push_image(&server, OWN, "v1", &Auth::basic("alice", &pw("alice"))).await,
        ),
        (BASE, push_image(&server, BASE, "v1", &Auth::admin()).await),
    ];
    // Let the expiring token expire (its lifetime was one second).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let creds = vec![
        (Who::Anonymous, vec![Auth::None]),
        (Who::Admin, vec![Auth::admin()]),
        (Who::Puller, vec![Auth::basic("puller", &pw("puller"))]),
        (Who::Pusher, vec![Auth::basic("pusher", &pw("pusher"))]),
        (Who::Deleter, vec![Auth::basic("deleter", &pw("deleter"))]),
        (
            Who::Outsider,
            vec![Auth::basic("outsider", &pw("outsider"))],
        ),
        (Who::Owner, vec![Auth::basic("alice", &pw("alice"))]),
        (Who::Robot, vec![Auth::basic(&robot.name, &robot.token)]),
        (Who::ExpiredPat, expired),
        (Who::RevokedPat, revoked),
    ];
    World {
        server,
        service,
        creds,
        images,
    }
}

async fn fixture(world: &World, repo: &str, cell: &str) -> CellFixture {
    let server = &world.server;
    let admin = Auth::admin();
    let http = client();
    let img = world.image(repo);
    // An untagged manifest of its own (the same blobs, another annotation).
    let bytes = {
        let mut v: serde_json::Value = serde_json::from_slice(&img.manifest_bytes).unwrap();
        v["annotations"]["salt"] = serde_json::Value::String(format!("delete {cell}"));
        serde_json::to_vec(&v).unwrap()
    };
    let digest = Digest::sha256_of(&bytes);
    let r = put_manifest(server, repo, digest.as_str(), &admin, &bytes).await;
    assert_eq!(r.status, 201, "{cell}: fixture manifest: {}", r.text());
    let blob_to_delete =
        put_blob(server, repo, &admin, format!("delete me {cell}").as_bytes()).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let r = send(
            &http,
            &server.url,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &admin,
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 202, "{cell}: fixture session");
        let loc = r.header("location").unwrap().to_owned();
        sessions.push(loc);
    }
    let mountable = put_blob(server, BASE, &admin, format!("mount me {cell}").as_bytes()).await;
    CellFixture {
        manifest_to_delete: digest,
        blob_to_delete,
        put_session: sessions.pop().unwrap(),
        patch_session: sessions.pop().unwrap(),
        mountable,
    }
}

fn with_query(loc: &str, kv: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}{kv}")
}

/// Runs one cell; returns the response.
async fn run_cell(
    world: &World,
    who: Who,
    mode: Mode,
    ep: Ep,
    repo: &str,
    fx: Option<&CellFixture>,
    n: usize,
) -> Resp {
    let server = &world.server;
    let http = client_from(who.source(n));
    let basic = world.auth(who, n);
    let auth = match mode {
        Mode::Basic => basic.clone(),
        Mode::Bearer => {
            let mut scopes = Vec::new();
            match ep {
                Ep::Base => {}
                Ep::Catalog => scopes.push("registry:catalog:*".to_owned()),
                Ep::Mount => {
                    scopes.push(format!("repository:{repo}:pull,push"));
                    scopes.push(format!("repository:{BASE}:pull"));
                }
                _ => scopes.push(format!("repository:{repo}:pull,push,delete")),
            }
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let r = token_request(&http, server, &world.service, &scopes, &basic).await;
            assert_eq!(
                r.status,
                200,
                "{}/bearer: token for {scopes:?}: {}",
                who.name(),
                r.text()
            );
            let v = r.json();
            Auth::Bearer(v["token"].as_str().expect("token").to_owned())
        }
    };
    let img = world.image(repo);
    let url = |tail: &str| format!("/v2/{repo}/{tail}");
    let get = |u: String| {
        let (http, base, auth) = (&http, &server.url, &auth);
        async move { send(http, base, Method::GET, &u, auth, &[], None).await }
    };
    match ep {
        Ep::Base => get("/v2/".into()).await,
        Ep::Catalog => get("/v2/_catalog".into()).await,
        Ep::TagsList => get(url("tags/list")).await,
        Ep::ManifestGet | Ep::ManifestHead => {
            let m = if ep == Ep::ManifestGet {
                Method::GET
            } else {
                Method::HEAD
            };
            send(
                &http,
                &server.url,
                m,
                &url("manifests/v1"),
                &auth,
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await
        }
        Ep::ManifestPut => {
            let tag = format!("{}-{:?}", who.name(), mode).to_lowercase();
            send(
                &http,
                &server.url,
                Method::PUT,
                &url(&format!("manifests/{tag}")),
                &auth,
                &[("content-type", OCI_MANIFEST)],
                Some(img.manifest_bytes.clone()),
            )
            .await
        }
        Ep::ManifestDelete => {
            let d = &fx.unwrap().manifest_to_delete;
            send(
                &http,
                &server.url,
                Method::DELETE,
                &url(&format!("manifests/{d}")),
                &auth,
                &[],
                None,
            )
            .await
        }
        Ep::BlobGet => get(url(&format!("blobs/{}", img.layer))).await,
        Ep::BlobHead => {
            send(
                &http,
                &server.url,
                Method::HEAD,
                &url(&format!("blobs/{}", img.layer)),
                &auth,
                &[],
                None,
            )
            .await
        }
        Ep::BlobDelete => {
            let d = &fx.unwrap().blob_to_delete;
            send(
                &http,
                &server.url,
                Method::DELETE,
                &url(&format!("blobs/{d}")),
                &auth,
                &[],
                None,
            )
            .await
        }
        Ep::UploadPost => {
            send(
                &http,
                &server.url,
                Method::POST,
                &url("blobs/uploads/"),
                &auth,
                &[],
                None,
            )
            .await
        }
        Ep::UploadPatch => {
            let data = b"some bytes".to_vec();
            send(
                &http,
                &server.url,
                Method::PATCH,
                &fx.unwrap().patch_session,
                &auth,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", "0-9"),
                ],
                Some(data),
            )
            .await
        }
        Ep::UploadPut => {
            let data = format!("put by {} {mode:?} into {repo}", who.name()).into_bytes();
            let d = Digest::sha256_of(&data);
            send(
                &http,
                &server.url,
                Method::PUT,
                &with_query(&fx.unwrap().put_session, &format!("digest={d}")),
                &auth,
                &[("content-type", "application/octet-stream")],
                Some(data),
            )
            .await
        }
        Ep::Mount => {
            let d = &fx.unwrap().mountable;
            send(
                &http,
                &server.url,
                Method::POST,
                &url(&format!("blobs/uploads/?mount={d}&from={BASE}")),
                &auth,
                &[],
                None,
            )
            .await
        }
        Ep::Referrers => get(url(&format!("referrers/{}", img.manifest))).await,
        Ep::TokenScopes | Ep::TokenPullPush => {
            let scope = format!("repository:{repo}:{}", ep.asks().unwrap().join(","));
            token_request(&http, server, &world.service, &[&scope], &basic).await
        }
    }
}

/// Checks one cell's answer beyond its status.
fn check_cell(world: &World, who: Who, mode: Mode, ep: Ep, repo: &str, r: &Resp, cell: &str) {
    let want = expected(who, mode, ep, repo);
    assert_eq!(r.status, want, "{cell}: status (body: {})", r.text());
    match r.status {
        401 if ep.asks().is_some() => {
            let c = r
                .header("www-authenticate")
                .unwrap_or_else(|| panic!("{cell}: 401 without a challenge"));
            assert!(
                c.starts_with("Basic "),
                "{cell}: the token endpoint asks for Basic: {c}"
            );
        }
        401 => {
            let c = r
                .header("www-authenticate")
                .unwrap_or_else(|| panic!("{cell}: 401 without a challenge"));
            assert!(c.starts_with("Bearer "), "{cell}: challenge {c}");
            let realm = param(c, "realm").unwrap_or_default();
            assert_eq!(
                realm,
                format!("{}/token", world.server.url),
                "{cell}: realm in {c}"
            );
            assert_eq!(
                param(c, "service").as_deref(),
                Some(world.service.as_str()),
                "{cell}: service in {c}"
            );
        }
        // HEAD answers carry no body.
        403 if !matches!(ep, Ep::ManifestHead | Ep::BlobHead) => {
            assert_eq!(
                r.error_code().as_deref(),
                Some("DENIED"),
                "{cell}: error code"
            );
        }
        _ => {}
    }
    if ep == Ep::Catalog && r.status == 200 {
        let mut want: Vec<&str> = [APP, BASE, OWN]
            .into_iter()
            .filter(|x| may(who, x, "pull"))
            .collect();
        want.sort_unstable();
        let got: Vec<String> = r.json()["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("{cell}: no repositories: {}", r.text()))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            got, want,
            "{cell}: the catalog lists exactly what the caller may pull"
        );
    }
    if let Some(asked) = ep.asks()
        && r.status == 200
    {
        let v = r.json();
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .expect("token");
        let g = granted(token);
        let got = g
            .get(&format!("repository:{repo}"))
            .cloned()
            .unwrap_or_default();
        let want: Vec<String> = perms(who, repo)
            .into_iter()
            .filter(|a| asked.contains(a))
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want, "{cell}: granted = asked {asked:?} ∩ allowed");
        assert!(
            g.keys().all(|k| k == &format!("repository:{repo}")),
            "{cell}: nothing else granted: {g:?}"
        );
    }
    if ep == Ep::ManifestGet && r.status == 200 {
        assert_eq!(
            r.body.as_ref(),
            world.image(repo).manifest_bytes.as_slice(),
            "{cell}: manifest bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_identity_on_every_endpoint() {
    let world = setup().await;
    let mut cells = 0;
    for who in EVERYONE {
        let modes: &[Mode] = if who == Who::Anonymous || who.invalid() {
            &[Mode::Basic]
        } else {
            &[Mode::Basic, Mode::Bearer]
        };
        for &mode in modes {
            let mut n = 0;
            for ep in ENDPOINTS {
                let repos: &[&str] = if ep.per_repo() { &[APP, OWN] } else { &[APP] };
                if mode == Mode::Bearer && ep.asks().is_some() {
                    continue; // the token endpoint is asked with Basic credentials
                }
                for &repo in repos {
                    let cell = if ep.per_repo() {
                        format!("{}/{mode:?}/{ep:?}/{repo}", who.name())
                    } else {
                        format!("{}/{mode:?}/{ep:?}", who.name())
                    };
                    let fx = match ep {
                        Ep::ManifestDelete
                        | Ep::BlobDelete
                        | Ep::UploadPatch
                        | Ep::UploadPut
                        | Ep::Mount => Some(fixture(&world, repo, &cell).await),
                        _ => None,
                    };
                    let r = run_cell(&world, who, mode, ep, repo, fx.as_ref(), n).await;
                    check_cell(&world, who, mode, ep, repo, &r, &cell);
                    cells += 1;
                    n += 1;
                }
            }
        }
    }
    // 10 identities over Basic and 7 over Bearer; 15 endpoints on 2 repositories plus base and
    // catalog; the two token-endpoint columns are Basic-only.
    assert_eq!(cells, 10 * (15 * 2 + 2) + 7 * (13 * 2 + 2));
}

/// A public repository allows anonymous pull (manifest, blob, tags, and a token with pull), a
/// private one does not; neither allows anonymous push; making it private again closes it.
#[tokio::test(flavor = "multi_thread")]
async fn public_repositories_allow_anonymous_pull_only() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    let public = push_image(&server, "acme/public", "v1", &Auth::admin()).await;
    let private = push_image(&server, "acme/private", "v1", &Auth::admin()).await;
    admin
        .set_visibility("acme/public", Visibility::Public)
        .await
        .expect("make public");
    let http = client();
    let anon = Auth::None;
    for (repo, img, want) in [
        ("acme/public", &public, 200),
        ("acme/private", &private, 401),
    ] {
        for path in [
            format!("/v2/{repo}/manifests/v1"),
            format!("/v2/{repo}/manifests/{}", img.manifest),
            format!("/v2/{repo}/blobs/{}", img.layer),
            format!("/v2/{repo}/tags/list"),
        ] {
            let r = send(
                &http,
                &server.url,
                Method::GET,
                &path,
                &anon,
                &[("accept", OCI_MANIFEST)],
                None,
            )
            .await;
            assert_eq!(r.status, want, "anonymous GET {path}: {}", r.text());
        }
        let r = send(
            &http,
            &server.url,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &anon,
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 401, "anonymous upload to {repo}");
        // The token endpoint without credentials: pull on the public one, nothing on the other.
        let scope = format!("repository:{repo}:pull,push");
        let r = token_request(&http, &server, &service, &[&scope], &anon).await;
        assert_eq!(r.status, 200, "anonymous token for {repo}: {}", r.text());
        let v = r.json();
        let g = granted(v["token"].as_str().expect("token"));
        let want_granted: Vec<String> = if want == 200 {
            vec!["pull".into()]
        } else {
            vec![]
        };
        assert_eq!(
            g.get(&format!("repository:{repo}"))
                .cloned()
                .unwrap_or_default(),
            want_granted,
            "anonymous token for {repo}"
        );
        // That token pulls the public one and nothing more.
        let tok = Auth::Bearer(v["token"].as_str().unwrap().to_owned());
        let r = send(
            &http,
            &server.url,
            Method::GET,
            &format!("/v2/{repo}/manifests/v1"),
            &tok,
            &[("accept", OCI_MANIFEST)],
            None,
        )
        .await;
        assert_eq!(r.status, want, "anonymous bearer pull of {repo}");
    }
    // A user who is not a member may pull the public repository too, but not push to it.
    admin.add_user("bob", "bob-Pw-27182").await.unwrap();
    let bob = Auth::basic("bob", "bob-Pw-27182");
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/acme/public/manifests/v1",
        &bob,
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "a non-member pulls a public repository");
    let r = send(
        &http,
        &server.url,
        Method::POST,
        "/v2/acme/public/blobs/uploads/",
        &bob,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 403, "a non-member pushes to a public repository");
    // Private again: closed again.
    admin
        .set_visibility("acme/public", Visibility::Private)
        .await
        .expect("make private");
    let r = send(
        &http,
        &server.url,
        Method::GET,
        "/v2/acme/public/manifests/v1",
        &anon,
        &[("accept", OCI_MANIFEST)],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "anonymous pull after making it private");
}

// ----- the admin API × every kind of credential -----

/// A credential, as the admin API (and `/metrics`) sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cred {
    Anonymous,
    /// Basic: the site administrator's password.
    AdminPassword,
    /// Basic: a user's password (no site rights).
    UserPassword,
    /// Bearer: asked with the admin's password for `registry:admin:*`.
    AdminApiToken,
    /// Bearer: asked with carol's password for `registry:admin:*`.
    UserApiToken,
    /// Bearer: the admin's token for `repository:acme/app:pull`.
    AdminPullToken,
    /// Bearer: the admin's token for `repository:acme/app:pull,push`.
    AdminPushToken,
    /// Bearer: the admin's token for `registry:catalog:*`.
    AdminCatalogToken,
    /// Bearer: the admin's token asked for no scope at all.
    AdminBareToken,
    /// Bearer: carol's token for `repository:carol/app:pull`.
    UserPullToken,
    /// Basic: the admin's personal access token `repository:acme/*:pull`.
    AdminPatPull,
    /// Basic: the admin's personal access token `repository:acme/*:pull,push,delete,admin`.
    AdminPatAll,
    /// Basic: carol's personal access token `repository:carol/*:pull,push`.
    UserPatPush,
    /// Bearer: asked with the admin's all-actions PAT for `registry:admin:*` (not granted).
    PatApiToken,
    /// Basic: a refresh token of the admin's password login (docker's identity token).
    PasswordRefresh,
    /// Bearer: from a refresh grant of that refresh token, for `registry:admin:*`.
    PasswordRefreshApiToken,
    /// Basic: a refresh token obtained through the admin's all-actions PAT.
    PatRefresh,
    /// Bearer: from a refresh grant of that refresh token, for `registry:admin:*`.
    PatRefreshApiToken,
    /// Basic: robot acme+ci's token.
    Robot,
    /// Basic: an expired personal access token (one user per cell).
    ExpiredPat,
    /// Basic: a revoked personal access token (one user per cell).
    RevokedPat,
    /// Bearer: issued through a personal access token that has expired since.
    ExpiredParentToken,
}

const CREDS: [Cred; 22] = [
    Cred::Anonymous,
    Cred::AdminPassword,
    Cred::UserPassword,
    Cred::AdminApiToken,
    Cred::UserApiToken,
    Cred::AdminPullToken,
    Cred::AdminPushToken,
    Cred::AdminCatalogToken,
    Cred::AdminBareToken,
    Cred::UserPullToken,
    Cred::AdminPatPull,
    Cred::AdminPatAll,
    Cred::UserPatPush,
    Cred::PatApiToken,
    Cred::PasswordRefresh,
    Cred::PasswordRefreshApiToken,
    Cred::PatRefresh,
    Cred::PatRefreshApiToken,
    Cred::Robot,
    Cred::ExpiredPat,
    Cred::RevokedPat,
    Cred::ExpiredParentToken,
];

/// What a credential is to the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// No credentials, or ones that are no longer valid: 401.
    None,
    /// Valid, but not a password login nor a token granting the admin API: 403 everywhere.
    NotForAdmin,
    /// The site administrator.
    SiteAdmin,
    /// A user: their own tokens, password and namespace.
    User,
}

impl Cred {
    fn standing(self) -> Standing {
        match self {
            Cred::Anonymous | Cred::ExpiredPat | Cred::RevokedPat | Cred::ExpiredParentToken => {
                Standing::None
            }
            Cred::AdminPassword
            | Cred::AdminApiToken
            | Cred::PasswordRefresh
            | Cred::PasswordRefreshApiToken => Standing::SiteAdmin,
            Cred::UserPassword | Cred::UserApiToken => Standing::User,
            _ => Standing::NotForAdmin,
        }
    }

    /// The user whose own things (password, namespace) the cell names.
    fn owner(self) -> &'static str {
        match self {
            Cred::UserPassword | Cred::UserApiToken | Cred::UserPullToken | Cred::UserPatPush => {
                "carol"
            }
            _ => "admin",
        }
    }

    fn source(self, cell: usize) -> IpAddr {
        let i = CREDS.iter().position(|c| *c == self).unwrap() as u8;
        IpAddr::from([127, 0, 60 + i, 1 + cell as u8])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminEp {
    ListUsers,
    AddUser,
    CreateOrg,
    CreateToken,
    ListTokens,
    SetVisibility,
    Audit,
    Metrics,
    /// Last: a successful change (to the same password) ends refresh tokens of the password.
    SetOwnPassword,
}

const ADMIN_ENDPOINTS: [AdminEp; 9] = [
    AdminEp::ListUsers,
    AdminEp::AddUser,
    AdminEp::CreateOrg,
    AdminEp::CreateToken,
    AdminEp::ListTokens,
    AdminEp::SetVisibility,
    AdminEp::Audit,
    AdminEp::Metrics,
    AdminEp::SetOwnPassword,
];

impl AdminEp {
    fn site_admin_only(self) -> bool {
        matches!(
            self,
            AdminEp::ListUsers
                | AdminEp::AddUser
                | AdminEp::CreateOrg
                | AdminEp::Audit
                | AdminEp::Metrics
        )
    }

    fn success(self) -> u16 {
        match self {
            AdminEp::AddUser | AdminEp::CreateOrg | AdminEp::CreateToken => 201,
            AdminEp::SetVisibility | AdminEp::SetOwnPassword => 204,
            _ => 200,
        }
    }
}

fn admin_expected(cred: Cred, ep: AdminEp) -> u16 {
    match cred.standing() {
        Standing::None => 401,
        Standing::NotForAdmin => 403,
        Standing::SiteAdmin => ep.success(),
        Standing::User if ep.site_admin_only() => 403,
        Standing::User => ep.success(),
    }
}

fn pw(u: &str) -> String {
    format!("{u}-Pw-31415")
}

/// `POST /token` with a form; returns the response.
async fn token_form(server: &Server, form: &[(&str, &str)]) -> Resp {
    let resp = client()
        .post(format!("{}/token", server.url))
        .form(form)
        .send()
        .await
        .expect("POST /token");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

/// A refresh token from `GET /token?offline_token=true` with Basic `user:secret`.
async fn offline_token(server: &Server, service: &str, user: &str, secret: &str) -> String {
    let mut url = reqwest::Url::parse(&format!("{}/token", server.url)).unwrap();
    url.query_pairs_mut()
        .append_pair("service", service)
        .append_pair("offline_token", "true");
    let r = send(
        &client(),
        &server.url,
        Method::GET,
        url.as_str(),
        &Auth::basic(user, secret),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "offline token for {user}: {}", r.text());
    r.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// A registry token from a refresh grant for `scope`.
async fn refreshed(server: &Server, service: &str, refresh: &str, scope: &str) -> String {
    let r = token_form(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("service", service),
            ("client_id", "test"),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "refresh grant: {}", r.text());
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Polls (every 100 ms, at most `bound`) until `refused` holds; returns how long it took.
async fn until<F, Fut>(bound: std::time::Duration, mut refused: F) -> Option<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < bound {
        if refused().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

async fn make_pat(api: &hoist_client::admin::AdminClient, name: &str, scope: &str) -> String {
    api.create_token(name, &[scope.to_owned()], None)
        .await
        .expect("a personal access token")
        .token
}

/// `GET /v2/` with `auth`: the status.
async fn base_status(server: &Server, auth: &Auth) -> u16 {
    send(&client(), &server.url, Method::GET, "/v2/", auth, &[], None)
        .await
        .status
}

/// The admin API (and `/metrics`) open only to a password login (Basic) or a token whose scope
/// grants the admin API (`registry:admin:*`, which only a password login, or a refresh token of
/// one, is given). Any repository- or catalog-scoped token, any personal access token or robot
/// token, and refresh tokens obtained through one get 403; expired, revoked or orphaned
/// credentials get 401. Each cell is asserted; a failure names `credential/endpoint`.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_by_every_kind_of_credential() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    let n_eps = ADMIN_ENDPOINTS.len();
    admin.add_user("carol", &pw("carol")).await.unwrap();
    admin.create_org("acme").await.unwrap();
    let carol = admin_api(&server, "carol", &pw("carol"));
    let pat_pull = make_pat(&admin, "pull", "repository:acme/*:pull").await;
    let pat_all = make_pat(&admin, "all", "repository:acme/*:pull,push,delete,admin").await;
    let carol_pat = make_pat(&carol, "push", "repository:carol/*:pull,push").await;
    let robot = admin
        .create_robot("acme", "ci", &["repository:acme/*:pull".to_owned()], None)
        .await
        .expect("robot");
    let admin_basic = Auth::admin();
    let carol_basic = Auth::basic("carol", &pw("carol"));
    let bearer = |scopes: Vec<&'static str>, auth: Auth| {
        let (server, service) = (&server, &service);
        async move { Auth::Bearer(token(server, service, &scopes, &auth).await) }
    };
    let password_refresh = offline_token(&server, &service, "admin", ADMIN_PASSWORD).await;
    let pat_refresh = offline_token(&server, &service, "admin", &pat_all).await;

    // Expired and revoked tokens: one user each per cell, as refused logins lock a user.
    let mut expired = Vec::new();
    let mut revoked = Vec::new();
    for i in 0..n_eps {
        for (kind, list) in [("exp", &mut expired), ("rev", &mut revoked)] {
            let u = format!("admin{kind}{i}");
            admin.add_user(&u, &pw(&u)).await.unwrap();
            let api = admin_api(&server, &u, &pw(&u));
            let life = (kind == "exp").then_some(std::time::Duration::from_secs(1));
            let t = api
                .create_token("t", &[format!("repository:{u}/*:pull")], life)
                .await
                .unwrap();
            if kind == "rev" {
                api.revoke_token(&t.id).await.unwrap();
            }
            list.push(Auth::basic(&u, &t.token));
        }
    }
    // A registry token issued through a PAT that then expires.
    admin.add_user("dora", &pw("dora")).await.unwrap();
    let dora_pat = admin_api(&server, "dora", &pw("dora"))
        .create_token(
            "short",
            &["repository:dora/*:pull".to_owned()],
            Some(std::time::Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let dora = Auth::basic("dora", &dora_pat.token);
    let parent_expired = bearer(vec!["repository:dora/app:pull"], dora.clone()).await;

    let creds: Vec<(Cred, Vec<Auth>)> = vec![
        (Cred::Anonymous, vec![Auth::None]),
        (Cred::AdminPassword, vec![admin_basic.clone()]),
        (Cred::UserPassword, vec![carol_basic.clone()]),
        (
            Cred::AdminApiToken,
            vec![bearer(vec!["registry:admin:*"], admin_basic.clone()).await],
        ),
        (
            Cred::UserApiToken,
            vec![bearer(vec!["registry:admin:*"], carol_basic.clone()).await],
        ),
        (
            Cred::AdminPullToken,
            vec![bearer(vec!["repository:acme/app:pull"], admin_basic.clone()).await],
        ),
        (
            Cred::AdminPushToken,
            vec![bearer(vec!["repository:acme/app:pull,push"], admin_basic.clone()).await],
        ),
        (
            Cred::AdminCatalogToken,
            vec![bearer(vec!["registry:catalog:*"], admin_basic.clone()).await],
        ),
        (
            Cred::AdminBareToken,
            vec![bearer(vec![], admin_basic.clone()).await],
        ),
        (
            Cred::UserPullToken,
            vec![bearer(vec!["repository:carol/app:pull"], carol_basic.clone()).await],
        ),
        (Cred::AdminPatPull, vec![Auth::basic("admin", &pat_pull)]),
        (Cred::AdminPatAll, vec![Auth::basic("admin", &pat_all)]),
        (Cred::UserPatPush, vec![Auth::basic("carol", &carol_pat)]),
        (
            Cred::PatApiToken,
            vec![
                bearer(
                    vec!["registry:admin:*", "repository:acme/app:pull"],
                    Auth::basic("admin", &pat_all),
                )
                .await,
            ],
        ),
        (
            Cred::PasswordRefresh,
            vec![Auth::basic("admin", &password_refresh)],
        ),
        (
            Cred::PasswordRefreshApiToken,
            vec![Auth::Bearer(
                refreshed(&server, &service, &password_refresh, "registry:admin:*").await,
            )],
        ),
        (Cred::PatRefresh, vec![Auth::basic("admin", &pat_refresh)]),
        (
            Cred::PatRefreshApiToken,
            vec![Auth::Bearer(
                refreshed(&server, &service, &pat_refresh, "registry:admin:*").await,
            )],
        ),
        (Cred::Robot, vec![Auth::basic(&robot.name, &robot.token)]),
        (Cred::ExpiredPat, expired),
        (Cred::RevokedPat, revoked),
        (Cred::ExpiredParentToken, vec![parent_expired]),
    ];
    // Wait for the short tokens to expire: dora's, made last with the longest life, is refused
    // (polling one user only: each refusal counts towards that user's lockout).
    assert!(
        until(std::time::Duration::from_secs(10), || {
            let (server, d) = (&server, dora.clone());
            async move { base_status(server, &d).await == 401 }
        })
        .await
        .is_some(),
        "the short tokens expire"
    );

    let mut cells = 0;
    for (e, ep) in ADMIN_ENDPOINTS.into_iter().enumerate() {
        // In the last column, refresh tokens of the password go before the password changes.
        let mut order: Vec<&(Cred, Vec<Auth>)> = creds.iter().collect();
        if ep == AdminEp::SetOwnPassword {
            order.sort_by_key(|(c, _)| !matches!(c, Cred::PasswordRefresh));
        }
        for (cred, pool) in order {
            let cred = *cred;
            let auth = &pool[e % pool.len()];
            let cell = format!("{cred:?}/{ep:?}");
            let http = client_from(cred.source(e));
            let owner = cred.owner();
            let n = cells;
            let (method, path, body) = match ep {
                AdminEp::ListUsers => (Method::GET, "/admin/v1/users".to_owned(), None),
                AdminEp::AddUser => (
                    Method::POST,
                    "/admin/v1/users".to_owned(),
                    Some(serde_json::json!({"name": format!("new{n}"), "password": pw("new")})),
                ),
                AdminEp::CreateOrg => (
                    Method::POST,
                    "/admin/v1/orgs".to_owned(),
                    Some(serde_json::json!({"name": format!("org{n}")})),
                ),
                AdminEp::CreateToken => (
                    Method::POST,
                    "/admin/v1/tokens".to_owned(),
                    Some(serde_json::json!({
                        "name": format!("made by {cell}"),
                        "scopes": ["repository:acme/*:pull,push,delete,admin"],
                        "expires_in_secs": 31_000_000,
                    })),
                ),
                AdminEp::ListTokens => (Method::GET, "/admin/v1/tokens".to_owned(), None),
                AdminEp::SetVisibility => (
                    Method::PUT,
                    format!("/admin/v1/repos/{owner}/vis{n}/visibility"),
                    Some(serde_json::json!({"visibility": "public"})),
                ),
                AdminEp::Audit => (Method::GET, "/admin/v1/audit".to_owned(), None),
                AdminEp::Metrics => (Method::GET, "/metrics".to_owned(), None),
                AdminEp::SetOwnPassword => (
                    Method::PUT,
                    format!("/admin/v1/users/{owner}/password"),
                    Some(serde_json::json!({
                        "password": if owner == "admin" { ADMIN_PASSWORD.to_owned() } else { pw(owner) }
                    })),
                ),
            };
            let headers: &[(&str, &str)] = if body.is_some() {
                &[("content-type", "application/json")]
            } else {
                &[]
            };
            let r = send(
                &http,
                &server.url,
                method,
                &path,
                auth,
                headers,
                body.map(|b| serde_json::to_vec(&b).unwrap()),
            )
            .await;
            let want = admin_expected(cred, ep);
            assert_eq!(r.status, want, "{cell}: status (body: {})", r.text());
            match r.status {
                401 => {
                    let c = r
                        .header("www-authenticate")
                        .unwrap_or_else(|| panic!("{cell}: 401 without a challenge"));
                    assert!(c.starts_with("Bearer "), "{cell}: challenge {c}");
                }
                403 => assert_eq!(
                    r.error_code().as_deref(),
                    Some("DENIED"),
                    "{cell}: {}",
                    r.text()
                ),
                _ => {}
            }
            cells += 1;
        }
    }
    assert_eq!(cells, CREDS.len() * ADMIN_ENDPOINTS.len());

    // Nothing a refused cell asked for happened: the only tokens are the ones made above and
    // by the cells that were allowed to.
    let made: Vec<String> = admin
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| n.starts_with("made by"))
        .collect();
    let mut want: Vec<String> = CREDS
        .iter()
        .filter(|c| c.owner() == "admin" && c.standing() == Standing::SiteAdmin)
        .map(|c| format!("made by {c:?}/CreateToken"))
        .collect();
    let mut made = made;
    made.sort();
    want.sort();
    assert_eq!(made, want, "the admin's tokens made through the admin API");
}

/// A personal access token is refused from the second it expires, however recently it was
/// verified (the credential cache checks expiry on every request), and so is a registry token
/// issued through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pat_is_refused_once_expired_even_while_cached() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("erin", &pw("erin")).await.unwrap();
    let created = std::time::Instant::now();
    let t = admin_api(&server, "erin", &pw("erin"))
        .create_token(
            "short",
            &["repository:erin/*:pull".to_owned()],
            Some(std::time::Duration::from_secs(3)),
        )
        .await
        .unwrap();
    let pat = Auth::basic("erin", &t.token);
    let jwt = Auth::Bearer(token(&server, &service, &["repository:erin/app:pull"], &pat).await);
    // Valid now (and verified, so cached).
    assert_eq!(base_status(&server, &pat).await, 200);
    assert_eq!(base_status(&server, &jwt).await, 200);
    let tags = |auth: Auth| {
        let server = &server;
        async move {
            send(
                &client(),
                &server.url,
                Method::GET,
                "/v2/erin/app/tags/list",
                &auth,
                &[],
                None,
            )
            .await
            .status
        }
    };
    // Asked every 100 ms: accepted until it expires, then refused at once.
    let mut accepted = 0;
    let mut refused = false;
    while created.elapsed() < std::time::Duration::from_secs(20) {
        match base_status(&server, &pat).await {
            200 => accepted += 1,
            401 => {
                refused = true;
                break;
            }
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the token is refused after its expiry");
    let age = created.elapsed();
    assert!(accepted > 0, "it was accepted before it expired");
    // expires_at is whole seconds: at most 3 s after creation, plus the poll's step.
    assert!(
        age <= std::time::Duration::from_millis(4500),
        "refused {age:?} after creation: the cache kept an expired token"
    );
    assert_eq!(tags(jwt).await, 401, "a registry token issued through it");
}

/// Revoking a token ends it at once, within the credential cache's window, with everything
/// issued through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_pat_is_refused_at_once_even_while_cached() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("ivan", &pw("ivan")).await.unwrap();
    let ivan = admin_api(&server, "ivan", &pw("ivan"));
    let t = ivan
        .create_token("ci", &["repository:ivan/*:pull,push".to_owned()], None)
        .await
        .unwrap();
    let pat = Auth::basic("ivan", &t.token);
    let jwt = Auth::Bearer(token(&server, &service, &["repository:ivan/app:pull"], &pat).await);
    let refresh = offline_token(&server, &service, "ivan", &t.token).await;
    for _ in 0..3 {
        assert_eq!(base_status(&server, &pat).await, 200);
    }
    assert_eq!(base_status(&server, &jwt).await, 200);
    ivan.revoke_token(&t.id).await.unwrap();
    assert_eq!(base_status(&server, &pat).await, 401, "the token, cached");
    assert_eq!(
        base_status(&server, &jwt).await,
        401,
        "a registry token through it"
    );
    assert_eq!(
        base_status(&server, &Auth::basic("ivan", &refresh)).await,
        401,
        "a refresh token through it, as a password"
    );
    let r = token_form(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", &service),
            ("client_id", "test"),
        ],
    )
    .await;
    assert_eq!(r.status, 401, "a refresh grant through it");
}

/// A refresh token obtained through a personal access token ends when the token does: both as
/// a refresh grant and as a Basic password, however long refresh tokens otherwise live.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_ends_with_the_pat_it_came_from() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("frank", &pw("frank")).await.unwrap();
    let t = admin_api(&server, "frank", &pw("frank"))
        .create_token(
            "short",
            &["repository:frank/*:pull".to_owned()],
            Some(std::time::Duration::from_secs(3)),
        )
        .await
        .unwrap();
    // docker's way: a password grant with the PAT, offline.
    let r = token_form(
        &server,
        &[
            ("grant_type", "password"),
            ("username", "frank"),
            ("password", &t.token),
            ("service", &service),
            ("client_id", "test"),
            ("access_type", "offline"),
            ("scope", "repository:frank/app:pull"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "password grant with a PAT: {}", r.text());
    let v = r.json();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    assert!(
        v["expires_in"].as_u64().unwrap() <= 3,
        "a registry token does not outlive its parent: {v}"
    );
    let as_password = Auth::basic("frank", &refresh);
    assert_eq!(base_status(&server, &as_password).await, 200);
    refreshed(&server, &service, &refresh, "repository:frank/app:pull").await;
    // Wait until the PAT itself is refused.
    let pat = Auth::basic("frank", &t.token);
    until(std::time::Duration::from_secs(20), || {
        let pat = pat.clone();
        let server = &server;
        async move { base_status(server, &pat).await == 401 }
    })
    .await
    .expect("the PAT expires");
    let r = token_form(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", &service),
            ("client_id", "test"),
            ("scope", "repository:frank/app:pull"),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        401,
        "refresh grant after the parent's expiry: {}",
        r.text()
    );
    assert_eq!(
        base_status(&server, &as_password).await,
        401,
        "the refresh token as a password after the parent's expiry"
    );
}

/// Tokens name a user id that is never reused: removing a user and creating another of the
/// same name (and password) does not bring the first one's tokens back.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_users_tokens_stay_dead_when_the_name_returns() {
    let server = start();
    let service = service(&server).await;
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.add_user("gina", &pw("gina")).await.unwrap();
    let gina = Auth::basic("gina", &pw("gina"));
    push_image(&server, "gina/app", "v1", &gina).await;
    let scope = ["repository:gina/app:pull,push,delete"];
    let old = Auth::Bearer(token(&server, &service, &scope, &gina).await);
    let old_admin = Auth::Bearer(token(&server, &service, &["registry:admin:*"], &gina).await);
    let refresh = offline_token(&server, &service, "gina", &pw("gina")).await;
    let tags = |auth: Auth| {
        let server = &server;
        async move {
            send(
                &client(),
                &server.url,
                Method::GET,
                "/v2/gina/app/tags/list",
                &auth,
                &[],
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(tags(old.clone()).await, 200);
    admin.remove_user("gina").await.unwrap();
    assert_eq!(tags(old.clone()).await, 401, "the removed user's token");
    admin.add_user("gina", &pw("gina")).await.unwrap();
    assert_eq!(
        tags(old.clone()).await,
        401,
        "the removed user's token, the name taken again"
    );
    let r = send(
        &client(),
        &server.url,
        Method::GET,
        "/admin/v1/tokens",
        &old_admin,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "the removed user's admin-API token");
    assert_eq!(
        base_status(&server, &Auth::basic("gina", &refresh)).await,
        401
    );
    // The new gina's own token works.
    let new = Auth::Bearer(token(&server, &service, &scope, &gina).await);
    assert_eq!(tags(new).await, 200);
}

/// Grant patterns and token scopes with `..`, `.` or empty segments are refused when stored,
/// naming the pattern.
#[tokio::test(flavor = "multi_thread")]
async fn patterns_with_dot_or_empty_segments_are_refused() {
    let server = start();
    let admin = admin_api(&server, "admin", ADMIN_PASSWORD);
    admin.create_org("acme").await.unwrap();
    admin.create_team("acme", "devs").await.unwrap();
    let http = client();
    for bad in [
        "acme/../other",
        "acme//app",
        "acme/",
        "acme/./app",
        "acme/app/..",
    ] {
        let r = send(
            &http,
            &server.url,
            Method::POST,
            "/admin/v1/orgs/acme/teams/devs/grants",
            &Auth::admin(),
            &[("content-type", "application/json")],
            Some(
                serde_json::to_vec(&serde_json::json!({"pattern": bad, "actions": ["pull"]}))
                    .unwrap(),
            ),
        )
        .await;
        assert_eq!(r.status, 400, "grant {bad}: {}", r.text());
        assert!(
            r.text().contains(bad),
            "the error names {bad}: {}",
            r.text()
        );
        let scope = format!("repository:{}:pull", bad.replacen("acme", "admin", 1));
        let r = send(
            &http,
            &server.url,
            Method::POST,
            "/admin/v1/tokens",
            &Auth::admin(),
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&serde_json::json!({"name": "x", "scopes": [scope]})).unwrap()),
        )
        .await;
        assert_eq!(r.status, 400, "token scope {scope}: {}", r.text());
    }
}
