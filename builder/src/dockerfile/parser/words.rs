//! Arguments: the JSON (exec) form, words with quotes and escapes, `name=value` pairs, and Go
//! durations.

use super::is_sep;
use crate::dockerfile::Command;

pub(super) const NOT_STRINGS: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

pub(super) enum JsonErr {
    Invalid,
    NotStrings,
}

pub(super) fn parse_json(rest: &str) -> Result<Vec<String>, JsonErr> {
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
pub(super) fn maybe_json(rest: &str) -> Result<Command, String> {
    match parse_json(rest) {
        Ok(v) => Ok(Command::Exec(v)),
        Err(JsonErr::NotStrings) => Err(NOT_STRINGS.into()),
        Err(JsonErr::Invalid) => Ok(Command::Shell(rest.to_string())),
    }
}

// ---- words, name=value ----

/// BuildKit's `parseWords`: split on whitespace, quotes and escapes kept in the words.
pub(super) fn parse_words(rest: &str, esc: char) -> Vec<String> {
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

pub(super) fn parse_name_val(
    rest: &str,
    kw: &str,
    esc: char,
) -> Result<Vec<(String, String)>, String> {
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

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
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
