//! `zrpc --push/--pub` (send one event) and `zrpc --pull/--sub` (print every
//! event as a JSON line until interrupted).

use crate::json::to_json;
use crate::CliError;
use std::time::Duration;
use zerorpc::error::ServiceError;
use zerorpc::oneway::{Publisher, Puller, Pusher, SenderBuilder, Subscriber};
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
        // A subscriber still connected after the settle time has had its
        // subscription arrive; one that came and went (a connect attempt
        // cut short) does not count.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !publisher.wait_for_subscriber(left).await {
                return Err(CliError::Other(format!(
                    "no subscriber connected within {}; nothing was published",
                    crate::fmt_secs(timeout)
                )));
            }
            tokio::time::sleep(SUBSCRIPTION_SETTLE).await;
            if publisher
                .wait_for_subscriber(Duration::from_millis(10))
                .await
            {
                break;
            }
        }
        publisher.publish_dynamic(method, args)?;
        publisher.close(Duration::from_secs(1)).await?;
    }
    Ok(())
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
    // (tokio's stdout writes from a blocking thread: a reader that stops
    // reading blocks that thread, not the runtime, so a signal still stops
    // the command.)
    let printer = Service::new("zrpc").catch_all(|method: String, args: Vec<Value>| async move {
        use tokio::io::AsyncWriteExt;
        let mut line = event_line(&method, &args);
        line.push('\n');
        let mut out = tokio::io::stdout();
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.flush().await;
        Ok::<_, ServiceError>(Value::Nil)
    });
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
    let receiver = builder.start().await?;
    let role = if pull { "pulling" } else { "subscribed" };
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
