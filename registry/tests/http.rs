//! In-process HTTP tests: the router on a memory driver, driven with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hoist_oci::Digest;
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

// Requests that ask for more than the server gives: page sizes past any count, and chunks whose
// body disagrees with their `Content-Range`.

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

async fn push_tags(app: &axum::Router, repo: &str, tags: &[String]) {
    let config = b"{}";
    let cd = Digest::sha256_of(config);
    let (status, _, _) = send(
        app,
        Request::post(format!("/v2/{repo}/blobs/uploads/?digest={cd}"))
            .body(Body::from(&config[..]))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.as_str(), "size": 2},
        "layers": []
    })
    .to_string();
    for tag in tags {
        let (status, _, body) = send(
            app,
            Request::put(format!("/v2/{repo}/manifests/{tag}"))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(Body::from(manifest.clone()))
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// On a tag list, `n` past any count (`u64::MAX`, and more digits than that) is clamped to the
/// CNCF registry's 1000, not wrapped to an empty page; every size in between gets at most what it
/// asked for. The catalog refuses `n` over 1000 as the CNCF registry does.
#[tokio::test]
async fn huge_page_sizes_are_clamped_on_tags_and_catalog() {
    let app = app().await;
    let tags: Vec<String> = (0..1003).map(|i| format!("t{i:04}")).collect();
    push_tags(&app, "many/tags", &tags).await;
    push_tags(&app, "other/repo", &tags[..1]).await;
    for n in [
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "4294967296",
        "1001",
        "1000",
    ] {
        let (status, headers, body) = send(
            &app,
            Request::get(format!("/v2/many/tags/tags/list?n={n}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "n={n}");
        let got = json(&body)["tags"].as_array().unwrap().len();
        assert_eq!(got, 1000, "n={n}");
        let link = headers["link"].to_str().unwrap();
        assert!(link.contains("n=1000&last=t0999"), "n={n}: {link}");
        let (status, _, body) = send(
            &app,
            Request::get(format!("/v2/_catalog?n={n}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if n == "1000" {
            assert_eq!(status, StatusCode::OK, "n={n}");
            assert_eq!(
                json(&body)["repositories"],
                serde_json::json!(["many/tags", "other/repo"]),
                "n={n}"
            );
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "n={n}");
            assert_eq!(
                json(&body)["errors"][0]["code"],
                "PAGINATION_NUMBER_INVALID",
                "n={n}"
            );
        }
    }
    let (_, _, body) = send(
        &app,
        Request::get("/v2/many/tags/tags/list?n=2")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(json(&body)["tags"], serde_json::json!(["t0000", "t0001"]));
    for bad in ["-1", "1e3", "", "+5"] {
        let (status, _, _) = send(
            &app,
            Request::get(format!("/v2/many/tags/tags/list?n={bad}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "n={bad:?}");
    }
}

async fn upload_offset(app: &axum::Router, location: &str) -> u64 {
    let (status, headers, _) = send(app, Request::get(location).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let range = headers["range"].to_str().unwrap();
    let end: u64 = range.rsplit('-').next().unwrap().parse().unwrap();
    end + 1
}

fn streamed(parts: &[&'static [u8]]) -> Body {
    // No Content-Length: the body's length is only known once it has been read.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = parts
        .iter()
        .map(|p| Ok(bytes::Bytes::from_static(p)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

/// A PATCH (or a closing PUT) whose body is longer or shorter than its `Content-Range` says is
/// refused with 416 `RANGE_INVALID`, and the upload's offset stays where it was; the upload
/// then completes with the right chunk.
#[tokio::test]
async fn a_chunk_whose_body_disagrees_with_its_range_is_refused_with_416() {
    let app = app().await;
    let (status, headers, _) = send(
        &app,
        Request::post("/v2/chunks/app/blobs/uploads/")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = headers["location"].to_str().unwrap().to_owned();
    let (status, _, _) = send(
        &app,
        Request::patch(&location)
            .header("content-range", "0-3")
            .body(streamed(&[b"0123"]))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(upload_offset(&app, &location).await, 4);
    let data = b"0123456789";
    let digest = Digest::sha256_of(data);
    for (method, parts) in [
        ("PATCH", &[&b"4567"[..], b"89x"][..]),
        ("PATCH", &[&b"45"[..]][..]),
        ("PATCH", &[][..]),
        ("PUT", &[&b"456789xx"[..]][..]),
        ("PUT", &[&b"4"[..]][..]),
    ] {
        let uri = if method == "PUT" {
            format!("{location}?digest={digest}")
        } else {
            location.clone()
        };
        let (status, headers, body) = send(
            &app,
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-range", "4-9")
                .body(streamed(parts))
                .unwrap(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{method} {parts:?}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(json(&body)["errors"][0]["code"], "RANGE_INVALID");
        assert_eq!(headers["range"], "0-3", "{method} {parts:?}");
        assert_eq!(
            upload_offset(&app, &location).await,
            4,
            "{method} {parts:?}"
        );
    }
    let (status, _, body) = send(
        &app,
        Request::put(format!("{location}?digest={digest}"))
            .header("content-range", "4-9")
            .body(streamed(&[b"456", b"789"]))
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = send(
        &app,
        Request::get(format!("/v2/chunks/app/blobs/{digest}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
}
