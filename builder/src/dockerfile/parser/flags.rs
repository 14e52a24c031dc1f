//! Instruction flags (`--name=value`): split off the arguments ([`extract_flags`]) and read
//! against what each instruction accepts ([`parse_flags`]).

use std::collections::HashMap;

use super::{FlagWord, SpanError, Split, span_error, suggest};

/// How a flag is read: a string (the last one wins), a boolean, or a list (every occurrence).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum FlagKind {
    Str,
    Bool,
    List,
}

/// The flags of an instruction, by name.
pub(super) struct Flags<'s> {
    vals: HashMap<&'static str, Vec<(String, usize)>>,
    words: &'s [FlagWord],
}

impl Flags<'_> {
    pub(super) fn str(&self, name: &str) -> Option<String> {
        self.vals
            .get(name)
            .and_then(|v| v.last())
            .map(|v| v.0.clone())
    }
    pub(super) fn str_with_word(&self, name: &str) -> Option<(String, &FlagWord)> {
        self.vals
            .get(name)
            .and_then(|v| v.last())
            .map(|v| (v.0.clone(), &self.words[v.1]))
    }
    pub(super) fn bool(&self, name: &str) -> Option<bool> {
        self.str(name).map(|v| v == "true")
    }
    pub(super) fn list(&self, name: &str) -> Vec<String> {
        self.vals
            .get(name)
            .map(|v| v.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_default()
    }
    pub(super) fn list_with_words(&self, name: &str) -> Vec<(String, &FlagWord)> {
        self.vals
            .get(name)
            .map(|v| v.iter().map(|x| (x.0.clone(), &self.words[x.1])).collect())
            .unwrap_or_default()
    }
}

pub(super) fn parse_flags<'s>(
    sp: &'s Split,
    spec: &[(&'static str, FlagKind)],
) -> Result<Flags<'s>, SpanError> {
    let mut vals: HashMap<&'static str, Vec<(String, usize)>> = HashMap::new();
    for (idx, fw) in sp.flags.iter().enumerate() {
        let Some(arg) = fw.text.strip_prefix("--") else {
            return Err(span_error(
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
            return Err(span_error(fw.off, fw.len, msg));
        };
        if kind != FlagKind::List && vals.contains_key(key) {
            return Err(span_error(
                fw.off,
                fw.len,
                format!("duplicate flag specified: {name}"),
            ));
        }
        let v = match kind {
            FlagKind::Bool => match value {
                Some("") => {
                    return Err(span_error(
                        fw.off,
                        fw.len,
                        format!("missing a value on flag: {name}"),
                    ));
                }
                None => "true".to_string(),
                Some(v) => {
                    let l = v.to_ascii_lowercase();
                    if l != "true" && l != "false" {
                        return Err(span_error(
                            fw.off,
                            fw.len,
                            format!("expecting boolean value for flag {name}, not: {v}"),
                        ));
                    }
                    l
                }
            },
            FlagKind::Str | FlagKind::List => match value {
                None => {
                    return Err(span_error(
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
pub(super) fn extract_flags(text: &str, start: usize, esc: char) -> (Vec<FlagWord>, usize) {
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
