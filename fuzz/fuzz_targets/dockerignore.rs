//! `.dockerignore` parsing and matching: no panic. The input is the file's text, then a NUL, then
//! paths to test (one per line).
#![no_main]

use hoist_builder::ignore::{DockerIgnore, clean_path, go_match};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (rules, paths) = s
        .split_once('\0')
        .unwrap_or((s, "a\na/b\na/b/c.txt\n.git\nx/y"));
    for line in rules.lines().take(8) {
        let _ = clean_path(line);
        for p in paths.lines().take(8) {
            let _ = go_match(line, p);
        }
    }
    let Ok(ignore) = DockerIgnore::parse(rules) else {
        return;
    };
    let _ = ignore.patterns();
    for p in paths.lines().take(64) {
        let m = ignore.matches(p, false);
        assert_eq!(m, ignore.matches(p, true));
        let _ = ignore.can_skip_dir(p);
        // Cleaning is idempotent.
        let c = clean_path(p);
        assert_eq!(clean_path(&c), c, "clean_path({p:?})");
    }
});
