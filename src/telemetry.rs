//! Metrics, through the [`metrics`] facade: nothing is recorded until the
//! application installs a recorder (a Prometheus exporter, say), and then
//! every server and client started after it reports there.
//!
//! Handles are registered once per method when a server starts (or when a
//! client first calls a method), so the hot path only bumps an atomic. A
//! server or client started while no recorder is installed skips the work
//! altogether (no lookups, no clock readings): install the recorder first.
//! Method labels are bounded:
//! a server labels only the methods it serves (and the introspection ones);
//! anything else a caller names is counted as `<other>`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `zrpc_server_requests_total` | counter | `method`, `outcome` (`ok`, `error`, `cancelled`, `deadline_exceeded`) |
//! | `zrpc_server_request_duration_seconds` | histogram | `method` (requests answered) |
//! | `zrpc_server_in_flight` | gauge | requests running or waiting for a pool slot |
//! | `zrpc_server_rejected_total` | counter | `reason` (`busy`, `stopping`, `malformed`, `duplicate`, `expired`, `version`) |
//! | `zrpc_server_lost_total` | counter | `reason` (`heartbeat`, `disconnect`): requests cancelled because their client went away |
//! | `zrpc_server_dropped_replies_total` | counter | replies dropped for a client that does not read |
//! | `zrpc_server_connected_peers` | gauge | clients connected to bound endpoints |
//! | `zrpc_client_calls_total` | counter | `method`, `outcome` (`ok`, `error`, `timeout`, `lost`, `cancelled`, `failed`) |
//! | `zrpc_client_call_duration_seconds` | histogram | `method` (until the reply, or a stream's first item) |
//! | `zrpc_client_in_flight` | gauge | calls waiting for their reply |

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Is a recorder installed? The facade's stand-in when none is, its
/// `NoopRecorder`, is the only recorder without state (a zero-sized type);
/// a real one keeps its metrics somewhere.
pub(crate) fn recorder_installed() -> bool {
    metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
}
use crate::names::NameMap;
use std::sync::Arc;
use std::time::Duration;

/// How a server request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Error,
    Cancelled,
    DeadlineExceeded,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
            Outcome::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

/// Why a server refused a request before running it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rejected {
    Busy,
    Stopping,
    Malformed,
    Duplicate,
    Expired,
    Version,
}

/// Why a server's client was judged gone.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lost {
    Heartbeat,
    Disconnect,
}

/// One method's handles: a counter per outcome, and the durations of the
/// calls that were answered.
#[derive(Debug)]
pub(crate) struct Timed<const N: usize> {
    outcomes: [Counter; N],
    duration: Histogram,
}

impl<const N: usize> Timed<N> {
    fn new(total: &'static str, seconds: &'static str, method: &str, outcomes: [&str; N]) -> Self {
        Timed {
            outcomes: outcomes.map(|outcome| {
                counter!(total, "method" => method.to_string(), "outcome" => outcome.to_string())
            }),
            duration: histogram!(seconds, "method" => method.to_string()),
        }
    }

    fn count(&self, outcome: usize, answered: bool, elapsed: Duration) {
        self.outcomes[outcome].increment(1);
        if answered {
            self.duration.record(elapsed.as_secs_f64());
        }
    }
}

/// One method's server handles.
pub(crate) type MethodMetrics = Timed<4>;

impl MethodMetrics {
    fn for_method(method: &str) -> Self {
        Timed::new(
            "zrpc_server_requests_total",
            "zrpc_server_request_duration_seconds",
            method,
            ["ok", "error", "cancelled", "deadline_exceeded"],
        )
    }

    /// Count one request that ended with `outcome` after `elapsed` (the
    /// duration is recorded for answered requests only).
    pub(crate) fn ended(&self, outcome: Outcome, elapsed: Duration) {
        let answered = matches!(outcome, Outcome::Ok | Outcome::Error);
        self.count(outcome as usize, answered, elapsed);
    }
}

/// A server's handles.
#[derive(Debug)]
pub(crate) struct ServerMetrics {
    /// A recorder was installed when the server started.
    pub(crate) enabled: bool,
    methods: NameMap<Arc<MethodMetrics>>,
    other: Arc<MethodMetrics>,
    pub(crate) in_flight: Gauge,
    rejected: [Counter; 6],
    lost: [Counter; 2],
}

impl ServerMetrics {
    /// Handles for `methods` (and the introspection methods).
    pub(crate) fn new<'a>(methods: impl IntoIterator<Item = &'a str>) -> Self {
        let enabled = recorder_installed();
        let methods = methods
            .into_iter()
            .chain(crate::service::INTROSPECTION.iter().copied())
            .filter(|_| enabled)
            .map(|m| (m.to_string(), Arc::new(MethodMetrics::for_method(m))))
            .collect();
        ServerMetrics {
            enabled,
            methods,
            other: Arc::new(MethodMetrics::for_method("<other>")),
            in_flight: gauge!("zrpc_server_in_flight"),
            rejected: [
                "busy",
                "stopping",
                "malformed",
                "duplicate",
                "expired",
                "version",
            ]
            .map(|reason| counter!("zrpc_server_rejected_total", "reason" => reason)),
            lost: ["heartbeat", "disconnect"]
                .map(|reason| counter!("zrpc_server_lost_total", "reason" => reason)),
        }
    }

    /// The handles of `method` (no-ops without a recorder).
    pub(crate) fn method(&self, method: &str) -> &Arc<MethodMetrics> {
        if !self.enabled {
            return &self.other;
        }
        self.methods.get(method).unwrap_or(&self.other)
    }

    pub(crate) fn rejected(&self, why: Rejected) {
        self.rejected[why as usize].increment(1);
    }

    pub(crate) fn lost(&self, why: Lost, requests: usize) {
        self.lost[why as usize].increment(requests as u64);
    }
}

/// How a client call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Ok,
    Error,
    Timeout,
    Lost,
    Cancelled,
    Failed,
}

impl CallOutcome {
    pub(crate) fn of(result: &Result<(), &crate::Error>) -> CallOutcome {
        use crate::Error;
        match result {
            Ok(()) => CallOutcome::Ok,
            Err(Error::Remote(_)) => CallOutcome::Error,
            Err(Error::Timeout { .. }) => CallOutcome::Timeout,
            Err(Error::LostRemote { .. }) => CallOutcome::Lost,
            Err(_) => CallOutcome::Failed,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Lost => "lost",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Failed => "failed",
        }
    }
}

/// One method's client handles.
pub(crate) type CallMetrics = Timed<6>;

impl CallMetrics {
    pub(crate) fn ended(&self, outcome: CallOutcome, elapsed: Duration) {
        let answered = matches!(outcome, CallOutcome::Ok | CallOutcome::Error);
        self.count(outcome as usize, answered, elapsed);
    }
}

/// A client's handles, registered per method on its first call. (A
/// client's method names come from its own code, not from the network.)
#[derive(Debug)]
pub(crate) struct ClientMetrics {
    /// A recorder was installed when the client started.
    enabled: bool,
    methods: NameMap<Arc<CallMetrics>>,
    pub(crate) in_flight: Gauge,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        ClientMetrics {
            enabled: recorder_installed(),
            methods: NameMap::default(),
            in_flight: gauge!("zrpc_client_in_flight"),
        }
    }
}

/// What one call is counted with: the client's in-flight gauge (raised
/// when it starts, lowered when it ends), and its method's handles (`None`
/// without a recorder).
pub(crate) struct CallCounters {
    pub(crate) handles: Option<Arc<CallMetrics>>,
    pub(crate) in_flight: Gauge,
}

impl ClientMetrics {
    /// A call of `method` starts: it is counted in flight.
    pub(crate) fn started(&mut self, method: &str) -> CallCounters {
        let counters = CallCounters {
            handles: self.method(method),
            in_flight: self.in_flight.clone(),
        };
        counters.in_flight.increment(1.0);
        counters
    }

    /// The handles of `method`; `None` without a recorder.
    pub(crate) fn method(&mut self, method: &str) -> Option<Arc<CallMetrics>> {
        if !self.enabled {
            return None;
        }
        if let Some(m) = self.methods.get(method) {
            return Some(m.clone());
        }
        let handles = Arc::new(Timed::new(
            "zrpc_client_calls_total",
            "zrpc_client_call_duration_seconds",
            method,
            ["ok", "error", "timeout", "lost", "cancelled", "failed"],
        ));
        self.methods.insert(method.to_string(), handles.clone());
        Some(handles)
    }
}

/// Whether a call or request should build its span at all: not when no
/// tracing subscriber was ever set. (`debug_span!` would still be built
/// then, and with tracing's `log` feature on, which another dependency may
/// turn on, its fields would be walked for the `log` crate on every call.)
pub(crate) fn spans_wanted() -> bool {
    tracing::dispatcher::has_been_set()
}
