//! docker's `--filter KEY=VALUE`: parsed against each command's keys, matched as docker does
//! (several values of one key: any; several keys: all).

use std::collections::BTreeMap;

use anyhow::{Result, bail};

#[derive(Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `KEY=VALUE` arguments, refusing a key `allowed` does not name.
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                bail!("bad format of filter (expected name=value): {a}");
            };
            let k = k.trim().to_ascii_lowercase();
            if !allowed.contains(&k.as_str()) {
                bail!("invalid filter '{k}'");
            }
            m.entry(k).or_default().push(v.to_owned());
        }
        Ok(Filters(m))
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// No value of `key` given, or `f` holds for one of them.
    pub fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        self.0.get(key).is_none_or(|vs| vs.iter().any(|v| f(v)))
    }

    /// No value of `key` given, or one of them, a regular expression as in docker's name
    /// filters, matches `s`. A value that is no regular expression is an error naming it.
    pub fn matches(&self, key: &str, s: &str) -> Result<bool> {
        let Some(vs) = self.0.get(key) else {
            return Ok(true);
        };
        for v in vs {
            let re = regex::Regex::new(v)
                .map_err(|e| anyhow::anyhow!("invalid filter '{key}={v}': {e}"))?;
            if re.is_match(s) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `key` is a boolean filter (`dangling=true`): its value, checked.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.values(key).last().map(|v| v.to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" || v == "1" => Ok(Some(true)),
            Some(v) if v == "false" || v == "0" => Ok(Some(false)),
            Some(v) => bail!("invalid filter '{key}={v}': true or false"),
        }
    }

    /// `label=KEY` or `label=KEY=VALUE`: every value given must match (docker's rule for labels).
    pub fn labels(&self, labels: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
        self.values("label").iter().all(|want| {
            let (k, v) = match want.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (want.as_str(), None),
            };
            match labels.and_then(|l| l.get(k)) {
                None => false,
                Some(got) => v.is_none_or(|v| got.as_str() == Some(v)),
            }
        })
    }
}

/// Go's `path.Match` for docker's `reference=` filter: `*` (not across `/`), `?` and literal
/// characters.
pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => s.first().is_some_and(|c| *c != '/') && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// docker's relative and absolute times (`--since`, `--until`, filters): RFC 3339 (with or without
/// a zone; a date alone), a Unix timestamp (`1700000000`, `1700000000.5`), or a duration before
/// now (`10m`, `1h30m`, `90s`). Seconds since the epoch.
pub fn parse_time(s: &str, now: i64) -> Result<f64> {
    let t = s.trim();
    if t.is_empty() {
        bail!("invalid time {s:?}: empty");
    }
    if let Ok(n) = t.parse::<f64>()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Ok(n);
    }
    if let Some(d) = parse_duration(t) {
        return Ok(now as f64 - d);
    }
    let full = if t.len() == 10 {
        format!("{t}T00:00:00Z")
    } else if !t.ends_with('Z') && !t[10.min(t.len())..].contains(['+', '-']) {
        format!("{t}Z")
    } else {
        t.to_owned()
    };
    match hoist_storage::images::parse_rfc3339(&full) {
        Some(secs) => {
            let frac = full
                .split_once('.')
                .map(|(_, f)| {
                    let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
                    format!("0.{digits}").parse::<f64>().unwrap_or(0.0)
                })
                .unwrap_or(0.0);
            Ok(secs as f64 + frac)
        }
        None => bail!(
            "invalid time {s:?}: an RFC 3339 time, a Unix timestamp or a duration such as 10m"
        ),
    }
}

/// Go's `time.ParseDuration` for the units docker's users write (`h`, `m`, `s`, `ms`).
fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|&i| i > 0)?;
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_as_docker() {
        let f = Filters::parse(
            &[
                "status=exited".into(),
                "label=a=b".into(),
                "status=created".into(),
            ],
            &["status", "label"],
        )
        .unwrap();
        assert!(f.any("status", |v| v == "created"));
        assert!(!f.any("status", |v| v == "running"));
        assert!(f.any("name", |_| false), "a key not given matches");
        let n = Filters::parse(&["name=^u.$".into()], &["name"]).unwrap();
        assert!(n.matches("name", "up").unwrap());
        assert!(!n.matches("name", "cup").unwrap());
        let bad = Filters::parse(&["name=(".into()], &["name"]).unwrap();
        assert!(bad.matches("name", "x").is_err());
        let labels = serde_json::json!({"a": "b", "c": "d"});
        assert!(f.labels(labels.as_object()));
        let labels = serde_json::json!({"a": "x"});
        assert!(!f.labels(labels.as_object()));
        let e = Filters::parse(&["nope=1".into()], &["status"])
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "invalid filter 'nope'");
        assert!(Filters::parse(&["status".into()], &["status"]).is_err());
    }

    #[test]
    fn globs_as_go() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*/app:*", "team/app:1"));
        assert!(!glob("*", "team/app"));
        assert!(glob("busybox:?", "busybox:1"));
        assert!(!glob("busybox", "busybox:1"));
    }

    #[test]
    fn times_as_docker() {
        let now = 1_700_000_000;
        assert_eq!(parse_time("1699999000", now).unwrap(), 1_699_999_000.0);
        assert_eq!(parse_time("10m", now).unwrap(), (now - 600) as f64);
        assert_eq!(parse_time("1h30m", now).unwrap(), (now - 5400) as f64);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000.0
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z", now).unwrap(),
            1_700_000_000.5
        );
        assert_eq!(parse_time("2023-11-14", now).unwrap(), 1_699_920_000.0);
        assert!(parse_time("yesterday", now).is_err());
    }
}
