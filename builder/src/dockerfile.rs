//! The Dockerfile frontend: hoist's own parser (`parse`) and docker's variable expansion
//! (`expand`, `expand_words`).
//!
//! `parse` turns the text into typed instructions with spans; words stay raw (unexpanded) because
//! their values depend on build args and the stage's environment, which the solver knows. The
//! parser follows BuildKit's: parser directives at the top (`# syntax`, `# escape`, `# check`),
//! line continuations with the escape character (comment lines and empty lines inside a
//! continuation are skipped), heredocs for `RUN`, `COPY` and `ADD`, exec form only when the
//! arguments are a valid JSON array of strings (anything else is shell form), flags before the
//! arguments (`--name=value`).

mod error;
mod parser;
mod shell;

pub use error::ParseError;
pub use parser::{parse, parse_go_duration};
pub use shell::{ExpandError, expand, expand_heredoc, expand_words};

use serde::Serialize;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// `ARG`s before the first `FROM`: usable in `FROM` lines, and in a stage after it
    /// redeclares them without a value.
    pub global_args: Vec<ArgDecl>,
    /// The build stages in file order.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// The stage named `name` (stage names are lowercase; the lookup ignores case), or the stage
    /// at that index when `name` is a number.
    pub fn stage(&self, name: &str) -> Option<(usize, &Stage)> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some((i, &self.stages[i]));
        }
        let i: usize = name.parse().ok()?;
        self.stages.get(i).map(|s| (i, s))
    }
}

/// Parser directives (`# syntax=...`, `# escape=...`, `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=`: the frontend image docker would use; hoist records it and parses itself.
    pub syntax: Option<String>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=`: build-check configuration, recorded as written.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One `ARG` name with its optional default (raw, expanded by the solver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A build stage: a `FROM` line and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// `AS name`, lowercased (docker's stage names are case-insensitive).
    pub name: Option<String>,
    /// The base as written (`alpine:3.7`, `scratch`, `${BASE}`, or an earlier stage's name).
    pub base: String,
    /// `--platform=` as written.
    pub platform: Option<String>,
    pub instructions: Vec<Instr>,
    /// Line (1-based) of the `FROM`.
    pub line: usize,
    /// Column (1-based) of the `FROM`.
    pub column: usize,
    /// The `FROM` line as written (continuations joined).
    pub source: String,
}

/// An instruction with its span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instr {
    pub kind: Instruction,
    /// First line (1-based).
    pub line: usize,
    /// Column (1-based, in characters) of the instruction keyword.
    pub column: usize,
    /// Last line, continuation lines and heredoc bodies included.
    pub end_line: usize,
    /// The instruction as written, continuations joined, without heredoc bodies; for an
    /// `ONBUILD` trigger, the text after `ONBUILD` followed by `\n<body><name>` per heredoc (what
    /// docker stores in the image's `OnBuild`).
    pub source: String,
}

/// Every instruction of the Dockerfile reference except `FROM` (which starts a [`Stage`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Instruction {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// `SHELL ["executable", "params"]` (JSON form only).
    Shell(Vec<String>),
    /// Key/value pairs, raw (quotes still in place; expand each with [`expand`]).
    Label(Vec<(String, String)>),
    /// Port specs as written (`80`, `53/udp`, `$PORT`), sorted as docker sorts them; expand each
    /// with [`expand_words`].
    Expose(Vec<String>),
    /// Key/value pairs, raw. The legacy form `ENV k v w` gives one pair `("k", "v w")`.
    Env(Vec<(String, String)>),
    Add(Copy),
    Copy(Copy),
    /// Paths, from the JSON form or split on whitespace.
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    /// The trigger instruction (never `ONBUILD`, `FROM` or `MAINTAINER`).
    Onbuild(Box<Instr>),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    Maintainer(String),
}

impl Instruction {
    /// The instruction keyword in upper case (`RUN`, `COPY`...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// Shell form (run by the stage's `SHELL`, default `/bin/sh -c`) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `RUN [--mount=...]... [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub command: Command,
    /// Heredoc bodies in the order of their `<<` in the command (shell form only).
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<RunMount>,
    /// `default`, `none` or `host` (validated, lowercase).
    pub network: Option<String>,
    /// `sandbox` or `insecure` (validated, lowercase).
    pub security: Option<String>,
}

impl Run {
    /// The script docker hands to the shell for a shell-form `RUN`, heredocs applied:
    /// `RUN <<EOF` alone runs the heredoc body (when the body starts with `#!` docker writes it to
    /// a file and executes it; [`RunScript::Shebang`]); any other use of heredocs is re-assembled
    /// into one shell script (`cmd <<EOF\nbody\nEOF`) so the shell handles it. `None` for the exec
    /// form.
    pub fn script(&self) -> Option<RunScript> {
        let Command::Shell(cmd) = &self.command else {
            return None;
        };
        if self.heredocs.is_empty() {
            return Some(RunScript::Shell(cmd.clone()));
        }
        if parser::is_single_heredoc(cmd) {
            let body = &self.heredocs[0].content;
            if body.starts_with("#!") {
                return Some(RunScript::Shebang(body.clone()));
            }
            return Some(RunScript::Shell(body.clone()));
        }
        let mut full = cmd.clone();
        for h in &self.heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        Some(RunScript::Shell(full))
    }
}

/// What a shell-form `RUN` executes; see [`Run::script`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum RunScript {
    /// Pass to the shell (`/bin/sh -c SCRIPT`).
    Shell(String),
    /// Write to a file and execute it directly (it starts with `#!`).
    Shebang(String),
}

/// A heredoc body (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF`); for `COPY`/`ADD` also the source file name.
    pub name: String,
    /// The body, each line ending in `\n`; leading tabs already removed for `<<-`.
    pub content: String,
    /// The file descriptor before `<<` (0 when absent).
    pub file_descriptor: u32,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were removed.
    pub chomp: bool,
}

/// `RUN --mount=type=...` kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// `--mount=type=cache` sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount=...`, keys validated per type; values raw (expand them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    pub kind: MountType,
    /// `target`/`dst`/`destination`; required for bind, cache and tmpfs.
    pub target: Option<String>,
    /// `source`/`src`: path in `from` (bind, cache) or the secret's file.
    pub source: Option<String>,
    /// `from`: a stage or image (bind, cache).
    pub from: Option<String>,
    /// Read-only: explicit `ro`/`rw`, else true for bind, secret and ssh, false for cache, tmpfs.
    pub readonly: bool,
    /// `id`: cache id (cache) or secret/ssh id.
    pub id: Option<String>,
    /// `sharing` (cache only), default shared.
    pub sharing: Option<CacheSharing>,
    /// `mode` (octal; cache, secret, ssh).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `size` in bytes (tmpfs).
    pub size: Option<u64>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env`: expose the secret as this environment variable (secret).
    pub env: Option<String>,
}

/// `COPY`/`ADD` and their flags; sources and destination raw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Source paths, URLs (ADD) or globs, as written; heredoc sources are in `heredocs`.
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=` a stage name, stage index or image (COPY only).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--checksum=` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack=` (ADD only): override archive auto-extraction.
    pub unpack: Option<bool>,
    /// Inline files (`COPY <<EOF /dest`): `name` is the file name.
    pub heredocs: Vec<Heredoc>,
    /// The arguments were a JSON array.
    pub json: bool,
}

/// `HEALTHCHECK`, as the image config stores it (durations in nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` (exec form) or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u32>,
}

/// All instruction keywords docker knows, upper case (for suggestions and tests).
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];
