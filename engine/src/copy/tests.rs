use super::*;

/// Go's `filepath` results and docker's `pkg/archive` helpers, as their sources define them.
#[test]
fn paths_split_and_clean_as_go_and_docker_do() {
    for (p, want) in [
        ("", "."),
        ("/", "/"),
        ("/a/../..", "/"),
        ("a/../../b", "../b"),
        ("/a//b/./c/", "/a/b/c"),
        ("./x/", "x"),
    ] {
        assert_eq!(clean(p), want, "clean({p:?})");
    }
    for (p, d, b) in [
        ("/a/b/.", "/a/b", "."),
        ("/a/b/", "/a", "b"),
        ("/a/b", "/a", "b"),
        ("/", "/", "/"),
        ("/.", "/", "."),
    ] {
        assert_eq!(split_dir_entry(p), (d.to_owned(), b.to_owned()), "{p:?}");
    }
    assert_eq!(split("/a/b/"), ("/a/b/", ""));
    assert_eq!(split("/a/b/."), ("/a/b/", "."));
    assert_eq!(preserve_trailing("/a/b", "x/b/."), "/a/b/.");
    assert_eq!(preserve_trailing("/a/b", "b/"), "/a/b/");
    assert_eq!(preserve_trailing("/", "/"), "/");
    assert_eq!(container_abs("data/dir/."), "/data/dir/.");
    assert!(asserts_directory("/x/") && asserts_directory("/x/.") && !asserts_directory("/x"));
}

#[test]
fn rebasing_follows_docker() {
    assert_eq!(rebase_name("/l/", "/t"), ("/t/".to_owned(), "l".to_owned()));
    assert_eq!(
        rebase_name("/l/.", "/t"),
        ("/t/.".to_owned(), String::new())
    );
    assert_eq!(rebase_name("/l", "/t"), ("/t".to_owned(), "l".to_owned()));
    assert_eq!(rebase_name("/t", "/t"), ("/t".to_owned(), String::new()));
    // strings.Replace(name, old, new, 1): the first occurrence, wherever it is.
    assert_eq!(replace_first("./x", ".", "new"), "new/x");
    assert_eq!(replace_first("dir/dir", "dir", "d2"), "d2/dir");
    assert_eq!(replace_first("x", "y", "z"), "x");
}

#[test]
fn arguments_name_a_container_as_docker_reads_them() {
    assert_eq!(split_arg("c1:/x"), (Some("c1"), "/x"));
    assert_eq!(split_arg("c1:"), (Some("c1"), ""));
    assert_eq!(split_arg("/abs:x"), (None, "/abs:x"));
    assert_eq!(split_arg("./a:b"), (None, "./a:b"));
    assert_eq!(split_arg("file"), (None, "file"));
    assert_eq!(split_arg("-"), (None, "-"));
}

#[test]
fn the_destination_decides_where_an_archive_goes() {
    let info = |exists, is_dir| DestInfo {
        path: "/d/x".to_owned(),
        exists,
        is_dir,
    };
    let r = |dest: &DestInfo, src_dir| prepare_copy(dest, src_dir, "s", "/d", "x");
    assert_eq!(
        r(&info(true, true), false).unwrap(),
        ("/d/x".to_owned(), None)
    );
    assert_eq!(
        r(&info(true, false), false).unwrap(),
        ("/d".to_owned(), Some(("s".to_owned(), "x".to_owned())))
    );
    assert_eq!(
        r(&info(true, false), true).unwrap_err().to_string(),
        "cannot copy directory"
    );
    assert_eq!(
        r(&info(false, false), true).unwrap(),
        ("/d".to_owned(), Some(("s".to_owned(), "x".to_owned())))
    );
    let slash = DestInfo {
        path: "/d/x/".to_owned(),
        exists: false,
        is_dir: false,
    };
    assert_eq!(
        prepare_copy(&slash, false, "s", "/d", "x")
            .unwrap_err()
            .to_string(),
        "no such directory"
    );
}

#[test]
fn errors_read_as_go_prints_them() {
    let e = io::Error::from_raw_os_error(Errno::NOENT.raw_os_error());
    assert_eq!(
        path_error("lstat", "/x", &e).to_string(),
        "lstat /x: no such file or directory"
    );
}
