//! Services `zrpc --server` offers without any code: `time`, `calc`, `echo`,
//! and shell commands exposed as methods with `--exec NAME=COMMAND`.

use crate::service::Service;
use crate::{ServiceError, Value};
use chrono::format::{Item, StrftimeItems};
use futures::StreamExt;
use std::time::Duration;

/// Names of the built-in services.
pub const NAMES: &[&str] = &["time", "calc", "echo"];

/// The built-in service called `name`, if any.
pub fn service(name: &str) -> Option<Service> {
    match name {
        "time" => Some(time()),
        "calc" => Some(calc()),
        "echo" => Some(echo()),
        _ => None,
    }
}

fn time() -> Service {
    Service::new("time")
        .method("time", |(): ()| async {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok::<_, ServiceError>(now.as_secs_f64())
        })
        .doc("Return the current time in seconds since the Epoch, as a float.")
        .args(Vec::<String>::new())
        .method("strftime", |(format,): (String,)| async move {
            strftime(&format)
        })
        .doc("Format the current local time, e.g. strftime('%Y/%m/%d').")
        .args(["format"])
        .method("sleep", |(seconds,): (f64,)| async move {
            if !(0.0..=1e9).contains(&seconds) {
                return Err(ServiceError::new(
                    "ValueError",
                    "sleep length must be a non-negative number of seconds",
                ));
            }
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok(())
        })
        .doc("Wait for the given number of seconds (without blocking other calls).")
        .args(["seconds"])
}

fn strftime(format: &str) -> Result<String, ServiceError> {
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(ServiceError::new(
            "ValueError",
            format!("invalid format string {format:?}"),
        ));
    }
    Ok(chrono::Local::now()
        .format_with_items(items.into_iter())
        .to_string())
}

/// A number as a caller means it: msgpack ints and floats, or numeric
/// strings (the `zerorpc` command line sends every argument as a string).
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn from_value(v: &Value) -> Result<Num, ServiceError> {
        match v {
            Value::Integer(i) => i
                .as_i64()
                .map(Num::Int)
                .ok_or_else(|| ServiceError::new("OverflowError", "integer too large")),
            Value::F32(f) => Ok(Num::Float(f64::from(*f))),
            Value::F64(f) => Ok(Num::Float(*f)),
            Value::String(s) => {
                let s = s.as_str().unwrap_or("").trim();
                s.parse::<i64>()
                    .map(Num::Int)
                    .or_else(|_| s.parse::<f64>().map(Num::Float))
                    .map_err(|_| ServiceError::type_error(format!("expected a number, got {s:?}")))
            }
            other => Err(ServiceError::type_error(format!(
                "expected a number, got {other}"
            ))),
        }
    }

    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn value(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) => Value::F64(f),
        }
    }
}

/// `a op b` for two numbers: integer arithmetic when both are integers
/// (overflow is an error, as Python has no fixed width to wrap at),
/// floating point otherwise.
fn arith(
    a: &Value,
    b: &Value,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, ServiceError> {
    match (Num::from_value(a)?, Num::from_value(b)?) {
        (Num::Int(x), Num::Int(y)) => int(x, y)
            .map(Value::from)
            .ok_or_else(|| ServiceError::new("OverflowError", "integer overflow")),
        (x, y) => Ok(Num::Float(float(x.f(), y.f())).value()),
    }
}

// Two typed `Value` arguments: the arity check and its message come from
// the shared typed-handler path; numeric strings are accepted by `Num`.
fn calc() -> Service {
    Service::new("calc")
        .method("hello", |(name,): (Value,)| async move {
            let name = match &name {
                Value::String(s) => s.as_str().unwrap_or("").to_string(),
                other => other.to_string(),
            };
            Ok::<_, ServiceError>(format!("Hello, {name}!"))
        })
        .doc("Greet someone by name.")
        .args(["name"])
        .method("add", |(a, b): (Value, Value)| async move {
            arith(&a, &b, i64::checked_add, |x, y| x + y)
        })
        .doc("Add two numbers.")
        .args(["a", "b"])
        .method("subtract", |(a, b): (Value, Value)| async move {
            arith(&a, &b, i64::checked_sub, |x, y| x - y)
        })
        .doc("Subtract b from a.")
        .args(["a", "b"])
        .method("multiply", |(a, b): (Value, Value)| async move {
            arith(&a, &b, i64::checked_mul, |x, y| x * y)
        })
        .doc("Multiply two numbers.")
        .args(["a", "b"])
        .method("divide", |(a, b): (Value, Value)| async move {
            let (a, b) = (Num::from_value(&a)?.f(), Num::from_value(&b)?.f());
            if b == 0.0 {
                return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
            }
            Ok(Value::F64(a / b))
        })
        .doc("Divide a by b (true division; dividing by zero raises ZeroDivisionError).")
        .args(["a", "b"])
}

fn echo() -> Service {
    Service::new("echo")
        .dynamic("echo", |args| async move {
            match <[Value; 1]>::try_from(args) {
                Ok([v]) => Ok(v),
                Err(args) => Err(ServiceError::type_error(format!(
                    "echo() takes 1 positional argument but {} were given",
                    args.len()
                ))),
            }
        })
        .doc("Return the value unchanged, msgpack type included.")
        .args(["value"])
        .stream("count", |(n,): (u64,)| {
            futures::stream::iter(0..n).map(Ok::<_, ServiceError>)
        })
        .doc("Stream the integers 0 to n-1, one item each.")
        .args(["n"])
}

/// Add `NAME=COMMAND` as a method of `service`: the call's arguments become
/// the command's argv (`$1`, `$2`, …, never interpreted by the shell), its
/// stdout is the result, and a non-zero exit is an `ERR` carrying stderr.
pub fn add_exec(service: Service, spec: &str) -> Result<Service, String> {
    let (name, command) = spec
        .split_once('=')
        .filter(|(n, c)| !n.is_empty() && !c.trim().is_empty())
        .ok_or_else(|| format!("--exec expects NAME=COMMAND, got {spec:?}"))?;
    let (name, command) = (name.to_string(), command.to_string());
    let doc = format!("Run `{command}` with the arguments as argv; returns its stdout.");
    let method = name.clone();
    Ok(service
        .dynamic(&name, move |args| {
            let command = command.clone();
            let method = method.clone();
            async move { run_exec(&method, &command, args).await }
        })
        .doc(doc)
        .args(["*args"]))
}

async fn run_exec(name: &str, command: &str, args: Vec<Value>) -> Result<Value, ServiceError> {
    let argv: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::String(s) => s.as_str().unwrap_or("").to_string(),
            Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            other => crate::value::to_json(other).to_string(),
        })
        .collect();
    // `sh -c 'COMMAND "$@"' NAME ARGS…`: arguments are positional
    // parameters, so nothing a caller sends is parsed by the shell.
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg(name)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ServiceError::new("ExecError", format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
        if out.ends_with('\n') {
            out.pop();
        }
        Ok(Value::from(out))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        let status = output
            .status
            .code()
            .map_or("a signal".to_string(), |c| format!("status {c}"));
        let first = stderr.lines().last().unwrap_or("").to_string();
        let message = if first.is_empty() {
            format!("{name} exited with {status}")
        } else {
            format!("{name} exited with {status}: {first}")
        };
        Err(ServiceError::new("ExecError", message).with_traceback(stderr))
    }
}
