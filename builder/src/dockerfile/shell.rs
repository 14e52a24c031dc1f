//! Docker's shell-word lexer: variable substitution and word splitting with the exact semantics of
//! moby's `shell.Lex` (`ProcessWord` / `ProcessWords`).

use thiserror::Error;

/// An error while expanding a word (`${V:?msg}`, unterminated quotes, bad substitutions).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ExpandError {
    /// The word being expanded.
    pub word: String,
    /// What went wrong, e.g. `syntax error: bad substitution`.
    pub message: String,
}

/// Lexer options, as in moby's `shell.Lex`.
#[derive(Clone, Copy)]
pub(crate) struct Lex {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave unset variables as written (`$V`, `${V}`, `${V:-w}`).
    pub skip_unset: bool,
    /// Quotes are ordinary characters (heredoc bodies).
    pub skip_quotes: bool,
}

impl Lex {
    pub(crate) fn new(escape: char) -> Self {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// `ProcessWord`: the word with quotes and escapes processed and variables substituted;
    /// whitespace is kept.
    pub(crate) fn process_word(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ExpandError> {
        self.run(word, lookup).map(|(w, _)| w)
    }

    /// `ProcessWords`: like `process_word` but split into words on unquoted whitespace (also
    /// whitespace coming from unquoted variable values).
    pub(crate) fn process_words(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        self.run(word, lookup).map(|(_, ws)| ws)
    }

    fn run(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            lex: *self,
            raw_escapes: self.raw_escapes,
            lookup,
        };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|message| ExpandError {
                word: word.to_string(),
                message,
            })
    }
}

/// Expands one word with docker's rules (`ProcessWord`): `$V`, `${V}`, `${V:-w}`, `${V-w}`,
/// `${V:+w}`, `${V+w}`, `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`,
/// `${V/p/r}`, `${V//p/r}`, single and double quotes, and `escape` (`\` or `` ` ``) escapes.
/// Quotes are removed, whitespace is kept. `lookup` returns `None` for an unset variable.
///
/// Docker expands variables in these instructions only: `ADD`, `COPY`, `ENV`, `EXPOSE`, `FROM`,
/// `LABEL`, `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR` (and `ARG` defaults, `--chown`, `--chmod`,
/// `--from`, `--platform`, `--mount` values); `ONBUILD` triggers are expanded when they run, not
/// where they are declared; `RUN`, `CMD`, `ENTRYPOINT`, `SHELL` and `HEALTHCHECK` are left to the
/// shell. `EXPOSE` values are split into words with [`expand_words`]; the others are single words.
pub fn expand(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lex::new(escape).process_word(word, lookup)
}

/// Expands the body of a heredoc whose delimiter was not quoted (`COPY <<EOF`), as docker does:
/// variables and escapes are processed, quotes are ordinary characters.
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    let mut lex = Lex::new(escape);
    lex.skip_quotes = true;
    lex.process_word(content, lookup)
}

/// Expands and splits into words with docker's rules (`ProcessWords`): unquoted whitespace
/// (including whitespace inside unquoted variable values) separates words, quoted whitespace is
/// kept. See [`expand`] for the substitution rules.
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lex::new(escape).process_words(word, lookup)
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn into_words(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: Lex,
    raw_escapes: bool,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.into_words()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' if !self.lex.skip_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if !self.lex.skip_quotes => {
                    let tmp = self.process_double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.into_words()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            result.push(q);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            result.push(q);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return match self.get_env(&name) {
                Some(v) => Ok(v),
                None if self.lex.skip_unset => Ok(format!("${name}")),
                None => Ok(String::new()),
            };
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => match self.get_env(&name) {
                Some(v) => Ok(v),
                None if self.lex.skip_unset => Ok(format!("${{{name}}}")),
                None => Ok(String::new()),
            },
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if ch == ':' {
                    null_is_unset = true;
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            chs.push(c);
                        }
                        None => return Err("syntax error: missing '}'".into()),
                    }
                }
                if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match ch {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => {
                        let Some(v) = value else {
                            let m = if word.is_empty() {
                                "is not allowed to be unset".into()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {m}"));
                        };
                        if null_is_unset && v.is_empty() {
                            let m = if word.is_empty() {
                                "is not allowed to be empty".into()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {m}"));
                        }
                        Ok(v)
                    }
                    _ => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        let pat = Pattern::parse(&pat)?;
                        Ok(if ch == '%' {
                            trim_suffix(&pat, &value, greedy)
                        } else {
                            trim_prefix(&pat, &value, greedy)
                        })
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name);
                let Some(value) = value else {
                    if self.lex.skip_unset {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let pat = Pattern::parse(&pattern)?;
                Ok(replace(&pat, &value, &replacement, all))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// A shell pattern for `${V#p}` / `${V%p}` / `${V/p/r}`, as BuildKit converts it: `*` any
/// string, `?` any one character, `\*` `\?` `\\` literal, `\}` and `\/` the character itself;
/// brackets are ordinary characters.
#[derive(Debug)]
enum PatTok {
    Lit(char),
    Any,
    One,
}

struct Pattern(Vec<PatTok>);

impl Pattern {
    fn parse(p: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = p.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => toks.push(PatTok::Any),
                '?' => toks.push(PatTok::One),
                '\\' => match chars.get(i) {
                    Some('}' | '/') => {}
                    Some(&n @ ('*' | '?' | '\\')) => {
                        toks.push(PatTok::Lit(n));
                        i += 1;
                    }
                    Some(n) => {
                        return Err(format!(
                            "invalid pattern ({p}) in substitution: invalid escape '\\{n}'"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "invalid pattern ({p}) in substitution: trailing escape"
                        ));
                    }
                },
                c => toks.push(PatTok::Lit(c)),
            }
        }
        Ok(Pattern(toks))
    }

    /// Whether the pattern matches all of `s`.
    fn matches(&self, s: &[char]) -> bool {
        fn go(t: &[PatTok], s: &[char]) -> bool {
            match t.first() {
                None => s.is_empty(),
                Some(PatTok::Any) => (0..=s.len()).any(|k| go(&t[1..], &s[k..])),
                Some(PatTok::Lit(l)) => s.first() == Some(l) && go(&t[1..], &s[1..]),
                Some(PatTok::One) => !s.is_empty() && go(&t[1..], &s[1..]),
            }
        }
        go(&self.0, s)
    }
}

fn trim_prefix(p: &Pattern, value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let lens: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new((0..=chars.len()).rev())
    } else {
        Box::new(0..=chars.len())
    };
    for n in lens {
        if p.matches(&chars[..n]) {
            return chars[n..].iter().collect();
        }
    }
    value.to_string()
}

fn trim_suffix(p: &Pattern, value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let starts: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new(0..=chars.len())
    } else {
        Box::new((0..=chars.len()).rev())
    };
    for k in starts {
        if p.matches(&chars[k..]) {
            return chars[..k].iter().collect();
        }
    }
    value.to_string()
}

/// Go's `Regexp.ReplaceAllString` / first-match replacement with a greedy pattern: leftmost
/// match, longest at that position; with `all`, an empty match right after a match is skipped.
fn replace(p: &Pattern, value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let mut out = String::new();
    let mut i = 0;
    let mut last_end: Option<usize> = None;
    while i <= n {
        let found = (i..=n).rev().find(|&e| p.matches(&chars[i..e]));
        match found {
            Some(e) if !(e == i && last_end == Some(i)) => {
                out.push_str(replacement);
                last_end = Some(e);
                if e == i {
                    if i < n {
                        out.push(chars[i]);
                    }
                    i += 1;
                } else {
                    i = e;
                }
                if !all {
                    out.extend(&chars[i.min(n)..]);
                    return out;
                }
            }
            _ => {
                if i < n {
                    out.push(chars[i]);
                }
                i += 1;
            }
        }
    }
    out
}
