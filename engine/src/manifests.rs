//! docker's local manifest lists (`hoist manifest create|annotate|inspect|push|rm`): a list made
//! from images already in a registry (each one's descriptor and its config's platform), kept in
//! `$HOIST_HOME/manifests/`, and its JSON as docker pushes it (docker's manifest list, indented
//! as Go's `MarshalIndent` with three spaces), so the same images give the same list digest.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hoist_client::{ClientOptions, DockerConfig, Endpoints, RegistryClient};
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

/// A reference as the manifest commands take it.
pub fn parse(s: &str) -> Result<Reference> {
    Reference::parse(s).with_ctx(|| format!("invalid reference format: {s}"))
}

/// What `manifest annotate` changes in an entry's platform (unset: kept).
#[derive(Default)]
pub struct PlatformEdit {
    pub os: Option<String>,
    pub arch: Option<String>,
    pub variant: Option<String>,
    pub os_version: Option<String>,
    /// Empty: kept.
    pub os_features: Vec<String>,
}

/// The os/arch pairs docker's `manifest annotate` accepts (Go's ports).
fn valid_os_arch(os: &str, arch: &str) -> bool {
    const PAIRS: &[(&str, &[&str])] = &[
        ("aix", &["ppc64"]),
        ("android", &["386", "amd64", "arm", "arm64"]),
        ("darwin", &["386", "amd64", "arm", "arm64"]),
        ("dragonfly", &["amd64"]),
        ("freebsd", &["386", "amd64", "arm", "arm64"]),
        ("illumos", &["amd64"]),
        ("ios", &["arm64"]),
        ("js", &["wasm"]),
        (
            "linux",
            &[
                "386", "amd64", "arm", "arm64", "loong64", "ppc64", "ppc64le", "mips", "mipsle",
                "mips64", "mips64le", "riscv64", "s390x",
            ],
        ),
        ("netbsd", &["386", "amd64", "arm", "arm64"]),
        ("openbsd", &["386", "amd64", "arm", "arm64", "mips64"]),
        ("plan9", &["386", "amd64", "arm"]),
        ("solaris", &["amd64"]),
        ("windows", &["386", "amd64", "arm", "arm64"]),
    ];
    PAIRS
        .iter()
        .any(|(o, archs)| *o == os && archs.contains(&arch))
}

/// `manifest annotate`: edits the platform of `image`'s entry in the local list `list_ref`.
pub fn annotate(
    home: &Path,
    list_ref: &Reference,
    image: &Reference,
    edit: PlatformEdit,
) -> Result<()> {
    let mut list = load(home, list_ref)?.or_invalid(|| {
        format!(
            "No such manifest: {}: create it with `hoist manifest create`",
            full(list_ref)
        )
    })?;
    let want = full(image);
    let reference = list.reference.clone();
    let entry = list
        .images
        .iter_mut()
        .find(|e| e.reference == want)
        .or_invalid(|| format!("manifest for image {want} does not exist in {reference}"))?;
    let p = &mut entry.descriptor.platform;
    if let Some(os) = edit.os {
        p.os = os;
    }
    if let Some(arch) = edit.arch {
        p.architecture = arch;
    }
    if let Some(v) = edit.variant {
        p.variant = v;
    }
    if let Some(v) = edit.os_version {
        p.os_version = v;
    }
    if !edit.os_features.is_empty() {
        p.os_features = edit.os_features;
    }
    // docker's check: a known os/arch pair (`go tool dist list`'s), else a warning-free refusal.
    if !valid_os_arch(&p.os, &p.architecture) {
        bail!(
            "manifest entry for image has unsupported os/arch combination: {}/{}",
            p.os,
            p.architecture
        );
    }
    save(home, list_ref, &list)
}

/// A manifest as a registry serves it, for `manifest inspect`.
pub enum Remote {
    /// One image: its manifest.
    Image(Bytes),
    /// A list: each entry's descriptor (with the platform the list gives it) and manifest.
    List(Vec<(ManifestDescriptor, Bytes)>),
}

/// The registry side of the manifest commands: endpoints and credentials of `$HOIST_HOME`.
pub struct Session {
    pub home: PathBuf,
    endpoints: Endpoints,
    config: DockerConfig,
}

impl Session {
    /// The endpoints of `home`; `insecure_host` is also spoken to over plain HTTP.
    pub fn open(home: PathBuf, insecure_host: Option<&str>) -> Result<Session> {
        let mut endpoints = crate::transfer::endpoints(&[], &home)?;
        if let Some(h) = insecure_host {
            endpoints = endpoints
                .with_insecure([h])
                .ctx("invalid insecure registry")?;
        }
        let config = DockerConfig::from_env().ctx("reading the docker config")?;
        Ok(Session {
            home,
            endpoints,
            config,
        })
    }

    pub async fn client(&self, r: &Reference) -> Result<RegistryClient> {
        RegistryClient::connect(
            r.registry(),
            &self.endpoints,
            &self.config,
            ClientOptions::default(),
        )
        .await
        .with_ctx(|| format!("connecting to {}", r.registry()))
    }

    /// `manifest create`: the local list `list_ref` of `images` (of its registry, as the user
    /// named them), each described from the registry; with `amend` an existing list keeps its
    /// other entries.
    pub async fn create(&self, list_ref: &Reference, images: &[String], amend: bool) -> Result<()> {
        let existing = load(&self.home, list_ref)?;
        if existing.is_some() && !amend {
            bail!(
                "refusing to amend an existing manifest list with no --amend flag: {}",
                full(list_ref)
            );
        }
        let mut list = existing.unwrap_or_default();
        list.reference = full(list_ref);
        let client = self.client(list_ref).await?;
        for name in images {
            let r = &parse(name)?;
            if r.registry() != list_ref.registry() {
                bail!(
                    "cannot use source images from a different registry than the target image: {} != {}",
                    r.registry(),
                    list_ref.registry()
                );
            }
            let (descriptor, manifest) = describe(&client, r).await?;
            let entry = LocalImage {
                reference: full(r),
                repository: r.repository().as_str().to_owned(),
                descriptor,
                manifest: String::from_utf8(manifest.to_vec())
                    .with_ctx(|| format!("{}: the manifest is not UTF-8", full(r)))?,
            };
            // An image named again replaces its entry, as docker's store keeps one file per
            // image.
            match list
                .images
                .iter_mut()
                .find(|e| e.reference == entry.reference)
            {
                Some(e) => *e = entry,
                None => list.images.push(entry),
            }
        }
        save(&self.home, list_ref, &list)
    }

    /// `manifest inspect` of a registry's manifest `r`.
    pub async fn fetch(&self, r: &Reference) -> Result<Remote> {
        let client = self.client(r).await?;
        let repo = r.repository().as_str();
        let (bytes, mt, _) = client
            .fetch_manifest(repo, &r.target())
            .await
            .map_err(|e| {
                crate::EngineError::Invalid(format!("no such manifest: {}: {e}", full(r)))
            })?;
        if !media_type::is_index(&mt) {
            return Ok(Remote::Image(bytes));
        }
        // Each entry's image fetched (its media type, size and digest checked), with the
        // platform the list gives it.
        let v: Value = serde_json::from_slice(&bytes).ctx("decoding the manifest list")?;
        let mut entries = Vec::new();
        for m in v["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(d) = m["digest"].as_str() else {
                continue;
            };
            let (child, cmt, digest) = client
                .fetch_manifest(repo, d)
                .await
                .with_ctx(|| format!("{}@{d}", full(r)))?;
            let platform: PlatformSpec =
                serde_json::from_value(m["platform"].clone()).unwrap_or_default();
            let descriptor = ManifestDescriptor {
                media_type: cmt,
                size: child.len() as u64,
                digest: digest.to_string(),
                platform,
            };
            entries.push((descriptor, child));
        }
        Ok(Remote::List(entries))
    }

    /// `manifest push`: every image of the local list into the list's repository by digest
    /// (blobs of another repository mounted; `pushed` is told each one's digest), then the
    /// list. Returns the list's digest; with `purge` the local list is removed after.
    pub async fn push(
        &self,
        list_ref: &Reference,
        purge: bool,
        mut pushed: impl FnMut(&Digest),
    ) -> Result<Digest> {
        if list_ref.digest().is_some() {
            bail!("cannot push to a digest reference");
        }
        let list = load(&self.home, list_ref)?
            .or_invalid(|| format!("No such manifest: {}", full(list_ref)))?;
        if list.images.is_empty() {
            bail!("{} has no images", full(list_ref));
        }
        let client = self.client(list_ref).await?;
        let target = list_ref.repository().as_str();
        for e in &list.images {
            let (bytes, mt, digest) = client
                .fetch_manifest(&e.repository, &e.descriptor.digest)
                .await
                .with_ctx(|| e.reference.clone())?;
            client
                .copy_manifest(&e.repository, target, &digest, &mt, bytes)
                .await
                .with_ctx(|| format!("copying {} into {target}", e.reference))?;
            pushed(&digest);
        }
        let entries: Vec<&ManifestDescriptor> = list.images.iter().map(|e| &e.descriptor).collect();
        let body = list_json(&entries)?;
        let digest = Digest::sha256_of(&body);
        client
            .put_manifest(
                target,
                &list_ref.target(),
                media_type::DOCKER_MANIFEST_LIST,
                Bytes::from(body),
            )
            .await
            .with_ctx(|| format!("pushing {}", full(list_ref)))?;
        if purge {
            remove(&self.home, list_ref)?;
        }
        Ok(digest)
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
