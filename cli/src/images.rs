//! Local image commands: the store under `$HOIST_HOME`.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use hoist_oci::Reference;
use hoist_storage::images::archive::Format;
use hoist_storage::images::{
    ImageInspect, ImageStore, Platform, Removed, familiar_repo, parse_change, repo_name,
};
use serde_json::{Value, json};

use crate::filter::{Filters, glob};
use crate::home;
use crate::images_format::{ellipsis, human_ago, human_size, now_unix, short_id, table};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// List images
    Images(ImagesArgs),
    /// Display detailed information on one or more images, as JSON
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to stdout by default)
    Save(SaveArgs),
    /// Load images from a tar archive (docker-archive or OCI layout, plain or gzipped)
    Load(LoadArgs),
    /// Import the contents of a tarball to create a filesystem image
    Import(ImportArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageGroup),
    /// Manage hoist
    #[command(subcommand)]
    System(SystemGroup),
    /// Show the hoist version information
    Version(crate::sysinfo::VersionArgs),
    /// Display system-wide information
    Info(crate::sysinfo::InfoArgs),
}

/// `hoist image ...`: docker's management command names.
#[derive(Subcommand)]
pub enum ImageGroup {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images, as JSON
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load images from a tar archive
    Load(LoadArgs),
    /// Import the contents of a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

/// `hoist system ...`.
#[derive(Subcommand)]
pub enum SystemGroup {
    /// Show disk usage
    Df(DfArgs),
    /// Display system-wide information
    Info(crate::sysinfo::InfoArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args)]
pub struct TagArgs {
    /// The image to tag (NAME[:TAG] or NAME@DIGEST)
    source: String,
    /// The new name (NAME[:TAG])
    target: String,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show all images (hoist keeps no intermediate images: the same list)
    #[arg(short, long)]
    all: bool,
    /// Filter output (dangling=, reference=, label=, before=, since=)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    filter: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output: json, or a Go template
    #[arg(short, long)]
    format: Option<String>,
    /// Images (NAME[:TAG], NAME@DIGEST or image id)
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table TEMPLATE, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of an image id with several tags
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SaveFormat {
    /// docker-archive (what `docker load` reads)
    Docker,
    /// OCI image layout tar
    Oci,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of stdout
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value = "docker")]
    format: SaveFormat,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from a tar archive file, instead of stdin
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, ...)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// The rootfs tarball (plain or gzipped), or - for stdin
    tarball: String,
    /// The image's name (NAME[:TAG])
    reference: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn reference(s: &str) -> Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid image reference {s:?}"))
}

async fn open_store() -> Result<ImageStore> {
    Ok(hoist_engine::Host::from_env()?.images().await?.clone())
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    home::runtime()?.block_on(async move {
        match cmd {
            ImageCommand::Tag(a) | ImageCommand::Image(ImageGroup::Tag(a)) => tag(a).await,
            ImageCommand::Images(a) | ImageCommand::Image(ImageGroup::Ls(a)) => images(a).await,
            ImageCommand::Inspect(a) | ImageCommand::Image(ImageGroup::Inspect(a)) => {
                inspect(a).await
            }
            ImageCommand::History(a) | ImageCommand::Image(ImageGroup::History(a)) => {
                history(a).await
            }
            ImageCommand::Rmi(a) | ImageCommand::Image(ImageGroup::Rm(a)) => rmi(a).await,
            ImageCommand::Save(a) | ImageCommand::Image(ImageGroup::Save(a)) => save(a).await,
            ImageCommand::Load(a) | ImageCommand::Image(ImageGroup::Load(a)) => load(a).await,
            ImageCommand::Import(a) | ImageCommand::Image(ImageGroup::Import(a)) => import(a).await,
            ImageCommand::Image(ImageGroup::Prune(a)) => prune(a).await,
            ImageCommand::System(SystemGroup::Df(a)) => df(a).await,
            ImageCommand::Version(a) => crate::sysinfo::version(&a),
            ImageCommand::Info(a) | ImageCommand::System(SystemGroup::Info(a)) => {
                crate::sysinfo::info(&a, open_store().await?).await
            }
        }
    })
}

async fn tag(a: TagArgs) -> Result<()> {
    let (src, dst) = (reference(&a.source)?, reference(&a.target)?);
    let store = open_store().await?;
    store
        .tag_reference(&src, &dst)
        .await
        .with_context(|| format!("tagging {} as {}", a.source, a.target))?;
    Ok(())
}

/// `REPOSITORY[:TAG]` of `images`: the familiar repository, and the tag only when one was given.
fn images_filter(s: &str) -> Result<(String, Option<String>)> {
    let r = reference(s)?;
    let repo = repo_name(&r).with_context(|| format!("invalid image reference {s:?}"))?;
    let last = s.rsplit('/').next().unwrap_or(s);
    let tag = if last.contains(':') && !s.contains('@') {
        r.tag().map(ToString::to_string)
    } else {
        None
    };
    Ok((familiar_repo(repo.as_str()), tag))
}

/// The `images --filter`s (and the REPOSITORY[:TAG] argument) applied to the store's rows.
async fn filter_images(
    store: &ImageStore,
    a: &ImagesArgs,
) -> Result<Vec<hoist_storage::images::ImageSummary>> {
    let filter = a.filter.as_deref().map(images_filter).transpose()?;
    let filters = Filters::parse(&a.filters, crate::listing::IMAGE_FILTERS)?;
    let dangling = filters.bool("dangling")?;
    let all = store.list().await.context("listing images")?;
    let created_of = |key: &str| -> Result<Option<i64>> {
        let Some(name) = filters.values(key).last() else {
            return Ok(None);
        };
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let row = all
            .iter()
            .find(|r| {
                r.id.hex().starts_with(hex) && hex.len() >= 4
                    || r.tag
                        .as_ref()
                        .is_some_and(|t| format!("{}:{t}", r.repository) == *name)
                    || (r.repository == *name && r.tag.as_deref() == Some("latest"))
            })
            .with_context(|| format!("no such image: {name}"))?;
        Ok(Some(row.created_unix.unwrap_or(0)))
    };
    let (before, since) = (created_of("before")?, created_of("since")?);
    let mut rows = Vec::new();
    for r in all.iter() {
        let name = match &r.tag {
            Some(t) => format!("{}:{t}", r.repository),
            None => r.repository.clone(),
        };
        let keep = match &filter {
            None => true,
            Some((repo, tag)) => {
                r.repository == *repo && tag.as_ref().is_none_or(|t| r.tag.as_ref() == Some(t))
            }
        } && dangling.is_none_or(|d| d == r.tag.is_none())
            && filters.any("reference", |p| glob(p, &name) || glob(p, &r.repository))
            && before.is_none_or(|t| r.created_unix.unwrap_or(0) < t)
            && since.is_none_or(|t| r.created_unix.unwrap_or(0) > t);
        if !keep {
            continue;
        }
        if filters.has("label") {
            let i = store
                .inspect(&reference(&row_reference(r))?, &Platform::host())
                .await
                .with_context(|| format!("inspecting {name}"))?;
            if !filters.labels(
                i.config
                    .pointer("/config/Labels")
                    .and_then(Value::as_object),
            ) {
                continue;
            }
        }
        rows.push(r.clone());
    }
    Ok(rows)
}

/// A reference that names exactly this row's image.
fn row_reference(r: &hoist_storage::images::ImageSummary) -> String {
    match &r.tag {
        Some(t) => format!("{}:{t}", r.repository),
        None => format!("{}@{}", r.repository, r.digest),
    }
}

async fn images(a: ImagesArgs) -> Result<()> {
    let format = crate::format::Format::parse(a.format.as_deref())?;
    let store = open_store().await?;
    let rows = filter_images(&store, &a).await?;
    let mut sizes = HashMap::new();
    if !a.quiet {
        for r in &rows {
            if !sizes.contains_key(&r.id) {
                let size = hoist_engine::sizes::image_size(
                    &store,
                    &reference(&row_reference(r))?,
                    &Platform::host(),
                )
                .await?;
                sizes.insert(r.id.clone(), size);
            }
        }
    }
    let size_of = |r: &hoist_storage::images::ImageSummary| sizes.get(&r.id).copied().unwrap_or(0);
    if !format.is_default() && !a.quiet {
        let now = now_unix();
        let cells: Vec<Value> = rows
            .iter()
            .map(|r| crate::listing::image_row(r, a.no_trunc, now, size_of(r)))
            .collect();
        return crate::format::print(&format, &cells, crate::listing::IMAGE_HEADERS);
    }
    let id_of = |id: &hoist_oci::Digest| {
        if a.no_trunc {
            id.to_string()
        } else {
            short_id(id.hex()).to_owned()
        }
    };
    let mut out = String::new();
    if a.quiet {
        // One line a row, as docker: an image with two tags is listed twice.
        for r in &rows {
            out.push_str(&id_of(&r.id));
            out.push('\n');
        }
    } else {
        let now = now_unix();
        let mut header = vec!["REPOSITORY", "TAG"];
        if a.digests {
            header.push("DIGEST");
        }
        header.extend(["IMAGE ID", "CREATED", "SIZE"]);
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.repository.clone(),
                    r.tag.clone().unwrap_or_else(|| "<none>".to_owned()),
                ];
                if a.digests {
                    row.push(r.digest.to_string());
                }
                row.extend([
                    id_of(&r.id),
                    human_ago(r.created_unix, now),
                    human_size(size_of(r), 3),
                ]);
                row
            })
            .collect();
        out = table(&header, &cells);
    }
    print_out(&out)
}

fn print_out(s: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Resolves `name` (a reference, or an image id or unique prefix of one) to a reference.
async fn image_reference(store: &ImageStore, name: &str) -> Result<Reference> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let looks_like_id = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if looks_like_id {
        let rows = store.list().await.context("listing images")?;
        let ids: BTreeSet<_> = rows
            .iter()
            .filter(|r| r.id.hex().starts_with(hex))
            .map(|r| r.id.clone())
            .collect();
        if ids.len() > 1 {
            bail!("image id prefix {hex} is ambiguous");
        }
        if let Some(row) = rows.iter().find(|r| ids.contains(&r.id)) {
            let s = match &row.tag {
                Some(t) => format!("{}:{t}", row.repository),
                None => format!("{}@{}", row.repository, row.digest),
            };
            return reference(&s);
        }
    }
    reference(name).with_context(|| format!("no such image: {name}"))
}

/// Docker's `inspect` keys, plus hoist's manifest view (`ManifestDigest`, `Layers`, ...).
fn inspect_json(i: &ImageInspect, size: u64) -> Value {
    let cfg = &i.config;
    let mut v = json!({
        "Id": i.id.to_string(),
        "RepoTags": i.repo_tags,
        "RepoDigests": i.repo_digests,
        "Parent": "",
        "Comment": cfg.get("comment").cloned().unwrap_or(Value::from("")),
        "Created": i.created,
        "Author": cfg.get("author").cloned().unwrap_or(Value::from("")),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(Value::from("")),
        "Architecture": i.architecture,
        "Os": i.os,
        "Size": size,
        "GraphDriver": {"Name": "overlay2", "Data": Value::Null},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "RootFS": {
            "Type": cfg.pointer("/rootfs/type").cloned().unwrap_or(Value::from("layers")),
            "Layers": cfg.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([])),
        },
        "ManifestDigest": i.manifest_digest.to_string(),
        "IndexDigest": i.index_digest.as_ref().map(ToString::to_string),
        "MediaType": i.media_type,
        "Layers": i.layers,
    });
    // docker leaves the variant out when there is none.
    if let Some(variant) = &i.variant {
        v["Variant"] = json!(variant);
    }
    v
}

async fn inspect(a: InspectArgs) -> Result<()> {
    let store = open_store().await?;
    let platform = Platform::host();
    let mut out = Vec::new();
    for name in &a.images {
        // Like docker: a container of that name first, then an image.
        if let Some(c) = crate::containers::inspect_container(name)? {
            out.push(c);
            continue;
        }
        let r = image_reference(&store, name).await?;
        let i = store
            .inspect(&r, &platform)
            .await
            .with_context(|| format!("inspecting {name}"))?;
        let size = hoist_engine::sizes::image_size(&store, &r, &platform).await?;
        out.push(inspect_json(&i, size));
    }
    let f = crate::format::Format::parse(a.format.as_deref())?;
    if matches!(
        f,
        crate::format::Format::Raw(_) | crate::format::Format::Table(_)
    ) {
        return crate::format::print(&f, &out, &[]);
    }
    let mut s = serde_json::to_string_pretty(&out).context("encoding the inspect output")?;
    s.push('\n');
    print_out(&s)
}

async fn history(a: HistoryArgs) -> Result<()> {
    let store = open_store().await?;
    let platform = Platform::host();
    let r = image_reference(&store, &a.image).await?;
    let id = store
        .image(&r, &platform)
        .await
        .and_then(|i| i.id())
        .with_context(|| format!("reading the history of {}", a.image))?;
    let entries = store
        .history(&r, &platform)
        .await
        .with_context(|| format!("reading the history of {}", a.image))?;
    let repo = store
        .image(&r, &platform)
        .await
        .with_context(|| format!("reading the history of {}", a.image))?
        .repo;
    let mut sizes = Vec::with_capacity(entries.len());
    for e in &entries {
        sizes.push(match &e.layer {
            Some(l) => hoist_engine::sizes::layer_size(&store, &repo, l).await?,
            None => 0,
        });
    }
    // Docker shows the image id on the newest row; older rows have no image of their own.
    let ids: Vec<String> = (0..entries.len())
        .map(|i| match i {
            0 if a.no_trunc => id.to_string(),
            0 => short_id(id.hex()).to_owned(),
            _ => "<missing>".to_owned(),
        })
        .collect();
    if a.quiet {
        return print_out(&ids.iter().map(|i| format!("{i}\n")).collect::<String>());
    }
    let now = now_unix();
    let format = crate::format::Format::parse(a.format.as_deref())?;
    if !format.is_default() {
        let rows: Vec<Value> = entries
            .iter()
            .zip(&ids)
            .zip(&sizes)
            .map(|((e, id), size)| {
                let created = e
                    .created
                    .as_deref()
                    .and_then(hoist_storage::images::parse_rfc3339);
                let by = e.created_by.clone().unwrap_or_default();
                json!({
                    "ID": id,
                    "CreatedSince": human_ago(created, now),
                    "CreatedAt": created.map_or_else(String::new, crate::listing::go_time),
                    "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                    "Size": human_size(*size, 3),
                    "Comment": e.comment.clone().unwrap_or_default(),
                })
            })
            .collect();
        return crate::format::print(
            &format,
            &rows,
            &[
                ("ID", "IMAGE"),
                ("CreatedSince", "CREATED"),
                ("CreatedAt", "CREATED AT"),
                ("CreatedBy", "CREATED BY"),
                ("Size", "SIZE"),
                ("Comment", "COMMENT"),
            ],
        );
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .zip(ids)
        .zip(sizes)
        .map(|((e, id), size)| {
            let created_by = e.created_by.clone().unwrap_or_default();
            vec![
                id,
                human_ago(
                    e.created
                        .as_deref()
                        .and_then(hoist_storage::images::parse_rfc3339),
                    now,
                ),
                if a.no_trunc {
                    created_by
                } else {
                    ellipsis(&created_by, 45)
                },
                human_size(size, 3),
                e.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_out(&table(
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &rows,
    ))
}

/// Docker's lines for what went: `Untagged: REF` for each name, then `Deleted: <image id>` once
/// for each image. The store reports manifest (and index) digests; `ids` maps them to image ids
/// (config digests), read before the removal. A manifest of no known image is not a line.
fn removed_lines(
    removed: &[Removed],
    ids: &HashMap<hoist_oci::Digest, hoist_oci::Digest>,
    untagged: &str,
    deleted: &str,
) -> String {
    let mut out = String::new();
    let mut said = BTreeSet::new();
    for r in removed {
        if let Removed::Untagged(name) = r {
            out.push_str(&format!("{untagged}: {name}\n"));
        }
    }
    for r in removed {
        if let Removed::Deleted(d) = r
            && let Some(id) = ids.get(d)
            && said.insert(id.clone())
        {
            out.push_str(&format!("{deleted}: {id}\n"));
        }
    }
    out
}

/// Manifest (or index) digest to image id, for every image in the store.
async fn image_ids(store: &ImageStore) -> Result<HashMap<hoist_oci::Digest, hoist_oci::Digest>> {
    Ok(store
        .list()
        .await
        .context("listing images")?
        .into_iter()
        .map(|r| (r.digest, r.id))
        .collect())
}

/// Refuses (unless forced) to remove the last name of an image a container uses, as docker does.
async fn check_not_in_use(store: &ImageStore, name: &str) -> Result<()> {
    let Ok(r) = image_reference(store, name).await else {
        return Ok(());
    };
    let Ok(id) = store
        .image(&r, &Platform::host())
        .await
        .and_then(|i| i.id())
    else {
        return Ok(());
    };
    let users = hoist_engine::Host::from_env()?.containers_using(&id)?;
    let Some(user) = users.first() else {
        return Ok(());
    };
    let rows = store.list().await.context("listing images")?;
    let tags = rows
        .iter()
        .filter(|r| r.id == id && r.tag.is_some())
        .count();
    let by_id = name.trim_start_matches("sha256:").len() >= 12
        && id.hex().starts_with(name.trim_start_matches("sha256:"));
    if tags > 1 && !by_id {
        return Ok(());
    }
    bail!(
        "conflict: unable to remove {name} (must force) - container {} is using its referenced image {}",
        &user[..12],
        short_id(id.hex())
    )
}

async fn rmi(a: RmiArgs) -> Result<()> {
    let store = open_store().await?;
    let mut failed = None;
    for name in &a.images {
        let checked = if a.force {
            Ok(())
        } else {
            check_not_in_use(&store, name).await
        };
        match checked.map_err(|e| e.context(format!("removing image {name}"))) {
            Ok(()) => {}
            Err(e) => {
                if let Some(prev) = failed.replace(e) {
                    eprintln!("{}", crate::error_line(&prev));
                }
                continue;
            }
        }
        let ids = image_ids(&store).await?;
        match store.remove(name, a.force).await {
            Ok(removed) => print_out(&removed_lines(&removed, &ids, "Untagged", "Deleted"))?,
            Err(e) => {
                // Like docker: report, go on with the others, fail at the end.
                if let Some(prev) =
                    failed.replace(anyhow::Error::new(e).context(format!("removing image {name}")))
                {
                    eprintln!("{}", crate::error_line(&prev));
                }
            }
        }
    }
    // The unpacked layers only the removed images used.
    let host = hoist_engine::Host::with_images(home::hoist_home()?, store.clone());
    if let Err(e) = host.collect_layers().await.map_err(anyhow::Error::new) {
        eprintln!("{}", crate::error_line(&e));
    }
    failed.map_or(Ok(()), Err)
}

async fn save(a: SaveArgs) -> Result<()> {
    let refs = a
        .images
        .iter()
        .map(|s| reference(s))
        .collect::<Result<Vec<_>>>()?;
    let format = match a.format {
        SaveFormat::Docker => Format::DockerArchive,
        SaveFormat::Oci => Format::OciLayout,
    };
    let store = open_store().await?;
    let platform = Platform::host();
    let what = a.images.join(" ");
    match &a.output {
        Some(path) => {
            // Unknown images fail before the output is touched.
            for r in &refs {
                store
                    .resolve(r)
                    .await
                    .with_context(|| format!("saving {}", r.familiar()))?;
            }
            // Only a file this command created is removed on failure (never `/dev/null`).
            let existed = std::fs::symlink_metadata(path).is_ok();
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let saved = store
                .save(&refs, std::io::BufWriter::new(file), format, &platform)
                .await
                .with_context(|| format!("saving {what}"))
                .and_then(|w| {
                    w.into_inner()
                        .map_err(|e| e.into_error())
                        .and_then(|f| f.sync_all())
                        .with_context(|| format!("writing {}", path.display()))
                });
            if saved.is_err() && !existed {
                let _ = std::fs::remove_file(path);
            }
            saved
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "cowardly refusing to save to a terminal: use the -o flag or redirect stdout"
                );
            }
            let w = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
            let mut w = store
                .save(&refs, w, format, &platform)
                .await
                .with_context(|| format!("saving {what}"))?;
            w.flush().context("writing to stdout")
        }
    }
}

async fn load(a: LoadArgs) -> Result<()> {
    let store = open_store().await?;
    let loaded = match &a.input {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store
                .load(std::io::BufReader::new(file))
                .await
                .with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is a terminal: use -i FILE or redirect stdin"
                );
            }
            store
                .load(std::io::stdin())
                .await
                .context("loading from stdin")?
        }
    };
    // The unpacked sizes `images` shows, measured now, while the layers are in the page cache.
    for r in &loaded {
        if let Err(e) = hoist_engine::sizes::image_size(&store, r, &Platform::host()).await {
            eprintln!("{}", crate::error_line(&anyhow::Error::new(e)));
        }
    }
    let out: String = loaded
        .iter()
        .map(|r| format!("Loaded image: {}\n", r.familiar()))
        .collect();
    print_out(&out)
}

async fn import(a: ImportArgs) -> Result<()> {
    let r = reference(&a.reference)?;
    for c in &a.change {
        parse_change(c).context("parsing --change")?;
    }
    let store = open_store().await?;
    let what = format!("importing {} as {}", a.tarball, a.reference);
    let imported = if a.tarball == "-" {
        store.import(std::io::stdin(), &r, &a.change).await
    } else {
        let file =
            std::fs::File::open(&a.tarball).with_context(|| format!("opening {}", a.tarball))?;
        store
            .import(std::io::BufReader::new(file), &r, &a.change)
            .await
    }
    .context(what)?;
    print_out(&format!("{}\n", imported.id))
}

async fn prune(a: PruneArgs) -> Result<()> {
    if !a.force {
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush().context("writing to stdout")?;
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(());
        }
    }
    let store = open_store().await?;
    let in_use = hoist_engine::Host::from_env()?.images_in_use()?;
    let before = store
        .disk_usage(&in_use)
        .await
        .context("measuring images")?;
    let ids = image_ids(&store).await?;
    let report = store
        .prune(a.all, &in_use)
        .await
        .context("pruning images")?;
    let after = store
        .disk_usage(&in_use)
        .await
        .context("measuring images")?;
    let mut out = String::new();
    if !report.removed.is_empty() {
        out.push_str("Deleted Images:\n");
        out.push_str(&removed_lines(&report.removed, &ids, "untagged", "deleted"));
        out.push('\n');
    }
    // What no image references any more; blobs younger than the collector's grace are freed
    // from disk by a later collection. The unpacked layers only those images used go now.
    let host = hoist_engine::Host::with_images(home::hoist_home()?, store.clone());
    let layers = host.collect_layers().await?;
    let reclaimed = before.size.saturating_sub(after.size) + layers.as_ref().map_or(0, |l| l.bytes);
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(reclaimed, 4)
    ));
    print_out(&out)
}

async fn df(a: DfArgs) -> Result<()> {
    let store = open_store().await?;
    let in_use = hoist_engine::Host::from_env()?.images_in_use()?;
    let mut u = store
        .disk_usage(&in_use)
        .await
        .context("measuring images")?;
    // Unpacked sizes, as docker counts them: each layer once; reclaimable what only images no
    // container uses hold.
    let mut used = BTreeSet::new();
    let mut all = HashMap::new();
    let mut seen = BTreeSet::new();
    let list = store.list().await.context("listing images")?;
    let mut layers_of: HashMap<hoist_oci::Digest, Vec<hoist_oci::Digest>> = HashMap::new();
    for r in &list {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let image = store
            .image(&reference(&row_reference(r))?, &Platform::host())
            .await
            .with_context(|| format!("reading {}", r.repository))?;
        for l in image.manifest.layers() {
            let Ok(d) = hoist_oci::Digest::parse(l.digest().as_ref()) else {
                continue;
            };
            if !all.contains_key(&d) {
                let size = hoist_engine::sizes::layer_size(&store, &image.repo, &d).await?;
                all.insert(d.clone(), size);
            }
            if in_use.contains(&r.id) {
                used.insert(d.clone());
            }
            layers_of.entry(r.id.clone()).or_default().push(d);
        }
    }
    u.size = all.values().sum();
    u.reclaimable = all
        .iter()
        .filter(|(d, _)| !used.contains(*d))
        .map(|(_, s)| s)
        .sum();
    let reclaimable = match (u.reclaimable * 100).checked_div(u.size) {
        Some(percent) => format!("{} ({percent}%)", human_size(u.reclaimable, 4)),
        None => human_size(u.reclaimable, 4),
    };
    let rows = vec![
        vec![
            "Images".to_owned(),
            u.images.to_string(),
            u.active.to_string(),
            human_size(u.size, 4),
            reclaimable,
        ],
        crate::containers::df_containers_row()?,
        crate::containers::df_volumes_row()?,
        build_cache_row()?,
    ];
    if !a.verbose {
        return print_out(&table(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &rows,
        ));
    }
    // `-v`: docker's sections. A layer more than one image holds is shared.
    let mut holders: HashMap<&hoist_oci::Digest, usize> = HashMap::new();
    for ls in layers_of.values() {
        for d in ls.iter().collect::<BTreeSet<_>>() {
            *holders.entry(d).or_default() += 1;
        }
    }
    let now = now_unix();
    let mut image_rows = Vec::new();
    for r in &list {
        let ls = layers_of.get(&r.id).map_or(&[][..], Vec::as_slice);
        let size: u64 = ls.iter().map(|d| all.get(d).copied().unwrap_or(0)).sum();
        let shared: u64 = ls
            .iter()
            .filter(|d| holders.get(d).is_some_and(|n| *n > 1))
            .map(|d| all.get(d).copied().unwrap_or(0))
            .sum();
        image_rows.push(vec![
            r.repository.clone(),
            r.tag.clone().unwrap_or_else(|| "<none>".to_owned()),
            short_id(r.id.hex()).to_owned(),
            human_ago(r.created_unix, now),
            human_size(size, 3),
            human_size(shared, 4),
            human_size(size - shared, 4),
            hoist_engine::Host::from_env()?
                .containers_using(&r.id)?
                .len()
                .to_string(),
        ]);
    }
    let cache = build_cache_row()?;
    let mut out = String::from("Images space usage:\n\n");
    out.push_str(&table(
        &[
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
        ],
        &image_rows,
    ));
    out.push_str("\nContainers space usage:\n\n");
    out.push_str(&crate::containers::df_containers_table()?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    out.push_str(&crate::containers::df_volumes_table()?);
    // Each build cache record as BuildKit's entries are listed (a step's result: "regular").
    out.push_str(&format!("\nBuild cache usage: {}\n\n", cache[3]));
    let rows: Vec<Vec<String>> = build_cache_records()?
        .into_iter()
        .map(|r| {
            vec![
                r.key.chars().take(12).collect(),
                "regular".to_owned(),
                human_size(r.size, 4),
                human_ago(Some(r.created), now),
                human_ago(Some(r.last_used), now),
                r.uses.to_string(),
                r.shared.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "CACHE ID",
            "CACHE TYPE",
            "SIZE",
            "CREATED",
            "LAST USED",
            "USAGE",
            "SHARED",
        ],
        &rows,
    ));
    print_out(&out)
}

/// The build cache's records (none when there is no cache yet).
fn build_cache_records() -> Result<Vec<hoist_builder::cache::RecordInfo>> {
    let host = hoist_engine::Host::from_env()?;
    if !host.builder_dir().exists() {
        return Ok(Vec::new());
    }
    host.build_cache()?
        .records()
        .context("listing the build cache")
}

/// `system df`'s Build Cache row: the build cache's records and the bytes of its blobs (none in
/// use outside a build, so all reclaimable), as `hoist builder du` counts them.
fn build_cache_row() -> Result<Vec<String>> {
    let host = hoist_engine::Host::from_env()?;
    let (records, bytes) = if host.builder_dir().exists() {
        let u = host
            .build_cache()?
            .usage()
            .context("measuring the build cache")?;
        (u.records, u.bytes)
    } else {
        (0, 0)
    };
    Ok(vec![
        "Build Cache".to_owned(),
        records.to_string(),
        "0".to_owned(),
        human_size(bytes, 4),
        human_size(bytes, 4),
    ])
}
