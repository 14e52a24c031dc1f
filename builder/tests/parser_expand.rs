//! Variable substitution tables from moby's shell lexer tests (`envVarTest`, `wordsTest`), with
//! PWD=/home, SHELL=bash, NULL="" as there.

use hoist_builder::dockerfile::{expand, expand_heredoc, expand_words};

fn env(name: &str) -> Option<String> {
    match name {
        "PWD" => Some("/home".into()),
        "SHELL" => Some("bash".into()),
        "NULL" => Some(String::new()),
        "FILE" => Some("dir/archive.tar.gz".into()),
        _ => None,
    }
}

/// `(input, expected)`; `None` means an error.
const WORD_CASES: &[(&str, Option<&str>)] = &[
    ("hello", Some("hello")),
    ("he'll'o", Some("hello")),
    ("he'llo", None),
    ("he\\'llo", Some("he'llo")),
    ("he\\\\'llo", None),
    ("abc\\tdef", Some("abctdef")),
    ("\"abc\\tdef\"", Some("abc\\tdef")),
    ("\"abc\\\\tdef\"", Some("abc\\tdef")),
    ("'abc\\tdef'", Some("abc\\tdef")),
    ("hello\\", Some("hello")),
    ("hello\\\\", Some("hello\\")),
    ("\"hello", None),
    ("\"hello\\\"", None),
    ("\"hel'lo\"", Some("hel'lo")),
    ("'hello", None),
    ("'hello\\'", Some("hello\\")),
    ("'hello\\there'", Some("hello\\there")),
    ("'hello\\\\there'", Some("hello\\\\there")),
    ("\"''\"", Some("''")),
    ("$.", Some("$.")),
    ("$1", Some("")),
    ("he$1x", Some("hex")),
    ("he$.x", Some("he$.x")),
    ("he$pwd.", Some("he.")),
    ("he$PWD", Some("he/home")),
    ("he\\$PWD", Some("he$PWD")),
    ("he\\\\$PWD", Some("he\\/home")),
    ("\"he\\$PWD\"", Some("he$PWD")),
    ("\"he\\\\$PWD\"", Some("he\\/home")),
    ("\\${}", Some("${}")),
    ("\\${}aaa", Some("${}aaa")),
    ("he\\${}", Some("he${}")),
    ("he\\${}xx", Some("he${}xx")),
    ("${}", None),
    ("${}aaa", None),
    ("he${}", None),
    ("he${}xx", None),
    ("he${hi}", Some("he")),
    ("he${hi}xx", Some("hexx")),
    ("he${PWD}", Some("he/home")),
    ("he${.}", None),
    ("he${XXX:-000}xx", Some("he000xx")),
    ("he${PWD:-000}xx", Some("he/homexx")),
    ("he${XXX:-$PWD}xx", Some("he/homexx")),
    ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
    ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
    ("he${XXX:YYY}", None),
    ("he${XXX?}", None),
    ("he${XXX:?}", None),
    ("he${PWD?}", Some("he/home")),
    ("he${PWD:?}", Some("he/home")),
    ("he${NULL?}", Some("he")),
    ("he${NULL:?}", None),
    ("he${XXX:+${PWD}}xx", Some("hexx")),
    ("he${PWD:+${XXX}}xx", Some("hexx")),
    ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
    ("he${XXX:+000}xx", Some("hexx")),
    ("he${PWD:+000}xx", Some("he000xx")),
    ("'he${XX}'", Some("he${XX}")),
    ("\"he${PWD}\"", Some("he/home")),
    ("\"he'$PWD'\"", Some("he'/home'")),
    ("\"$PWD\"", Some("/home")),
    ("'$PWD'", Some("$PWD")),
    ("'\\$PWD'", Some("\\$PWD")),
    ("'\"hello\"'", Some("\"hello\"")),
    ("he\\$PWD", Some("he$PWD")),
    ("\"he\\$PWD\"", Some("he$PWD")),
    ("'he\\$PWD'", Some("he\\$PWD")),
    ("he${PWD", None),
    ("he${PWD:=000}xx", None),
    ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
    ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
    ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
    ("안녕하세요", Some("안녕하세요")),
    ("안'녕'하세요", Some("안녕하세요")),
    ("안'녕하세요", None),
    ("안녕\\'하세요", Some("안녕'하세요")),
    ("안\\\\'녕하세요", None),
    ("안녕\\t하세요", Some("안녕t하세요")),
    ("\"안녕\\t하세요\"", Some("안녕\\t하세요")),
    ("'안녕\\t하세요", None),
    ("안녕하세요\\", Some("안녕하세요")),
    ("안녕하세요\\\\", Some("안녕하세요\\")),
    ("\"안녕하세요", None),
    ("\"안녕하세요\\\"", None),
    ("\"안녕'하세요\"", Some("안녕'하세요")),
    ("'안녕하세요'", Some("안녕하세요")),
    ("'안녕하세요\\'", Some("안녕하세요\\")),
    // the non-colon forms: only unset counts, empty is a value
    ("${NULL-def}", Some("")),
    ("${NULL:-def}", Some("def")),
    ("${XXX-def}", Some("def")),
    ("${NULL+alt}", Some("alt")),
    ("${NULL:+alt}", Some("")),
    ("${XXX+alt}", Some("")),
    ("${XXX-'a b'}", Some("a b")),
    ("${XXX:-\"$PWD x\"}", Some("/home x")),
    // pattern removal and replacement
    ("${FILE#*/}", Some("archive.tar.gz")),
    ("${FILE##*.}", Some("gz")),
    ("${FILE%.*}", Some("dir/archive.tar")),
    ("${FILE%%.*}", Some("dir/archive")),
    ("${FILE/ar/AR}", Some("dir/ARchive.tar.gz")),
    ("${FILE//ar/AR}", Some("dir/ARchive.tAR.gz")),
    ("${FILE:#x}", None),
    ("${PWD#*/}", Some("home")),
    ("${PWD%/*}", Some("")),
    ("${FILE#*[a]}", Some("dir/archive.tar.gz")),
    ("${FILE/[a]/x}", Some("dir/archive.tar.gz")),
    ("${FILE/\\//_}", Some("dir_archive.tar.gz")),
    ("${FILE//*/x}", Some("x")),
    ("${FILE//?/.}", Some("..................")),
    ("${FILE%\\q}", None),
    ("${FILE//a}", None),
    ("${XXX#x}", Some("")),
    // special parameters and digits
    ("$$", Some("")),
    ("$@x", Some("x")),
    ("$12x", Some("x")),
];

#[test]
fn expand_matches_moby_word_table() {
    let mut failures = Vec::new();
    for (input, want) in WORD_CASES {
        let got = expand(input, &env, '\\');
        match (want, &got) {
            (Some(w), Ok(g)) if w == g => {}
            (None, Err(_)) => {}
            _ => failures.push(format!("{input:?}: want {want:?}, got {got:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn backtick_escape_token() {
    // With `# escape=`` the backslash is an ordinary character (Windows paths).
    assert_eq!(
        expand("c:\\foo\\$PWD", &env, '`').unwrap(),
        "c:\\foo\\/home"
    );
    assert_eq!(expand("c:\\foo`$PWD", &env, '`').unwrap(), "c:\\foo$PWD");
    assert_eq!(expand("\"a`\"b\"", &env, '`').unwrap(), "a\"b");
    assert_eq!(expand("\"a\\\"", &env, '`').unwrap(), "a\\");
}

#[test]
fn errors_name_the_problem() {
    let e = expand("${XXX:?must be set}", &env, '\\').unwrap_err();
    assert_eq!(e.message, "XXX: must be set");
    let e = expand("${XXX?}", &env, '\\').unwrap_err();
    assert_eq!(e.message, "XXX: is not allowed to be unset");
    let e = expand("${NULL:?}", &env, '\\').unwrap_err();
    assert_eq!(e.message, "NULL: is not allowed to be empty");
    let e = expand("${}", &env, '\\').unwrap_err();
    assert_eq!(e.message, "syntax error: bad substitution");
    let e = expand("he${PWD", &env, '\\').unwrap_err();
    assert_eq!(e.message, "syntax error: missing '}'");
    let e = expand("${PWD:=x}", &env, '\\').unwrap_err();
    assert_eq!(e.message, "unsupported modifier (:=) in substitution");
    assert!(
        e.to_string().starts_with("failed to process \"${PWD:=x}\""),
        "{e}"
    );
}

fn words_env(name: &str) -> Option<String> {
    match name {
        "hi" => Some("hi".into()),
        "space" => Some("abc  def".into()),
        "leading" => Some("  ab c".into()),
        "trailing" => Some("ab c   ".into()),
        _ => None,
    }
}

#[test]
fn expand_words_matches_moby_words_table() {
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("hello", Some(&["hello"])),
        ("hello${hi}bye", Some(&["hellohibye"])),
        ("hello${space}bye", Some(&["helloabc", "defbye"])),
        ("hello\"${space}\"bye", Some(&["helloabc  defbye"])),
        ("hello \"${space}\"bye", Some(&["hello", "abc  defbye"])),
        ("hello${leading}def", Some(&["hello", "ab", "cdef"])),
        ("hello\"${leading}\" def", Some(&["hello  ab c", "def"])),
        ("hello\"${leading}\"", Some(&["hello  ab c"])),
        ("hello${leading}", Some(&["hello", "ab", "c"])),
        ("hello${trailing}", Some(&["helloab", "c"])),
        ("hello${trailing}d", Some(&["helloab", "c", "d"])),
        ("hello\"${trailing}\"d", Some(&["helloab c   d"])),
        ("hel\"lo${trailing}\"", Some(&["helloab c   "])),
        ("hello\" there  \"", Some(&["hello there  "])),
        ("hello there", Some(&["hello", "there"])),
        ("hello\\ there", Some(&["hello there"])),
        ("hello\" there", None),
        ("hello\\\" there", Some(&["hello\"", "there"])),
        ("hello\"\\\\there\"", Some(&["hello\\there"])),
        ("hello\"\\there\"", Some(&["hello\\there"])),
        ("hello'\\\\there'", Some(&["hello\\\\there"])),
        ("hello'\\there'", Some(&["hello\\there"])),
        ("hello'$there'", Some(&["hello$there"])),
        ("80 443/tcp", Some(&["80", "443/tcp"])),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = expand_words(input, &words_env, '\\');
        match (want, &got) {
            (Some(w), Ok(g)) if w.iter().map(|s| s.to_string()).collect::<Vec<_>>() == *g => {}
            (None, Err(_)) => {}
            _ => failures.push(format!("{input:?}: want {want:?}, got {got:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn heredoc_bodies_keep_quotes() {
    let got = expand_heredoc("echo \"$PWD\" '$SHELL' \\$x\n", &env, '\\').unwrap();
    assert_eq!(got, "echo \"/home\" 'bash' $x\n");
}
