//! `hoist build` memory is linear in the number of instructions: a Dockerfile of 10,000 `ENV`
//! lines builds in under 200 MB peak RSS (it took gigabytes when every step's image config was
//! kept until the end of the solve).
//!
//! The peak RSS is the kernel's count for the waited-for child (`getrusage(RUSAGE_CHILDREN)`
//! `ru_maxrss`); this file holds one test so the only children are the `hoist` processes it runs.

use std::process::{Command, Stdio};

use nix::sys::resource::{UsageWho, getrusage};

const HOIST: &str = env!("CARGO_BIN_EXE_hoist");
const STEPS: usize = 10_000;
const LIMIT_MB: i64 = 200;

#[test]
fn ten_thousand_env_instructions_build_in_under_200_mb() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let mut df = String::from("FROM scratch\n");
    for i in 0..STEPS {
        df.push_str(&format!("ENV V{i}=value-{i}-$V0\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let home = dir.path().join("home");
    let out = Command::new(HOIST)
        .env("HOIST_HOME", &home)
        .args(["build", "--progress", "quiet", "-t", "many-env"])
        .arg(&ctx)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ru_maxrss is in KiB on Linux.
    let peak_mb = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss() / 1024;
    eprintln!("peak RSS of hoist build with {STEPS} ENV lines: {peak_mb} MB");
    assert!(
        peak_mb < LIMIT_MB,
        "hoist build of {STEPS} ENV lines peaked at {peak_mb} MB (limit {LIMIT_MB} MB)"
    );

    // And the image is what the Dockerfile says: every variable, in order.
    let out = Command::new(HOIST)
        .env("HOIST_HOME", &home)
        .args(["inspect", "many-env"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env: Vec<&str> = v[0]["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .filter(|e| e.starts_with('V'))
        .collect();
    assert_eq!(env.len(), STEPS);
    assert_eq!(env[0], "V0=value-0-");
    let last = format!("V{}=value-{}-value-0-", STEPS - 1, STEPS - 1);
    assert_eq!(env[STEPS - 1], last);
}
