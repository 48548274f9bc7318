//! `zrpc --push/--pub/--notify` (send one event or notification) and
//! `zrpc --pull/--sub/--listen` (print every event or notification as a JSON
//! line until interrupted).

use crate::json::to_json;
use crate::CliError;
use std::time::Duration;
use zerorpc::error::ServiceError;
use zerorpc::oneway::{
    NotificationListener, Notifier, Priority, Publisher, Puller, Pusher, Receiver, SenderBuilder,
    Subscriber,
};
use zerorpc::security::Curve;
use zerorpc::Service;
use zerorpc::Value;

/// Give a new subscriber's subscription time to reach us after its
/// handshake (ZeroMQ gives no signal for it).
const SUBSCRIPTION_SETTLE: Duration = Duration::from_millis(200);

/// Send one event and wait until it left (push: a puller took it within
/// `timeout`; pub: a subscriber was connected within `timeout`).
pub(super) async fn send(
    push: bool,
    connects: &[String],
    binds: &[String],
    method: &str,
    args: Vec<Value>,
    timeout: Duration,
    curve: Option<Curve>,
) -> Result<(), CliError> {
    if push {
        let pusher = endpoints(Pusher::builder(), connects, binds, curve)
            .start()
            .await?;
        pusher.push_dynamic(method, args)?;
        pusher.close(timeout).await?;
    } else {
        let publisher = endpoints(Publisher::builder(), connects, binds, curve)
            .start()
            .await?;
        let waited = settled(timeout, |within| publisher.wait_for_subscriber(within)).await;
        if !waited {
            return Err(CliError::Other(format!(
                "no subscriber connected within {}; nothing was published",
                crate::fmt_secs(timeout)
            )));
        }
        publisher.publish_dynamic(method, args)?;
        publisher.close(Duration::from_secs(1)).await?;
    }
    Ok(())
}

/// Wait (up to `timeout`) for a subscriber that stays: one still connected
/// after the settle time has had its subscription arrive; one that came and
/// went (a connect attempt cut short) does not count.
async fn settled<F, Fut>(timeout: Duration, wait: F) -> bool
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !wait(left).await {
            return false;
        }
        tokio::time::sleep(SUBSCRIPTION_SETTLE).await;
        if wait(Duration::from_millis(10)).await {
            return true;
        }
    }
}

/// One notification, as the command line gives it.
pub(super) struct Note {
    pub(super) publisher_id: String,
    pub(super) priority: Priority,
    pub(super) event_type: String,
    pub(super) payload: Value,
    pub(super) ctxt: Value,
}

/// Send one notification once a listener is there (within `timeout`).
pub(super) async fn notify(
    connects: &[String],
    binds: &[String],
    note: Note,
    timeout: Duration,
    curve: Option<Curve>,
) -> Result<(), CliError> {
    let mut builder = Notifier::builder(note.publisher_id);
    if let Some(c) = curve {
        builder = builder.curve(c);
    }
    for ep in connects {
        builder = builder.connect(ep);
    }
    for ep in binds {
        builder = builder.bind(ep);
    }
    let notifier = builder.start().await?;
    if !settled(timeout, |within| notifier.wait_for_listener(within)).await {
        return Err(CliError::Other(format!(
            "no listener connected within {}; nothing was sent",
            crate::fmt_secs(timeout)
        )));
    }
    notifier.notify(note.priority, &note.ctxt, &note.event_type, &note.payload)?;
    notifier.close(Duration::from_secs(1)).await?;
    Ok(())
}

/// What `zrpc --listen` wants.
pub(super) struct Wanted {
    pub(super) priorities: Vec<Priority>,
    pub(super) event_types: Vec<String>,
    pub(super) publisher_id: Option<String>,
}

/// Print every notification wanted, one JSON line each, until
/// SIGINT/SIGTERM.
pub(super) async fn listen_notifications(
    connects: &[String],
    binds: &[String],
    wanted: Wanted,
    curve: Option<Curve>,
) -> Result<(), CliError> {
    let printer = printer(notification_line);
    let mut builder = NotificationListener::builder(printer);
    for p in wanted.priorities {
        builder = builder.priority(p);
    }
    for pattern in wanted.event_types {
        builder = builder.event_type(pattern);
    }
    if let Some(pattern) = wanted.publisher_id {
        builder = builder.publisher_id(pattern);
    }
    if let Some(c) = curve {
        builder = builder.curve(c);
    }
    for ep in binds {
        builder = builder.bind(ep);
    }
    for ep in connects {
        builder = builder.connect(ep);
    }
    // One at a time, so lines come out in arrival order.
    until_signal(builder.pool_size(1).start().await?, "listening").await
}

/// `{"priority":...,"event_type":...,"publisher_id":...,"payload":...,"ctxt":...}`.
fn notification_line(priority: &str, args: &[Value]) -> String {
    let arg = |i: usize| args.get(i).map(to_json).unwrap_or(serde_json::Value::Null);
    format!(
        "{{\"priority\":{},\"event_type\":{},\"publisher_id\":{},\"payload\":{},\"ctxt\":{}}}",
        serde_json::Value::from(priority),
        arg(2),
        arg(1),
        arg(3),
        arg(0)
    )
}

fn endpoints<T>(
    mut b: SenderBuilder<T>,
    connects: &[String],
    binds: &[String],
    curve: Option<Curve>,
) -> SenderBuilder<T> {
    if let Some(c) = curve {
        b = b.curve(c);
    }
    for ep in connects {
        b = b.connect(ep);
    }
    for ep in binds {
        b = b.bind(ep);
    }
    b
}

/// Print every event received, one JSON line each, until SIGINT/SIGTERM.
pub(super) async fn listen(
    pull: bool,
    connects: &[String],
    binds: &[String],
    max_message_size: Option<usize>,
    curve: Option<Curve>,
) -> Result<(), CliError> {
    let printer = printer(event_line);
    let mut builder = if pull {
        Puller::builder(printer)
    } else {
        Subscriber::builder(printer)
    };
    // One at a time, so lines come out in arrival order.
    builder = builder.pool_size(1);
    if let Some(n) = max_message_size {
        builder = builder.max_message_size(n);
    }
    if let Some(c) = curve {
        builder = builder.curve(c);
    }
    for ep in binds {
        builder = builder.bind(ep);
    }
    for ep in connects {
        builder = builder.connect(ep);
    }
    let role = if pull { "pulling" } else { "subscribed" };
    until_signal(builder.start().await?, role).await
}

/// A service that prints every event it gets as one line of `line(name,
/// args)` on stdout.
fn printer(line: fn(&str, &[Value]) -> String) -> Service {
    // (tokio's stdout writes from a blocking thread: a reader that stops
    // reading blocks that thread, not the runtime, so a signal still stops
    // the command.)
    Service::new("zrpc").catch_all(move |name: String, args: Vec<Value>| async move {
        use tokio::io::AsyncWriteExt;
        let mut text = line(&name, &args);
        text.push('\n');
        let mut out = tokio::io::stdout();
        let _ = out.write_all(text.as_bytes()).await;
        let _ = out.flush().await;
        Ok::<_, ServiceError>(Value::Nil)
    })
}

/// Say where `receiver` is (`role` on its endpoints), run it until
/// SIGINT/SIGTERM, then close it.
async fn until_signal(receiver: Receiver, role: &str) -> Result<(), CliError> {
    eprintln!("{role} on {}", receiver.endpoints().join(", "));
    crate::wait_for_signal().await;
    receiver.close(Duration::from_secs(2)).await?;
    Ok(())
}

/// `{"method":...,"args":[...]}`, keys in that order.
fn event_line(method: &str, args: &[Value]) -> String {
    let args = serde_json::Value::Array(args.iter().map(to_json).collect());
    format!(
        "{{\"method\":{},\"args\":{}}}",
        serde_json::Value::from(method),
        args
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_lines_are_json_with_method_first() {
        let line = super::event_line("news", &[1.into(), "a\"b".into()]);
        assert_eq!(line, r#"{"method":"news","args":[1,"a\"b"]}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["args"][1], "a\"b");
    }
}
