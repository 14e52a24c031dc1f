//! In-process HTTP tests: the router on a memory driver, driven with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hoist_registry::{App, router};
use hoist_storage::{MemoryDriver, SqliteMetadata, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn app() -> axum::Router {
    let store = Store::open(
        Arc::new(MemoryDriver::new()),
        Arc::new(SqliteMetadata::in_memory().unwrap()),
    )
    .await
    .unwrap();
    router(Arc::new(App::new(store)))
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_answer_carries_the_api_version_and_errors_have_the_oci_shape() {
    let app = app().await;
    for uri in [
        "/v2/",
        "/v2/a/blobs/sha256:bad",
        "/v2/nope/tags/list",
        "/elsewhere",
    ] {
        let (status, headers, body) = send(&app, get(uri)).await;
        assert_eq!(
            headers["docker-distribution-api-version"], "registry/2.0",
            "{uri}"
        );
        if status != StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let e = &v["errors"][0];
            assert!(
                e["code"].is_string() && e["message"].is_string() && e["detail"].is_string(),
                "{uri}: {v}"
            );
        }
    }
    let (status, _, body) = send(&app, get("/v2/a/blobs/sha256:bad")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("DIGEST_INVALID"));
    let (status, _, _) = send(
        &app,
        Request::post("/v2/_catalog").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = app().await;
    for _ in 0..3 {
        send(&app, get("/v2/metrics/probe/manifests/latest")).await;
    }
    let (status, _, body) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("hoist_http_requests_total")
                && l.contains("route=\"manifest\"")
                && l.contains("status=\"404\"")
                && l.contains("method=\"GET\"")
        })
        .unwrap_or_else(|| panic!("no manifest 404 counter in:\n{text}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3, "{line}");
    assert!(
        text.contains("hoist_http_request_duration_seconds_bucket"),
        "{text}"
    );
}
