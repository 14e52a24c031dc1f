//! The base of a stage: an image resolved from the local store (pulled when missing), or `scratch`,
//! and the state a stage starts with from its config.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hoist_oci::{Digest, Reference};
use hoist_storage::images::Platform;
use serde_json::{Value, json};

use crate::build::{BuildError, BuildServices, Result};
use crate::convert::StageState;
use crate::snapshot::{LayerRef, Snapshot};

/// The image config fields BuildKit keeps from a base image (the OCI ones and docker's
/// extensions); the rest (`Hostname`, `AttachStdin`, `Tty`...) is dropped, as BuildKit's parse
/// into its image struct drops it. A config with no `PATH` gets the default one, as
/// dockerfile2llb adds it.
pub(crate) fn base_config(mut config: Value) -> Value {
    const KEEP: &[&str] = &[
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ];
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    if let Some(c) = config["config"].as_object_mut() {
        c.retain(|k, v| KEEP.contains(&k.as_str()) && !v.is_null());
        let has_path = c.get("Env").and_then(Value::as_array).is_some_and(|e| {
            e.iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("PATH=")))
        });
        if !has_path {
            let e = c.entry("Env").or_insert_with(|| json!([]));
            if !e.is_array() {
                *e = json!([]);
            }
            if let Some(a) = e.as_array_mut() {
                a.insert(0, json!(DEFAULT_PATH));
            }
        }
    }
    config
}

pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn image_snapshot(
    image: &hoist_storage::images::Image,
    config: Value,
) -> Result<Snapshot> {
    let config = base_config(config);
    let layers = image
        .manifest
        .layers()
        .iter()
        .zip(hoist_storage::images::config_diff_ids(&config))
        .map(|(l, diff_id)| {
            Ok(LayerRef {
                digest: Digest::parse(l.digest().as_ref())
                    .map_err(|e| BuildError::Other(e.to_string()))?,
                diff_id,
                size: l.size(),
                media_type: l.media_type().to_string(),
                repo: Some(image.repo.to_string()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot { layers, config })
}

pub(crate) fn empty_config(platform: &Platform) -> Value {
    let mut c = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [DEFAULT_PATH], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    if let Some(v) = &platform.variant {
        c["variant"] = json!(v);
    }
    c
}

pub(crate) fn state_of(config: &Value, _global: &BTreeMap<String, Option<String>>) -> StageState {
    let c = &config["config"];
    let env = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str())
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.to_owned(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    StageState {
        env,
        args: BTreeMap::new(),
        workdir: c["WorkingDir"].as_str().unwrap_or("").to_owned(),
        user: c["User"].as_str().unwrap_or("").to_owned(),
        shell: c["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]),
        config: config.clone(),
        cmd_set: false,
        onbuild: Vec::new(),
    }
}

/// Whether this host runs `p`'s programs: its own platform, or one with a binfmt_misc emulator
/// (qemu-user) registered.
pub(crate) fn can_run(host: &Platform, p: &Platform) -> bool {
    if p.os != host.os {
        return false;
    }
    if p.architecture == host.architecture {
        return true;
    }
    let qemu = match p.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        other => other,
    };
    Path::new("/proc/sys/fs/binfmt_misc")
        .join(format!("qemu-{qemu}"))
        .exists()
}

/// A base image from the local store (pulled when missing or with `pull`), for `platform` (from
/// `FROM --platform`; the host's when `None`). An image that is not for the platform asked for is
/// an error, not a silent substitute.
pub(crate) async fn resolve_image(
    env: &Arc<BuildServices>,
    name: &str,
    pull: bool,
    platform: Option<&Platform>,
) -> Result<(Reference, hoist_storage::images::Image, Value)> {
    let wanted = platform.unwrap_or(&env.platform);
    let reference = Reference::parse(name).map_err(|e| BuildError::Base {
        reference: name.to_owned(),
        message: e.to_string(),
    })?;
    let base_err = |message: String| BuildError::Base {
        reference: reference.familiar(),
        message,
    };
    let mut present = env.images.image(&reference, wanted).await;
    if pull || present.is_err() {
        match &env.puller {
            Some(p) => {
                let pulled = p.pull(&reference, wanted).await;
                match (pulled, &present) {
                    (Ok(()), _) => present = env.images.image(&reference, wanted).await,
                    // Without --pull a missing image must come from the registry.
                    (Err(e), Err(_)) => {
                        return Err(base_err(format!(
                            "not in the local store, and pulling failed: {e}"
                        )));
                    }
                    (Err(e), Ok(_)) => {
                        return Err(base_err(format!("pulling failed: {e}")));
                    }
                }
            }
            None if present.is_err() => {
                return Err(base_err("not in the local store".into()));
            }
            None => {}
        }
    }
    let image = present.map_err(|e| base_err(e.to_string()))?;
    let (_, bytes) = env.images.config(&image).await?;
    let config: Value =
        serde_json::from_slice(&bytes).map_err(|e| base_err(format!("config: {e}")))?;
    if let Some(p) = platform {
        let is = |k: &str, v: &str| config[k].as_str().is_none_or(|c| c == v);
        if !is("os", &p.os) || !is("architecture", &p.architecture) {
            return Err(base_err(format!(
                "the image is for {}/{}, not {p}",
                config["os"].as_str().unwrap_or("?"),
                config["architecture"].as_str().unwrap_or("?")
            )));
        }
    }
    Ok((reference, image, config))
}
