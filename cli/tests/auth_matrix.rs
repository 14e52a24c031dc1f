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
