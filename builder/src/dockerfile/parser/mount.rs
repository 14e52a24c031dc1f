//! `RUN --mount=type=...,key=value,...` (BuildKit's CSV form).

use super::suggest;
use crate::dockerfile::{CacheSharing, MountType, RunMount};

/// Go's `encoding/csv` reading of one record.
pub(super) fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some('"') => return Err(format!("bare \" in non-quoted-field: {s}")),
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

pub(super) fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid value {v:?} for {key}: expected a boolean")),
    }
}

/// `units.RAMInBytes`: `64m`, `1.5GiB`, `1024` (binary multiples).
pub(super) fn parse_ram(v: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {v:?}: expected a number with an optional unit (k, m, g, t, p)");
    let t = v.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..num_end].parse().map_err(|_| bad())?;
    let unit = t[num_end..].trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((num * mult) as u64)
}

pub(super) fn parse_mount(val: &str) -> Result<RunMount, String> {
    let fields = csv_fields(val).map_err(|e| format!("--mount: {e}"))?;
    let mut m = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: true,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let mut ro: Option<bool> = None;
    for field in fields {
        match field.split_once('=') {
            Some((k, v)) => key_value(
                &mut m,
                &mut ro,
                &k.to_ascii_lowercase(),
                v.to_string(),
                &field,
            )?,
            None => bare_key(&mut m, &mut ro, &field.to_ascii_lowercase(), &field)?,
        }
    }
    m.readonly = ro.unwrap_or(!matches!(m.kind, MountType::Cache | MountType::Tmpfs));
    if m.target.is_none()
        && matches!(
            m.kind,
            MountType::Bind | MountType::Cache | MountType::Tmpfs
        )
    {
        return Err(format!(
            "--mount: type={} needs a target (target=/path)",
            format!("{:?}", m.kind).to_ascii_lowercase()
        ));
    }
    if m.kind == MountType::Secret && m.id.is_none() && m.target.is_none() && m.env.is_none() {
        return Err("--mount: type=secret needs an id, a target or an env".into());
    }
    Ok(m)
}

/// A field with no `=value`: `ro`, `rw`, `required`.
fn bare_key(m: &mut RunMount, ro: &mut Option<bool>, key: &str, field: &str) -> Result<(), String> {
    match key {
        "readonly" | "ro" => *ro = Some(true),
        "readwrite" | "rw" => *ro = Some(false),
        "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
            m.required = true;
        }
        "required" => {
            return Err(format!(
                "--mount: unexpected key 'required' for mount type '{}'",
                format!("{:?}", m.kind).to_ascii_lowercase()
            ));
        }
        _ => {
            return Err(format!(
                "--mount: invalid field '{field}' must be a key=value pair"
            ));
        }
    }
    Ok(())
}

/// `type=`.
fn mount_type(value: &str) -> Result<MountType, String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => {
            let mut msg = format!("--mount: unsupported mount type {value:?}");
            if let Some(s) = suggest(value, &["bind", "cache", "tmpfs", "secret", "ssh"]) {
                msg.push_str(&format!(" (did you mean {}?)", s.to_ascii_lowercase()));
            }
            return Err(msg);
        }
    })
}

/// `key` is for the mount types `kinds` only (checked against the type given so far).
fn only(key: &str, kinds: &[MountType], m: &RunMount) -> Result<(), String> {
    if kinds.contains(&m.kind) {
        Ok(())
    } else {
        Err(format!(
            "--mount: unexpected key '{key}' for mount type '{}'",
            format!("{:?}", m.kind).to_ascii_lowercase()
        ))
    }
}

/// A `key=value` field.
fn key_value(
    m: &mut RunMount,
    ro: &mut Option<bool>,
    key: &str,
    value: String,
    field: &str,
) -> Result<(), String> {
    match key {
        "type" => m.kind = mount_type(&value)?,
        "from" => {
            only(key, &[MountType::Bind, MountType::Cache], m)?;
            m.from = Some(value);
        }
        "source" | "src" => {
            only(
                key,
                &[MountType::Bind, MountType::Cache, MountType::Secret],
                m,
            )?;
            m.source = Some(value);
        }
        "target" | "dst" | "destination" => m.target = Some(value),
        "readonly" | "ro" => *ro = Some(parse_bool(key, &value)?),
        "readwrite" | "rw" => *ro = Some(!parse_bool(key, &value)?),
        "required" => {
            only(key, &[MountType::Secret, MountType::Ssh], m)?;
            m.required = parse_bool(key, &value)?;
        }
        "sharing" => {
            only(key, &[MountType::Cache], m)?;
            m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                "shared" => CacheSharing::Shared,
                "private" => CacheSharing::Private,
                "locked" => CacheSharing::Locked,
                _ => {
                    return Err(format!(
                        "--mount: unsupported sharing value {value:?} (use shared, private or locked)"
                    ));
                }
            });
        }
        "id" => {
            only(
                key,
                &[MountType::Cache, MountType::Secret, MountType::Ssh],
                m,
            )?;
            m.id = Some(value);
        }
        "size" => {
            only(key, &[MountType::Tmpfs], m)?;
            m.size = Some(parse_ram(&value).map_err(|e| format!("--mount: {e}"))?);
        }
        "mode" => {
            only(
                key,
                &[MountType::Cache, MountType::Secret, MountType::Ssh],
                m,
            )?;
            m.mode =
                Some(u32::from_str_radix(&value, 8).map_err(|_| {
                    format!("--mount: invalid value {value} for mode: expected octal")
                })?);
        }
        "uid" | "gid" => {
            only(
                key,
                &[MountType::Cache, MountType::Secret, MountType::Ssh],
                m,
            )?;
            let n: u32 = value
                .parse()
                .map_err(|_| format!("--mount: invalid value {value} for {key}"))?;
            if key == "uid" {
                m.uid = Some(n);
            } else {
                m.gid = Some(n);
            }
        }
        "env" => {
            only(key, &[MountType::Secret], m)?;
            m.env = Some(value);
        }
        _ => {
            let mut msg = format!("--mount: unexpected key '{key}' in '{field}'");
            let keys = [
                "type",
                "from",
                "source",
                "target",
                "readonly",
                "readwrite",
                "required",
                "sharing",
                "id",
                "size",
                "mode",
                "uid",
                "gid",
                "env",
            ];
            if let Some(s) = suggest(key, &keys) {
                msg.push_str(&format!(" (did you mean {}?)", s.to_ascii_lowercase()));
            }
            return Err(msg);
        }
    }

    Ok(())
}
