//! `hoist verify IMAGE...`: re-checks an image end to end: the manifest against its digest, the
//! config against its digest, every layer blob (digest, size, decompressed diff_id) and every
//! unpacked layer tree against the digest recorded when it was unpacked.

use anyhow::{Context, Result, bail};
use clap::Args;
use hoist_oci::Reference;
use hoist_runtime::layers::{Check, VerifyReport};
use hoist_storage::images::{ImageStore, Platform};

use crate::home;

#[derive(Args)]
pub struct VerifyArgs {
    /// Images to verify (NAME[:TAG], NAME@DIGEST, or an image ID or its prefix)
    #[arg(required = true)]
    images: Vec<String>,
    /// Print only problems
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: VerifyArgs) -> Result<()> {
    let home = home::hoist_home()?;
    home::runtime()?.block_on(async move {
        let host = hoist_engine::Host::new(home);
        let store = host.images().await?;
        let layers = host.layers()?;
        let mut failed = Vec::new();
        for name in &a.images {
            let reference = resolve(store, name).await?;
            let image = store
                .image(&reference, &Platform::host())
                .await
                .with_context(|| format!("no such image: {name}"))?;
            let report = layers
                .verify(store, &image)
                .await
                .with_context(|| format!("verifying {name}"))?;
            print!("{}", render(name, &report, a.quiet));
            if !report.is_ok() {
                failed.push(name.clone());
            }
        }
        if !failed.is_empty() {
            bail!("verification failed for {}", failed.join(", "));
        }
        Ok(())
    })
}

/// A reference, or the tagged image whose id starts with `name`.
async fn resolve(store: &ImageStore, name: &str) -> Result<Reference> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let list = store.list().await.context("listing images")?;
        let hits: Vec<_> = list
            .iter()
            .filter(|s| s.id.hex().starts_with(hex))
            .collect();
        if let Some(first) = hits.first() {
            if hits.iter().any(|h| h.id != first.id) {
                bail!("image id prefix {name} is ambiguous");
            }
            // Tagged images are named by their tag, dangling ones by their manifest digest.
            let named = match &first.tag {
                Some(t) => format!("{}:{t}", first.repository),
                None => format!("{}@{}", first.repository, first.digest),
            };
            return Reference::parse(&named).with_context(|| format!("naming image {name}"));
        }
    }
    Reference::parse(name).with_context(|| format!("invalid image reference {name:?}"))
}

fn render(name: &str, r: &VerifyReport, quiet: bool) -> String {
    let mut out = String::new();
    let mut line = |what: String, check: &Check| {
        if !quiet || !check.is_ok() {
            out.push_str(&format!("{name}: {what}: {check}\n"));
        }
    };
    line(format!("manifest {}", r.manifest), &r.manifest_check);
    line(format!("config {}", r.config), &r.config_check);
    for l in &r.layers {
        line(format!("layer {} blob", l.digest), &l.blob);
        line(format!("layer {} unpacked", l.diff_id), &l.unpacked);
    }
    out
}
