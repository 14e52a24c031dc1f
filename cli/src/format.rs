//! docker's `--format`: Go templates (`gtmpl`) over docker's field names, with docker's template
//! functions; `table TEMPLATE` lays the rows out as docker's tabwriter does, with a header row
//! of docker's column names; `json` prints each row as one JSON object.

use anyhow::{Context, Result, anyhow};
use gtmpl::{Context as TmplContext, Template};
use gtmpl_value::{FuncError, Number, Value};
use serde_json::Value as Json;

/// What `--format` asked for.
pub enum Format {
    /// No `--format` (or `table` alone): the command's own table.
    Default,
    /// `json`: one JSON object a line (for `inspect`, the usual JSON array).
    Json,
    /// `table TEMPLATE`: a header row, then the rows, tab-aligned.
    Table(Template),
    /// A template, rendered once per row, each followed by a newline.
    Raw(Template),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Result<Format> {
        let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
            return Ok(Format::Default);
        };
        let t = s.trim();
        if t == "json" {
            return Ok(Format::Json);
        }
        if t == "table" {
            return Ok(Format::Default);
        }
        match t.strip_prefix("table ") {
            Some(rest) => Ok(Format::Table(template(rest)?)),
            None => Ok(Format::Raw(template(s)?)),
        }
    }

    pub fn is_default(&self) -> bool {
        matches!(self, Format::Default)
    }

    /// The rows (JSON objects with docker's field names) as the format says; `headers` names the
    /// column of each field for a table's header row. `Default` prints nothing: the caller does.
    pub fn render(&self, rows: &[Json], headers: &[(&str, &str)]) -> Result<String> {
        let mut out = String::new();
        match self {
            Format::Default => {}
            Format::Json => {
                for r in rows {
                    out.push_str(&serde_json::to_string(r).context("encoding a row")?);
                    out.push('\n');
                }
            }
            Format::Raw(t) => {
                for r in rows {
                    out.push_str(&execute(t, r)?);
                    out.push('\n');
                }
            }
            Format::Table(t) => {
                let header: serde_json::Map<String, Json> = headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Json::from(*v)))
                    .collect();
                let mut lines = vec![execute(t, &Json::Object(header))?];
                for r in rows {
                    lines.push(execute(t, r)?);
                }
                out = tabwrite(&lines.join("\n"));
            }
        }
        Ok(out)
    }
}

/// Parses a template as docker does: `\t` and `\n` written out stand for a tab and a newline.
pub fn template(text: &str) -> Result<Template> {
    let text = text.trim().replace("\\t", "\t").replace("\\n", "\n");
    let mut t = Template::default();
    t.add_funcs(&[
        ("json", json as gtmpl_value::Func),
        ("upper", upper),
        ("lower", lower),
        ("title", title),
        ("join", join),
        ("split", split),
        ("truncate", truncate),
        ("pad", pad),
    ]);
    t.parse(text.as_str())
        .map_err(|e| anyhow!("template parsing error: {e}"))?;
    Ok(t)
}

/// Renders `t` with `data` as its dot.
pub fn execute(t: &Template, data: &Json) -> Result<String> {
    t.render(&TmplContext::from(to_value(data, false)))
        .map_err(|e| anyhow!("template: {e}"))
}

/// JSON to a template value: objects are structs (a missing field is an error, as in Go), except
/// the maps docker keeps as maps (labels, options, ...), where a missing key is `<no value>`.
fn to_value(j: &Json, map: bool) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(|v| to_value(v, false)).collect()),
        Json::Object(o) => {
            let m = o
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v, is_map_field(k))))
                .collect();
            if map { Value::Map(m) } else { Value::Object(m) }
        }
    }
}

fn is_map_field(k: &str) -> bool {
    matches!(
        k,
        "Labels" | "Options" | "Volumes" | "ExposedPorts" | "Networks" | "Data" | "Config"
    )
}

/// A template value back to JSON (for `json`).
fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64().map_or(Json::Null, Json::from)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            Json::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.to_owned(), n));
    }
    Ok(&args[i])
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "json", 1)?;
    serde_json::to_string(&to_json(v))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string(arg(args, 0, "upper", 1)?).to_uppercase(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string(arg(args, 0, "lower", 1)?).to_lowercase(),
    ))
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string(arg(args, 0, "title", 1)?);
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    Ok(Value::String(out))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string(arg(args, 1, "join", 2)?);
    match &args[0] {
        Value::Array(a) => Ok(Value::String(
            a.iter().map(string).collect::<Vec<_>>().join(&sep),
        )),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string(arg(args, 1, "split", 2)?);
    let s = string(&args[0]);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_owned()))
            .collect(),
    ))
}

/// docker's `truncate`: the first N characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let n = int(arg(args, 1, "truncate", 2)?)?.max(0) as usize;
    Ok(Value::String(string(&args[0]).chars().take(n).collect()))
}

/// docker's `pad`: spaces before and after.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let after = int(arg(args, 2, "pad", 3)?)?.max(0) as usize;
    let before = int(&args[1])?.max(0) as usize;
    Ok(Value::String(format!(
        "{}{}{}",
        " ".repeat(before),
        string(&args[0]),
        " ".repeat(after)
    )))
}

/// Lines of tab-separated cells as docker's tabwriter (min width 10, padding 3) aligns them: the
/// text after a line's last tab is not a column.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(&format!("{c:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The daemon's one-line command of a container: arguments with a space in single quotes.
pub fn docker_command(path: &str, args: &[String]) -> String {
    if args.is_empty() {
        return path.to_owned();
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    format!("{path} {}", args.join(" "))
}

/// Go's `strconv.Quote`: double quotes, with `"`, `\` and control characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints `rows` with `--format` (never `Default`).
pub fn print(f: &Format, rows: &[Json], headers: &[(&str, &str)]) -> Result<()> {
    let s = f.render(rows, headers)?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, s.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout))
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: &str, rows: &[Json]) -> String {
        Format::parse(Some(f))
            .unwrap()
            .render(rows, &[("ID", "IMAGE ID"), ("Repository", "REPOSITORY")])
            .unwrap()
    }

    #[test]
    fn templates_as_docker() {
        let rows = [
            json!({"ID": "abc", "Repository": "busybox", "Labels": {"a": "b"}}),
            json!({"ID": "defdefdefdef", "Repository": "alpine", "Labels": {}}),
        ];
        assert_eq!(render("{{.ID}}", &rows), "abc\ndefdefdefdef\n");
        assert_eq!(
            render("table {{.ID}}\\t{{.Repository}}", &rows),
            "IMAGE ID       REPOSITORY\nabc            busybox\ndefdefdefdef   alpine\n"
        );
        assert_eq!(render("{{json .Labels}}", &rows[..1]), "{\"a\":\"b\"}\n");
        assert_eq!(render("{{.Labels.missing}}", &rows[..1]), "<no value>\n");
        assert_eq!(
            render(
                "{{upper .Repository}} {{title \"a b\"}} {{truncate .ID 2}}|{{pad .ID 1 1}}|",
                &rows[..1]
            ),
            "BUSYBOX A B ab| abc |\n"
        );
        assert_eq!(
            render("{{join (split \"a,b\" \",\") \"-\"}}", &rows[..1]),
            "a-b\n"
        );
        assert_eq!(
            render("json", &rows[..1]),
            "{\"ID\":\"abc\",\"Labels\":{\"a\":\"b\"},\"Repository\":\"busybox\"}\n"
        );
        assert!(Format::parse(Some("{{.ID")).is_err());
        assert!(
            Format::parse(Some("{{.Nope}}"))
                .unwrap()
                .render(&rows, &[])
                .is_err()
        );
    }

    #[test]
    fn commands_as_docker() {
        let args = ["-c".to_owned(), "sleep 100".to_owned()];
        let cmd = docker_command("sh", &args);
        assert_eq!(cmd, "sh -c 'sleep 100'");
        assert_eq!(
            go_quote(&crate::images_format::ellipsis(&cmd, 20)),
            "\"sh -c 'sleep 100'\""
        );
        let long = docker_command(
            "sh",
            &["-c".to_owned(), "sleep 1000000; echo done".to_owned()],
        );
        assert_eq!(
            go_quote(&crate::images_format::ellipsis(&long, 20)),
            "\"sh -c 'sleep 100000…\""
        );
        assert_eq!(go_quote("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
