//! Error types: [`Error`] is what a caller sees; [`ServiceError`] is what a
//! handler returns and what travels in an `ERR` event.
//!
//! Both are plain enums/structs on the hot path (no boxing unless a source
//! is kept). Causes are kept as [`std::error::Error::source`], not flattened
//! into the message, so an error reporter can print the whole chain.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A kept cause: shared, so [`Error`] stays `Clone`.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// An exception raised by the remote side, as carried by `ERR`
/// `[name, message, traceback]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// Exception type name, e.g. `NameError`, `ZeroDivisionError`.
    pub name: String,
    /// Human message, e.g. `division by zero`.
    pub message: String,
    /// Remote traceback (Python peers send one; may be empty).
    pub traceback: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}: {}", self.name, self.message)
        }
    }
}

impl std::error::Error for RemoteError {}

/// The most an `ERR`'s `[name, message, traceback]` may take decoded.
const ERR_MAX_DECODED: usize = 1 << 20;

/// Read `ERR` args: `[name, message, traceback]` (v2+) or `[repr]` (v1).
pub(crate) fn parse_err(args: &[u8]) -> RemoteError {
    let items: Vec<String> = match crate::protocol::budget::read_value(args, ERR_MAX_DECODED) {
        Ok(rmpv::Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                rmpv::Value::String(s) => s.into_str().unwrap_or_default(),
                rmpv::Value::Nil => String::new(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut it = items.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(name), Some(message), tb) => RemoteError {
            name,
            message,
            traceback: tb.unwrap_or_default(),
        },
        (Some(repr), None, _) => RemoteError {
            name: "RemoteError".into(),
            message: repr,
            traceback: String::new(),
        },
        _ => RemoteError {
            name: "RemoteError".into(),
            message: "malformed ERR reply".into(),
            traceback: String::new(),
        },
    }
}

/// Everything that can go wrong with a call, a server or a one-way socket.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote method raised; the server is fine.
    #[error("remote error {0}")]
    Remote(RemoteError),
    /// No reply within the call's timeout.
    #[error("timeout after {}, when calling remote method {method}{}", fmt_secs(*after), unsent.as_deref().map(|u| format!(": it was never sent: {u}")).unwrap_or_default())]
    Timeout {
        /// Method called.
        method: String,
        /// The timeout that expired.
        after: Duration,
        /// Why the request never left, when it did not (no server
        /// connected: a refused connection, a CURVE handshake that failed).
        unsent: Option<String>,
    },
    /// The remote stopped heartbeating or its connection dropped mid-call.
    #[error("lost remote while calling {method}: {reason}")]
    LostRemote {
        /// Method called.
        method: String,
        /// What was observed.
        reason: String,
    },
    /// The network or a socket failed: an endpoint could not be bound, a
    /// socket errored.
    #[error("transport error: {context}")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<Source>,
    },
    /// A builder or call was given something unusable (an endpoint that does
    /// not parse, no endpoint at all).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Arguments (or a result) could not be turned into msgpack.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded, e.g. `arguments of add`.
        what: String,
        /// The serializer's error.
        #[source]
        source: Source,
    },
    /// A reply (or an item) could not be converted into the requested Rust
    /// type.
    #[error("cannot decode {what}")]
    Decode {
        /// What was being decoded, e.g. `result of add`.
        what: String,
        /// The deserializer's error.
        #[source]
        source: Source,
    },
    /// The peer broke the zerorpc protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A call that streams items (a client-stream or bidirectional call)
    /// to a server without zrpc's extension for it (zerorpc-python,
    /// zerorpc-node, an older zrpc): it answered the request without
    /// running the method (or, as zerorpc-node does, ignored it: then this
    /// comes after two heartbeat periods, at most the call's timeout), and
    /// no item was sent.
    #[error("{method}: the server does not take a stream of items from its caller, a zrpc extension ({answer})")]
    NoStreams {
        /// Method called.
        method: String,
        /// What the server answered (its `NameError`).
        answer: RemoteError,
    },
    /// The caller's stream of items failed (an item could not be encoded,
    /// or the stream yielded an error): the server was told, and cancelled
    /// the call.
    #[error("the items sent to {method} failed: {error}; the call was cancelled")]
    ItemsFailed {
        /// Method called.
        method: String,
        /// Why.
        error: ServiceError,
    },
    /// A call to a server by name ([`CallOptions::to`](crate::CallOptions::to))
    /// that none of the client's servers has; nothing was sent.
    #[error("no server named {name:?} among this client's servers: {servers}")]
    UnknownServer {
        /// The name asked for.
        name: String,
        /// The servers there are, with their names.
        servers: String,
    },
    /// Keyword arguments that do not fit the method's parameters (an
    /// unknown name, a missing value), or a server that does not report
    /// its parameters; found before anything was sent.
    #[error("{0}")]
    Arguments(String),
    /// A `close(grace)` ended its grace period with work left: requests
    /// cancelled, calls failed or events not delivered.
    #[error("{count} {what} after {}", fmt_secs(*grace))]
    Unfinished {
        /// How many.
        count: usize,
        /// Of what, e.g. `requests cancelled`.
        what: &'static str,
        /// The grace period that ran out.
        grace: Duration,
    },
    /// The client, server or socket was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    /// The kind of failure as one word (`Timeout`, `LostRemote`,
    /// `RemoteError` …): what a failed call is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Remote(_) => "RemoteError",
            Error::Timeout { .. } => "Timeout",
            Error::LostRemote { .. } => "LostRemote",
            Error::Transport { .. } => "TransportError",
            Error::Config(_) => "ConfigError",
            Error::Encode { .. } => "EncodeError",
            Error::Decode { .. } => "DecodeError",
            Error::Protocol(_) => "ProtocolError",
            Error::Arguments(_) => "ArgumentError",
            Error::UnknownServer { .. } => "UnknownServer",
            Error::NoStreams { .. } => "NoStreams",
            Error::ItemsFailed { .. } => "ItemsFailed",
            Error::Unfinished { .. } => "Unfinished",
            Error::Closed => "Closed",
        }
    }

    /// The remote exception, if this is one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn transport<E>(context: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Transport {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    pub(crate) fn encode<E>(what: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Encode {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn decode<E>(what: impl Into<String>, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Decode {
            what: what.into(),
            source: Arc::new(source),
        }
    }
}

impl From<RemoteError> for Error {
    fn from(r: RemoteError) -> Self {
        Error::Remote(r)
    }
}

impl From<zerorpc_zeromq::ZmqError> for Error {
    fn from(e: zerorpc_zeromq::ZmqError) -> Self {
        Error::transport("socket error", e)
    }
}

/// How much of a caller's own input an error message quotes (a method
/// name, a wrong argument): enough to recognise it, never the whole of a
/// 40 MiB argument.
pub const QUOTE_LIMIT: usize = 200;

/// `s`, cut to about `max` bytes (on a character boundary) with a note of
/// how long it was.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len()).into()
}

/// Seconds as people write them: `30s`, `0.5s`.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

/// An error raised by a handler; the server sends it as `ERR [name,
/// message, traceback]`, which a Python caller sees as a `RemoteError` of
/// that name.
///
/// `?` converts the common standard errors (named after their Rust type,
/// e.g. `ParseIntError`), a [`RemoteError`] or a call's [`Error`] (a remote
/// exception keeps its name, message and traceback, so a handler that calls
/// another service re-raises its errors unchanged). Any other error converts
/// with [`ServiceError::from_error`], or pick the name a Python peer will
/// see with [`ServiceError::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
#[non_exhaustive]
pub struct ServiceError {
    /// Exception type name sent to the caller.
    pub name: String,
    /// Human message.
    pub message: String,
    /// Optional traceback or detail.
    pub traceback: String,
}

impl ServiceError {
    /// An error with an explicit exception name, e.g. `("ValueError", "bad")`.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
            name: name.into(),
            message: message.into(),
            traceback: String::new(),
        }
    }

    /// A generic `Error` with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new("Error", message)
    }

    /// Attach a traceback / detail text.
    pub fn with_traceback(mut self, tb: impl Into<String>) -> Self {
        self.traceback = tb.into();
        self
    }

    /// Python-style `TypeError`, used for argument mismatches.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }

    /// Any error, named after its Rust type (`ParseIntError` for
    /// `core::num::ParseIntError`), with its message and the messages of its
    /// sources as the traceback: `.map_err(ServiceError::from_error)?`.
    pub fn from_error<E: std::error::Error>(e: E) -> Self {
        let full = std::any::type_name::<E>();
        // `core::num::error::ParseIntError` -> `ParseIntError`; generics trimmed.
        let base = full.split('<').next().unwrap_or(full);
        let name = base.rsplit("::").next().unwrap_or(base);
        let mut err = ServiceError::new(name, e.to_string());
        let mut source = e.source();
        while let Some(s) = source {
            err.traceback.push_str(&format!("caused by: {s}\n"));
            source = s.source();
        }
        err
    }
}

impl From<RemoteError> for ServiceError {
    fn from(r: RemoteError) -> Self {
        ServiceError {
            name: r.name,
            message: r.message,
            traceback: r.traceback,
        }
    }
}

/// An error and its causes on one line: `cannot bind …: Address in use`.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Many errors already quote their cause (zeromq's "Network Error:
        // <io error>"): say it once.
        let text = s.to_string();
        if !line.ends_with(&text) {
            line.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    line
}

/// A failed call made from inside a handler: a remote exception is re-raised
/// as it came; anything else is named after the variant (`Timeout`,
/// `LostRemote`, …).
impl From<Error> for ServiceError {
    fn from(e: Error) -> Self {
        if let Error::Remote(r) = &e {
            return r.clone().into();
        }
        ServiceError::new(e.kind(), e.to_string())
    }
}

/// `?` on these standard errors works in handlers, naming the exception
/// after the Rust type.
macro_rules! from_std_errors {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for ServiceError {
            fn from(e: $ty) -> Self {
                ServiceError::from_error(e)
            }
        }
    )*};
}

from_std_errors!(
    std::io::Error,
    std::fmt::Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::num::TryFromIntError,
    std::str::ParseBoolError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::char::ParseCharError,
    std::net::AddrParseError,
    std::time::SystemTimeError,
    rmp_serde::decode::Error,
    rmp_serde::encode::Error,
    rmpv::ext::Error,
);

/// A boxed error (what `Box<dyn Error>`-returning helpers give): named
/// `Error`, with its message.
impl From<Box<dyn std::error::Error + Send + Sync>> for ServiceError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        ServiceError::msg(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn long_quotes_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(100); // 200 bytes
        let c = clip(&long, 11);
        assert!(c.starts_with("ééééé…"), "{c}");
        assert!(c.ends_with("(200 bytes in all)"), "{c}");
    }

    #[test]
    fn std_errors_convert_with_their_type_name() {
        fn parse(s: &str) -> Result<i64, ServiceError> {
            Ok(s.parse::<i64>()?)
        }
        let e = parse("x").unwrap_err();
        assert_eq!(e.name, "ParseIntError");
        assert_eq!(e.message, "invalid digit found in string");
    }

    #[test]
    fn a_remote_error_reraised_keeps_its_name_message_and_traceback() {
        let remote = RemoteError {
            name: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            traceback: "Traceback (most recent call last): ...".into(),
        };
        fn reraise(r: Result<(), Error>) -> Result<(), ServiceError> {
            r?;
            Ok(())
        }
        let e = reraise(Err(Error::Remote(remote.clone()))).unwrap_err();
        assert_eq!(
            (e.name, e.message, e.traceback),
            (remote.name, remote.message, remote.traceback)
        );
        let timeout = Error::Timeout {
            method: "add".into(),
            after: Duration::from_millis(1500),
            unsent: None,
        };
        let e = reraise(Err(timeout)).unwrap_err();
        assert_eq!(e.name, "Timeout");
        assert_eq!(
            e.message,
            "timeout after 1.5s, when calling remote method add"
        );
    }

    #[test]
    fn sources_are_kept_not_flattened() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = Error::transport("cannot bind tcp://127.0.0.1:1", io);
        assert_eq!(
            e.to_string(),
            "transport error: cannot bind tcp://127.0.0.1:1"
        );
        let source = e.source().expect("the io error is kept");
        assert_eq!(source.to_string(), "address in use");
        // A decode failure is a Decode error with the deserializer's cause.
        let bad = rmp_serde::from_slice::<i64>(&[0xa1, b'x']).unwrap_err();
        let e = Error::decode("result of add", bad);
        assert!(matches!(e, Error::Decode { .. }));
        assert!(e.source().is_some());
        // ServiceError is an Error too (so it composes with other crates).
        let s: Box<dyn std::error::Error> = Box::new(ServiceError::new("ValueError", "bad"));
        assert_eq!(s.to_string(), "ValueError: bad");
    }
}
