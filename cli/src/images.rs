//! Local image commands: the store under `$HOIST_HOME`.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use hoist_engine::Host;
use hoist_engine::images::{self as engine_images, History};
use hoist_oci::Reference;
use hoist_storage::images::archive::Format;
use hoist_storage::images::{ImageStore, ImageSummary, Removed};
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
    Df(crate::df::DfArgs),
    /// Display system-wide information
    Info(crate::sysinfo::InfoArgs),
    /// Start containers at boot as their restart policies ask, and install that as a service
    #[command(subcommand)]
    Service(crate::service::ServiceCommand),
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
    Ok(engine_images::parse_reference(s)?)
}

async fn open_store() -> Result<ImageStore> {
    Ok(Host::from_env()?.images().await?.clone())
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
            ImageCommand::System(SystemGroup::Df(a)) => crate::df::df(a).await,
            ImageCommand::System(SystemGroup::Service(c)) => crate::service::run(c),
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

/// The `images --filter`s (and the REPOSITORY[:TAG] argument) applied to the store's rows.
async fn filter_images(host: &Host, a: &ImagesArgs) -> Result<Vec<ImageSummary>> {
    let filter = a
        .filter
        .as_deref()
        .map(engine_images::repo_filter)
        .transpose()?;
    let filters = Filters::parse(&a.filters, crate::listing::IMAGE_FILTERS)?;
    let dangling = filters.bool("dangling")?;
    let all = host
        .images()
        .await?
        .list()
        .await
        .context("listing images")?;
    let created_of = |key: &str| -> Result<Option<i64>> {
        match filters.values(key).last() {
            Some(name) => Ok(Some(engine_images::created_of(&all, name)?)),
            None => Ok(None),
        }
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
        if filters.has("label") && !filters.labels(host.image_labels(r).await?.as_ref()) {
            continue;
        }
        rows.push(r.clone());
    }
    Ok(rows)
}

async fn images(a: ImagesArgs) -> Result<()> {
    let format = crate::format::Format::parse(a.format.as_deref())?;
    let host = Host::from_env()?;
    host.images().await?;
    let rows = filter_images(&host, &a).await?;
    let sizes = if a.quiet {
        HashMap::new()
    } else {
        host.image_sizes(&rows).await?
    };
    let size_of = |r: &ImageSummary| sizes.get(&r.id).copied().unwrap_or(0);
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

pub(crate) fn print_out(s: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

async fn inspect(a: InspectArgs) -> Result<()> {
    let host = Host::from_env()?;
    host.images().await?;
    let mut out = Vec::new();
    for name in &a.images {
        // Like docker: a container of that name first, then an image.
        if let Some(c) = crate::containers::inspect_container(name)? {
            out.push(c);
            continue;
        }
        out.push(host.inspect_image(name).await?);
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
    let host = Host::from_env()?;
    host.images().await?;
    let History { id, entries } = host.history(&a.image).await?;
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
    // Each row's cells: IMAGE, CREATED, CREATED BY, SIZE, COMMENT (and the time, for templates).
    let cells: Vec<([String; 5], Option<i64>)> = entries
        .iter()
        .zip(ids)
        .map(|(r, id)| {
            let by = r.entry.created_by.clone().unwrap_or_default();
            let cells = [
                id,
                human_ago(r.created, now),
                if a.no_trunc { by } else { ellipsis(&by, 45) },
                human_size(r.size, 3),
                r.entry.comment.clone().unwrap_or_default(),
            ];
            (cells, r.created)
        })
        .collect();
    let format = crate::format::Format::parse(a.format.as_deref())?;
    if !format.is_default() {
        let rows: Vec<Value> = cells
            .iter()
            .map(|([id, since, by, size, comment], created)| {
                json!({
                    "ID": id,
                    "CreatedSince": since,
                    "CreatedAt": created.map_or_else(String::new, crate::listing::go_time),
                    "CreatedBy": by,
                    "Size": size,
                    "Comment": comment,
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
    let rows: Vec<Vec<String>> = cells.into_iter().map(|(c, _)| c.to_vec()).collect();
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

async fn rmi(a: RmiArgs) -> Result<()> {
    let host = Host::from_env()?;
    host.images().await?;
    let mut failed = None;
    for name in &a.images {
        match host.remove_image(name, a.force).await {
            Ok(r) => print_out(&removed_lines(&r.removed, &r.ids, "Untagged", "Deleted"))?,
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
    let host = Host::from_env()?;
    host.images().await?;
    let what = a.images.join(" ");
    match &a.output {
        Some(path) => Ok(host.save_to_file(&refs, path, format, &what).await?),
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "cowardly refusing to save to a terminal: use the -o flag or redirect stdout"
                );
            }
            let w = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
            let mut w = host.save_to(&refs, w, format, &what).await?;
            w.flush().context("writing to stdout")
        }
    }
}

async fn load(a: LoadArgs) -> Result<()> {
    let host = Host::from_env()?;
    host.images().await?;
    if a.input.is_none() && std::io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is a terminal: use -i FILE or redirect stdin");
    }
    let loaded = host.load(a.input.as_deref()).await?;
    for e in loaded.unmeasured {
        eprintln!("{}", crate::error_line(&anyhow::Error::new(e)));
    }
    let out: String = loaded
        .images
        .iter()
        .map(|r| format!("Loaded image: {}\n", r.familiar()))
        .collect();
    print_out(&out)
}

async fn import(a: ImportArgs) -> Result<()> {
    let r = reference(&a.reference)?;
    let id = Host::from_env()?
        .import(&a.tarball, &r, &a.change, &a.reference)
        .await?;
    print_out(&format!("{id}\n"))
}

async fn prune(a: PruneArgs) -> Result<()> {
    if !a.force {
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !crate::confirm(warning)? {
            return Ok(());
        }
    }
    let report = Host::from_env()?.prune_images(a.all).await?;
    let mut out = String::new();
    if !report.removed.is_empty() {
        out.push_str("Deleted Images:\n");
        out.push_str(&removed_lines(
            &report.removed,
            &report.ids,
            "untagged",
            "deleted",
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(report.reclaimed, 4)
    ));
    print_out(&out)
}
