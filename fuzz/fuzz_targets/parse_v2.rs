//! The registry's `/v2/` router on arbitrary paths and methods: no panic.
#![no_main]

use axum::http::Method;
use hoist_registry::route::parse_v2;
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let method = &METHODS[usize::from(m) % METHODS.len()];
    if let Ok(route) = parse_v2(method, path) {
        let _ = route.kind();
    }
});
