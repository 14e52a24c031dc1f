//! Docker's default seccomp profile in OCI form.
//!
//! `seccomp_default.json` is the default profile in moby's format (`profiles/seccomp/default.json`
//! as shipped by containers-common, Apache-2.0): an allowlist whose default action is an errno,
//! with rules that apply only on some architectures (`includes.arches`) or only when the container
//! has (`includes.caps`) or lacks (`excludes.caps`) some capabilities. [`default_profile`] resolves
//! those conditions for one container and architecture, like moby's `setupSeccomp`, so runc, crun
//! and hoist's executor all apply exactly the same filter.

use serde_json::{Value, json};

const PROFILE: &str = include_str!("seccomp_default.json");

/// The Go architecture names moby's profile conditions use.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "mips64" => "mips64le",
        other => other,
    }
}

/// The native libseccomp architecture of a Rust `ARCH`.
fn scmp_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The default profile for a container with capabilities `caps` on `rust_arch`
/// (`std::env::consts::ARCH`), as the OCI `linux.seccomp` object.
pub fn default_profile(caps: &[&str], rust_arch: &str) -> Value {
    profile_from(PROFILE, caps, rust_arch).expect("the embedded profile is valid")
}

/// A profile in moby's format (`docker run --security-opt seccomp=PATH`), resolved for a
/// container with `caps` on `rust_arch`, as the OCI `linux.seccomp` object.
pub fn profile_from(text: &str, caps: &[&str], rust_arch: &str) -> Result<Value, String> {
    let profile: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !profile["defaultAction"].is_string() {
        return Err("it has no defaultAction".to_owned());
    }
    let arch = go_arch(rust_arch);
    let native = scmp_arch(rust_arch);
    let mut architectures = vec![native.to_owned()];
    for m in profile["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == native {
            architectures.extend(
                strings(m.get("subArchitectures"))
                    .into_iter()
                    .map(str::to_owned),
            );
        }
    }
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let inc_arches = strings(rule.pointer("/includes/arches"));
        let inc_caps = strings(rule.pointer("/includes/caps"));
        let exc_arches = strings(rule.pointer("/excludes/arches"));
        let exc_caps = strings(rule.pointer("/excludes/caps"));
        if !inc_arches.is_empty() && !inc_arches.contains(&arch) {
            continue;
        }
        if exc_arches.contains(&arch) {
            continue;
        }
        if !inc_caps.iter().all(|c| caps.contains(c)) {
            continue;
        }
        if exc_caps.iter().any(|c| caps.contains(c)) {
            continue;
        }
        let mut out = json!({"names": rule["names"], "action": rule["action"]});
        if let Some(e) = rule.get("errnoRet").filter(|e| !e.is_null()) {
            out["errnoRet"] = e.clone();
        }
        if let Some(a) = rule
            .get("args")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            out["args"] = Value::Array(a.clone());
        }
        syscalls.push(out);
    }
    let mut out = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = profile.get("defaultErrnoRet").filter(|e| !e.is_null()) {
        out["defaultErrnoRet"] = e.clone();
    }
    Ok(out)
}
