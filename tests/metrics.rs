//! Metrics through the `metrics` facade, read from a debugging recorder
//! installed before the server and client start (one test: the recorder is
//! global to this binary).

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zerorpc::{Client, Server, Service, ServiceError};
use zerorpc_zeromq::{DealerSocket, Socket, SocketSend, ZmqMessage};

/// Every metric as `name{label=value,...}` → value (histograms: how many
/// values were recorded).
fn read(
    snapshot: Vec<(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>,
) -> HashMap<String, f64> {
    snapshot
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n as f64,
                (MetricKind::Gauge, DebugValue::Gauge(g)) => g.into_inner(),
                (MetricKind::Histogram, DebugValue::Histogram(v)) => v.len() as f64,
                _ => f64::NAN,
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_clients_report_requests_outcomes_and_gauges() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let ended = Arc::new(AtomicUsize::new(0));
    let e = ended.clone();
    let svc = Service::new("m")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        })
        .method("fail", |(): ()| async {
            Err::<(), _>(ServiceError::new("ValueError", "no"))
        })
        .method("slow", move |(): ()| {
            let guard = Guard(e.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(guard);
                Ok::<_, ServiceError>(())
            }
        });
    let server = Server::builder(svc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let client = Client::connect(&ep).await.unwrap();

    for i in 0..3 {
        assert_eq!(client.call::<_, i64>("add", (i, 1)).await.unwrap(), i + 1);
    }
    assert!(client.call::<_, ()>("fail", ()).await.is_err());
    assert!(client.call::<_, ()>("nosuch", ()).await.is_err());
    // A call whose caller gives up: cancelled on both sides.
    let call = client.call::<_, ()>("slow", ());
    assert!(tokio::time::timeout(Duration::from_millis(200), call)
        .await
        .is_err());
    // A request whose deadline passes (a raw peer: no cancel follows), and
    // one without a message_id.
    let mut raw = DealerSocket::new();
    raw.connect(&ep).await.unwrap();
    let mut extra = zerorpc::protocol::HeaderExtra::default();
    extra.set_timeout_ms(200);
    let (_, slow) = zerorpc::protocol::encode_request_with_header("slow", &extra, &[0x90]);
    let no_id = vec![
        0x93, 0x81, 0xa1, b'v', 0x03, 0xa3, b'a', b'd', b'd', 0x92, 1, 2,
    ];
    for payload in [slow, no_id] {
        let mut msg = ZmqMessage::from(bytes::Bytes::new());
        msg.push_back(payload.into());
        raw.send(msg).await.unwrap();
    }
    let start = std::time::Instant::now();
    while ended.load(Ordering::SeqCst) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "handlers still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let m = read(snapshotter.snapshot().into_vec());
    let at = |name: &str| {
        m.get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {m:#?}"))
    };
    let requests = "zrpc_server_requests_total";
    assert_eq!(at(&format!("{requests}{{method=add,outcome=ok}}")), 3.0);
    assert_eq!(at(&format!("{requests}{{method=fail,outcome=error}}")), 1.0);
    assert_eq!(
        at(&format!("{requests}{{method=<other>,outcome=error}}")),
        1.0
    );
    assert_eq!(
        at(&format!("{requests}{{method=slow,outcome=cancelled}}")),
        1.0
    );
    assert_eq!(
        at(&format!(
            "{requests}{{method=slow,outcome=deadline_exceeded}}"
        )),
        1.0
    );
    assert_eq!(at("zrpc_server_request_duration_seconds{method=add}"), 3.0);
    assert_eq!(at("zrpc_server_in_flight{}"), 0.0);
    assert_eq!(at("zrpc_server_rejected_total{reason=malformed}"), 1.0);
    assert_eq!(at("zrpc_server_connected_peers{}"), 2.0);
    let calls = "zrpc_client_calls_total";
    assert_eq!(at(&format!("{calls}{{method=add,outcome=ok}}")), 3.0);
    assert_eq!(at(&format!("{calls}{{method=fail,outcome=error}}")), 1.0);
    assert_eq!(
        at(&format!("{calls}{{method=slow,outcome=cancelled}}")),
        1.0
    );
    assert_eq!(at("zrpc_client_call_duration_seconds{method=add}"), 3.0);
    assert_eq!(at("zrpc_client_in_flight{}"), 0.0);
    drop(raw);
    let _ = server.close(Duration::from_secs(1)).await;
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
