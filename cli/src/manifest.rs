//! `hoist manifest create|annotate|inspect|push|rm`: docker's manifest lists. A list is made
//! locally from images already in a registry (each one's descriptor and its config's platform),
//! annotated, and pushed as docker pushes it: the same JSON (docker's manifest list, indented
//! as Go's `MarshalIndent` with three spaces), so the same images give the same list digest.
//! Images of another repository of the registry are copied into the list's repository first
//! (blobs mounted, manifest put by digest). Local lists live in `$HOIST_HOME/manifests/`.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hoist_client::{ClientOptions, DockerConfig, Endpoints, RegistryClient};
use hoist_oci::{Digest, Reference, media_type};
use serde::Serialize;
use serde_json::Value;

use hoist_engine::manifests::{
    LocalImage, ManifestDescriptor, PlatformSpec, describe, full, go_indent, list_json, load,
    remove, save,
};

use crate::home;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Manage Docker image manifests and manifest lists
    #[command(subcommand)]
    Manifest(ManifestGroup),
}

#[derive(Subcommand)]
pub enum ManifestGroup {
    /// Create a local manifest list for annotating and pushing to a registry
    Create(CreateArgs),
    /// Add additional information to a local image manifest
    Annotate(AnnotateArgs),
    /// Display an image manifest, or manifest list
    Inspect(InspectArgs),
    /// Push a manifest list to a repository
    Push(PushArgs),
    /// Delete one or more manifest lists from local storage
    Rm(RmArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Amend an existing manifest list
    #[arg(short, long)]
    amend: bool,
    /// Allow communication with an insecure registry
    #[arg(long)]
    insecure: bool,
    #[arg(value_name = "MANIFEST_LIST")]
    list: String,
    #[arg(value_name = "MANIFEST", required = true)]
    manifests: Vec<String>,
}

#[derive(Args)]
pub struct AnnotateArgs {
    /// Set architecture
    #[arg(long)]
    arch: Option<String>,
    /// Set operating system
    #[arg(long)]
    os: Option<String>,
    /// Set operating system feature
    #[arg(long = "os-features", value_delimiter = ',')]
    os_features: Vec<String>,
    /// Set operating system version
    #[arg(long = "os-version")]
    os_version: Option<String>,
    /// Set architecture variant
    #[arg(long)]
    variant: Option<String>,
    #[arg(value_name = "MANIFEST_LIST")]
    list: String,
    #[arg(value_name = "MANIFEST")]
    manifest: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Allow communication with an insecure registry
    #[arg(long)]
    insecure: bool,
    /// Output additional info including layers and platform
    #[arg(short, long)]
    verbose: bool,
    /// `[MANIFEST_LIST] MANIFEST`
    #[arg(num_args = 1..=2, required = true, value_name = "MANIFEST")]
    refs: Vec<String>,
}

#[derive(Args)]
pub struct PushArgs {
    /// Allow push to an insecure registry
    #[arg(long)]
    insecure: bool,
    /// Remove the local manifest list after push
    #[arg(short, long)]
    purge: bool,
    #[arg(value_name = "MANIFEST_LIST")]
    list: String,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(value_name = "MANIFEST_LIST", required = true)]
    lists: Vec<String>,
}

fn parse(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid reference format: {s}"))
}

struct Session {
    home: PathBuf,
    endpoints: Endpoints,
    config: DockerConfig,
}

impl Session {
    fn open(insecure_host: Option<&str>) -> Result<Session> {
        let home = home::hoist_home()?;
        let net = crate::transfer::NetArgs::default();
        let mut endpoints = crate::transfer::endpoints(&net, &home)?;
        if let Some(h) = insecure_host {
            endpoints = endpoints
                .with_insecure([h])
                .context("invalid insecure registry")?;
        }
        let config = DockerConfig::from_env().context("reading the docker config")?;
        Ok(Session {
            home,
            endpoints,
            config,
        })
    }

    async fn client(&self, r: &Reference) -> Result<RegistryClient> {
        RegistryClient::connect(
            r.registry(),
            &self.endpoints,
            &self.config,
            ClientOptions::default(),
        )
        .await
        .with_context(|| format!("connecting to {}", r.registry()))
    }
}

pub fn run(cmd: ManifestCommand) -> Result<()> {
    let ManifestCommand::Manifest(cmd) = cmd;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        match cmd {
            ManifestGroup::Create(a) => create(a).await,
            ManifestGroup::Annotate(a) => annotate(a),
            ManifestGroup::Inspect(a) => inspect(a).await,
            ManifestGroup::Push(a) => push(a).await,
            ManifestGroup::Rm(a) => rm(a),
        }
    })
}

async fn create(a: CreateArgs) -> Result<()> {
    let list_ref = parse(&a.list)?;
    let s = Session::open(a.insecure.then_some(list_ref.registry()))?;
    let existing = load(&s.home, &list_ref)?;
    if existing.is_some() && !a.amend {
        bail!(
            "refusing to amend an existing manifest list with no --amend flag: {}",
            full(&list_ref)
        );
    }
    let mut list = existing.unwrap_or_default();
    list.reference = full(&list_ref);
    let client = s.client(&list_ref).await?;
    for m in &a.manifests {
        let r = parse(m)?;
        if r.registry() != list_ref.registry() {
            bail!(
                "cannot use source images from a different registry than the target image: {} != {}",
                r.registry(),
                list_ref.registry()
            );
        }
        let (descriptor, manifest) = describe(&client, &r).await?;
        let entry = LocalImage {
            reference: full(&r),
            repository: r.repository().as_str().to_owned(),
            descriptor,
            manifest: String::from_utf8(manifest.to_vec())
                .with_context(|| format!("{}: the manifest is not UTF-8", full(&r)))?,
        };
        // An image named again replaces its entry, as docker's store keeps one file per image.
        match list
            .images
            .iter_mut()
            .find(|e| e.reference == entry.reference)
        {
            Some(e) => *e = entry,
            None => list.images.push(entry),
        }
    }
    save(&s.home, &list_ref, &list)?;
    println!("Created manifest list {}", full(&list_ref));
    Ok(())
}

fn annotate(a: AnnotateArgs) -> Result<()> {
    let list_ref = parse(&a.list)?;
    let image = parse(&a.manifest)?;
    let home = home::hoist_home()?;
    let mut list = load(&home, &list_ref)?.ok_or_else(|| {
        anyhow!(
            "No such manifest: {}: create it with `hoist manifest create`",
            full(&list_ref)
        )
    })?;
    let want = full(&image);
    let entry = list
        .images
        .iter_mut()
        .find(|e| e.reference == want)
        .ok_or_else(|| {
            anyhow!(
                "manifest for image {want} does not exist in {}",
                list.reference
            )
        })?;
    let p = &mut entry.descriptor.platform;
    if let Some(os) = a.os {
        p.os = os;
    }
    if let Some(arch) = a.arch {
        p.architecture = arch;
    }
    if let Some(v) = a.variant {
        p.variant = v;
    }
    if let Some(v) = a.os_version {
        p.os_version = v;
    }
    if !a.os_features.is_empty() {
        p.os_features = a.os_features;
    }
    // docker's check: a known os/arch pair (`go tool dist list`'s), else a warning-free refusal.
    if !valid_os_arch(&p.os, &p.architecture) {
        bail!(
            "manifest entry for image has unsupported os/arch combination: {}/{}",
            p.os,
            p.architecture
        );
    }
    Ok(save(&home, &list_ref, &list)?)
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

async fn inspect(a: InspectArgs) -> Result<()> {
    let (list_name, name) = match a.refs.as_slice() {
        [list, image] => (Some(list.as_str()), image.as_str()),
        [image] => (None, image.as_str()),
        _ => bail!("\"hoist manifest inspect\" requires at least 1 and at most 2 arguments"),
    };
    let r = parse(name)?;
    let home = home::hoist_home()?;
    // One image of a local list.
    if let Some(l) = list_name {
        let list_ref = parse(l)?;
        let list = load(&home, &list_ref)?
            .ok_or_else(|| anyhow!("No such manifest: {}", full(&list_ref)))?;
        let want = full(&r);
        let e = list
            .images
            .iter()
            .find(|e| e.reference == want)
            .ok_or_else(|| anyhow!("No such manifest: {want}"))?;
        if a.verbose {
            return print_verbose(&[(e.reference.clone(), &e.descriptor, e.manifest.as_bytes())]);
        }
        return print_json(e.manifest.as_bytes());
    }
    // A local list first, as docker looks.
    if let Some(list) = load(&home, &r)? {
        if a.verbose {
            let all: Vec<(String, &ManifestDescriptor, &[u8])> = list
                .images
                .iter()
                .map(|e| (e.reference.clone(), &e.descriptor, e.manifest.as_bytes()))
                .collect();
            return print_verbose_list(&all);
        }
        let entries: Vec<&ManifestDescriptor> = list.images.iter().map(|e| &e.descriptor).collect();
        return print_list(&entries);
    }
    let s = Session::open(a.insecure.then_some(r.registry()))?;
    let client = s.client(&r).await?;
    let repo = r.repository().as_str();
    let (bytes, mt, _) = client
        .fetch_manifest(repo, &r.target())
        .await
        .map_err(|e| anyhow!("no such manifest: {}: {e}", full(&r)))?;
    if !media_type::is_index(&mt) {
        if a.verbose {
            // The platform of a single image is its config's.
            let (d, _) = describe(&client, &r).await?;
            return print_verbose(&[(full(&r), &d, &bytes)]);
        }
        return print_json(&bytes);
    }
    // A remote list, as docker renders it: each entry's image fetched (its media type, size
    // and digest checked), with the platform the list gives it, in docker's list form.
    let v: Value = serde_json::from_slice(&bytes).context("decoding the manifest list")?;
    let mut entries = Vec::new();
    let mut raws: Vec<Bytes> = Vec::new();
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
            .with_context(|| format!("{}@{d}", full(&r)))?;
        let platform: PlatformSpec =
            serde_json::from_value(m["platform"].clone()).unwrap_or_default();
        entries.push(ManifestDescriptor {
            media_type: cmt,
            size: child.len() as u64,
            digest: digest.to_string(),
            platform,
        });
        raws.push(child);
    }
    if a.verbose {
        let all: Vec<(String, &ManifestDescriptor, &[u8])> = entries
            .iter()
            .zip(&raws)
            .map(|(d, raw)| (format!("{}@{}", full(&r), d.digest), d, raw.as_ref()))
            .collect();
        return print_verbose_list(&all);
    }
    let refs: Vec<&ManifestDescriptor> = entries.iter().collect();
    print_list(&refs)
}

/// One image as docker's `manifest inspect -v` prints it: its reference, descriptor (with the
/// platform), the manifest's bytes in base64 and the manifest itself (`SchemaV2Manifest`, or
/// `OCIManifest` for an OCI one), indented as Go's `MarshalIndent(.., "\t")`.
fn verbose_json(reference: &str, d: &ManifestDescriptor, raw: &[u8]) -> Result<String> {
    use base64::Engine as _;
    #[derive(Serialize)]
    struct VerboseDescriptor<'a> {
        #[serde(rename = "mediaType")]
        media_type: &'a str,
        digest: &'a str,
        size: u64,
        platform: &'a PlatformSpec,
    }
    let desc = serde_json::to_string(&VerboseDescriptor {
        media_type: &d.media_type,
        digest: &d.digest,
        size: d.size,
        platform: &d.platform,
    })?;
    let field = if d.media_type == media_type::OCI_MANIFEST {
        "OCIManifest"
    } else {
        "SchemaV2Manifest"
    };
    let raw_text = std::str::from_utf8(raw).context("the manifest is not UTF-8")?;
    Ok(format!(
        "{{\"Ref\":{},\"Descriptor\":{desc},\"Raw\":\"{}\",\"{field}\":{raw_text}}}",
        serde_json::to_string(reference)?,
        base64::engine::general_purpose::STANDARD.encode(raw),
    ))
}

fn print_verbose(one: &[(String, &ManifestDescriptor, &[u8])]) -> Result<()> {
    let (r, d, raw) = &one[0];
    let mut out = go_indent(verbose_json(r, d, raw)?.as_bytes());
    out.push(b'\n');
    write_out(&out)
}

fn print_verbose_list(all: &[(String, &ManifestDescriptor, &[u8])]) -> Result<()> {
    let items: Vec<String> = all
        .iter()
        .map(|(r, d, raw)| verbose_json(r, d, raw))
        .collect::<Result<_>>()?;
    let mut out = go_indent(format!("[{}]", items.join(",")).as_bytes());
    out.push(b'\n');
    write_out(&out)
}

fn print_list(entries: &[&ManifestDescriptor]) -> Result<()> {
    let mut out = list_json(entries)?;
    out.push(b'\n');
    write_out(&out)
}

fn print_json(raw: &[u8]) -> Result<()> {
    let mut out = go_indent(raw);
    out.push(b'\n');
    write_out(&out)
}

fn write_out(b: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(b).context("writing to stdout")?;
    o.flush().context("writing to stdout")
}

async fn push(a: PushArgs) -> Result<()> {
    let list_ref = parse(&a.list)?;
    if list_ref.digest().is_some() {
        bail!("cannot push to a digest reference");
    }
    let s = Session::open(a.insecure.then_some(list_ref.registry()))?;
    let list = load(&s.home, &list_ref)?
        .ok_or_else(|| anyhow!("No such manifest: {}", full(&list_ref)))?;
    if list.images.is_empty() {
        bail!("{} has no images", full(&list_ref));
    }
    let client = s.client(&list_ref).await?;
    let target = list_ref.repository().as_str();
    // Every image goes into the list's repository by digest first (blobs of another
    // repository mounted), as docker pushes them, saying so as docker does.
    for e in &list.images {
        let (bytes, mt, digest) = client
            .fetch_manifest(&e.repository, &e.descriptor.digest)
            .await
            .with_context(|| e.reference.clone())?;
        client
            .copy_manifest(&e.repository, target, &digest, &mt, bytes)
            .await
            .with_context(|| format!("copying {} into {target}", e.reference))?;
        println!(
            "Pushed ref {}/{target}@{digest} with digest: {digest}",
            list_ref.registry()
        );
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
        .with_context(|| format!("pushing {}", full(&list_ref)))?;
    println!("{digest}");
    if a.purge {
        remove(&s.home, &list_ref)?;
    }
    Ok(())
}

fn rm(a: RmArgs) -> Result<()> {
    let home = home::hoist_home()?;
    let mut failed = None;
    for l in &a.lists {
        if let Err(e) = parse(l).and_then(|r| Ok(remove(&home, &r)?)) {
            eprintln!("{}", crate::error_chain(&e));
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
