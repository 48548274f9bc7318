//! Error types: [`Error`] is what a caller sees; [`ServiceError`] is what a
//! handler returns and what travels in an `ERR` event.

use std::fmt;
use std::time::Duration;

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

/// Everything that can go wrong with a call.
#[derive(Debug, Clone)]
pub enum Error {
    /// The remote method raised; the server is fine.
    Remote(RemoteError),
    /// No reply within the call's timeout. The server is not told; its reply,
    /// if any, is dropped.
    Timeout {
        /// Method called.
        method: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The remote stopped heartbeating or its connection dropped mid-call.
    LostRemote {
        /// Method called.
        method: String,
        /// What was observed.
        reason: String,
    },
    /// Transport trouble: bad endpoint, bind failure, socket error.
    Transport(String),
    /// The reply (or the arguments) could not be converted to/from the
    /// requested Rust types.
    Decode(String),
    /// The peer broke the zerorpc protocol.
    Protocol(String),
    /// The client or server was closed.
    Closed,
}

impl Error {
    /// The remote exception, if this is one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Error::Remote(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote(r) => write!(f, "remote error {r}"),
            Error::Timeout { method, after } => {
                write!(
                    f,
                    "timeout after {}, when calling remote method {method}",
                    fmt_secs(*after)
                )
            }
            Error::LostRemote { method, reason } => {
                write!(f, "lost remote while calling {method}: {reason}")
            }
            Error::Transport(m) => write!(f, "transport error: {m}"),
            Error::Decode(m) => write!(f, "decode error: {m}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Closed => f.write_str("closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<zeromq::ZmqError> for Error {
    fn from(e: zeromq::ZmqError) -> Self {
        Error::Transport(e.to_string())
    }
}

pub(crate) fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

/// An error raised by a handler; the server sends it as `ERR`.
///
/// Any `std::error::Error` converts into it (so `?` works in handlers), named
/// after its Rust type; use [`ServiceError::new`] to pick the exception name
/// a Python peer will see.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl<E: std::error::Error> From<E> for ServiceError {
    fn from(e: E) -> Self {
        let full = std::any::type_name::<E>();
        // `core::num::error::ParseIntError` -> `ParseIntError`; generics trimmed.
        let base = full.split('<').next().unwrap_or(full);
        let name = base.rsplit("::").next().unwrap_or(base);
        ServiceError::new(name, e.to_string())
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
