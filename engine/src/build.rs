//! `hoist build`: the request as the flags give it, checked and turned into the builder's
//! options, then planned, solved, exported to the local store and to the requested outputs.
//!
//! The cli shows the progress ([`BuildReport`]) and pushes the tags afterwards.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hoist_builder::build::{self, BuildOptions, BuildServices, LayerCompression};
use hoist_builder::export::{self, UNTAGGED_REPO};
use hoist_builder::run::ExecutorRunner;
use hoist_builder::solver::Progress;
use hoist_oci::{Digest, Reference};
use hoist_runtime::exec::HoistExecutor;
use hoist_runtime::unpack::{self, UnpackOptions, Whiteouts};
use hoist_storage::images::Platform;

use crate::puller::HostPuller;
use crate::{EngineError, Host, OptionExt, Result, ResultExt, bail};

/// Where the build context comes from.
pub enum ContextSource {
    /// A directory.
    Dir(PathBuf),
    /// `-`: what was read from standard input, a Dockerfile or a (compressed) tar.
    Stdin(Vec<u8>),
}

/// A build as `hoist build`'s flags ask for it (each value as the user wrote it).
pub struct BuildRequest {
    pub context: ContextSource,
    /// `-f`: the Dockerfile (default: CONTEXT/Dockerfile).
    pub file: Option<PathBuf>,
    /// `--build-arg K=V`, or `K` to take it from the environment.
    pub build_args: Vec<String>,
    /// `--label K=V`, or `K` for an empty value.
    pub labels: Vec<String>,
    pub tags: Vec<String>,
    /// `--platform`: only the host's.
    pub platform: Option<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `--network`: host, default or none.
    pub network: String,
    /// `--secret id=ID,src=PATH`.
    pub secrets: Vec<String>,
    /// `--ssh default|ID[=SOCKET]`.
    pub ssh: Vec<String>,
    /// `-o`: `type=image|registry|oci|docker|tar|local[,dest=PATH]`, or `DIR`.
    pub outputs: Vec<String>,
    pub push: bool,
    /// `gzip` or `zstd`.
    pub compression: String,
}

/// Where the build's lines go, besides the solver's events.
pub trait BuildReport: Progress {
    /// A step outside the solver, done at once (`[internal] ...`).
    fn internal(&self, what: &str);
    /// A line outside the steps.
    fn line(&self, line: &str);
    /// The next step number, for the export step's lines.
    fn next_step(&self) -> usize;
}

/// A finished build.
pub struct Built {
    pub id: Digest,
    /// The tags to push now (`--push`, or an output of type registry): none otherwise.
    pub push: Vec<Reference>,
}

/// An output besides the local store.
#[derive(Debug, PartialEq)]
enum Output {
    /// `type=image` or `type=registry` (the local store; registry also pushes).
    Image { push: bool },
    /// `type=oci|docker|tar,dest=FILE`.
    Archive { kind: String, dest: PathBuf },
    /// `type=local,dest=DIR`.
    Local(PathBuf),
}

/// Docker's `-o` spec.
fn parse_output(spec: &str) -> Result<Output> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            Some((k, _)) => bail!("invalid --output {spec:?}: unknown key {k:?}"),
            // `-o DIR` is docker's shorthand for a local output.
            None if !part.is_empty() && kind.is_none() => {
                kind = Some("local".into());
                dest = Some(PathBuf::from(part));
            }
            None => bail!("invalid --output {spec:?}"),
        }
    }
    let kind = kind.or_invalid(|| format!("invalid --output {spec:?}: no type"))?;
    match (kind.as_str(), dest) {
        ("image" | "registry", _) => Ok(Output::Image {
            push: kind == "registry",
        }),
        ("oci" | "docker" | "tar", Some(dest)) => Ok(Output::Archive { kind, dest }),
        ("local", Some(dest)) => Ok(Output::Local(dest)),
        ("oci" | "docker" | "local" | "tar", None) => {
            bail!("invalid --output {spec:?}: type={kind} needs dest=PATH")
        }
        _ => bail!("invalid --output {spec:?}: unknown type {kind:?} (image, oci, docker, local)"),
    }
}

/// `--platform`: one platform, the host's (it is what RUN steps run as).
fn check_platform(spec: &str) -> Result<()> {
    let host = Platform::host();
    if spec.contains(',') {
        bail!("--platform {spec}: multi-platform builds are not supported (build for {host})");
    }
    let p = Platform::parse(spec)
        .map_err(|e| EngineError::Invalid(format!("--platform {spec}: {e}")))?;
    if host.score(&p).is_none() || p.score(&host).is_none() {
        bail!(
            "--platform {spec}: only the host platform {host} can be built (use FROM --platform= for another platform's base)"
        );
    }
    Ok(())
}

/// `K=V` pairs; a bare `K` takes `missing(K)` (none: left out).
fn pairs(items: &[String], missing: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    items
        .iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => missing(a).map(|v| (a.clone(), v)),
        })
        .collect()
}

/// `--secret id=ID,src=PATH` (`type=file` allowed): the secret's id and its file.
fn parse_secret(s: &str) -> Result<(String, PathBuf)> {
    let mut id = None;
    let mut src = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("type", "file")) => {}
            _ => bail!("invalid --secret {s:?}: expected id=ID,src=PATH"),
        }
    }
    let id = id.or_invalid(|| format!("invalid --secret {s:?}: no id"))?;
    let src = src.or_invalid(|| format!("invalid --secret {s:?}: no src"))?;
    let src = std::fs::canonicalize(&src).with_ctx(|| format!("secret {id}: {}", src.display()))?;
    Ok((id, src))
}

/// `--ssh default|ID[=SOCKET]`: the agent's id and its socket (no SOCKET: `$SSH_AUTH_SOCK`).
fn parse_ssh(s: &str) -> Result<(String, PathBuf)> {
    let (id, path) = match s.split_once('=') {
        Some((id, p)) => (id, PathBuf::from(p)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK")
                .filter(|v| !v.is_empty())
                .or_invalid(|| format!("--ssh {s}: SSH_AUTH_SOCK is not set (give {s}=SOCKET)"))?;
            (s, PathBuf::from(sock))
        }
    };
    if id.is_empty() || id.contains(',') {
        bail!("invalid --ssh {s:?}: expected default|ID[=SOCKET]");
    }
    let meta = std::fs::metadata(&path).with_ctx(|| format!("--ssh {id}: {}", path.display()))?;
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        bail!(
            "--ssh {id}: {} is not an ssh agent socket (key files are not supported: load them into an agent)",
            path.display()
        );
    }
    let path =
        std::fs::canonicalize(&path).with_ctx(|| format!("--ssh {id}: {}", path.display()))?;
    Ok((id.to_owned(), path))
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// The context directory, the Dockerfile's path and its text. A context from stdin is unpacked
/// into `scratch` (a tar, by the runtime's confined unpacker: no entry lands outside it), or is
/// the Dockerfile itself.
fn load_context(
    source: &ContextSource,
    file: Option<&Path>,
    scratch: &Path,
) -> Result<(PathBuf, PathBuf, String)> {
    let data = match source {
        ContextSource::Dir(ctx) => {
            if !ctx.is_dir() {
                bail!(
                    "unable to prepare context: path {:?} not found",
                    ctx.display().to_string()
                );
            }
            let path = file.map_or_else(|| ctx.join("Dockerfile"), Path::to_path_buf);
            let text = std::fs::read_to_string(&path)
                .with_ctx(|| format!("failed to read dockerfile {}", path.display()))?;
            return Ok((ctx.clone(), path, text));
        }
        ContextSource::Stdin(data) => data,
    };
    let plain = unpack::decompress(&data[..])
        .and_then(|mut r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .unwrap_or_else(|_| data.clone());
    if !is_tar(&plain) {
        let text = String::from_utf8(data.clone())
            .map_err(|_| EngineError::Invalid("the Dockerfile on stdin is not UTF-8".into()))?;
        return Ok((scratch.to_path_buf(), PathBuf::from("Dockerfile"), text));
    }
    unpack::unpack_layer(
        &plain[..],
        scratch,
        &UnpackOptions {
            whiteouts: Whiteouts::Apply,
            chown: false,
            ..Default::default()
        },
    )
    .ctx("unpacking the context tar")?;
    let f = file.unwrap_or(Path::new("Dockerfile"));
    let p = scratch.join(f);
    let text = std::fs::read_to_string(&p).with_ctx(|| format!("reading {}", f.display()))?;
    Ok((scratch.to_path_buf(), p, text))
}

impl Host {
    /// Builds `req` into the local store and its other outputs. Base images are pulled in
    /// process; the tags to push are returned.
    pub async fn build(
        self: &Arc<Self>,
        req: &BuildRequest,
        report: Arc<dyn BuildReport>,
    ) -> Result<Built> {
        if let Some(p) = &req.platform {
            check_platform(p)?;
        }
        let labels = pairs(&req.labels, |_| Some(String::new()));
        let scratch = tempfile::Builder::new()
            .prefix("hoist-context-")
            .tempdir()
            .ctx("creating a directory for the build context")?;
        let (context_dir, dockerfile_path, dockerfile) =
            load_context(&req.context, req.file.as_deref(), scratch.path())?;
        let dockerfile_name = dockerfile_path
            .file_name()
            .map_or_else(|| "Dockerfile".into(), |n| n.to_string_lossy().into_owned());
        report.internal(&format!(
            "[internal] load build definition from {dockerfile_name}"
        ));
        // `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's
        // `.dockerignore` (read with the context, `hoist_builder::context::Context::from_dir`).
        report.internal("[internal] load .dockerignore");

        let build_args = pairs(&req.build_args, |k| std::env::var(k).ok());
        let secrets = req
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<_>>()?;
        let ssh = req
            .ssh
            .iter()
            .map(|s| parse_ssh(s))
            .collect::<Result<_>>()?;
        let source_date_epoch = build_args
            .get("SOURCE_DATE_EPOCH")
            .cloned()
            .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| EngineError::Invalid(format!("invalid SOURCE_DATE_EPOCH {s:?}")))
            })
            .transpose()?;
        let tags = req
            .tags
            .iter()
            .map(|t| Reference::parse(t).with_ctx(|| format!("invalid tag {t:?}")))
            .collect::<Result<Vec<_>>>()?;
        let outputs = req
            .outputs
            .iter()
            .map(|o| parse_output(o))
            .collect::<Result<Vec<_>>>()?;
        if req.push && tags.is_empty() {
            bail!("--push needs a tag (-t NAME)");
        }
        let opts = BuildOptions {
            dockerfile,
            dockerfile_name: dockerfile_path.display().to_string(),
            context_dir,
            dockerfile_path: Some(dockerfile_path),
            build_args,
            target: req.target.clone(),
            no_cache: req.no_cache,
            pull: req.pull,
            network_none: req.network == "none",
            secrets,
            ssh,
            compression: if req.compression == "zstd" {
                LayerCompression::Zstd
            } else {
                LayerCompression::Gzip
            },
            source_date_epoch,
        };

        let images = self.images().await?.clone();
        let mut env = BuildServices::new(
            self.home(),
            images.clone(),
            self.build_cache()?,
            opts.compression,
            opts.source_date_epoch,
        )?;
        env.puller = Some(Arc::new(HostPuller {
            host: self.clone(),
            endpoints: Arc::new(crate::transfer::endpoints(&[], self.home())?),
        }));
        env.runner = Some(Arc::new(ExecutorRunner::new(
            Arc::new(HoistExecutor::new()),
        )));
        let env = Arc::new(env);
        let plan = build::plan(&env, &opts).await?;
        for r in &plan.resolved {
            report.internal(r);
        }
        let progress: Arc<dyn Progress> = report.clone();
        let mut snapshot = build::solve(&env, &plan, opts.no_cache, progress).await?;
        build::apply_labels(&mut snapshot, &labels);

        let t = Instant::now();
        let n = report.next_step();
        report.line(&format!("#{n} exporting to image"));
        let exported = export::to_store(&env, &snapshot, &tags).await?;
        report.line(&format!("#{n} writing image {} done", exported.id));
        for t in &tags {
            report.line(&format!("#{n} naming to {t} done"));
        }
        let mut push = req.push;
        for o in &outputs {
            match o {
                Output::Archive { kind, dest } => {
                    let reference = match tags.first() {
                        Some(t) => t.clone(),
                        None => Reference::parse(&format!("{UNTAGGED_REPO}@{}", exported.manifest))
                            .ctx("naming the untagged image")?,
                    };
                    export::to_archive(&images, &reference, dest, kind == "oci").await?;
                    report.line(&format!("#{n} exporting to {kind} {} done", dest.display()));
                }
                Output::Local(dest) => {
                    export::to_local(&env, &snapshot, dest).await?;
                    report.line(&format!("#{n} copying files to {} done", dest.display()));
                }
                Output::Image { push: p } => push |= p,
            }
        }
        report.line(&format!("#{n} DONE {:.1}s", t.elapsed().as_secs_f64()));
        Ok(Built {
            id: exported.id,
            push: if push { tags } else { Vec::new() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_as_docker_spells_them() {
        assert_eq!(
            parse_output("type=local,dest=out").unwrap(),
            Output::Local("out".into())
        );
        assert_eq!(parse_output("out").unwrap(), Output::Local("out".into()));
        assert_eq!(
            parse_output("type=oci,dest=a.tar").unwrap(),
            Output::Archive {
                kind: "oci".into(),
                dest: "a.tar".into()
            }
        );
        assert_eq!(
            parse_output("type=registry").unwrap(),
            Output::Image { push: true }
        );
        for (spec, err) in [
            ("type=oci", "type=oci needs dest=PATH"),
            ("type=s3", "unknown type \"s3\""),
            ("type=local,mode=max", "unknown key \"mode\""),
            ("dest=x", "no type"),
        ] {
            let e = parse_output(spec).unwrap_err().to_string();
            assert!(e.contains(err), "{spec}: {e}");
        }
    }

    #[test]
    fn only_the_host_platform_builds() {
        check_platform(&Platform::host().to_string()).unwrap();
        let e = check_platform("linux/amd64,linux/arm64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("multi-platform builds are not supported"), "{e}");
        let other = if Platform::host().architecture == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let e = check_platform(other).unwrap_err().to_string();
        assert!(e.contains("only the host platform"), "{e}");
    }

    #[test]
    fn secrets_need_an_id_and_a_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let (id, src) = parse_secret(&format!("id=tok,src={}", f.path().display())).unwrap();
        assert_eq!(id, "tok");
        assert_eq!(src, std::fs::canonicalize(f.path()).unwrap());
        for (spec, err) in [
            ("src=/x", "no id"),
            ("id=a", "no src"),
            ("id=a,env=B", "expected id=ID,src=PATH"),
            ("id=a,src=/no/such/file", "secret a: /no/such/file"),
        ] {
            let e = crate::error::error_chain(&parse_secret(spec).unwrap_err());
            assert!(e.contains(err), "{spec}: {e}");
        }
    }

    #[test]
    fn ssh_takes_only_sockets() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = parse_ssh(&format!("default={}", f.path().display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an ssh agent socket"), "{e}");
        let e = parse_ssh("a,b=/x").unwrap_err().to_string();
        assert!(e.contains("expected default|ID[=SOCKET]"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (id, path) = parse_ssh(&format!("default={}", sock.display())).unwrap();
        assert_eq!((id.as_str(), path), ("default", sock));
    }

    #[test]
    fn a_bare_build_arg_comes_from_the_environment_or_is_left_out() {
        let items = ["A=1".to_owned(), "B".to_owned(), "C".to_owned()];
        let m = pairs(&items, |k| (k == "B").then(|| "env".to_owned()));
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [("A".into(), "1".into()), ("B".into(), "env".into())]
        );
    }

    #[test]
    fn a_dockerfile_on_stdin_is_the_dockerfile_and_a_tar_is_the_context() {
        let scratch = tempfile::tempdir().unwrap();
        let src = ContextSource::Stdin(b"FROM scratch\n".to_vec());
        let (dir, path, text) = load_context(&src, None, scratch.path()).unwrap();
        assert_eq!(
            (dir.as_path(), path, text.as_str()),
            (
                scratch.path(),
                PathBuf::from("Dockerfile"),
                "FROM scratch\n"
            )
        );

        let mut tar = tar::Builder::new(Vec::new());
        let body = b"FROM busybox\n";
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "sub/Build.df", &body[..]).unwrap();
        let data = tar.into_inner().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let src = ContextSource::Stdin(data);
        let (_, path, text) =
            load_context(&src, Some(Path::new("sub/Build.df")), scratch.path()).unwrap();
        assert_eq!(path, scratch.path().join("sub/Build.df"));
        assert_eq!(text, "FROM busybox\n");
    }
}
