//! Services `zrpc --server` offers without any code: `time`, `calc` and
//! `echo` (shell commands as methods are in `exec.rs`).

use chrono::format::{Item, StrftimeItems};
use std::time::Duration;
use zerorpc::{Items, Service, ServiceError, Value};

/// Names of the built-in services.
pub(super) const NAMES: &[&str] = &["time", "calc", "echo"];

/// The built-in service called `name`, if any.
pub(super) fn service(name: &str) -> Option<Service> {
    match name {
        "time" => Some(time()),
        "calc" => Some(calc()),
        "echo" => Some(echo()),
        _ => None,
    }
}

/// The current time, and waiting.
#[zerorpc::service(name = "time")]
trait Time {
    /// Return the current time in seconds since the Epoch, as a float.
    async fn time(&self) -> f64;

    /// Format the current local time, e.g. strftime('%Y/%m/%d').
    // Formatting is work in proportion to the format (4 MiB of `%c` made
    // 1.3 GB): bounded, and off the server's core.
    #[zerorpc(blocking)]
    fn strftime(&self, format: String) -> Result<String, ServiceError>;

    /// Wait for the given number of seconds (without blocking other calls).
    async fn sleep(&self, seconds: f64) -> Result<(), ServiceError>;
}

struct Clock;

impl Time for Clock {
    async fn time(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }

    fn strftime(&self, format: String) -> Result<String, ServiceError> {
        strftime(&format)
    }

    async fn sleep(&self, seconds: f64) -> Result<(), ServiceError> {
        if !(0.0..=1e9).contains(&seconds) {
            return Err(ServiceError::new(
                "ValueError",
                "sleep length must be a non-negative number of seconds",
            ));
        }
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        Ok(())
    }
}

fn time() -> Service {
    Clock.into_service()
}

/// The longest format `strftime` takes.
const MAX_FORMAT: usize = 1024;

fn strftime(format: &str) -> Result<String, ServiceError> {
    if format.len() > MAX_FORMAT {
        return Err(ServiceError::new(
            "ValueError",
            format!(
                "format is {} bytes long; at most {MAX_FORMAT}",
                format.len()
            ),
        ));
    }
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
                    .map_err(|_| {
                        let s = zerorpc::error::clip(s, zerorpc::error::QUOTE_LIMIT);
                        ServiceError::type_error(format!("expected a number, got {s:?}"))
                    })
            }
            other => {
                let other = other.to_string();
                let other = zerorpc::error::clip(&other, zerorpc::error::QUOTE_LIMIT);
                Err(ServiceError::type_error(format!(
                    "expected a number, got {other}"
                )))
            }
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

/// Arithmetic on numbers or numeric strings (the `zerorpc` command line
/// sends every argument as a string).
#[zerorpc::service(name = "calc")]
trait Calc {
    /// Greet someone by name.
    async fn hello(&self, name: Value) -> String;

    /// Add two numbers.
    async fn add(&self, a: Value, b: Value) -> Result<Value, ServiceError>;

    /// Subtract b from a.
    async fn subtract(&self, a: Value, b: Value) -> Result<Value, ServiceError>;

    /// Multiply two numbers.
    async fn multiply(&self, a: Value, b: Value) -> Result<Value, ServiceError>;

    /// Divide a by b (true division; dividing by zero raises ZeroDivisionError).
    async fn divide(&self, a: Value, b: Value) -> Result<Value, ServiceError>;
}

struct Calculator;

impl Calc for Calculator {
    async fn hello(&self, name: Value) -> String {
        let name = match &name {
            Value::String(s) => s.as_str().unwrap_or("").to_string(),
            other => other.to_string(),
        };
        format!("Hello, {name}!")
    }

    async fn add(&self, a: Value, b: Value) -> Result<Value, ServiceError> {
        arith(&a, &b, i64::checked_add, |x, y| x + y)
    }

    async fn subtract(&self, a: Value, b: Value) -> Result<Value, ServiceError> {
        arith(&a, &b, i64::checked_sub, |x, y| x - y)
    }

    async fn multiply(&self, a: Value, b: Value) -> Result<Value, ServiceError> {
        arith(&a, &b, i64::checked_mul, |x, y| x * y)
    }

    async fn divide(&self, a: Value, b: Value) -> Result<Value, ServiceError> {
        let (a, b) = (Num::from_value(&a)?.f(), Num::from_value(&b)?.f());
        if b == 0.0 {
            return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
        }
        Ok(Value::F64(a / b))
    }
}

fn calc() -> Service {
    Calculator.into_service()
}

/// Streams to read and to send (`echo` itself is added dynamically: see
/// [`echo`]).
#[zerorpc::service(name = "echo")]
trait Counting {
    /// Stream the integers 0 to n-1, one item each.
    fn count(&self, n: u64) -> impl Stream<Item = u64>;

    /// Add up the numbers streamed to it (a client stream: `seq 1 100 |
    /// zrpc --stdin ADDRESS sum`).
    async fn sum(&self, numbers: Items<Value>) -> Result<Value, ServiceError>;

    /// Upper-case each string streamed to it, answering each as it arrives
    /// (a bidirectional stream).
    fn upper(&self, words: Items<Value>) -> impl Stream<Item = Result<String, ServiceError>>;

    /// Count the pieces (binary or strings) streamed to it and their bytes:
    /// [pieces, bytes] (an upload that keeps nothing).
    async fn size(&self, pieces: Items<zerorpc::Blob>) -> (u64, u64);
}

struct Counter;

impl Counting for Counter {
    fn count(&self, n: u64) -> impl futures::Stream<Item = u64> + Send + 'static {
        futures::stream::iter(0..n)
    }

    async fn sum(&self, mut numbers: Items<Value>) -> Result<Value, ServiceError> {
        use futures::StreamExt;
        let mut total = Num::Int(0);
        while let Some(n) = numbers.next().await {
            total = match (total, Num::from_value(&n)?) {
                (Num::Int(x), Num::Int(y)) => Num::Int(
                    x.checked_add(y)
                        .ok_or_else(|| ServiceError::new("OverflowError", "integer overflow"))?,
                ),
                (x, y) => Num::Float(x.f() + y.f()),
            };
        }
        Ok(total.value())
    }

    async fn size(&self, pieces: Items<zerorpc::Blob>) -> (u64, u64) {
        use futures::StreamExt;
        pieces
            .fold((0, 0), |(n, bytes), piece| async move {
                (n + 1, bytes + piece.len() as u64)
            })
            .await
    }

    fn upper(
        &self,
        words: Items<Value>,
    ) -> impl futures::Stream<Item = Result<String, ServiceError>> + Send + 'static {
        use futures::StreamExt;
        words.map(|w| match w {
            Value::String(s) if s.as_str().is_some() => Ok(s.as_str().unwrap_or("").to_uppercase()),
            other => {
                let other = other.to_string();
                let other = zerorpc::error::clip(&other, zerorpc::error::QUOTE_LIMIT);
                Err(ServiceError::type_error(format!(
                    "upper() takes strings, got {other}"
                )))
            }
        })
    }
}

/// `echo` is a dynamic method: it returns exactly what it got, msgpack
/// types and all (ext types, strings that are not UTF-8), which decoding
/// into a typed `Value` parameter would not keep.
fn echo() -> Service {
    Counter
        .into_service()
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
}
