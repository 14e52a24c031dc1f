//! One parser per instruction: its flags, its arguments, its errors (spans in the logical line).

use super::flags::{FlagKind, parse_flags};
use super::lines::parse_heredoc;
use super::mount::parse_mount;
use super::words::{
    JsonErr, NOT_STRINGS, maybe_json, parse_go_duration, parse_json, parse_name_val, parse_words,
};
use super::{InstrCx, Parsed, SpanError, is_sep, is_ws, span_error, suggest};
use crate::dockerfile::{
    ArgDecl, Command, Copy, Healthcheck, Heredoc, INSTRUCTIONS, Instr, Instruction, Run,
};

/// The flags of an instruction that takes none.
const NO_FLAGS: &[(&str, FlagKind)] = &[];

/// `FROM [--platform=P] IMAGE [AS NAME]`.
pub(super) fn from(cx: &InstrCx<'_>) -> Result<Parsed, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let f = parse_flags(sp, &[("platform", FlagKind::Str)])?;
    let words: Vec<&str> = args.split(is_sep).filter(|w| !w.is_empty()).collect();
    let name = match words.len() {
        1 => None,
        3 if words[1].eq_ignore_ascii_case("as") => {
            let n = words[2].to_ascii_lowercase();
            let valid = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                let off = sp.args_off + args.rfind(words[2]).unwrap_or(0);
                return Err(span_error(
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
            return Err(
                cx.at_kw("FROM requires the name of a base image (FROM IMAGE [AS NAME])".into())
            );
        }
        _ => {
            return Err(cx.at_args(
                "FROM requires either one or three arguments (FROM IMAGE [AS NAME])".into(),
            ));
        }
    };
    Ok(Parsed::From {
        base: words[0].to_string(),
        name,
        platform: f.str("platform"),
    })
}

/// `RUN [--mount=...]... [--network=...] [--security=...] command`.
pub(super) fn run(cx: &InstrCx<'_>, heredocs: Vec<Heredoc>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let f = parse_flags(
        sp,
        &[
            ("mount", FlagKind::List),
            ("network", FlagKind::Str),
            ("security", FlagKind::Str),
        ],
    )?;
    let command = maybe_json(args).map_err(|m| cx.at_args(m))?;
    if matches!(&command, Command::Shell(s) if s.is_empty())
        || matches!(&command, Command::Exec(v) if v.is_empty())
    {
        return Err(cx.at_kw("RUN requires at least one argument: the command to run".into()));
    }
    let mut mounts = Vec::new();
    for (v, fw) in f.list_with_words("mount") {
        mounts.push(parse_mount(&v).map_err(|m| span_error(fw.off, fw.len, m))?);
    }
    let network = match f.str_with_word("network") {
        None => None,
        Some((v, fw)) => {
            let l = v.to_ascii_lowercase();
            if !matches!(l.as_str(), "default" | "none" | "host") {
                return Err(span_error(
                    fw.off,
                    fw.len,
                    format!("unsupported network mode {v:?} (use default, none or host)"),
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
                return Err(span_error(
                    fw.off,
                    fw.len,
                    format!("unsupported security mode {v:?} (use sandbox or insecure)"),
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
    Ok(Instruction::Run(Run {
        command,
        heredocs,
        mounts,
        network,
        security,
    }))
}

/// `CMD` and `ENTRYPOINT`: the shell form or a JSON array.
pub(super) fn cmd_entrypoint(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let kw = cx.sp.kw.as_str();
    parse_flags(sp, NO_FLAGS)?;
    if args.is_empty() {
        return Err(cx.at_kw(format!(
            "{kw} requires at least one argument: a command (shell form) or a JSON array"
        )));
    }
    let c = maybe_json(args).map_err(|m| cx.at_args(m))?;
    Ok(if kw == "CMD" {
        Instruction::Cmd(c)
    } else {
        Instruction::Entrypoint(c)
    })
}

/// `SHELL ["executable", "params"]` (JSON form only).
pub(super) fn shell(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    parse_flags(sp, NO_FLAGS)?;
    Ok(match parse_json(args) {
        Ok(v) if v.is_empty() => {
            return Err(cx.at_args("SHELL requires at least one argument".into()));
        }
        Ok(v) => Instruction::Shell(v),
        Err(JsonErr::NotStrings) => return Err(cx.at_args(NOT_STRINGS.into())),
        Err(JsonErr::Invalid) => {
            return Err(if args.is_empty() {
                cx.at_kw("SHELL requires at least one argument".into())
            } else {
                cx.at_args("SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]".into())
            });
        }
    })
}

/// `LABEL` and `ENV`: `name=value` pairs (or the legacy `ENV name value`).
pub(super) fn label_env(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let kw = cx.sp.kw.as_str();
    let esc = cx.parser.directives.escape;
    parse_flags(sp, NO_FLAGS)?;
    let kv = parse_name_val(args, kw, esc).map_err(|m| {
        if args.is_empty() {
            cx.at_kw(m)
        } else {
            cx.at_args(m)
        }
    })?;
    Ok(if kw == "ENV" {
        Instruction::Env(kv)
    } else {
        Instruction::Label(kv)
    })
}

/// `EXPOSE PORT...`, sorted as docker sorts them.
pub(super) fn expose(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    parse_flags(sp, NO_FLAGS)?;
    let ports: Vec<String> = args
        .split(is_sep)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    if ports.is_empty() {
        return Err(cx.at_kw("EXPOSE requires at least one argument: a port".into()));
    }
    // docker sorts them (as strings) before expanding
    let mut ports = ports;
    ports.sort();
    Ok(Instruction::Expose(ports))
}

/// `ADD` and `COPY`: sources (heredocs among them) and a destination, with their flags.
pub(super) fn add_copy(cx: &InstrCx<'_>, heredocs: Vec<Heredoc>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let kw = cx.sp.kw.as_str();
    let spec: &[(&str, FlagKind)] = if kw == "COPY" {
        &[
            ("from", FlagKind::Str),
            ("chown", FlagKind::Str),
            ("chmod", FlagKind::Str),
            ("link", FlagKind::Bool),
            ("parents", FlagKind::Bool),
            ("exclude", FlagKind::List),
        ]
    } else {
        &[
            ("chown", FlagKind::Str),
            ("chmod", FlagKind::Str),
            ("link", FlagKind::Bool),
            ("exclude", FlagKind::List),
            ("checksum", FlagKind::Str),
            ("keep-git-dir", FlagKind::Bool),
            ("unpack", FlagKind::Bool),
        ]
    };
    let f = parse_flags(sp, spec)?;
    let (list, json) = match parse_json(args) {
        Ok(v) => (v, true),
        Err(JsonErr::NotStrings) => return Err(cx.at_args(NOT_STRINGS.into())),
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
            cx.at_kw(m)
        } else {
            cx.at_args(m)
        });
    }
    let dest = list[list.len() - 1].clone();
    if !json && parse_heredoc(&dest).ok().flatten().is_some() {
        return Err(cx.at_args(format!("{kw} cannot accept a heredoc as a destination")));
    }
    let mut sources = Vec::new();
    let mut docs = Vec::new();
    for src in &list[..list.len() - 1] {
        match (!json).then(|| parse_heredoc(src).ok().flatten()).flatten() {
            Some(h) => match heredocs.iter().find(|d| d.name == h.name) {
                Some(d) => docs.push(d.clone()),
                None => return Err(cx.at_args(format!("heredoc {} has no body", h.name))),
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
    Ok(if kw == "ADD" {
        Instruction::Add(c)
    } else {
        Instruction::Copy(c)
    })
}

/// `VOLUME`: paths, the JSON form or words.
pub(super) fn volume(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    parse_flags(sp, NO_FLAGS)?;
    let list = match parse_json(args) {
        Ok(v) => v,
        Err(JsonErr::NotStrings) => return Err(cx.at_args(NOT_STRINGS.into())),
        Err(JsonErr::Invalid) => args
            .split(is_sep)
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if list.is_empty() {
        return Err(if args.is_empty() {
            cx.at_kw("VOLUME requires at least one argument: a path".into())
        } else {
            cx.at_args("VOLUME requires at least one argument: a path".into())
        });
    }
    let mut out = Vec::new();
    for v in list {
        let v = v.trim_matches(is_ws);
        if v.is_empty() {
            return Err(cx.at_args("VOLUME specified can not be an empty string".into()));
        }
        out.push(v.to_string());
    }
    Ok(Instruction::Volume(out))
}

/// `USER`, `WORKDIR`, `STOPSIGNAL` and `MAINTAINER`: one argument, as written.
pub(super) fn single_arg(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let kw = cx.sp.kw.as_str();
    parse_flags(sp, NO_FLAGS)?;
    if args.is_empty() {
        let what = match kw {
            "USER" => "a user (USER NAME[:GROUP])",
            "WORKDIR" => "a path",
            "STOPSIGNAL" => "a signal",
            _ => "a name",
        };
        return Err(cx.at_kw(format!("{kw} requires exactly one argument: {what}")));
    }
    let v = args.to_string();
    Ok(match kw {
        "USER" => Instruction::User(v),
        "WORKDIR" => Instruction::Workdir(v),
        "STOPSIGNAL" => Instruction::Stopsignal(v),
        _ => Instruction::Maintainer(v),
    })
}

/// `ARG NAME[=default]...`.
pub(super) fn arg(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let esc = cx.parser.directives.escape;
    parse_flags(sp, NO_FLAGS)?;
    let words = parse_words(args, esc);
    if words.is_empty() {
        return Err(
            cx.at_kw("ARG requires at least one argument: a name, optionally =default".into())
        );
    }
    let mut decls = Vec::new();
    for w in words {
        let (name, default) = match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (w.clone(), None),
        };
        if name.is_empty() {
            return Err(cx.at_args(format!("ARG names can not be blank: {w:?}")));
        }
        decls.push(ArgDecl { name, default });
    }
    Ok(Instruction::Arg(decls))
}

/// `ONBUILD INSTRUCTION`: the trigger parsed as an instruction of its own.
pub(super) fn onbuild(
    cx: &InstrCx<'_>,
    heredocs: Vec<Heredoc>,
    nested: bool,
) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let lg = cx.lg;
    parse_flags(sp, NO_FLAGS)?;
    if nested {
        return Err(cx.at_kw("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()));
    }
    if args.is_empty() {
        return Err(cx.at_kw("ONBUILD requires at least one argument: an instruction".into()));
    }
    let inner = cx.parser.split(lg, sp.args_off);
    match inner.kw.as_str() {
        "ONBUILD" => {
            return Err(span_error(
                inner.kw_off,
                inner.kw_len,
                "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ));
        }
        "FROM" | "MAINTAINER" => {
            return Err(span_error(
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
    let Parsed::Instr(kind) = cx.parser.build(lg, &inner, heredocs, true)? else {
        return Err(span_error(
            inner.kw_off,
            inner.kw_len,
            "FROM isn't allowed as an ONBUILD trigger",
        ));
    };
    let (line, column) = lg.pos(inner.kw_off);
    Ok(Instruction::Onbuild(Box::new(Instr {
        kind,
        line,
        column,
        end_line: lg.end_line,
        source,
    })))
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD command`.
pub(super) fn healthcheck(cx: &InstrCx<'_>) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let args = cx.sp.args.as_str();
    let f = parse_flags(
        sp,
        &[
            ("interval", FlagKind::Str),
            ("timeout", FlagKind::Str),
            ("start-period", FlagKind::Str),
            ("start-interval", FlagKind::Str),
            ("retries", FlagKind::Str),
        ],
    )?;
    if args.is_empty() {
        return Err(
            cx.at_kw("HEALTHCHECK requires at least one argument: NONE or CMD command".into())
        );
    }
    let sep = args.find(is_ws).unwrap_or(args.len());
    let typ = args[..sep].to_ascii_uppercase();
    let rest = args[sep..].trim_start_matches(is_ws);
    let test = match typ.as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err(cx.at_args("HEALTHCHECK NONE takes no arguments".into()));
            }
            vec!["NONE".to_string()]
        }
        "CMD" => match maybe_json(rest).map_err(|m| cx.at_args(m))? {
            Command::Exec(v) if v.is_empty() => {
                return Err(cx.at_args("missing command after HEALTHCHECK CMD".into()));
            }
            Command::Shell(s) if s.is_empty() => {
                return Err(cx.at_args("missing command after HEALTHCHECK CMD".into()));
            }
            Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
            Command::Shell(s) => vec!["CMD-SHELL".to_string(), s],
        },
        _ => {
            return Err(span_error(
                sp.args_off,
                sep,
                format!(
                    "unknown type {:?} in HEALTHCHECK (try CMD or NONE)",
                    &args[..sep]
                ),
            ));
        }
    };
    let dur = |name: &str| -> Result<Option<u64>, SpanError> {
        let Some((v, fw)) = f.str_with_word(name) else {
            return Ok(None);
        };
        let d = parse_go_duration(&v)
            .map_err(|m| span_error(fw.off, fw.len, format!("--{name}: {m}")))?;
        if d == 0 {
            return Ok(None);
        }
        if d < 1_000_000 {
            return Err(span_error(
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
                span_error(fw.off, fw.len, format!("--retries: invalid number {v:?}"))
            })?;
            if r < 0 {
                return Err(span_error(
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
        return Ok(Instruction::Healthcheck(Healthcheck {
            test,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        }));
    }
    Ok(Instruction::Healthcheck(Healthcheck {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    }))
}

/// An unknown keyword: an error, with the nearest instruction as a suggestion.
pub(super) fn unknown(cx: &InstrCx<'_>, other: &str) -> Result<Instruction, SpanError> {
    let sp = cx.sp;
    let lg = cx.lg;
    let mut msg = format!(
        "unknown instruction: {}",
        &lg.text[sp.kw_off..sp.kw_off + sp.kw_len]
    );
    if let Some(s) = suggest(other, INSTRUCTIONS) {
        msg.push_str(&format!(" (did you mean {s}?)"));
    }
    Err(cx.at_kw(msg))
}
