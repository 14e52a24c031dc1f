//! `system df`: docker's tables of what the engine measures (`hoist_engine::usage`).

use anyhow::Result;
use clap::Args;
use hoist_engine::Host;
use hoist_engine::usage::{BuildCacheUsage, ContainersUsage, ImagesUsage, VolumesUsage};
use hoist_runtime::container;

use crate::images_format::{human_ago, human_size, now_unix, short_id, table};

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
}

/// A summary row: TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE.
fn row(kind: &str, total: usize, active: usize, size: u64, reclaimable: String) -> Vec<String> {
    vec![
        kind.to_owned(),
        total.to_string(),
        active.to_string(),
        human_size(size, 4),
        reclaimable,
    ]
}

fn images_row(u: &ImagesUsage) -> Vec<String> {
    let reclaimable = match (u.reclaimable * 100).checked_div(u.size) {
        Some(percent) => format!("{} ({percent}%)", human_size(u.reclaimable, 4)),
        None => human_size(u.reclaimable, 4),
    };
    row("Images", u.images, u.active, u.size, reclaimable)
}

/// The Containers and Local Volumes rows: reclaimable what the stopped ones, or the unused ones,
/// hold.
fn containers_row(u: &ContainersUsage) -> Vec<String> {
    let (total, reclaimable) = (u.containers.len(), human_size(u.reclaimable, 4));
    row("Containers", total, u.running, u.size, reclaimable)
}

fn volumes_row(u: &VolumesUsage) -> Vec<String> {
    let (total, reclaimable) = (u.volumes.len(), human_size(u.reclaimable, 4));
    row("Local Volumes", total, u.active, u.size, reclaimable)
}

fn build_cache_row(u: &BuildCacheUsage) -> Vec<String> {
    let bytes = human_size(u.bytes, 4);
    vec![
        "Build Cache".to_owned(),
        u.records.to_string(),
        "0".to_owned(),
        bytes.clone(),
        bytes,
    ]
}

/// `system df -v`'s images table.
fn images_table(u: &ImagesUsage, now: i64) -> String {
    let rows: Vec<Vec<String>> = u
        .rows
        .iter()
        .map(|r| {
            vec![
                r.image.repository.clone(),
                r.image.tag.clone().unwrap_or_else(|| "<none>".to_owned()),
                short_id(r.image.id.hex()).to_owned(),
                human_ago(r.image.created_unix, now),
                human_size(r.size, 3),
                human_size(r.shared, 4),
                human_size(r.unique(), 4),
                r.containers.to_string(),
            ]
        })
        .collect();
    table(
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
        &rows,
    )
}

/// `system df -v`'s containers table.
fn containers_table(u: &ContainersUsage, now: i64) -> String {
    let rows: Vec<Vec<String>> = u
        .containers
        .iter()
        .map(|cu| {
            let c = &cu.container;
            vec![
                c.short_id().to_owned(),
                c.config.image.clone(),
                crate::containers::ps_command(c, false),
                cu.volumes.to_string(),
                human_size(cu.size, 3),
                format!(
                    "{} ago",
                    container::human_duration(now - c.config.created_unix)
                ),
                c.state.describe(now),
                c.name().to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ],
        &rows,
    )
}

/// `system df -v`'s volumes table: LINKS is the number of containers using the volume.
fn volumes_table(u: &VolumesUsage) -> String {
    let rows: Vec<Vec<String>> = u
        .volumes
        .iter()
        .map(|v| vec![v.name.clone(), v.links.to_string(), human_size(v.size, 3)])
        .collect();
    table(&["VOLUME NAME", "LINKS", "SIZE"], &rows)
}

pub async fn df(a: DfArgs) -> Result<()> {
    let host = Host::from_env()?;
    let images = host.images_usage().await?;
    let containers = host.containers_usage()?;
    let volumes = host.volumes_usage()?;
    let cache = host.build_cache_usage()?;
    let rows = vec![
        images_row(&images),
        containers_row(&containers),
        volumes_row(&volumes),
        build_cache_row(&cache),
    ];
    if !a.verbose {
        return crate::images::print_out(&table(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &rows,
        ));
    }
    let now = now_unix();
    let mut out = String::from("Images space usage:\n\n");
    out.push_str(&images_table(&images, now));
    out.push_str("\nContainers space usage:\n\n");
    out.push_str(&containers_table(&containers, now));
    out.push_str("\nLocal Volumes space usage:\n\n");
    out.push_str(&volumes_table(&volumes));
    // Each build cache record as BuildKit's entries are listed (a step's result: "regular").
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size(cache.bytes, 4)
    ));
    let rows: Vec<Vec<String>> = host
        .build_cache_records()?
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
    crate::images::print_out(&out)
}
