//! The parameters of a `WWW-Authenticate` challenge (RFC 7235), as registries send them.

use std::collections::HashMap;

/// The `key="value", key=value` parameters after a challenge's scheme (keys lowercased; quoted
/// values may hold commas and `\"`).
pub fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned();
        }
        out.insert(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_bare_params() {
        let p = parse_params(
            r#"realm="https://a/token",Service=reg, scope="repo:x:pull,push",q="a\"b""#,
        );
        assert_eq!(p["realm"], "https://a/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repo:x:pull,push");
        assert_eq!(p["q"], "a\"b");
        assert!(parse_params("").is_empty());
    }
}
