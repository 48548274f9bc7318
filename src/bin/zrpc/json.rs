//! Conversions between msgpack values and JSON, for the command line and
//! for people: JSON has no bytes, so bin becomes a string when it is UTF-8 and
//! `"0x<hex>"` otherwise; non-string map keys are written as their JSON text.

use serde_json::Value as Json;
use zerorpc::Value;

/// JSON → msgpack: integers stay integers, other numbers become f64.
pub(crate) fn from_json(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// msgpack → JSON, losslessly where JSON allows.
pub(crate) fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => {
            if let Some(n) = i.as_i64() {
                Json::from(n)
            } else {
                Json::from(i.as_u64().unwrap_or(0))
            }
        }
        Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => match s.as_str() {
            Some(s) => Json::from(s),
            None => Json::from(hex(s.as_bytes())),
        },
        Value::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => Json::from(s),
            Err(_) => Json::from(hex(b)),
        },
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) if s.as_str().is_some() => {
                            s.as_str().unwrap_or("").to_string()
                        }
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Ext(t, data) => serde_json::json!({ "ext": t, "data": hex(data) }),
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// A `-j` parameter: strict JSON, nesting at most as deep as a value may
/// inside an event's arguments (the protocol's one depth limit).
pub(crate) fn parse_json(s: &str) -> Result<Value, String> {
    let limit = zerorpc::protocol::MAX_DEPTH - 1;
    if nesting(s) > limit {
        return Err(format!(
            "nested deeper than {limit} levels (a value inside the arguments' array; the protocol's limit is {})",
            zerorpc::protocol::MAX_DEPTH
        ));
    }
    let mut de = serde_json::Deserializer::from_str(s);
    // Safe without serde_json's own limit: the depth was checked above.
    de.disable_recursion_limit();
    let j = <Json as serde::Deserialize>::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(from_json(&j))
}

/// The deepest nesting of arrays and objects in JSON text (strings
/// skipped), without parsing it.
fn nesting(s: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0, false, false);
    for b in s.bytes() {
        match (in_str, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_str = false,
            (true, _) => {}
            (false, b'"') => in_str = true,
            (false, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A command-line argument as a user means it: a JSON number, `true`,
/// `false` or `null` becomes that value; anything else stays a string. So
/// `add 2 3` sends integers while `strftime %Y` sends a string. (`-j` parses
/// every argument as strict JSON instead.)
pub(crate) fn infer_cli_arg(s: &str) -> Value {
    match serde_json::from_str::<Json>(s) {
        Ok(j @ (Json::Number(_) | Json::Bool(_) | Json::Null)) => from_json(&j),
        _ => Value::from(s),
    }
}

/// The JSON values of `input`, one per line (blank lines skipped), read on
/// a thread of their own a few lines ahead of their consumer; a line that
/// is not JSON, or a read error, is the last item.
pub(crate) fn lines(
    input: impl std::io::Read + Send + 'static,
) -> impl futures::Stream<Item = Result<Value, zerorpc::ServiceError>> + Send + 'static {
    use std::io::BufRead;
    use zerorpc::ServiceError;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for (n, line) in std::io::BufReader::new(input).lines().enumerate() {
            let item = match line {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => parse_json(&line).map_err(|e| {
                    ServiceError::new(
                        "ValueError",
                        format!("line {} of the input is not JSON: {e}", n + 1),
                    )
                }),
                Err(e) => Err(ServiceError::new(
                    "IOError",
                    format!("reading the input: {e}"),
                )),
            };
            let last = item.is_err();
            if tx.blocking_send(item).is_err() || last {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parameters_nest_as_deep_as_the_protocol_allows() {
        let deep = |d: usize| format!("{}1{}", "[".repeat(d), "]".repeat(d));
        assert!(parse_json(&deep(255)).is_ok());
        let e = parse_json(&deep(256)).unwrap_err();
        assert!(e.contains("255"), "{e}");
        assert_eq!(nesting(r#"["[[[", {"a": ["\"]"]}]"#), 3);
        assert!(parse_json("[1] x").is_err(), "trailing text");
    }

    #[test]
    fn cli_args_do_what_users_mean() {
        assert_eq!(infer_cli_arg("2"), Value::from(2));
        assert_eq!(infer_cli_arg("-2.5"), Value::F64(-2.5));
        assert_eq!(infer_cli_arg("%Y/%m/%d"), Value::from("%Y/%m/%d"));
        assert_eq!(infer_cli_arg("007"), Value::from("007"));
        assert_eq!(infer_cli_arg("true"), Value::Boolean(true));
        assert_eq!(infer_cli_arg("[1]"), Value::from("[1]"));
    }

    #[test]
    fn json_roundtrip_and_bytes() {
        let j = serde_json::json!({"a": [1, -2, 3.5, "x", null, true], "big": u64::MAX});
        assert_eq!(to_json(&from_json(&j)), j);
        assert_eq!(to_json(&Value::Binary(b"hi".to_vec())), Json::from("hi"));
        assert_eq!(to_json(&Value::Binary(vec![0xff, 0])), Json::from("0xff00"));
        assert_eq!(
            to_json(&Value::Map(vec![(Value::from(1), Value::Nil)])),
            serde_json::json!({"1": null})
        );
    }
}
