//! The Dockerfile parser and docker's word expansion, on arbitrary text: neither may panic, and
//! expansion is deterministic.
#![no_main]

use hoist_builder::dockerfile::{expand, expand_heredoc, expand_words, parse};
use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    // A few set variables whose values exercise splitting and nesting.
    match name.as_bytes().first() {
        Some(b'A') => Some("a b".to_owned()),
        Some(b'B') => Some(String::new()),
        Some(b'C') => Some("$A ${B:-x}".to_owned()),
        Some(b'D') => Some(name.repeat(2)),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse(text, "Dockerfile");
    for escape in ['\\', '`'] {
        let once = expand(text, &lookup, escape);
        assert_eq!(once, expand(text, &lookup, escape));
        let _ = expand_words(text, &lookup, escape);
        let _ = expand_heredoc(text, &lookup, escape);
    }
});
