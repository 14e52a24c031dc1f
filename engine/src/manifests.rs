//! docker's local manifest lists (`hoist manifest create|annotate|inspect|push|rm`): a list made
//! from images already in a registry (each one's descriptor and its config's platform), kept in
//! `$HOIST_HOME/manifests/`, and its JSON as docker pushes it (docker's manifest list, indented
//! as Go's `MarshalIndent` with three spaces), so the same images give the same list digest.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hoist_client::RegistryClient;
use hoist_oci::{Digest, Reference, media_type};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{OptionExt, Result, ResultExt, bail};

/// The platform of a list entry, in docker's field order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// One entry of docker's manifest list.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ManifestDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    pub platform: PlatformSpec,
}

#[derive(Serialize)]
pub struct ManifestList<'a> {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: &'a str,
    pub manifests: Vec<&'a ManifestDescriptor>,
}

/// A local list: its images, each with where it came from.
#[derive(Serialize, Deserialize, Default)]
pub struct LocalList {
    pub reference: String,
    pub images: Vec<LocalImage>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct LocalImage {
    pub reference: String,
    /// The repository the image is in (copied from there into the list's on push).
    pub repository: String,
    pub descriptor: ManifestDescriptor,
    /// The image's manifest as the registry served it (`inspect LIST IMAGE` prints it).
    #[serde(default)]
    pub manifest: String,
}

/// The reference as docker names it in messages: registry, repository and tag (`latest` when
/// none is given).
pub fn full(r: &Reference) -> String {
    let mut s = format!("{}/{}", r.registry(), r.repository());
    if let Some(d) = r.digest() {
        s.push('@');
        s.push_str(d.as_str());
    } else {
        s.push(':');
        s.push_str(&r.target());
    }
    s
}

pub fn lists_dir(home: &Path) -> PathBuf {
    home.join("manifests")
}

/// The file of a local list: its full name with `/` and `:` made safe (`%2F`, `%3A`; `%`
/// itself as `%25`), so two names never share a file.
pub fn list_path(home: &Path, r: &Reference) -> PathBuf {
    let name: String = full(r)
        .chars()
        .map(|c| match c {
            '%' => "%25".to_owned(),
            '/' => "%2F".to_owned(),
            ':' => "%3A".to_owned(),
            '@' => "%40".to_owned(),
            c => c.to_string(),
        })
        .collect();
    lists_dir(home).join(format!("{name}.json"))
}

pub fn load(home: &Path, r: &Reference) -> Result<Option<LocalList>> {
    let p = list_path(home, r);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_ctx(|| format!("reading {}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_ctx(|| format!("reading {}", p.display())),
    }
}

pub fn save(home: &Path, r: &Reference, list: &LocalList) -> Result<()> {
    let dir = lists_dir(home);
    std::fs::create_dir_all(&dir).with_ctx(|| format!("creating {}", dir.display()))?;
    let p = list_path(home, r);
    let bytes = serde_json::to_vec_pretty(list).ctx("encoding the manifest list")?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).ctx("writing the manifest list")?;
    std::fs::write(tmp.path(), bytes).ctx("writing the manifest list")?;
    tmp.persist(&p)
        .with_ctx(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// docker's manifest list JSON of `entries`: Go's `json.MarshalIndent(list, "", "   ")`.
pub fn list_json(entries: &[&ManifestDescriptor]) -> Result<Vec<u8>> {
    let list = ManifestList {
        schema_version: 2,
        media_type: media_type::DOCKER_MANIFEST_LIST,
        manifests: entries.to_vec(),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    list.serialize(&mut ser).ctx("encoding the manifest list")?;
    Ok(out)
}

/// Go's `json.Indent(dst, src, "", "\t")`: the same bytes re-indented (order, numbers and
/// escapes as they are), a space after each colon, `{}`/`[]` kept empty.
pub fn go_indent(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut need_indent = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b'\t', depth));
    };
    for &c in src {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if need_indent && c != b']' && c != b'}' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            b'"' => {
                in_string = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                need_indent = true;
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => {
                out.push(c);
                out.push(b' ');
            }
            b'}' | b']' => {
                if need_indent {
                    // An empty object or array.
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The descriptor of the image `r` as a list entry: its manifest's media type, size and digest,
/// and the platform of its config.
pub async fn describe(
    client: &RegistryClient,
    r: &Reference,
) -> Result<(ManifestDescriptor, Bytes)> {
    let repo = r.repository().as_str();
    let (bytes, mt, digest) = client
        .fetch_manifest(repo, &r.target())
        .await
        .with_ctx(|| format!("{}: no such manifest", full(r)))?;
    if media_type::is_index(&mt) {
        bail!("{} is a manifest list", full(r));
    }
    let v: Value = serde_json::from_slice(&bytes).with_ctx(|| full(r))?;
    let config = v["config"]["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
        .or_invalid(|| format!("{}: the manifest names no config", full(r)))?;
    let cfg = client
        .fetch_config(repo, &config)
        .await
        .with_ctx(|| format!("{}: reading its config", full(r)))?;
    let c: Value = serde_json::from_slice(&cfg).with_ctx(|| format!("{}: config", full(r)))?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    let list = |k: &str| -> Vec<String> {
        c[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let d = ManifestDescriptor {
        media_type: mt,
        size: bytes.len() as u64,
        digest: digest.to_string(),
        platform: PlatformSpec {
            architecture: s("architecture"),
            os: s("os"),
            os_version: s("os.version"),
            os_features: list("os.features"),
            variant: s("variant"),
            features: Vec::new(),
        },
    };
    Ok((d, bytes))
}

pub fn remove(home: &Path, r: &Reference) -> Result<()> {
    let p = list_path(home, r);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("No such manifest: {}", full(r))
        }
        Err(e) => Err(e).with_ctx(|| format!("removing {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_indent_matches_go_json_indent() {
        let src =
            br#"{"schemaVersion":2,"config":{"a":[],"b":{}},"layers":[{"s":"x\"y,{"},1.5e3]}"#;
        let want = "{\n\t\"schemaVersion\": 2,\n\t\"config\": {\n\t\t\"a\": [],\n\t\t\"b\": {}\n\t},\n\t\"layers\": [\n\t\t{\n\t\t\t\"s\": \"x\\\"y,{\"\n\t\t},\n\t\t1.5e3\n\t]\n}";
        assert_eq!(String::from_utf8(go_indent(src)).unwrap(), want);
        // Already indented input comes out the same.
        assert_eq!(String::from_utf8(go_indent(want.as_bytes())).unwrap(), want);
    }

    #[test]
    fn the_list_is_docker_s_marshal_indent() {
        let d = ManifestDescriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            size: 7,
            digest: "sha256:00".into(),
            platform: PlatformSpec {
                architecture: "arm".into(),
                os: "linux".into(),
                variant: "v7".into(),
                ..PlatformSpec::default()
            },
        };
        let got = String::from_utf8(list_json(&[&d]).unwrap()).unwrap();
        let want = "{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.docker.distribution.manifest.list.v2+json\",\n   \"manifests\": [\n      {\n         \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n         \"size\": 7,\n         \"digest\": \"sha256:00\",\n         \"platform\": {\n            \"architecture\": \"arm\",\n            \"os\": \"linux\",\n            \"variant\": \"v7\"\n         }\n      }\n   ]\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn list_files_never_collide() {
        let home = Path::new("/h");
        let a = list_path(home, &Reference::parse("127.0.0.1:5000/a/b:c").unwrap());
        let b = list_path(home, &Reference::parse("127.0.0.1:5000/a_b:c").unwrap());
        assert_ne!(a, b);
        assert_eq!(a.parent().unwrap(), Path::new("/h/manifests"));
    }
}
