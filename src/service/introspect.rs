//! Introspection: what a service says about itself through zerorpc's six
//! reserved methods (`_zerorpc_list`, `_name`, `_ping`, `_inspect`, `_help`,
//! `_args`), from the [`MethodInfo`] of each registered method.

use super::args::decode_typed;
use super::Args;
use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use rmpv::Value;
use std::collections::BTreeMap;

/// Description of one argument, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgInfo {
    /// Argument name.
    pub name: String,
    /// Default value, if the method has one.
    pub default: Option<Value>,
}

/// Description of one method, for introspection.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodInfo {
    /// Method name.
    pub name: String,
    /// Documentation (first line is the summary shown by listings).
    pub doc: Option<String>,
    /// Arguments, if known.
    pub args: Option<Vec<ArgInfo>>,
}

impl MethodInfo {
    /// A method with no documentation and unknown arguments.
    pub fn new(name: impl Into<String>) -> Self {
        MethodInfo {
            name: name.into(),
            doc: None,
            args: None,
        }
    }

    /// Set the documentation.
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }

    /// Set argument names (no defaults).
    pub fn args<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(
            names
                .into_iter()
                .map(|n| ArgInfo {
                    name: n.into(),
                    default: None,
                })
                .collect(),
        );
        self
    }
}

/// Introspection names for a typed handler with no declared names.
pub(crate) fn placeholder_names(arity: Option<usize>) -> Option<Vec<ArgInfo>> {
    arity.map(|n| {
        (0..n)
            .map(|i| ArgInfo {
                name: format!("arg{i}"),
                default: None,
            })
            .collect()
    })
}

/// Answer a reserved introspection method of the service `service` with
/// these `methods`; `None` when `name` is not one.
/// The methods every service answers itself.
pub(crate) const INTROSPECTION: [&str; 7] = [
    "_zerorpc_list",
    "_zerorpc_name",
    "_zerorpc_ping",
    "_zerorpc_inspect",
    "_zerorpc_help",
    "_zerorpc_args",
    SERVER_NAME,
];

/// The name of the server (zrpc; PROTOCOL.md §12.2): how a client learns
/// which of its servers is which, to send a call to one by name.
pub(crate) const SERVER_NAME: &str = "_zrpc_server_name";

pub(crate) fn answer(
    service: &str,
    server: Option<&str>,
    methods: &BTreeMap<String, MethodInfo>,
    name: &str,
    args: &Args,
) -> Option<Result<Value, ServiceError>> {
    let lookup = |method: &str| -> Result<&MethodInfo, ServiceError> {
        let (name,): (String,) = decode_typed(method, Some(1), args)?;
        methods
            .get(&name)
            .ok_or_else(|| ServiceError::new("KeyError", clip(&name, QUOTE_LIMIT)))
    };
    Some(match name {
        "_zerorpc_list" => Ok(Value::Array(
            methods.keys().map(|k| Value::from(k.as_str())).collect(),
        )),
        "_zerorpc_name" => Ok(Value::from(service)),
        "_zerorpc_ping" => Ok(Value::Array(vec!["pong".into(), service.into()])),
        "_zerorpc_inspect" => Ok(inspect(service, methods)),
        "_zerorpc_help" => lookup(name).map(|m| m.doc.as_deref().map_or(Value::Nil, Value::from)),
        "_zerorpc_args" => lookup(name).map(argspec),
        SERVER_NAME => match server {
            Some(server) => Ok(Value::from(server)),
            None => return None,
        },
        _ => return None,
    })
}

/// `_zerorpc_inspect`: `{name, methods: {NAME: {args: [{name, default?}], doc}}}`.
pub(super) fn inspect(service: &str, methods: &BTreeMap<String, MethodInfo>) -> Value {
    let methods = methods
        .values()
        .map(|info| {
            let args = info.args.as_ref().map_or(Value::Nil, |args| {
                Value::Array(
                    args.iter()
                        .map(|a| {
                            let mut entry = vec![("name".into(), a.name.as_str().into())];
                            if let Some(d) = &a.default {
                                entry.push(("default".into(), d.clone()));
                            }
                            Value::Map(entry)
                        })
                        .collect(),
                )
            });
            let doc = info.doc.as_deref().map_or(Value::Nil, Value::from);
            (
                Value::from(info.name.as_str()),
                Value::Map(vec![("args".into(), args), ("doc".into(), doc)]),
            )
        })
        .collect();
    Value::Map(vec![
        ("name".into(), service.into()),
        ("methods".into(), Value::Map(methods)),
    ])
}

/// `_zerorpc_args`: the getargspec 4-array `[args, varargs, keywords, defaults]`.
fn argspec(info: &MethodInfo) -> Value {
    let args = info.args.as_deref().unwrap_or(&[]);
    let names = Value::Array(args.iter().map(|a| a.name.as_str().into()).collect());
    let defaults: Vec<Value> = args.iter().filter_map(|a| a.default.clone()).collect();
    let defaults = if defaults.is_empty() {
        Value::Nil
    } else {
        Value::Array(defaults)
    };
    Value::Array(vec![names, Value::Nil, Value::Nil, defaults])
}

/// An argument as declared with [`Service::args`](super::Service::args):
/// `"b"`, or `"b=10"` with a default for introspection. The default is read
/// as a number, `true`, `false`, `null` or a `"quoted string"`, and kept as
/// the bare text otherwise.
pub(crate) fn parse_arg(spec: &str) -> ArgInfo {
    let Some((name, default)) = spec.split_once('=') else {
        return ArgInfo {
            name: spec.trim().to_string(),
            default: None,
        };
    };
    let text = default.trim();
    let default = match text {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        "null" | "None" => Value::Nil,
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(f) = text.parse::<f64>() {
                Value::F64(f)
            } else if let Some(s) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Value::from(s)
            } else {
                Value::from(text)
            }
        }
    };
    ArgInfo {
        name: name.trim().to_string(),
        default: Some(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_defaults_are_typed() {
        let d = |s| parse_arg(s).default;
        assert_eq!(parse_arg("a").default, None);
        assert_eq!(parse_arg(" a = 1 ").name, "a");
        assert_eq!(d("b=10"), Some(Value::from(10)));
        assert_eq!(d("b=-2.5"), Some(Value::F64(-2.5)));
        assert_eq!(d("b=true"), Some(Value::Boolean(true)));
        assert_eq!(d("b=None"), Some(Value::Nil));
        assert_eq!(d("b=\"x y\""), Some(Value::from("x y")));
        assert_eq!(d("b=%Y"), Some(Value::from("%Y")));
    }
}
