//! The Dockerfile parser: physical lines -> logical lines (directives, comments, continuations,
//! heredoc bodies) -> instructions with flags and spans.

use std::collections::HashMap;

use super::error::ParseError;
use super::shell::Lex;
use super::{
    ArgDecl, CacheSharing, Command, Copy, Directives, Dockerfile, Healthcheck, Heredoc,
    INSTRUCTIONS, Instr, Instruction, MountType, Run, RunMount, Stage,
};

/// Parses a Dockerfile. `file` names it in errors (`FILE:LINE:COL: message`).
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines: Vec<&str> = source.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let lines: Vec<&str> = lines
        .into_iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut p = Parser {
        file,
        lines: &lines,
        directives: Directives::default(),
    };
    p.run()
}

/// A logical line: physical lines joined by continuations, with a map back to positions.
struct Logical {
    text: String,
    /// (byte offset in `text`, line, column of that byte in the physical line)
    segs: Vec<(usize, usize, usize)>,
    start_line: usize,
    end_line: usize,
}

impl Logical {
    fn pos(&self, off: usize) -> (usize, usize) {
        let seg = self
            .segs
            .iter()
            .rev()
            .find(|s| s.0 <= off)
            .copied()
            .unwrap_or(self.segs[0]);
        let end = off.min(self.text.len());
        let chars = self.text.get(seg.0..end).map_or(0, |s| s.chars().count());
        (seg.1, seg.2 + chars)
    }
}

/// An error located in a logical line (byte offset, byte length).
struct PErr {
    off: usize,
    len: usize,
    msg: String,
}

fn perr(off: usize, len: usize, msg: impl Into<String>) -> PErr {
    PErr {
        off,
        len,
        msg: msg.into(),
    }
}

struct Parser<'a> {
    file: &'a str,
    lines: &'a [&'a str],
    directives: Directives,
}

/// One instruction split into keyword, flags and arguments (offsets into the logical text).
struct Split {
    kw: String,
    kw_off: usize,
    kw_len: usize,
    flags: Vec<FlagWord>,
    args: String,
    args_off: usize,
}

struct FlagWord {
    text: String,
    off: usize,
    len: usize,
}

enum Parsed {
    From {
        base: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Instr(Instruction),
}

fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `reWhitespace` (`[\t\v\f\r ]+`).
fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_ws).starts_with('#')
}

impl Parser<'_> {
    fn error_at(
        &self,
        line: usize,
        column: usize,
        len: usize,
        msg: impl Into<String>,
    ) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            column,
            len: len.max(1),
            message: msg.into(),
            source_line: self
                .lines
                .get(line.wrapping_sub(1))
                .copied()
                .unwrap_or("")
                .to_string(),
        }
    }

    fn error_in(&self, lg: &Logical, e: PErr) -> ParseError {
        let (line, col) = lg.pos(e.off);
        let end = (e.off + e.len).min(lg.text.len());
        let len = lg
            .text
            .get(e.off.min(end)..end)
            .map_or(1, |s| s.chars().count());
        self.error_at(line, col, len, e.msg)
    }

    /// A parser directive on a line at the top, or `None` once directives are over.
    fn directive(line: &str) -> Option<(String, String)> {
        let rest = line.trim_start_matches(is_ws).strip_prefix('#')?;
        let rest = rest.trim_start_matches(is_ws);
        let name_len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if name_len == 0 {
            return None;
        }
        let (name, rest) = rest.split_at(name_len);
        let rest = rest.trim_start_matches(is_ws).strip_prefix('=')?;
        let value = rest.trim_matches(is_ws);
        if value.is_empty() {
            return None;
        }
        Some((name.to_ascii_lowercase(), value.to_string()))
    }

    fn run(&mut self) -> Result<Dockerfile, ParseError> {
        let n = self.lines.len();
        let mut i = 0;
        let mut directives_done = false;
        let mut seen: Vec<String> = Vec::new();
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut any = false;
        while i < n {
            let raw = self.lines[i];
            i += 1;
            let lineno = i;
            if !directives_done {
                match Self::directive(raw) {
                    Some((k, v)) if matches!(k.as_str(), "syntax" | "escape" | "check") => {
                        let col = raw.find('#').map_or(1, |b| raw[..b].chars().count() + 1);
                        if seen.contains(&k) {
                            return Err(self.error_at(
                                lineno,
                                col,
                                raw.len(),
                                format!("only one {k} parser directive can be used"),
                            ));
                        }
                        seen.push(k.clone());
                        match k.as_str() {
                            "escape" => {
                                self.directives.escape = match v.as_str() {
                                    "\\" => '\\',
                                    "`" => '`',
                                    _ => {
                                        return Err(self.error_at(
                                            lineno,
                                            col,
                                            raw.len(),
                                            format!(
                                                "invalid escape token '{v}' does not match ` or \\"
                                            ),
                                        ));
                                    }
                                };
                            }
                            "syntax" => self.directives.syntax = Some(v),
                            _ => self.directives.check = Some(v),
                        }
                        continue;
                    }
                    _ => directives_done = true,
                }
            }
            if is_comment(raw) {
                continue;
            }
            let token = raw.trim_start_matches(is_ws);
            let lead = raw.len() - token.len();
            let col = raw[..lead].chars().count() + 1;
            let (first, mut eol) = self.trim_continuation(token);
            if eol && first.is_empty() {
                continue;
            }
            let mut lg = Logical {
                text: first.to_string(),
                segs: vec![(0, lineno, col)],
                start_line: lineno,
                end_line: lineno,
            };
            while !eol && i < n {
                let raw = self.lines[i];
                i += 1;
                lg.end_line = i;
                if is_comment(raw) || raw.trim_start_matches(is_ws).is_empty() {
                    continue;
                }
                let (piece, e) = self.trim_continuation(raw);
                eol = e;
                lg.segs.push((lg.text.len(), i, 1));
                lg.text.push_str(piece);
            }
            any = true;

            let split = self.split(&lg, 0);
            // Heredoc bodies follow the instruction's line.
            let mut heredocs = Vec::new();
            let (kw, args) = if split.kw == "ONBUILD" {
                let s = self.split(&lg, split.args_off);
                (s.kw, s.args)
            } else {
                (split.kw.clone(), split.args.clone())
            };
            if matches!(kw.as_str(), "RUN" | "COPY" | "ADD")
                && parse_json(&args).is_err()
                && lg.text.contains("<<")
            {
                let specs = heredocs_from_line(&lg.text)
                    .map_err(|m| self.error_in(&lg, perr(split.args_off, split.args.len(), m)))?;
                for spec in specs {
                    let mut content = String::new();
                    let mut terminated = false;
                    while i < n {
                        let raw = self.lines[i];
                        i += 1;
                        let cand = if spec.chomp {
                            raw.trim_start_matches('\t')
                        } else {
                            raw
                        };
                        if cand == spec.name {
                            terminated = true;
                            break;
                        }
                        content.push_str(raw);
                        content.push('\n');
                    }
                    lg.end_line = i;
                    if !terminated {
                        return Err(self.error_at(
                            lg.start_line,
                            col,
                            lg.text.len(),
                            format!(
                                "unterminated heredoc {}: no line {:?} before the end of the file",
                                spec.name, spec.name
                            ),
                        ));
                    }
                    if spec.chomp {
                        content = content
                            .split_inclusive('\n')
                            .map(|l| l.trim_start_matches('\t'))
                            .collect();
                    }
                    heredocs.push(Heredoc {
                        name: spec.name,
                        content,
                        file_descriptor: spec.fd,
                        expand: spec.expand,
                        chomp: spec.chomp,
                    });
                }
            }

            let parsed = self
                .build(&lg, &split, heredocs, false)
                .map_err(|e| self.error_in(&lg, e))?;
            let source = lg.text.trim_matches(is_ws).to_string();
            match parsed {
                Parsed::From {
                    base,
                    name,
                    platform,
                } => {
                    if let Some(nm) = &name
                        && stages.iter().any(|s| s.name.as_ref() == Some(nm))
                    {
                        let off = lg
                            .text
                            .rfind(|c: char| !is_ws(c))
                            .map_or(0, |e| lg.text[..=e].rfind(is_ws).map_or(0, |s| s + 1));
                        return Err(self.error_in(
                            &lg,
                            perr(off, nm.len(), format!("duplicate stage name {nm:?}")),
                        ));
                    }
                    stages.push(Stage {
                        name,
                        base,
                        platform,
                        instructions: Vec::new(),
                        line: lg.start_line,
                        column: col,
                        source,
                    });
                }
                Parsed::Instr(kind) => {
                    let Some(stage) = stages.last_mut() else {
                        if let Instruction::Arg(decls) = kind {
                            global_args.extend(decls);
                            continue;
                        }
                        return Err(self.error_in(
                            &lg,
                            perr(
                                0,
                                split.kw_len,
                                format!(
                                    "{} before the first FROM: no build stage in current context",
                                    split.kw
                                ),
                            ),
                        ));
                    };
                    stage.instructions.push(Instr {
                        kind,
                        line: lg.start_line,
                        column: col,
                        end_line: lg.end_line,
                        source,
                    });
                }
            }
        }
        if !any {
            return Err(self.error_at(n.max(1), 1, 1, "file with no instructions"));
        }
        if stages.is_empty() {
            return Err(self.error_at(
                n.max(1),
                1,
                1,
                "no FROM instruction: a Dockerfile needs at least one build stage",
            ));
        }
        Ok(Dockerfile {
            directives: self.directives.clone(),
            global_args,
            stages,
        })
    }

    /// BuildKit's continuation rule (`([^E])E[ \t]*$|^E[ \t]*$` for escape `E`): a trailing escape
    /// character (plus spaces/tabs) continues the line unless another escape character precedes
    /// it. Returns (line without it, is_end_of_line).
    fn trim_continuation<'s>(&self, line: &'s str) -> (&'s str, bool) {
        let esc = self.directives.escape;
        let t = line.trim_end_matches([' ', '\t']);
        match t.strip_suffix(esc) {
            Some(rest) if !rest.ends_with(esc) => (rest, false),
            _ => (line, true),
        }
    }

    /// Splits the text at `start` into keyword, flags (`--x`) and arguments.
    fn split(&self, lg: &Logical, start: usize) -> Split {
        let text = &lg.text;
        let s = start + (text[start..].len() - text[start..].trim_start_matches(is_ws).len());
        let kw_end = text[s..].find(is_sep).map_or(text.len(), |e| s + e);
        let kw = text[s..kw_end].to_string();
        let mut rest = kw_end;
        while let Some(c) = text[rest..].chars().next().filter(|&c| is_sep(c)) {
            rest += c.len_utf8();
        }
        let (flags, args_off) = extract_flags(text, rest, self.directives.escape);
        let args_raw = &text[args_off..];
        let args = args_raw.trim_matches(is_ws);
        let args_off = args_off + (args_raw.len() - args_raw.trim_start_matches(is_ws).len());
        Split {
            kw_len: kw.len(),
            kw: kw.to_ascii_uppercase(),
            kw_off: s,
            flags,
            args: args.to_string(),
            args_off,
        }
    }

    fn build(
        &self,
        lg: &Logical,
        sp: &Split,
        heredocs: Vec<Heredoc>,
        nested: bool,
    ) -> Result<Parsed, PErr> {
        let kw = sp.kw.as_str();
        let args = sp.args.as_str();
        let at_args = |msg: String| perr(sp.args_off, args.len().max(1), msg);
        let at_kw = |msg: String| perr(sp.kw_off, sp.kw_len, msg);
        let esc = self.directives.escape;
        let none: &[(&str, FK)] = &[];
        let inst = match kw {
            "FROM" => {
                let f = parse_flags(sp, &[("platform", FK::Str)])?;
                let words: Vec<&str> = args.split(is_sep).filter(|w| !w.is_empty()).collect();
                let name = match words.len() {
                    1 => None,
                    3 if words[1].eq_ignore_ascii_case("as") => {
                        let n = words[2].to_ascii_lowercase();
                        let valid = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                            && n.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                            });
                        if !valid {
                            let off = sp.args_off + args.rfind(words[2]).unwrap_or(0);
                            return Err(perr(
                                off,
                                words[2].len(),
                                format!(
                                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                                    words[2]
                                ),
                            ));
                        }
                        Some(n)
                    }
                    0 => {
                        return Err(at_kw(
                            "FROM requires the name of a base image (FROM IMAGE [AS NAME])".into(),
                        ));
                    }
                    _ => {
                        return Err(at_args(
                            "FROM requires either one or three arguments (FROM IMAGE [AS NAME])"
                                .into(),
                        ));
                    }
                };
                return Ok(Parsed::From {
                    base: words[0].to_string(),
                    name,
                    platform: f.str("platform"),
                });
            }
            "RUN" => {
                let f = parse_flags(
                    sp,
                    &[
                        ("mount", FK::List),
                        ("network", FK::Str),
                        ("security", FK::Str),
                    ],
                )?;
                let command = maybe_json(args).map_err(&at_args)?;
                if matches!(&command, Command::Shell(s) if s.is_empty())
                    || matches!(&command, Command::Exec(v) if v.is_empty())
                {
                    return Err(at_kw(
                        "RUN requires at least one argument: the command to run".into(),
                    ));
                }
                let mut mounts = Vec::new();
                for (v, fw) in f.list_with_words("mount") {
                    mounts.push(parse_mount(&v).map_err(|m| perr(fw.off, fw.len, m))?);
                }
                let network = match f.str_with_word("network") {
                    None => None,
                    Some((v, fw)) => {
                        let l = v.to_ascii_lowercase();
                        if !matches!(l.as_str(), "default" | "none" | "host") {
                            return Err(perr(
                                fw.off,
                                fw.len,
                                format!(
                                    "unsupported network mode {v:?} (use default, none or host)"
                                ),
                            ));
                        }
                        Some(l)
                    }
                };
                let security = match f.str_with_word("security") {
                    None => None,
                    Some((v, fw)) => {
                        let l = v.to_ascii_lowercase();
                        if !matches!(l.as_str(), "sandbox" | "insecure") {
                            return Err(perr(
                                fw.off,
                                fw.len,
                                format!(
                                    "unsupported security mode {v:?} (use sandbox or insecure)"
                                ),
                            ));
                        }
                        Some(l)
                    }
                };
                let heredocs = if matches!(command, Command::Shell(_)) {
                    heredocs
                } else {
                    Vec::new()
                };
                Instruction::Run(Run {
                    command,
                    heredocs,
                    mounts,
                    network,
                    security,
                })
            }
            "CMD" | "ENTRYPOINT" => {
                parse_flags(sp, none)?;
                if args.is_empty() {
                    return Err(at_kw(format!(
                        "{kw} requires at least one argument: a command (shell form) or a JSON array"
                    )));
                }
                let c = maybe_json(args).map_err(&at_args)?;
                if kw == "CMD" {
                    Instruction::Cmd(c)
                } else {
                    Instruction::Entrypoint(c)
                }
            }
            "SHELL" => {
                parse_flags(sp, none)?;
                match parse_json(args) {
                    Ok(v) if v.is_empty() => {
                        return Err(at_args("SHELL requires at least one argument".into()));
                    }
                    Ok(v) => Instruction::Shell(v),
                    Err(JsonErr::NotStrings) => return Err(at_args(NOT_STRINGS.into())),
                    Err(JsonErr::Invalid) => {
                        return Err(if args.is_empty() {
                            at_kw("SHELL requires at least one argument".into())
                        } else {
                            at_args("SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]".into())
                        });
                    }
                }
            }
            "LABEL" | "ENV" => {
                parse_flags(sp, none)?;
                let kv = parse_name_val(args, kw, esc).map_err(|m| {
                    if args.is_empty() {
                        at_kw(m)
                    } else {
                        at_args(m)
                    }
                })?;
                if kw == "ENV" {
                    Instruction::Env(kv)
                } else {
                    Instruction::Label(kv)
                }
            }
            "EXPOSE" => {
                parse_flags(sp, none)?;
                let ports: Vec<String> = args
                    .split(is_sep)
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect();
                if ports.is_empty() {
                    return Err(at_kw(
                        "EXPOSE requires at least one argument: a port".into(),
                    ));
                }
                // docker sorts them (as strings) before expanding
                let mut ports = ports;
                ports.sort();
                Instruction::Expose(ports)
            }
            "ADD" | "COPY" => {
                let spec: &[(&str, FK)] = if kw == "COPY" {
                    &[
                        ("from", FK::Str),
                        ("chown", FK::Str),
                        ("chmod", FK::Str),
                        ("link", FK::Bool),
                        ("parents", FK::Bool),
                        ("exclude", FK::List),
                    ]
                } else {
                    &[
                        ("chown", FK::Str),
                        ("chmod", FK::Str),
                        ("link", FK::Bool),
                        ("exclude", FK::List),
                        ("checksum", FK::Str),
                        ("keep-git-dir", FK::Bool),
                        ("unpack", FK::Bool),
                    ]
                };
                let f = parse_flags(sp, spec)?;
                let (list, json) = match parse_json(args) {
                    Ok(v) => (v, true),
                    Err(JsonErr::NotStrings) => return Err(at_args(NOT_STRINGS.into())),
                    Err(JsonErr::Invalid) => (
                        args.split(is_sep)
                            .filter(|w| !w.is_empty())
                            .map(str::to_string)
                            .collect(),
                        false,
                    ),
                };
                if list.len() < 2 {
                    let m = if list.is_empty() {
                        format!("{kw} requires at least two arguments: a source and a destination")
                    } else {
                        format!(
                            "{kw} requires at least two arguments, but only one was provided: the destination could not be determined"
                        )
                    };
                    return Err(if list.is_empty() {
                        at_kw(m)
                    } else {
                        at_args(m)
                    });
                }
                let dest = list[list.len() - 1].clone();
                if !json && parse_heredoc(&dest).ok().flatten().is_some() {
                    return Err(at_args(format!(
                        "{kw} cannot accept a heredoc as a destination"
                    )));
                }
                let mut sources = Vec::new();
                let mut docs = Vec::new();
                for src in &list[..list.len() - 1] {
                    match (!json).then(|| parse_heredoc(src).ok().flatten()).flatten() {
                        Some(h) => match heredocs.iter().find(|d| d.name == h.name) {
                            Some(d) => docs.push(d.clone()),
                            None => return Err(at_args(format!("heredoc {} has no body", h.name))),
                        },
                        None => sources.push(src.clone()),
                    }
                }
                let c = Copy {
                    sources,
                    dest,
                    from: f.str("from"),
                    chown: f.str("chown"),
                    chmod: f.str("chmod"),
                    link: f.bool("link").unwrap_or(false),
                    exclude: f.list("exclude"),
                    parents: f.bool("parents").unwrap_or(false),
                    checksum: f.str("checksum"),
                    keep_git_dir: f.bool("keep-git-dir").unwrap_or(false),
                    unpack: f.bool("unpack"),
                    heredocs: docs,
                    json,
                };
                if kw == "ADD" {
                    Instruction::Add(c)
                } else {
                    Instruction::Copy(c)
                }
            }
            "VOLUME" => {
                parse_flags(sp, none)?;
                let list = match parse_json(args) {
                    Ok(v) => v,
                    Err(JsonErr::NotStrings) => return Err(at_args(NOT_STRINGS.into())),
                    Err(JsonErr::Invalid) => args
                        .split(is_sep)
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect(),
                };
                if list.is_empty() {
                    return Err(if args.is_empty() {
                        at_kw("VOLUME requires at least one argument: a path".into())
                    } else {
                        at_args("VOLUME requires at least one argument: a path".into())
                    });
                }
                let mut out = Vec::new();
                for v in list {
                    let v = v.trim_matches(is_ws);
                    if v.is_empty() {
                        return Err(at_args(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    out.push(v.to_string());
                }
                Instruction::Volume(out)
            }
            "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
                parse_flags(sp, none)?;
                if args.is_empty() {
                    let what = match kw {
                        "USER" => "a user (USER NAME[:GROUP])",
                        "WORKDIR" => "a path",
                        "STOPSIGNAL" => "a signal",
                        _ => "a name",
                    };
                    return Err(at_kw(format!("{kw} requires exactly one argument: {what}")));
                }
                let v = args.to_string();
                match kw {
                    "USER" => Instruction::User(v),
                    "WORKDIR" => Instruction::Workdir(v),
                    "STOPSIGNAL" => Instruction::Stopsignal(v),
                    _ => Instruction::Maintainer(v),
                }
            }
            "ARG" => {
                parse_flags(sp, none)?;
                let words = parse_words(args, esc);
                if words.is_empty() {
                    return Err(at_kw(
                        "ARG requires at least one argument: a name, optionally =default".into(),
                    ));
                }
                let mut decls = Vec::new();
                for w in words {
                    let (name, default) = match w.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(at_args(format!("ARG names can not be blank: {w:?}")));
                    }
                    decls.push(ArgDecl { name, default });
                }
                Instruction::Arg(decls)
            }
            "ONBUILD" => {
                parse_flags(sp, none)?;
                if nested {
                    return Err(at_kw(
                        "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ));
                }
                if args.is_empty() {
                    return Err(at_kw(
                        "ONBUILD requires at least one argument: an instruction".into(),
                    ));
                }
                let inner = self.split(lg, sp.args_off);
                match inner.kw.as_str() {
                    "ONBUILD" => {
                        return Err(perr(
                            inner.kw_off,
                            inner.kw_len,
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        ));
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(perr(
                            inner.kw_off,
                            inner.kw_len,
                            format!("{} isn't allowed as an ONBUILD trigger", inner.kw),
                        ));
                    }
                    _ => {}
                }
                // docker stores the trigger with its heredoc bodies re-attached
                let mut source = lg.text[inner.kw_off..].trim_matches(is_ws).to_string();
                for h in &heredocs {
                    source.push('\n');
                    source.push_str(&h.content);
                    source.push_str(&h.name);
                }
                let Parsed::Instr(kind) = self.build(lg, &inner, heredocs, true)? else {
                    return Err(perr(
                        inner.kw_off,
                        inner.kw_len,
                        "FROM isn't allowed as an ONBUILD trigger",
                    ));
                };
                let (line, column) = lg.pos(inner.kw_off);
                Instruction::Onbuild(Box::new(Instr {
                    kind,
                    line,
                    column,
                    end_line: lg.end_line,
                    source,
                }))
            }
            "HEALTHCHECK" => {
                let f = parse_flags(
                    sp,
                    &[
                        ("interval", FK::Str),
                        ("timeout", FK::Str),
                        ("start-period", FK::Str),
                        ("start-interval", FK::Str),
                        ("retries", FK::Str),
                    ],
                )?;
                if args.is_empty() {
                    return Err(at_kw(
                        "HEALTHCHECK requires at least one argument: NONE or CMD command".into(),
                    ));
                }
                let sep = args.find(is_ws).unwrap_or(args.len());
                let typ = args[..sep].to_ascii_uppercase();
                let rest = args[sep..].trim_start_matches(is_ws);
                let test = match typ.as_str() {
                    "NONE" => {
                        if !rest.is_empty() {
                            return Err(at_args("HEALTHCHECK NONE takes no arguments".into()));
                        }
                        vec!["NONE".to_string()]
                    }
                    "CMD" => match maybe_json(rest).map_err(&at_args)? {
                        Command::Exec(v) if v.is_empty() => {
                            return Err(at_args("missing command after HEALTHCHECK CMD".into()));
                        }
                        Command::Shell(s) if s.is_empty() => {
                            return Err(at_args("missing command after HEALTHCHECK CMD".into()));
                        }
                        Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s],
                    },
                    _ => {
                        return Err(perr(
                            sp.args_off,
                            sep,
                            format!(
                                "unknown type {:?} in HEALTHCHECK (try CMD or NONE)",
                                &args[..sep]
                            ),
                        ));
                    }
                };
                let dur = |name: &str| -> Result<Option<u64>, PErr> {
                    let Some((v, fw)) = f.str_with_word(name) else {
                        return Ok(None);
                    };
                    let d = parse_go_duration(&v)
                        .map_err(|m| perr(fw.off, fw.len, format!("--{name}: {m}")))?;
                    if d == 0 {
                        return Ok(None);
                    }
                    if d < 1_000_000 {
                        return Err(perr(
                            fw.off,
                            fw.len,
                            format!("interval {name:?} cannot be less than 1ms"),
                        ));
                    }
                    Ok(Some(u64::try_from(d).unwrap_or(u64::MAX)))
                };
                let retries = match f.str_with_word("retries") {
                    None => None,
                    Some((v, fw)) => {
                        let r: i32 = v.parse().map_err(|_| {
                            perr(fw.off, fw.len, format!("--retries: invalid number {v:?}"))
                        })?;
                        if r < 0 {
                            return Err(perr(
                                fw.off,
                                fw.len,
                                format!("--retries cannot be negative ({r})"),
                            ));
                        }
                        Some(r as u32)
                    }
                };
                if test[0] == "NONE" {
                    // docker does not read the flags of HEALTHCHECK NONE
                    return Ok(Parsed::Instr(Instruction::Healthcheck(Healthcheck {
                        test,
                        interval: None,
                        timeout: None,
                        start_period: None,
                        start_interval: None,
                        retries: None,
                    })));
                }
                Instruction::Healthcheck(Healthcheck {
                    test,
                    interval: dur("interval")?,
                    timeout: dur("timeout")?,
                    start_period: dur("start-period")?,
                    start_interval: dur("start-interval")?,
                    retries,
                })
            }
            other => {
                let mut msg = format!(
                    "unknown instruction: {}",
                    &lg.text[sp.kw_off..sp.kw_off + sp.kw_len]
                );
                if let Some(s) = suggest(other, INSTRUCTIONS) {
                    msg.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(at_kw(msg));
            }
        };
        Ok(Parsed::Instr(inst))
    }
}

/// The nearest candidate by edit distance, when it is close enough to be a likely typo.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let w = word.to_ascii_uppercase();
    let (best, d) = candidates
        .iter()
        .map(|c| (*c, strsim::damerau_levenshtein(&w, &c.to_ascii_uppercase())))
        .min_by_key(|&(_, d)| d)?;
    (d > 0 && d <= (w.chars().count() / 3).max(1)).then_some(best)
}

// ---- flags ----

#[derive(Clone, Copy, PartialEq)]
enum FK {
    Str,
    Bool,
    List,
}

struct Flags<'s> {
    vals: HashMap<&'static str, Vec<(String, usize)>>,
    words: &'s [FlagWord],
}

impl Flags<'_> {
    fn str(&self, name: &str) -> Option<String> {
        self.vals
            .get(name)
            .and_then(|v| v.last())
            .map(|v| v.0.clone())
    }
    fn str_with_word(&self, name: &str) -> Option<(String, &FlagWord)> {
        self.vals
            .get(name)
            .and_then(|v| v.last())
            .map(|v| (v.0.clone(), &self.words[v.1]))
    }
    fn bool(&self, name: &str) -> Option<bool> {
        self.str(name).map(|v| v == "true")
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.vals
            .get(name)
            .map(|v| v.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_default()
    }
    fn list_with_words(&self, name: &str) -> Vec<(String, &FlagWord)> {
        self.vals
            .get(name)
            .map(|v| v.iter().map(|x| (x.0.clone(), &self.words[x.1])).collect())
            .unwrap_or_default()
    }
}

fn parse_flags<'s>(sp: &'s Split, spec: &[(&'static str, FK)]) -> Result<Flags<'s>, PErr> {
    let mut vals: HashMap<&'static str, Vec<(String, usize)>> = HashMap::new();
    for (idx, fw) in sp.flags.iter().enumerate() {
        let Some(arg) = fw.text.strip_prefix("--") else {
            return Err(perr(
                fw.off,
                fw.len,
                format!("arg should start with -- : {}", fw.text),
            ));
        };
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            let mut msg = if spec.is_empty() {
                format!("unknown flag: {name} ({} takes no flags)", sp.kw)
            } else {
                format!("unknown flag: {name}")
            };
            let names: Vec<&str> = spec.iter().map(|s| s.0).collect();
            if let Some(s) = suggest(name, &names) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(perr(fw.off, fw.len, msg));
        };
        if kind != FK::List && vals.contains_key(key) {
            return Err(perr(
                fw.off,
                fw.len,
                format!("duplicate flag specified: {name}"),
            ));
        }
        let v = match kind {
            FK::Bool => match value {
                Some("") => {
                    return Err(perr(
                        fw.off,
                        fw.len,
                        format!("missing a value on flag: {name}"),
                    ));
                }
                None => "true".to_string(),
                Some(v) => {
                    let l = v.to_ascii_lowercase();
                    if l != "true" && l != "false" {
                        return Err(perr(
                            fw.off,
                            fw.len,
                            format!("expecting boolean value for flag {name}, not: {v}"),
                        ));
                    }
                    l
                }
            },
            FK::Str | FK::List => match value {
                None => {
                    return Err(perr(
                        fw.off,
                        fw.len,
                        format!("missing a value on flag: {name}"),
                    ));
                }
                Some(v) => v.to_string(),
            },
        };
        vals.entry(key).or_default().push((v, idx));
    }
    Ok(Flags {
        vals,
        words: &sp.flags,
    })
}

/// BuildKit's `extractBuilderFlags`: leading `--word`s (quotes and escapes processed) up to the
/// first word that does not start with `--` (or a lone `--`). Returns the flags and the byte
/// offset where the arguments start.
fn extract_flags(text: &str, start: usize, esc: char) -> (Vec<FlagWord>, usize) {
    #[derive(PartialEq)]
    enum Ph {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = text[start..]
        .char_indices()
        .map(|(i, c)| (i + start, c))
        .collect();
    let mut words = Vec::new();
    let mut ph = Ph::Spaces;
    let mut word = String::new();
    let mut word_start = start;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let (pos, ch) = if at_end { (text.len(), '\0') } else { chars[k] };
        if ph == Ph::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            if ch != '-' || k + 1 >= chars.len() || chars[k + 1].1 != '-' {
                return (words, pos);
            }
            ph = Ph::Word;
            word_start = pos;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(FlagWord {
                    text: word,
                    off: word_start,
                    len: text.len() - word_start,
                });
            }
            break;
        }
        if ph == Ph::Word {
            if ch.is_whitespace() {
                ph = Ph::Spaces;
                if word == "--" {
                    return (words, pos);
                }
                if blank_ok || !word.is_empty() {
                    words.push(FlagWord {
                        text: std::mem::take(&mut word),
                        off: word_start,
                        len: pos - word_start,
                    });
                }
                word.clear();
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                ph = Ph::Quote;
                k += 1;
                continue;
            }
            let mut c = ch;
            if ch == esc {
                if k + 1 >= chars.len() {
                    k += 1;
                    continue;
                }
                k += 1;
                c = chars[k].1;
            }
            word.push(c);
            k += 1;
            continue;
        }
        // in quote
        if ch == quote {
            ph = Ph::Word;
            k += 1;
            continue;
        }
        let mut c = ch;
        if ch == esc {
            if k + 1 >= chars.len() {
                ph = Ph::Word;
                k += 1;
                continue;
            }
            k += 1;
            c = chars[k].1;
        }
        word.push(c);
        k += 1;
    }
    (words, text.len())
}

// ---- JSON (exec form) ----

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

enum JsonErr {
    Invalid,
    NotStrings,
}

fn parse_json(rest: &str) -> Result<Vec<String>, JsonErr> {
    if !rest.starts_with('[') {
        return Err(JsonErr::Invalid);
    }
    let v: Vec<serde_json::Value> = serde_json::from_str(rest).map_err(|_| JsonErr::Invalid)?;
    v.into_iter()
        .map(|x| match x {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(JsonErr::NotStrings),
        })
        .collect()
}

/// Docker's `parseMaybeJSON`: a JSON array of strings is the exec form, anything else (including
/// invalid JSON) is the shell form; a JSON array with non-strings is an error.
fn maybe_json(rest: &str) -> Result<Command, String> {
    match parse_json(rest) {
        Ok(v) => Ok(Command::Exec(v)),
        Err(JsonErr::NotStrings) => Err(NOT_STRINGS.into()),
        Err(JsonErr::Invalid) => Ok(Command::Shell(rest.to_string())),
    }
}

// ---- words, name=value ----

/// BuildKit's `parseWords`: split on whitespace, quotes and escapes kept in the words.
fn parse_words(rest: &str, esc: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Ph {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut ph = Ph::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let ch = if at_end { '\0' } else { chars[k] };
        if ph == Ph::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            ph = Ph::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if ph == Ph::Word {
            if ch.is_whitespace() {
                ph = Ph::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                ph = Ph::Quote;
            }
            let mut c = ch;
            if ch == esc {
                if k + 1 >= chars.len() {
                    k += 1;
                    continue;
                }
                word.push(ch);
                k += 1;
                c = chars[k];
            }
            word.push(c);
            k += 1;
            continue;
        }
        // in quote
        if ch == quote {
            ph = Ph::Word;
        }
        let mut c = ch;
        if ch == esc && quote != '\'' {
            if k + 1 >= chars.len() {
                ph = Ph::Word;
                k += 1;
                continue;
            }
            k += 1;
            word.push(ch);
            c = chars[k];
        }
        word.push(c);
        k += 1;
    }
    words
}

fn parse_name_val(rest: &str, kw: &str, esc: char) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, esc);
    if words.is_empty() {
        return Err(format!("{kw} requires at least one argument: NAME=VALUE"));
    }
    if !words[0].contains('=') {
        // legacy `KEY name value`
        let Some(i) = rest.find(is_sep) else {
            return Err(format!(
                "{kw} must have two arguments: {kw} NAME VALUE or {kw} NAME=VALUE"
            ));
        };
        let value = rest[i..].trim_start_matches(is_sep);
        return Ok(vec![(rest[..i].to_string(), value.to_string())]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "syntax error - can't find = in {w:?}. must be of the form: name=value"
            ));
        };
        if k.is_empty() {
            return Err(format!("{kw} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

// ---- heredocs ----

pub(crate) struct HeredocSpec {
    pub name: String,
    pub fd: u32,
    pub chomp: bool,
    pub expand: bool,
}

/// BuildKit's `ParseHeredoc`: `^(\d*)<<(-?)\s*([^<]*)$` with the rest a single word.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<HeredocSpec>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(is_ws);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse().unwrap_or(0)
    };
    let none = |_: &str| None;
    let mut lex = Lex::new('\\');
    lex.skip_unset = true;
    let words = lex.process_words(rest, &none).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &none).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(HeredocSpec {
        name: words[0].clone(),
        fd,
        chomp,
        expand,
    }))
}

fn heredocs_from_line(line: &str) -> Result<Vec<HeredocSpec>, String> {
    let mut lex = Lex::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset = true;
    let words = lex.process_words(line, &|_| None).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// Whether a shell-form `RUN` command is exactly one heredoc (`RUN <<EOF`).
pub(crate) fn is_single_heredoc(cmd: &str) -> bool {
    matches!(parse_heredoc(cmd), Ok(Some(_)))
}

// ---- RUN --mount ----

/// Go's `encoding/csv` reading of one record.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some('"') => return Err(format!("bare \" in non-quoted-field: {s}")),
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid value {v:?} for {key}: expected a boolean")),
    }
}

/// `units.RAMInBytes`: `64m`, `1.5GiB`, `1024` (binary multiples).
fn parse_ram(v: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {v:?}: expected a number with an optional unit (k, m, g, t, p)");
    let t = v.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let num: f64 = t[..num_end].parse().map_err(|_| bad())?;
    let unit = t[num_end..].trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((num * mult) as u64)
}

fn parse_mount(val: &str) -> Result<RunMount, String> {
    let fields = csv_fields(val).map_err(|e| format!("--mount: {e}"))?;
    let mut m = RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: true,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let mut ro: Option<bool> = None;
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let type_name = || format!("{:?}", m.kind).to_ascii_lowercase();
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => ro = Some(true),
                "readwrite" | "rw" => ro = Some(false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!(
                        "--mount: unexpected key 'required' for mount type '{}'",
                        type_name()
                    ));
                }
                _ => {
                    return Err(format!(
                        "--mount: invalid field '{field}' must be a key=value pair"
                    ));
                }
            }
            continue;
        };
        let only = |kinds: &[MountType], m: &RunMount| -> Result<(), String> {
            if kinds.contains(&m.kind) {
                Ok(())
            } else {
                Err(format!(
                    "--mount: unexpected key '{key}' for mount type '{}'",
                    format!("{:?}", m.kind).to_ascii_lowercase()
                ))
            }
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let mut msg = format!("--mount: unsupported mount type {value:?}");
                        if let Some(s) =
                            suggest(&value, &["bind", "cache", "tmpfs", "secret", "ssh"])
                        {
                            msg.push_str(&format!(" (did you mean {}?)", s.to_ascii_lowercase()));
                        }
                        return Err(msg);
                    }
                };
                continue;
            }
            "from" => {
                only(&[MountType::Bind, MountType::Cache], &m)?;
                m.from = Some(value);
            }
            "source" | "src" => {
                only(&[MountType::Bind, MountType::Cache, MountType::Secret], &m)?;
                m.source = Some(value);
            }
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => ro = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => ro = Some(!parse_bool(&key, &value)?),
            "required" => {
                only(&[MountType::Secret, MountType::Ssh], &m)?;
                m.required = parse_bool(&key, &value)?;
            }
            "sharing" => {
                only(&[MountType::Cache], &m)?;
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(format!(
                            "--mount: unsupported sharing value {value:?} (use shared, private or locked)"
                        ));
                    }
                });
            }
            "id" => {
                only(&[MountType::Cache, MountType::Secret, MountType::Ssh], &m)?;
                m.id = Some(value);
            }
            "size" => {
                only(&[MountType::Tmpfs], &m)?;
                m.size = Some(parse_ram(&value).map_err(|e| format!("--mount: {e}"))?);
            }
            "mode" => {
                only(&[MountType::Cache, MountType::Secret, MountType::Ssh], &m)?;
                m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| {
                    format!("--mount: invalid value {value} for mode: expected octal")
                })?);
            }
            "uid" | "gid" => {
                only(&[MountType::Cache, MountType::Secret, MountType::Ssh], &m)?;
                let n: u32 = value
                    .parse()
                    .map_err(|_| format!("--mount: invalid value {value} for {key}"))?;
                if key == "uid" {
                    m.uid = Some(n);
                } else {
                    m.gid = Some(n);
                }
            }
            "env" => {
                only(&[MountType::Secret], &m)?;
                m.env = Some(value);
            }
            _ => {
                let mut msg = format!("--mount: unexpected key '{key}' in '{field}'");
                let keys = [
                    "type",
                    "from",
                    "source",
                    "target",
                    "readonly",
                    "readwrite",
                    "required",
                    "sharing",
                    "id",
                    "size",
                    "mode",
                    "uid",
                    "gid",
                    "env",
                ];
                if let Some(s) = suggest(&key, &keys) {
                    msg.push_str(&format!(" (did you mean {}?)", s.to_ascii_lowercase()));
                }
                return Err(msg);
            }
        }
    }
    m.readonly = ro.unwrap_or(!matches!(m.kind, MountType::Cache | MountType::Tmpfs));
    if m.target.is_none()
        && matches!(
            m.kind,
            MountType::Bind | MountType::Cache | MountType::Tmpfs
        )
    {
        return Err(format!(
            "--mount: type={} needs a target (target=/path)",
            format!("{:?}", m.kind).to_ascii_lowercase()
        ));
    }
    if m.kind == MountType::Secret && m.id.is_none() && m.target.is_none() && m.env.is_none() {
        return Err("--mount: type=secret needs an id, a target or an env".into());
    }
    Ok(m)
}

// ---- durations ----

/// Go's `time.ParseDuration`, in nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let orig = s;
    let bad = || format!("invalid duration {orig:?}");
    let (neg, mut s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let n_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let num = &s[..n_end];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        s = &s[n_end..];
        let u_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..u_end];
        s = &s[u_end..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {orig:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {orig:?}")),
        };
        total += v * mult;
    }
    let n = total.round() as i128;
    Ok(if neg { -n } else { n })
}
