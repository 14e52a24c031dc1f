//! `Reference`, `RepoName` and `Tag` parsing: no panic, and what parses prints back to a string
//! that parses to the same value.
#![no_main]

use hoist_oci::{Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} parsed, but its display {printed:?} does not: {e}"));
        assert_eq!(again.to_string(), printed, "reparse of {s:?}");
        let familiar = r.familiar();
        let f = Reference::parse(&familiar)
            .unwrap_or_else(|e| panic!("{s:?} parsed, its familiar form {familiar:?} not: {e}"));
        assert_eq!(f.to_string(), printed, "familiar form of {s:?}");
    }
    if let Ok(n) = RepoName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert_eq!(
            RepoName::parse(&n.to_string()).map(|n| n.to_string()),
            Ok(s.to_owned())
        );
    }
    if let Ok(t) = Tag::parse(s) {
        assert_eq!(t.as_str(), s);
    }
});
