//! Physical lines -> logical lines: parser directives at the top, comments, continuations (the
//! escape character at the end of a line), and heredoc bodies after their instruction's line.

use super::words::parse_json;
use super::{Heredoc, Logical, ParseError, Parser, Split, is_ws, span_error};
use crate::dockerfile::shell::Lex;

impl Parser<'_> {
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

    /// Reads the parser directives (`# syntax=`, `# escape=`, `# check=`) at the top; returns
    /// the index of the first line after them.
    pub(super) fn read_directives(&mut self) -> Result<usize, ParseError> {
        let mut seen: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            let raw = self.lines[i];
            let lineno = i + 1;
            let Some((k, v)) = Self::directive(raw) else {
                break;
            };
            if !matches!(k.as_str(), "syntax" | "escape" | "check") {
                break;
            }
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
                                format!("invalid escape token '{v}' does not match ` or \\"),
                            ));
                        }
                    };
                }
                "syntax" => self.directives.syntax = Some(v),
                _ => self.directives.check = Some(v),
            }
            i += 1;
        }
        Ok(i)
    }

    /// The next logical line from line `*i` on (comment lines and empty lines skipped, inside a
    /// continuation too), with the column of its first character; `*i` moves past it.
    pub(super) fn next_logical(&self, i: &mut usize) -> Option<(Logical, usize)> {
        let n = self.lines.len();
        while *i < n {
            let raw = self.lines[*i];
            *i += 1;
            let lineno = *i;
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
            while !eol && *i < n {
                let raw = self.lines[*i];
                *i += 1;
                lg.end_line = *i;
                if is_comment(raw) || raw.trim_start_matches(is_ws).is_empty() {
                    continue;
                }
                let (piece, e) = self.trim_continuation(raw);
                eol = e;
                lg.segs.push((lg.text.len(), *i, 1));
                lg.text.push_str(piece);
            }
            return Some((lg, col));
        }
        None
    }

    /// The heredoc bodies of a `RUN`, `COPY` or `ADD` (or an `ONBUILD` trigger of one) in the
    /// shell form: the lines after it up to each `<<NAME`'s terminator; `*i` moves past them.
    pub(super) fn read_heredocs(
        &self,
        lg: &mut Logical,
        split: &Split,
        col: usize,
        i: &mut usize,
    ) -> Result<Vec<Heredoc>, ParseError> {
        let n = self.lines.len();
        let mut heredocs = Vec::new();
        let (kw, args) = if split.kw == "ONBUILD" {
            let s = self.split(lg, split.args_off);
            (s.kw, s.args)
        } else {
            (split.kw.clone(), split.args.clone())
        };
        if !(matches!(kw.as_str(), "RUN" | "COPY" | "ADD")
            && parse_json(&args).is_err()
            && lg.text.contains("<<"))
        {
            return Ok(heredocs);
        }
        let specs = heredocs_from_line(&lg.text)
            .map_err(|m| self.error_in(lg, span_error(split.args_off, split.args.len(), m)))?;
        for spec in specs {
            let mut content = String::new();
            let mut terminated = false;
            while *i < n {
                let raw = self.lines[*i];
                *i += 1;
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
            lg.end_line = *i;
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
        Ok(heredocs)
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
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_ws).starts_with('#')
}

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
