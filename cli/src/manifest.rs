//! `hoist manifest create|annotate|inspect|push|rm`: docker's manifest lists. A list is made
//! locally from images already in a registry (each one's descriptor and its config's platform),
//! annotated, and pushed as docker pushes it: the same JSON (docker's manifest list, indented
//! as Go's `MarshalIndent` with three spaces), so the same images give the same list digest.
//! Images of another repository of the registry are copied into the list's repository first
//! (blobs mounted, manifest put by digest). Local lists live in `$HOIST_HOME/manifests/`.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use hoist_oci::{Reference, media_type};
use serde::Serialize;

use hoist_engine::manifests::{
    ManifestDescriptor, PlatformEdit, PlatformSpec, Remote, Session, annotate as annotate_list,
    describe, full, go_indent, list_json, load, remove,
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
    Ok(hoist_engine::manifests::parse(s)?)
}

fn session(insecure_host: Option<&str>) -> Result<Session> {
    Ok(Session::open(home::hoist_home()?, insecure_host)?)
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
    let s = session(a.insecure.then_some(list_ref.registry()))?;
    s.create(&list_ref, &a.manifests, a.amend).await?;
    println!("Created manifest list {}", full(&list_ref));
    Ok(())
}

fn annotate(a: AnnotateArgs) -> Result<()> {
    let list_ref = parse(&a.list)?;
    let image = parse(&a.manifest)?;
    let edit = PlatformEdit {
        os: a.os,
        arch: a.arch,
        variant: a.variant,
        os_version: a.os_version,
        os_features: a.os_features,
    };
    Ok(annotate_list(
        &home::hoist_home()?,
        &list_ref,
        &image,
        edit,
    )?)
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
    let s = session(a.insecure.then_some(r.registry()))?;
    let entries = match s.fetch(&r).await? {
        Remote::Image(bytes) if a.verbose => {
            // The platform of a single image is its config's.
            let (d, _) = describe(&s.client(&r).await?, &r).await?;
            return print_verbose(&[(full(&r), &d, &bytes)]);
        }
        Remote::Image(bytes) => return print_json(&bytes),
        Remote::List(entries) => entries,
    };
    // A remote list, as docker renders it: each entry's image with the platform the list gives
    // it, in docker's list form.
    if a.verbose {
        let all: Vec<(String, &ManifestDescriptor, &[u8])> = entries
            .iter()
            .map(|(d, raw)| (format!("{}@{}", full(&r), d.digest), d, raw.as_ref()))
            .collect();
        return print_verbose_list(&all);
    }
    let refs: Vec<&ManifestDescriptor> = entries.iter().map(|(d, _)| d).collect();
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
    let s = session(a.insecure.then_some(list_ref.registry()))?;
    let target = list_ref.repository().as_str().to_owned();
    // Every image goes into the list's repository by digest first, said as docker says it.
    let digest = s
        .push(&list_ref, a.purge, |digest| {
            println!(
                "Pushed ref {}/{target}@{digest} with digest: {digest}",
                list_ref.registry()
            );
        })
        .await?;
    println!("{digest}");
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
