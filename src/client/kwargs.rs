//! Keyword arguments for peers that only know positions: a method's
//! parameters as its server reports them (`_zerorpc_inspect`, else
//! `_zerorpc_args`), kept per method, and keyword arguments placed at their
//! positions with the declared defaults filled in.

use crate::error::Error;
use crate::service::ArgInfo;
use rmpv::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A method's parameters, in order, without Python's bound `self`.
pub(crate) type Params = Arc<Vec<ArgInfo>>;

/// Each method's parameters, as learned from the servers: `None` for a
/// method the server did not describe.
#[derive(Default)]
pub(crate) struct Signatures {
    known: Mutex<HashMap<String, Option<Params>>>,
}

impl Signatures {
    pub(crate) fn get(&self, method: &str) -> Option<Option<Params>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(method).cloned()
    }

    /// Remember what `_zerorpc_inspect` said of every method.
    pub(crate) fn learn_inspect(&self, inspect: &Value) {
        let Some(methods) = field(inspect, "methods").and_then(Value::as_map) else {
            return;
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (name, info) in methods {
            let Some(name) = name.as_str() else { continue };
            let params = field(info, "args").and_then(Value::as_array).map(|args| {
                let params = args.iter().filter_map(|a| {
                    Some(ArgInfo {
                        name: field(a, "name")?.as_str()?.to_string(),
                        default: field(a, "default").cloned(),
                    })
                });
                Arc::new(without_self(params.collect()))
            });
            known.insert(name.to_string(), params);
        }
    }

    /// Remember what `_zerorpc_args(method)` said: Python's getargspec,
    /// `[names, varargs, keywords, defaults]`, the defaults belonging to
    /// the last names.
    pub(crate) fn learn_argspec(&self, method: &str, spec: &Value) {
        let parts = spec.as_array().map(Vec::as_slice).unwrap_or(&[]);
        let params = parts.first().and_then(Value::as_array).map(|names| {
            let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            let defaults = parts
                .get(3)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let first_default = names.len().saturating_sub(defaults.len());
            let params = names.iter().enumerate().map(|(i, name)| ArgInfo {
                name: name.to_string(),
                default: i
                    .checked_sub(first_default)
                    .and_then(|d| defaults.get(d).cloned()),
            });
            Arc::new(without_self(params.collect()))
        });
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(method.to_string(), params);
    }
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Python reports a bound method's `self`; callers never pass it.
fn without_self(mut params: Vec<ArgInfo>) -> Vec<ArgInfo> {
    if params.first().is_some_and(|p| p.name == "self") {
        params.remove(0);
    }
    params
}

/// The positional arguments of `method(*args, **kwargs)` for a method
/// declared with `params`: each keyword at its parameter's position, the
/// others filled with their declared defaults. Unknown names, names given
/// twice and parameters left without a value are errors naming the real
/// parameters.
pub(crate) fn place(
    method: &str,
    params: &[ArgInfo],
    mut args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
) -> Result<Vec<Value>, Error> {
    let signature = || {
        let names: Vec<String> = params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}={d}", p.name),
                None => p.name.clone(),
            })
            .collect();
        format!("{method}({})", names.join(", "))
    };
    if args.len() > params.len() {
        return Err(Error::Arguments(format!(
            "{} takes {} arguments, {} given",
            signature(),
            params.len(),
            args.len()
        )));
    }
    let mut slots: Vec<Option<Value>> = params.iter().map(|_| None).collect();
    for (slot, arg) in slots.iter_mut().zip(args.drain(..)) {
        *slot = Some(arg);
    }
    for (name, value) in kwargs {
        let Some(at) = params.iter().position(|p| p.name == name) else {
            return Err(Error::Arguments(format!(
                "{} has no parameter {name:?}",
                signature()
            )));
        };
        if slots[at].is_some() {
            return Err(Error::Arguments(format!(
                "{} got two values for {name:?}",
                signature()
            )));
        }
        slots[at] = Some(value);
    }
    // Every parameter not given takes its declared default: a zrpc
    // handler applies none of its own, and a Python one gets the same value.
    let mut out = Vec::with_capacity(params.len());
    for (param, slot) in params.iter().zip(slots) {
        match (slot, &param.default) {
            (Some(v), _) => out.push(v),
            (None, Some(d)) => out.push(d.clone()),
            (None, None) => {
                return Err(Error::Arguments(format!(
                    "{} is missing {:?}",
                    signature(),
                    param.name
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(spec: &[(&str, Option<i64>)]) -> Vec<ArgInfo> {
        spec.iter()
            .map(|(name, default)| ArgInfo {
                name: name.to_string(),
                default: default.map(Value::from),
            })
            .collect()
    }

    fn kw(pairs: &[(&str, i64)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    #[test]
    fn keywords_take_their_positions_and_defaults_fill_gaps() {
        let add = params(&[("a", None), ("b", Some(10))]);
        let v = |xs: &[i64]| xs.iter().map(|x| Value::from(*x)).collect::<Vec<_>>();
        assert_eq!(
            place("add", &add, vec![], kw(&[("a", 5)])).unwrap(),
            v(&[5, 10])
        );
        assert_eq!(
            place("add", &add, vec![], kw(&[("b", 2), ("a", 1)])).unwrap(),
            v(&[1, 2])
        );
        assert_eq!(
            place("add", &add, v(&[1]), kw(&[("b", 2)])).unwrap(),
            v(&[1, 2])
        );
        let f = params(&[("a", None), ("b", Some(10)), ("c", None)]);
        assert!(place("f", &f, vec![], kw(&[("a", 1)])).is_err());
        let g = params(&[("a", None), ("b", Some(10)), ("c", Some(20))]);
        assert_eq!(
            place("g", &g, vec![], kw(&[("a", 1), ("c", 3)])).unwrap(),
            v(&[1, 10, 3])
        );
    }

    #[test]
    fn mistakes_name_the_real_parameters() {
        let add = params(&[("a", None), ("b", Some(10))]);
        let msg = |r: Result<Vec<Value>, Error>| r.unwrap_err().to_string();
        let e = msg(place("add", &add, vec![], kw(&[("c", 1)])));
        assert!(e.contains("add(a, b=10) has no parameter \"c\""), "{e}");
        let e = msg(place("add", &add, vec![Value::from(1)], kw(&[("a", 1)])));
        assert!(e.contains("got two values for \"a\""), "{e}");
        let e = msg(place("add", &add, vec![], kw(&[("b", 1)])));
        assert!(e.contains("is missing \"a\""), "{e}");
        let e = msg(place(
            "add",
            &add,
            vec![1.into(), 2.into(), 3.into()],
            vec![],
        ));
        assert!(e.contains("takes 2 arguments, 3 given"), "{e}");
    }

    #[test]
    fn python_argspecs_and_inspect_drop_self() {
        let sigs = Signatures::default();
        let spec = Value::Array(vec![
            Value::Array(vec!["self".into(), "a".into(), "b".into()]),
            Value::Nil,
            Value::Nil,
            Value::Array(vec![10.into()]),
        ]);
        sigs.learn_argspec("add", &spec);
        let add = sigs.get("add").unwrap().unwrap();
        assert_eq!(add.len(), 2);
        assert_eq!((add[0].name.as_str(), add[0].default.clone()), ("a", None));
        assert_eq!(add[1].default, Some(Value::from(10)));
        let inspect = Value::Map(vec![(
            "methods".into(),
            Value::Map(vec![
                (
                    "count".into(),
                    Value::Map(vec![(
                        "args".into(),
                        Value::Array(vec![
                            Value::Map(vec![("name".into(), "self".into())]),
                            Value::Map(vec![("name".into(), "n".into())]),
                        ]),
                    )]),
                ),
                (
                    "opaque".into(),
                    Value::Map(vec![("args".into(), Value::Nil)]),
                ),
            ]),
        )]);
        sigs.learn_inspect(&inspect);
        assert_eq!(sigs.get("count").unwrap().unwrap()[0].name, "n");
        assert_eq!(sigs.get("opaque"), Some(None));
        assert_eq!(sigs.get("never"), None);
    }
}
