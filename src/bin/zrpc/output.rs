//! What the command line prints: results, method listings, signatures.

use crate::json::to_json;
use zerorpc::client::Client;
use zerorpc::error::Error;
use zerorpc::service::{ArgInfo, MethodInfo};
use zerorpc::Value;

/// A remote service as introspection describes it.
pub(crate) struct Described {
    pub name: String,
    pub methods: Vec<MethodInfo>,
    /// Each namespace's API version (`""`: the default service), when the
    /// server reports them (zrpc's `versions` key).
    pub versions: Vec<(String, String)>,
}

impl Described {
    /// Its names and docs as they may be shown on a terminal.
    fn printable(&self) -> Described {
        let line = |s: &str| printable(s, false).into_owned();
        Described {
            name: line(&self.name),
            methods: self
                .methods
                .iter()
                .map(|m| MethodInfo {
                    name: line(&m.name),
                    doc: m.doc.as_deref().map(|d| printable(d, true).into_owned()),
                    args: m.args.as_ref().map(|args| {
                        args.iter()
                            .map(|a| ArgInfo {
                                name: line(&a.name),
                                default: a.default.clone(),
                            })
                            .collect()
                    }),
                })
                .collect(),
            versions: self
                .versions
                .iter()
                .map(|(ns, v)| (line(ns), line(v)))
                .collect(),
        }
    }
}

/// Ask the server to describe itself: `_zerorpc_inspect`, or the legacy
/// `_zerorpc_name`/`_list`/`_help` calls when that fails (stock Python
/// 3.11 servers).
pub(crate) async fn describe(client: &Client) -> Result<Described, Error> {
    match client.call_dynamic("_zerorpc_inspect", vec![]).await {
        Ok(v) => Ok(from_inspect(&v)),
        Err(Error::Remote(_)) => legacy(client).await,
        Err(e) => Err(e),
    }
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn from_inspect(v: &Value) -> Described {
    let name = get(v, "name")
        .and_then(Value::as_str)
        .unwrap_or("N/A")
        .to_string();
    let mut methods: Vec<_> = get(v, "methods")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, info)| {
                    let args = get(info, "args").and_then(Value::as_array).map(|args| {
                        args.iter()
                            .map(|a| ArgInfo {
                                name: get(a, "name")
                                    .and_then(Value::as_str)
                                    .unwrap_or("?")
                                    .to_string(),
                                default: get(a, "default").cloned(),
                            })
                            .collect()
                    });
                    let doc = get(info, "doc").and_then(Value::as_str).map(str::to_string);
                    MethodInfo {
                        name: k.as_str().unwrap_or("?").to_string(),
                        doc,
                        args,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    methods.sort_by(|a, b| a.name.cmp(&b.name));
    let versions = get(v, "versions")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(ns, v)| Some((ns.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Described {
        name,
        methods,
        versions,
    }
}

async fn legacy(client: &Client) -> Result<Described, Error> {
    let name = match client.call_dynamic("_zerorpc_name", vec![]).await {
        Ok(Value::String(s)) => s.into_str().unwrap_or_default(),
        _ => "N/A".to_string(),
    };
    let list = client.call_dynamic("_zerorpc_list", vec![]).await?;
    let mut methods = Vec::new();
    for m in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(m) = m.as_str() else { continue };
        let doc = match client.call_dynamic("_zerorpc_help", vec![m.into()]).await {
            Ok(Value::String(s)) => s.into_str(),
            _ => None,
        };
        methods.push(MethodInfo {
            name: m.to_string(),
            doc,
            args: None,
        });
    }
    Ok(Described {
        name,
        methods,
        versions: Vec::new(),
    })
}

fn signature(m: &MethodInfo) -> String {
    match &m.args {
        None => format!("{}(??)", m.name),
        Some(args) => {
            let parts: Vec<String> = args
                .iter()
                .map(|a| match &a.default {
                    None | Some(Value::Nil) => a.name.clone(),
                    Some(v) => format!("{}={}", a.name, render(v, false)),
                })
                .collect();
            format!("{}({})", m.name, parts.join(", "))
        }
    }
}

/// `[service]` then one line per method: its summary, or its signature with `-?`.
pub(crate) fn listing(svc: &Described, signatures: bool) -> String {
    let svc = &svc.printable();
    let mut out = format!("[{}]\n", svc.name);
    if !svc.versions.is_empty() {
        let versions: Vec<String> = svc
            .versions
            .iter()
            .map(|(ns, v)| match ns.as_str() {
                "" => format!("{} {v}", svc.name),
                ns => format!("{ns}.* {v}"),
            })
            .collect();
        out.push_str(&format!("versions: {}\n", versions.join(", ")));
    }
    let width = svc.methods.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for m in &svc.methods {
        if signatures {
            out.push_str(&signature(m));
        } else {
            let name = &m.name;
            let summary = m
                .doc
                .as_deref()
                .and_then(|d| d.lines().next())
                .filter(|l| !l.is_empty())
                .unwrap_or("<undocumented>");
            out.push_str(&format!("{name:width$} {summary}"));
        }
        out.push('\n');
    }
    out
}

/// `-? METHOD`: signature and full documentation.
pub(crate) fn method_help(svc: &Described, method: &str) -> String {
    let at = svc.methods.iter().position(|m| m.name == method);
    let svc = &svc.printable();
    match at.map(|i| &svc.methods[i]) {
        Some(m) => {
            let mut out = format!("[{}]\n{}\n", svc.name, signature(m));
            if let Some(doc) = &m.doc {
                out.push_str(&format!("\n{doc}\n"));
            }
            out
        }
        None => format!(
            "[{}]\nNo documentation for \"{}\".\n",
            svc.name,
            printable(method, false)
        ),
    }
}

/// Text from a peer as it may be shown on a terminal: control characters
/// (ESC, BEL, CR, DEL, the C1 range, bidirectional overrides) written as
/// escapes, so a server cannot move the cursor, clear the screen or forge a
/// line. Newlines are kept only where text may span lines (`lines`).
pub(crate) fn printable(text: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(c == '\t' || (lines && c == '\n')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A result for people (strings bare, structures as indented JSON) or for
/// scripts (`-pj`: compact JSON).
pub fn render(v: &Value, json: bool) -> String {
    match (v, json) {
        (Value::String(s), false) if s.as_str().is_some() => {
            printable(s.as_str().unwrap_or(""), true).into_owned()
        }
        (Value::Array(_) | Value::Map(_), false) => {
            serde_json::to_string_pretty(&to_json(v)).unwrap_or_else(|_| v.to_string())
        }
        _ => to_json(v).to_string(),
    }
}

/// Write to stdout. A closed stdout (`zrpc ... | head -1`) is not an error
/// worth a panic, which is what `print!` would do.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Print a stream as it arrives: one item per line (strings bare, the rest
/// compact JSON), or with `-pj` one JSON array. Items before an error are
/// printed (and the array closed) before the error is returned. When stdout
/// closes (`| head -3`), reading stops: dropping the stream tells the server
/// to stop producing.
pub async fn print_stream(
    mut items: zerorpc::ReplyStream<Value>,
    json: bool,
) -> Result<(), zerorpc::Error> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    // (tokio's stdout writes from a blocking thread: a reader that stops
    // reading does not block the runtime, so Ctrl-C still cancels.)
    let mut out = tokio::io::stdout();
    let mut first = true;
    let mut failed = None;
    let mut text = String::from(if json { "[" } else { "" });
    while let Some(item) = items.next().await {
        let v = match item {
            Ok(v) => v,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        match (json, &v) {
            (true, _) => text.push_str(&format!("{}{}", if first { "" } else { "," }, to_json(&v))),
            (false, Value::String(s)) if s.as_str().is_some() => {
                text.push_str(&printable(s.as_str().unwrap_or(""), true));
                text.push('\n');
            }
            (false, _) => text.push_str(&format!("{}\n", to_json(&v))),
        }
        let written = out.write_all(text.as_bytes()).await;
        if written.is_err() || out.flush().await.is_err() {
            return Ok(());
        }
        text.clear();
        first = false;
    }
    if json {
        text.push_str("]\n");
    }
    let _ = out.write_all(text.as_bytes()).await;
    let _ = out.flush().await;
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_signatures() {
        let mut svc = Described {
            name: "calc".into(),
            methods: vec![
                MethodInfo::new("add").doc("Add.\nMore").args(["a", "b"]),
                MethodInfo::new("mystery"),
            ],
            versions: Vec::new(),
        };
        svc.methods[0].args.as_mut().unwrap()[1].default = Some(Value::from(10));
        assert_eq!(
            listing(&svc, false),
            "[calc]\nadd     Add.\nmystery <undocumented>\n"
        );
        assert_eq!(listing(&svc, true), "[calc]\nadd(a, b=10)\nmystery(??)\n");
        assert_eq!(
            method_help(&svc, "add"),
            "[calc]\nadd(a, b=10)\n\nAdd.\nMore\n"
        );
        assert_eq!(
            method_help(&svc, "zz"),
            "[calc]\nNo documentation for \"zz\".\n"
        );
        svc.versions = vec![("".into(), "1.0".into()), ("control".into(), "2.0".into())];
        assert_eq!(
            listing(&svc, true),
            "[calc]\nversions: calc 1.0, control.* 2.0\nadd(a, b=10)\nmystery(??)\n"
        );
    }

    /// A hostile server's text cannot drive the terminal or forge a line.
    #[test]
    fn peer_text_is_escaped() {
        let evil = "ok\x1b[2J\x07\rzrpc: forged\nline\u{202e}\u{85}";
        assert_eq!(
            printable(evil, false),
            "ok\\x1b[2J\\x07\\rzrpc: forged\\nline\\u{202e}\\x85"
        );
        assert_eq!(
            printable(evil, true),
            "ok\\x1b[2J\\x07\\rzrpc: forged\nline\\u{202e}\\x85"
        );
        assert_eq!(printable("tab\tand é", false), "tab\tand é");
        assert_eq!(render(&Value::from(evil), false), printable(evil, true));
        let svc = Described {
            name: "s\x1b]0;x\x07".into(),
            methods: vec![MethodInfo::new("m\x1b").doc("line\n\x1b[31mred")],
            versions: Vec::new(),
        };
        assert_eq!(listing(&svc, false), "[s\\x1b]0;x\\x07]\nm\\x1b line\n");
        assert_eq!(
            method_help(&svc, "m\x1b"),
            "[s\\x1b]0;x\\x07]\nm\\x1b(??)\n\nline\n\\x1b[31mred\n"
        );
    }

    #[test]
    fn rendering() {
        assert_eq!(render(&Value::from("2026/11/22"), false), "2026/11/22");
        assert_eq!(render(&Value::from("x"), true), "\"x\"");
        assert_eq!(render(&Value::from(5), false), "5");
        assert_eq!(render(&Value::F64(2.0), false), "2.0");
        assert_eq!(
            render(&Value::Array(vec![1.into(), 2.into()]), true),
            "[1,2]"
        );
        assert_eq!(render(&Value::Nil, false), "null");
    }
}
