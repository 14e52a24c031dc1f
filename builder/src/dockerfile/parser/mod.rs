//! The Dockerfile parser: physical lines -> logical lines ([`lines`]: directives, comments,
//! continuations, heredoc bodies) -> instructions with flags ([`flags`]) and spans, one parser
//! per instruction ([`instructions`]; `RUN --mount` in [`mount`], words and JSON in [`words`]).

mod flags;
mod instructions;
mod lines;
mod mount;
mod words;

pub use words::parse_go_duration;

use super::error::ParseError;
use super::{ArgDecl, Directives, Dockerfile, Heredoc, Instr, Instruction, Stage};
use flags::extract_flags;
pub(crate) use lines::is_single_heredoc;

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

/// An error located in a logical line (byte offset, byte length), made a [`ParseError`] (line,
/// column) by [`Parser::error_in`].
struct SpanError {
    off: usize,
    len: usize,
    msg: String,
}

fn span_error(off: usize, len: usize, msg: impl Into<String>) -> SpanError {
    SpanError {
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

    fn error_in(&self, lg: &Logical, e: SpanError) -> ParseError {
        let (line, col) = lg.pos(e.off);
        let end = (e.off + e.len).min(lg.text.len());
        let len = lg
            .text
            .get(e.off.min(end)..end)
            .map_or(1, |s| s.chars().count());
        self.error_at(line, col, len, e.msg)
    }

    fn run(&mut self) -> Result<Dockerfile, ParseError> {
        let n = self.lines.len();
        let mut i = self.read_directives()?;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut any = false;
        while let Some((mut lg, col)) = self.next_logical(&mut i) {
            any = true;
            let split = self.split(&lg, 0);
            // Heredoc bodies follow the instruction's line.
            let heredocs = self.read_heredocs(&mut lg, &split, col, &mut i)?;
            let parsed = self
                .build(&lg, &split, heredocs, false)
                .map_err(|e| self.error_in(&lg, e))?;
            self.add(&mut stages, &mut global_args, &lg, &split, col, parsed)?;
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

    /// Adds a parsed line: a new stage, an instruction of the current stage, or (before the
    /// first `FROM`) a global `ARG`.
    fn add(
        &self,
        stages: &mut Vec<Stage>,
        global_args: &mut Vec<ArgDecl>,
        lg: &Logical,
        split: &Split,
        col: usize,
        parsed: Parsed,
    ) -> Result<(), ParseError> {
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
                        lg,
                        span_error(off, nm.len(), format!("duplicate stage name {nm:?}")),
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
                        return Ok(());
                    }
                    return Err(self.error_in(
                        lg,
                        span_error(
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
        Ok(())
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

    /// The instruction of a logical line (`nested`: the trigger of an `ONBUILD`), by keyword.
    fn build(
        &self,
        lg: &Logical,
        sp: &Split,
        heredocs: Vec<Heredoc>,
        nested: bool,
    ) -> Result<Parsed, SpanError> {
        let cx = InstrCx {
            parser: self,
            lg,
            sp,
        };
        let inst = match sp.kw.as_str() {
            "FROM" => return instructions::from(&cx),
            "RUN" => instructions::run(&cx, heredocs)?,
            "CMD" | "ENTRYPOINT" => instructions::cmd_entrypoint(&cx)?,
            "SHELL" => instructions::shell(&cx)?,
            "LABEL" | "ENV" => instructions::label_env(&cx)?,
            "EXPOSE" => instructions::expose(&cx)?,
            "ADD" | "COPY" => instructions::add_copy(&cx, heredocs)?,
            "VOLUME" => instructions::volume(&cx)?,
            "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => instructions::single_arg(&cx)?,
            "ARG" => instructions::arg(&cx)?,
            "ONBUILD" => instructions::onbuild(&cx, heredocs, nested)?,
            "HEALTHCHECK" => instructions::healthcheck(&cx)?,
            other => instructions::unknown(&cx, other)?,
        };
        Ok(Parsed::Instr(inst))
    }
}

/// One instruction being parsed: its logical line and split, where its errors point.
struct InstrCx<'a> {
    parser: &'a Parser<'a>,
    lg: &'a Logical,
    sp: &'a Split,
}

impl InstrCx<'_> {
    /// An error on the arguments.
    fn at_args(&self, msg: String) -> SpanError {
        span_error(self.sp.args_off, self.sp.args.len().max(1), msg)
    }

    /// An error on the keyword.
    fn at_kw(&self, msg: String) -> SpanError {
        span_error(self.sp.kw_off, self.sp.kw_len, msg)
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
