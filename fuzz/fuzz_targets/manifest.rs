//! Manifest validation (`hoist_storage::content::analyse`, what a manifest PUT runs) on arbitrary
//! bodies and Content-Types: no panic, and deterministic.
#![no_main]

use hoist_storage::content::analyse;
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 6] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&t, body)) = data.split_first() else {
        return;
    };
    let ct = TYPES[usize::from(t) % TYPES.len()];
    let a = analyse(ct, body);
    let b = analyse(ct, body);
    assert_eq!(a.is_ok(), b.is_ok());
    if let (Ok(a), Ok(b)) = (a, b) {
        assert_eq!(a, b);
    }
});
