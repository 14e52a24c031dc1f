//! `.dockerignore` with docker's exact rules (moby's `dockerignore.ReadAll` + `patternmatcher`).
//!
//! - Lines starting with `#` are comments; blank lines are skipped; whitespace around a pattern is
//!   trimmed.
//! - `!` starts an exception. Patterns are cleaned like Go's `filepath.Clean` and a leading `/` is
//!   dropped: every pattern is anchored at the context root (`foo` matches `foo` only at the top,
//!   not `a/foo`; use `**/foo` for any depth).
//! - `*` matches within one path component, `?` one character other than `/`, `[...]` a class
//!   (`[^...]` negated), `\` escapes; `**` matches any number of components (also zero).
//! - A path is excluded when it or one of its parent directories matches; the last matching
//!   pattern wins (an exception re-includes).
//!
//! hoist implements the matcher itself (not `globset` or `ignore`): docker's `**` inside a component
//! (`a**b`), its prefix/suffix shortcuts and the parent-directory rule have no exact equivalent in
//! those crates.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IgnoreError {
    #[error("illegal exclusion pattern: \"!\" (line {line})")]
    BareExclusion { line: usize },
    #[error("syntax error in pattern {pattern:?} (line {line}): {reason}")]
    BadPattern {
        pattern: String,
        line: usize,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `[^/]*`
    Star,
    /// `[^/]`
    Quest,
    /// `(.*/)?`
    DoubleStar,
    /// `.*`
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    match_type: MatchType,
    toks: Vec<Tok>,
}

/// A parsed `.dockerignore` (or a list of `COPY --exclude` patterns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|c| *c != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl DockerIgnore {
    /// Parses `.dockerignore` text (moby's `ReadAll`, then `patternmatcher.New`).
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern[1..].trim();
            }
            let mut p = String::new();
            if !pattern.is_empty() {
                p = clean_path(pattern);
                if p.len() > 1 && p.starts_with('/') {
                    p.remove(0);
                }
            }
            if invert {
                p.insert(0, '!');
            }
            lines.push((p, i + 1));
        }
        Self::compile(lines)
    }

    /// Compiles patterns as given (moby's `patternmatcher.New`), e.g. `COPY --exclude` values.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        Self::compile(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (p.as_ref().to_string(), i + 1))
                .collect(),
        )
    }

    fn compile(lines: Vec<(String, usize)>) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (p, line) in lines {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean_path(p);
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(IgnoreError::BareExclusion { line });
                }
                p.remove(0);
            }
            let (match_type, toks) =
                compile_pattern(&p).map_err(|reason| IgnoreError::BadPattern {
                    pattern: p.clone(),
                    line,
                    reason,
                })?;
            patterns.push(Pattern {
                cleaned: p,
                exclusion,
                match_type,
                toks,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as cleaned, exceptions with their `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.cleaned)
                } else {
                    p.cleaned.clone()
                }
            })
            .collect()
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded: it or one of
    /// its parents matches, last match wins (moby's `MatchesOrParentMatches`). Docker does not
    /// treat directories differently (a trailing `/` in a pattern is cleaned away); `is_dir` only
    /// documents the caller's intent.
    pub fn matches(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let file = clean_path(rel_path.trim_start_matches('/'));
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.is_match(&file);
            if !m && parent != "." {
                for i in 0..parent_dirs.len() {
                    if p.is_match(&parent_dirs[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk can skip everything under the excluded directory `rel_dir`: no exception
    /// pattern could re-include a path below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let dir = clean_path(rel_dir);
        let comps: Vec<&str> = dir.split('/').collect();
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let pc: Vec<&str> = p.cleaned.split('/').collect();
            for (i, c) in comps.iter().enumerate() {
                let Some(pat) = pc.get(i) else { return true };
                if pat.contains("**") {
                    return true;
                }
                match compile_pattern(pat) {
                    Ok((_, toks)) if !toks_match(&toks, &c.chars().collect::<Vec<_>>()) => {
                        return false;
                    }
                    _ => {}
                }
            }
            true
        })
    }
}

impl Pattern {
    fn is_match(&self, path: &str) -> bool {
        match self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                if path.ends_with(suffix) {
                    return true;
                }
                suffix.starts_with('/') && path == &suffix[1..]
            }
            MatchType::Regexp => toks_match(&self.toks, &path.chars().collect::<Vec<_>>()),
        }
    }
}

/// moby's `Pattern.compile`: the match type and the regexp it builds, as tokens.
fn compile_pattern(p: &str) -> Result<(MatchType, Vec<Tok>), &'static str> {
    validate_go_match(p)?;
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut mt = MatchType::Exact;
    let mut k = 0;
    let mut i = 0;
    while k < chars.len() {
        let ch = chars[k];
        k += 1;
        if ch == '*' {
            if chars.get(k) == Some(&'*') {
                k += 1;
                if chars.get(k) == Some(&'/') {
                    k += 1;
                }
                if k >= chars.len() {
                    if mt == MatchType::Exact {
                        mt = MatchType::Prefix;
                    } else {
                        toks.push(Tok::Any);
                        mt = MatchType::Regexp;
                    }
                } else {
                    toks.push(Tok::DoubleStar);
                    mt = MatchType::Regexp;
                }
                if i == 0 {
                    mt = MatchType::Suffix;
                }
            } else {
                toks.push(Tok::Star);
                mt = MatchType::Regexp;
            }
        } else if ch == '?' {
            toks.push(Tok::Quest);
            mt = MatchType::Regexp;
        } else if ch == '\\' {
            if k < chars.len() {
                toks.push(Tok::Lit(chars[k]));
                k += 1;
                mt = MatchType::Regexp;
            } else {
                toks.push(Tok::Lit('\\'));
            }
        } else if ch == '[' {
            let mut negated = false;
            if chars.get(k) == Some(&'^') {
                negated = true;
                k += 1;
            }
            let mut ranges = Vec::new();
            loop {
                let Some(&c) = chars.get(k) else {
                    return Err("unterminated character class");
                };
                if c == ']' && !ranges.is_empty() {
                    k += 1;
                    break;
                }
                let (lo, nk) = class_char(&chars, k)?;
                k = nk;
                if chars.get(k) == Some(&'-') {
                    let (hi, nk) = class_char(&chars, k + 1)?;
                    k = nk;
                    ranges.push((lo, hi));
                } else {
                    ranges.push((lo, lo));
                }
            }
            toks.push(Tok::Class { negated, ranges });
            mt = MatchType::Regexp;
        } else {
            toks.push(Tok::Lit(ch));
        }
        i += 1;
    }
    Ok((mt, toks))
}

fn class_char(chars: &[char], k: usize) -> Result<(char, usize), &'static str> {
    match chars.get(k) {
        None | Some('-') | Some(']') => Err("bad character class"),
        Some('\\') => chars
            .get(k + 1)
            .map(|&c| (c, k + 2))
            .ok_or("bad escape in character class"),
        Some(&c) => Ok((c, k + 1)),
    }
}

/// The syntax check docker does with `filepath.Match(p, ".")`.
fn validate_go_match(p: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = p.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        match chars[k] {
            '\\' => {
                if k + 1 >= chars.len() {
                    return Err("trailing escape");
                }
                k += 2;
            }
            '[' => {
                k += 1;
                if chars.get(k) == Some(&'^') {
                    k += 1;
                }
                let mut n = 0;
                loop {
                    match chars.get(k) {
                        None => return Err("unterminated character class"),
                        Some(']') if n > 0 => {
                            k += 1;
                            break;
                        }
                        _ => {}
                    }
                    let (_, nk) = class_char(&chars, k)?;
                    k = nk;
                    if chars.get(k) == Some(&'-') {
                        let (_, nk) = class_char(&chars, k + 1)?;
                        k = nk;
                    }
                    n += 1;
                }
            }
            _ => k += 1,
        }
    }
    Ok(())
}

/// Anchored match of the token regexp against the whole string.
fn toks_match(t: &[Tok], s: &[char]) -> bool {
    toks_match_dp(t, s, true)
}

/// Matches tokens against the whole of `s` by dynamic programming over (token, position): time
/// O(tokens x chars) and memory O(chars) whatever the pattern, where trying each split of every
/// `*` in turn is exponential in the number of stars (`***...*x` against a long name).
/// `class_sep`: whether a character class may match `/` (docker's regexp) or not (Go's `Match`).
fn toks_match_dp(t: &[Tok], s: &[char], class_sep: bool) -> bool {
    let n = s.len();
    // next[i]: whether t[k + 1..] matches s[i..]; cur[i]: whether t[k..] does.
    let mut next: Vec<bool> = (0..=n).map(|i| i == n).collect();
    let mut cur = vec![false; n + 1];
    for tok in t.iter().rev() {
        match tok {
            Tok::Star => {
                cur[n] = next[n];
                for i in (0..n).rev() {
                    cur[i] = next[i] || (s[i] != '/' && cur[i + 1]);
                }
            }
            Tok::Any => {
                cur[n] = next[n];
                for i in (0..n).rev() {
                    cur[i] = next[i] || cur[i + 1];
                }
            }
            Tok::DoubleStar => {
                // (.*/)? : nothing, or up to and including any '/' at or after i.
                let mut after_slash = false;
                cur[n] = next[n];
                for i in (0..n).rev() {
                    after_slash = after_slash || (s[i] == '/' && next[i + 1]);
                    cur[i] = next[i] || after_slash;
                }
            }
            tok => {
                cur[n] = false;
                for i in 0..n {
                    let c = s[i];
                    let ok = match tok {
                        Tok::Lit(l) => *l == c,
                        Tok::Quest => c != '/',
                        Tok::Class { negated, ranges } => {
                            (class_sep || c != '/')
                                && ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated
                        }
                        _ => false,
                    };
                    cur[i] = ok && next[i + 1];
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

/// Go's `filepath.Match` for one pattern against a whole name (`*` and `?` never match `/`):
/// the matching docker uses for `COPY` source wildcards.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, &'static str> {
    validate_go_match(pattern)?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        match chars[k] {
            '*' => {
                toks.push(Tok::Star);
                k += 1;
            }
            '?' => {
                toks.push(Tok::Quest);
                k += 1;
            }
            '\\' => {
                toks.push(Tok::Lit(chars[k + 1]));
                k += 2;
            }
            '[' => {
                k += 1;
                let negated = chars.get(k) == Some(&'^');
                if negated {
                    k += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    if chars.get(k) == Some(&']') && !ranges.is_empty() {
                        k += 1;
                        break;
                    }
                    let (lo, nk) = class_char(&chars, k)?;
                    k = nk;
                    if chars.get(k) == Some(&'-') {
                        let (hi, nk) = class_char(&chars, k + 1)?;
                        k = nk;
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => {
                toks.push(Tok::Lit(c));
                k += 1;
            }
        }
    }
    // Go's classes and '?' never match the separator.
    Ok(toks_match_no_sep(&toks, &name.chars().collect::<Vec<_>>()))
}

fn toks_match_no_sep(t: &[Tok], s: &[char]) -> bool {
    toks_match_dp(t, s, false)
}

/// Whether a COPY source contains wildcard characters (`*`, `?`, `[`).
pub fn has_wildcards(p: &str) -> bool {
    let mut esc = false;
    for c in p.chars() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}
