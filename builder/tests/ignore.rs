//! `.dockerignore` tables from moby's `patternmatcher` and `dockerignore` tests and docker's
//! build integration tests.

use hoist_builder::ignore::{DockerIgnore, IgnoreError, clean_path, go_match, has_wildcards};

fn m(patterns: &[&str], path: &str) -> bool {
    DockerIgnore::from_patterns(patterns)
        .expect("patterns compile")
        .matches(path, false)
}

#[test]
fn moby_single_pattern_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // anchoring: a bare name matches at the root only (and everything below it)
        ("foo", "foo", true),
        ("foo", "foo/bar/baz", true),
        ("foo", "a/foo", false),
        ("*.md", "README.md", true),
        ("*.md", "docs/README.md", false),
        ("*/*.md", "docs/README.md", true),
        ("docs/", "docs/x", true),
        ("./docs/../src", "src/main.rs", true),
    ];
    let mut failures = Vec::new();
    for &(pattern, path, want) in cases {
        if m(&[pattern], path) != want {
            failures.push(format!("{pattern:?} vs {path:?}: want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn moby_multi_pattern_table() {
    assert!(!m(&["**", "!util/docker/web"], "util/docker/web/foo"));
    assert!(m(
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo"
    ));
    assert!(!m(
        &[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
    ));
    assert!(!m(
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
    ));
    // last match wins, in both directions
    assert!(m(&["!a", "a"], "a"));
    assert!(!m(&["a", "!a"], "a"));
}

#[test]
fn read_all_normalises_like_docker() {
    let text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n  spaced  \n\u{20}# not a comment: leading space\n";
    let di = DockerIgnore::parse(text).unwrap();
    assert_eq!(
        di.patterns(),
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path",
            "spaced",
            "# not a comment: leading space"
        ]
    );
    assert!(di.matches("test2", false));
    assert!(di.matches("a/file/here/x", false));
    assert!(!di.matches("inverted/abs/path", false));
    // a BOM at the start is dropped
    assert_eq!(
        DockerIgnore::parse("\u{feff}x\n").unwrap().patterns(),
        ["x"]
    );
}

#[test]
fn bad_patterns_are_errors() {
    assert_eq!(
        DockerIgnore::parse("a\n!\n").unwrap_err(),
        IgnoreError::BareExclusion { line: 2 }
    );
    assert_eq!(
        DockerIgnore::parse("a\n! \n").unwrap_err(),
        IgnoreError::BareExclusion { line: 2 }
    );
    let e = DockerIgnore::parse("ok\n[abc\n").unwrap_err();
    assert!(
        matches!(&e, IgnoreError::BadPattern { line: 2, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("[abc"), "{e}");
    assert!(DockerIgnore::parse("a\\").is_err());
    assert!(DockerIgnore::parse("[]").is_err());
}

/// docker's `TestBuildDockerignore` pattern set.
#[test]
fn docker_build_dockerignore_case() {
    let di = DockerIgnore::parse(
        "\nMakefile\nsrc/_vendor\n*.md\n!README.md\ndir\n!dir/e*\n!dir/dir/foo\n**/*.cc\n",
    )
    .unwrap();
    let excluded = [
        "Makefile",
        "src/_vendor/v.go",
        "CHANGELOG.md",
        "dir/foo",
        "foo.cc",
        "src/x/y.cc",
        "dir/dir/bar",
    ];
    let kept = [
        "Dockerfile",
        "README.md",
        "src/x.go",
        "dir/e",
        "dir/e-dir/foo",
        "dir/dir/foo",
        "docs/a.md",
    ];
    for p in excluded {
        assert!(di.matches(p, false), "{p} should be excluded");
    }
    for p in kept {
        assert!(!di.matches(p, false), "{p} should be kept");
    }
    // `dir` is excluded but exceptions reach inside it: a walk must descend.
    assert!(di.matches("dir", true));
    assert!(!di.can_skip_dir("dir"));
    assert!(di.can_skip_dir("src/_vendor"));
}

#[test]
fn can_skip_dir_without_exceptions() {
    let di = DockerIgnore::parse("node_modules\n**/target\n").unwrap();
    assert!(di.matches("node_modules", true));
    assert!(di.can_skip_dir("node_modules"));
    assert!(di.matches("a/b/target/x", false));
    let di = DockerIgnore::parse("node_modules\n!node_modules/keep/**\n").unwrap();
    assert!(!di.can_skip_dir("node_modules"));
    assert!(!di.matches("node_modules/keep/x", false));
    assert!(di.matches("node_modules/other/x", false));
    let di = DockerIgnore::parse("a\n!b/**\n").unwrap();
    assert!(di.can_skip_dir("a"));
}

#[test]
fn go_filepath_helpers() {
    assert_eq!(clean_path("a//b/./c/.."), "a/b");
    assert_eq!(clean_path("/../x"), "/x");
    assert_eq!(clean_path("../x"), "../x");
    assert_eq!(clean_path(""), ".");
    assert_eq!(clean_path("./"), ".");
    assert!(go_match("sample*", "sample.txt").unwrap());
    assert!(!go_match("*", "a/b").unwrap());
    assert!(go_match("*/b", "a/b").unwrap());
    assert!(go_match("[a-c]?", "bz").unwrap());
    assert!(!go_match("[^a-c]?", "bz").unwrap());
    assert!(go_match("a\\*", "a*").unwrap());
    assert!(!go_match("a\\*", "ab").unwrap());
    assert!(go_match("[", "x").is_err());
    assert!(has_wildcards("./sample*"));
    assert!(has_wildcards("data/files?"));
    assert!(!has_wildcards("plain/path.txt"));
    assert!(!has_wildcards("escaped\\*"));
}
