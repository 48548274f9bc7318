//! Notifications, as oslo.messaging has them: a [`Notifier`] publishes
//! `(ctxt, publisher_id, event_type, payload)` at a [`Priority`]; a
//! [`NotificationListener`] hands those it wants to an endpoint's method
//! named after the priority. On PUB/SUB, at most once.
//!
//! Each notification is two frames: a topic, `"<priority> <event_type>"`,
//! then an ordinary one-way event `[header, priority, [ctxt, publisher_id,
//! event_type, payload, metadata]]`. A listener subscribes to the topics it
//! wants (each priority, and the literal start of each event-type pattern),
//! so the publisher sends it nothing else; it checks the full patterns
//! itself. A plain zerorpc subscriber (zrpc's or zerorpc-python's) reads
//! the last frame as the event: its method named after the priority gets
//! the five arguments (PROTOCOL.md §11.1).

use super::receiver::{Filter, Receiver, ReceiverBuilder, Subscriber};
use super::sender::{Publisher, SenderBuilder};
use crate::client::encode_args;
use crate::error::Error;
use crate::service::{Args, Service};
use rmpv::Value;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How much a notification matters, as oslo.messaging's priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// `audit`
    Audit,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn` (oslo also says `warning`)
    Warn,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `sample`
    Sample,
}

impl Priority {
    /// Every priority.
    pub const ALL: [Priority; 7] = [
        Priority::Audit,
        Priority::Debug,
        Priority::Info,
        Priority::Warn,
        Priority::Error,
        Priority::Critical,
        Priority::Sample,
    ];

    /// The name on the wire, and of the endpoint's method.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Audit => "audit",
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Warn => "warn",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Sample => "sample",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a priority.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a priority: {0:?} (audit, debug, info, warn, error, critical, sample)")]
pub struct ParsePriorityError(String);

impl FromStr for Priority {
    type Err = ParsePriorityError;

    /// A priority's name, any case; `warning` for `warn`, as oslo.
    fn from_str(s: &str) -> Result<Priority, ParsePriorityError> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "warning" => Ok(Priority::Warn),
            _ => Priority::ALL
                .into_iter()
                .find(|p| p.as_str() == lower)
                .ok_or_else(|| ParsePriorityError(crate::error::clip(s, 64).into_owned())),
        }
    }
}

/// Publishes notifications ([`Notifier::builder`]). Wire-compatible with
/// any zerorpc subscriber; [`NotificationListener`]s filter at the
/// publisher.
///
/// ```no_run
/// # async fn demo() -> Result<(), zerorpc::Error> {
/// use zerorpc::oneway::Notifier;
/// let notifier = Notifier::builder("compute.host1")
///     .bind("tcp://127.0.0.1:4246")
///     .start()
///     .await?;
/// notifier.info(
///     serde_json::json!({"user": "ada"}),
///     "compute.instance.create.end",
///     serde_json::json!({"instance_id": "i-1"}),
/// )?;
/// # Ok(()) }
/// ```
pub struct Notifier {
    publisher: Publisher,
    publisher_id: String,
}

/// Configures a [`Notifier`]: where it binds or connects.
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct NotifierBuilder {
    sender: SenderBuilder<Publisher>,
    publisher_id: String,
}

impl NotifierBuilder {
    /// Bind an endpoint for listeners to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.sender = self.sender.bind(endpoint);
        self
    }

    /// Connect to a bound listener (repeatable).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.sender = self.sender.connect(endpoint);
        self
    }

    /// Secure every connection with CURVE.
    pub fn curve(mut self, curve: crate::security::Curve) -> Self {
        self.sender = self.sender.curve(curve);
        self
    }

    /// Open the sockets.
    pub async fn start(self) -> Result<Notifier, Error> {
        Ok(Notifier {
            publisher: self.sender.start().await?,
            publisher_id: self.publisher_id,
        })
    }
}

impl Notifier {
    /// A notifier that says it is `publisher_id` (oslo's, e.g.
    /// `compute.host1`).
    pub fn builder(publisher_id: impl Into<String>) -> NotifierBuilder {
        NotifierBuilder {
            sender: Publisher::builder(),
            publisher_id: publisher_id.into(),
        }
    }

    /// The endpoints, bound ones resolved.
    pub fn endpoints(&self) -> &[String] {
        self.publisher.endpoints()
    }

    /// Publish `payload` as an `event_type` notification at `priority`,
    /// with the request context `ctxt` (any serde value, usually a map).
    /// Like any publish, it reaches the listeners connected and subscribed
    /// now, at most once.
    pub fn notify<C: Serialize, P: Serialize>(
        &self,
        priority: Priority,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        let metadata = std::collections::BTreeMap::from([
            ("message_id", message_id()),
            ("timestamp", timestamp(SystemTime::now())),
        ]);
        let args = encode_args(&(&ctxt, &self.publisher_id, event_type, &payload, metadata))?;
        let topic = format!("{priority} {event_type}");
        self.publisher
            .publish_topic(&topic, priority.as_str(), &args)
    }

    /// [`Notifier::notify`] at `audit`.
    pub fn audit<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Audit, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `debug`.
    pub fn debug<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Debug, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `info`.
    pub fn info<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Info, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `warn`.
    pub fn warn<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Warn, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `error`.
    pub fn error<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Error, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `critical`.
    pub fn critical<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Critical, ctxt, event_type, payload)
    }

    /// [`Notifier::notify`] at `sample`.
    pub fn sample<C: Serialize, P: Serialize>(
        &self,
        ctxt: C,
        event_type: &str,
        payload: P,
    ) -> Result<(), Error> {
        self.notify(Priority::Sample, ctxt, event_type, payload)
    }

    /// Wait up to `within` for a listener (any subscriber) to connect;
    /// true when one is there. (What is published before its
    /// subscriptions arrive is not sent to it: ZeroMQ's slow joiner.)
    pub async fn wait_for_listener(&self, within: Duration) -> bool {
        self.publisher.wait_for_subscriber(within).await
    }

    /// Deliver what was handed to the socket, then close.
    pub async fn close(&self, grace: Duration) -> Result<(), Error> {
        self.publisher.close(grace).await
    }
}

/// Receives notifications into an endpoint: a [`Service`] with a method
/// per priority it handles (`info`, `error`, ...), each taking `(ctxt,
/// publisher_id, event_type, payload, metadata)`. Build with
/// [`NotificationListener::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), zerorpc::Error> {
/// use zerorpc::oneway::{NotificationListener, Priority};
/// use zerorpc::{Service, ServiceError, Value};
/// let endpoint = Service::new("errors").method(
///     "error",
///     |(ctxt, publisher_id, event_type, payload, _meta): (Value, String, String, Value, Value)| async move {
///         println!("{publisher_id} {event_type}: {payload} ({ctxt})");
///         Ok::<_, ServiceError>(())
///     },
/// );
/// let listener = NotificationListener::builder(endpoint)
///     .event_type("compute.instance.*")
///     .connect("tcp://127.0.0.1:4246")
///     .start()
///     .await?;
/// # let _ = listener; Ok(()) }
/// ```
pub struct NotificationListener;

impl NotificationListener {
    /// Hand notifications to `endpoint`'s methods named after their
    /// priorities (only the priorities it has a method for are
    /// subscribed to, unless it has a catch-all).
    pub fn builder(endpoint: Service) -> ListenerBuilder {
        let handled: Vec<Priority> = Priority::ALL
            .into_iter()
            .filter(|p| endpoint.answers(p.as_str()))
            .collect();
        ListenerBuilder {
            receiver: Subscriber::builder(endpoint),
            handled,
            priorities: Vec::new(),
            event_types: Vec::new(),
            publisher_ids: Vec::new(),
        }
    }
}

/// Configures a notification listener: where it connects or binds, and
/// which notifications it wants.
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct ListenerBuilder {
    receiver: ReceiverBuilder,
    handled: Vec<Priority>,
    priorities: Vec<Priority>,
    event_types: Vec<String>,
    publisher_ids: Vec<String>,
}

impl ListenerBuilder {
    /// Connect to a bound notifier (repeatable).
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.receiver = self.receiver.connect(endpoint);
        self
    }

    /// Bind an endpoint for notifiers to connect to (repeatable).
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.receiver = self.receiver.bind(endpoint);
        self
    }

    /// Secure every connection with CURVE.
    pub fn curve(mut self, curve: crate::security::Curve) -> Self {
        self.receiver = self.receiver.curve(curve);
        self
    }

    /// Handle at most `n` notifications at once (default 1024; 1 keeps
    /// them in arrival order).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.receiver = self.receiver.pool_size(n);
        self
    }

    /// Only notifications at `priority` (repeatable; default: every
    /// priority the endpoint has a method for).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priorities.push(priority);
        self
    }

    /// Only event types matching `pattern` (repeatable: any of them), where
    /// `*` stands for any text: `compute.instance.*`.
    pub fn event_type(mut self, pattern: impl Into<String>) -> Self {
        self.event_types.push(pattern.into());
        self
    }

    /// Only notifications from publishers matching `pattern` (repeatable),
    /// `*` standing for any text.
    pub fn publisher_id(mut self, pattern: impl Into<String>) -> Self {
        self.publisher_ids.push(pattern.into());
        self
    }

    /// Subscribe and start handing notifications to the endpoint.
    pub async fn start(self) -> Result<Receiver, Error> {
        let priorities: Vec<Priority> = match self.priorities.is_empty() {
            true => self.handled,
            false => self.priorities,
        };
        if priorities.is_empty() {
            return Err(Error::Config(
                "the endpoint has no method named after a priority (info, error, ...)".into(),
            ));
        }
        let prefixes: Vec<&str> = match self.event_types.is_empty() {
            true => vec![""],
            false => self.event_types.iter().map(|p| literal_start(p)).collect(),
        };
        let mut topics = Vec::new();
        for p in &priorities {
            for prefix in &prefixes {
                topics.push(format!("{p} {prefix}"));
            }
        }
        let (event_types, publisher_ids) = (self.event_types, self.publisher_ids);
        let filter: Filter = Arc::new(move |name: &str, args: &Args| {
            wanted(&priorities, &event_types, &publisher_ids, name, args)
        });
        self.receiver.topics(topics).filter(filter).start().await
    }
}

/// Whether a received event is a notification this listener wants: the
/// subscriptions are prefixes; this is the whole rule.
fn wanted(
    priorities: &[Priority],
    event_types: &[String],
    publisher_ids: &[String],
    name: &str,
    args: &Args,
) -> bool {
    if !priorities.iter().any(|p| p.as_str() == name) {
        return false;
    }
    let Ok(values) = args.values() else {
        return false;
    };
    let text = |i: usize| values.get(i).and_then(Value::as_str).unwrap_or("");
    let matches_any =
        |patterns: &[String], s: &str| patterns.is_empty() || patterns.iter().any(|p| glob(p, s));
    values.len() >= 4 && matches_any(publisher_ids, text(1)) && matches_any(event_types, text(2))
}

/// The part of a pattern before its first `*`.
fn literal_start(pattern: &str) -> &str {
    pattern.split('*').next().unwrap_or("")
}

/// `*` matches any text (nothing included); everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A notification's id: 128 random bits, as hex.
fn message_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `2026-12-06 04:50:51.123456`, UTC, as oslo's `timeutils.utcnow()`.
fn timestamp(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_globs() {
        assert!(glob("compute.*", "compute.instance.create"));
        assert!(glob("compute.*.end", "compute.instance.create.end"));
        assert!(!glob("compute.*.end", "compute.instance.create.start"));
        assert!(glob("*", ""));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(glob("exact", "exact") && !glob("exact", "exact.more"));
        assert_eq!(literal_start("compute.*.end"), "compute.");
        assert_eq!(literal_start("*"), "");
    }

    #[test]
    fn priorities_parse_as_oslo_names_them() {
        assert_eq!("WARNING".parse(), Ok(Priority::Warn));
        assert_eq!("error".parse(), Ok(Priority::Error));
        assert!("loud".parse::<Priority>().is_err());
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
    }

    #[test]
    fn timestamps_are_oslos_utc_format() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_528_451_123_456);
        assert_eq!(timestamp(at), "2026-12-06 03:40:51.123456"); // date -u -d @1796528451
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00.000000"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }
}
