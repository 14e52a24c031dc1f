//! Inputs the `reference` fuzz target (`fuzz/`) found, kept so the bugs stay fixed. The raw
//! inputs are in `fuzz/regressions/reference/`.

use hoist_oci::Reference;

/// A reference's familiar form (what `hoist images` shows) must name the same image.
fn assert_familiar_round_trips(s: &str) {
    let r = Reference::parse(s).unwrap();
    let familiar = r.familiar();
    let again = Reference::parse(&familiar)
        .unwrap_or_else(|e| panic!("familiar form {familiar:?} of {s:?} does not parse: {e}"));
    assert_eq!(
        again, r,
        "familiar form {familiar:?} of {s:?} names another image"
    );
}

#[test]
fn the_fuzzers_input_keeps_its_library_prefix() {
    // fuzz/regressions/reference/crash-bf14...: `library/a/b` shortened to `a/b`, another repo.
    let data = include_bytes!(
        "../../fuzz/regressions/reference/crash-bf14307cdf75464c97ca33dedd444ad01e7ea50d"
    );
    let s = std::str::from_utf8(data).unwrap();
    assert_familiar_round_trips(s);
    assert_eq!(
        Reference::parse(s).unwrap().familiar(),
        "library/v1busybrary/v1busybbox:1.36"
    );
}

#[test]
fn every_docker_hub_path_has_a_familiar_form_naming_it() {
    for s in [
        "library/a/b",
        "docker.io/library/a/b/c:t",
        "docker.io/foo.bar/x",
        "docker.io/localhost/x:1",
        "index.docker.io/library/x.y/z",
        "alpine",
        "user/app:2",
        "localhost:5000/library/x",
        "ghcr.io/library/x",
    ] {
        assert_familiar_round_trips(s);
    }
    // The usual short forms stay short.
    assert_eq!(
        Reference::parse("docker.io/library/alpine")
            .unwrap()
            .familiar(),
        "alpine:latest"
    );
    assert_eq!(
        Reference::parse("user/app:2").unwrap().familiar(),
        "user/app:2"
    );
    assert_eq!(
        Reference::parse("docker.io/foo.bar/x").unwrap().familiar(),
        "docker.io/foo.bar/x:latest"
    );
}

#[test]
fn a_host_named_only_by_its_capitals_keeps_them() {
    // fuzz/regressions/reference/crash-3280...: `aUkb-d/e` names the registry `aUkb-d` (docker:
    // capitals make the first part a host); lowercased it printed as `aukb-d/e`, a Docker Hub
    // repository.
    let data = include_bytes!(
        "../../fuzz/regressions/reference/crash-32808d4ec47c0c23d3cda2f59232c74e2b10857f"
    );
    let s = std::str::from_utf8(data).unwrap();
    let r = Reference::parse(s).unwrap();
    assert_eq!(r.registry(), "aUkb-d");
    let printed = r.to_string();
    assert_eq!(Reference::parse(&printed).unwrap(), r, "{printed}");
    assert_familiar_round_trips(s);
    // Real hosts are still lowercased.
    assert_eq!(
        Reference::parse("Reg.Example.COM/a").unwrap().registry(),
        "reg.example.com"
    );
    assert_eq!(
        Reference::parse("LocalHost:5000/a").unwrap().registry(),
        "localhost:5000"
    );
}
