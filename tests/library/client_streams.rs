//! Streams from the caller (PROTOCOL.md §9.1): client-stream and
//! bidirectional calls between zrpc peers — results, order, credit in both
//! directions, endings, failures on either side, cancellation, deadlines,
//! and the refusals that keep a plain call and a stream call apart.

use crate::common;

use futures::{Stream, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::{CallOptions, Client, Error, Items, Server, Service, ServiceError, Value};

/// Sets its flag when dropped: tells that a handler was stopped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn service(read: Arc<AtomicUsize>, dropped: Arc<AtomicBool>) -> Service {
    let slow_read = read.clone();
    Service::new("streams")
        .client_stream("sum", |(): (), items: Items<i64>| async move {
            Ok::<_, ServiceError>(items.fold(0i64, |s, n| async move { s + n }).await)
        })
        .client_stream(
            "count_from",
            |(start,): (u64,), items: Items<Value>| async move {
                Ok::<_, ServiceError>(start + items.count().await as u64)
            },
        )
        .bidi_stream("upper", |(): (), words: Items<String>| {
            words.map(|w| Ok::<_, ServiceError>(w.to_uppercase()))
        })
        .client_stream("slow", move |(): (), mut items: Items<u64>| {
            let read = slow_read.clone();
            let dropped = dropped.clone();
            async move {
                let _guard = Dropped(dropped);
                while items.next().await.is_some() {
                    read.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, ServiceError>(read.load(Ordering::SeqCst))
            }
        })
        .client_stream("fail_at", |(at,): (usize,), items: Items<i64>| async move {
            let mut items = items.enumerate();
            while let Some((i, _)) = items.next().await {
                if i + 1 == at {
                    return Err(ServiceError::new("ValueError", format!("item {at} is bad")));
                }
            }
            Ok(0)
        })
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        })
        // Reads one item, then nothing for a while: its first grant is
        // all the credit.
        .client_stream("hold", |(): (), mut items: Items<i64>| async move {
            let first = items.next().await.unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ServiceError>(first + items.count().await as i64)
        })
        .client_stream_dynamic("types", |params, items| async move {
            let items: Vec<Value> = items.collect().await;
            Ok::<_, ServiceError>(Value::Array(vec![
                Value::Array(params),
                Value::Array(items),
            ]))
        })
}

struct Fixture {
    server: Server,
    client: Client,
    read: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

async fn fixture() -> Fixture {
    let read = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let server = Server::builder(service(read.clone(), dropped.clone()))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("server starts");
    let client = Client::builder()
        .connect(server.endpoints()[0].clone())
        .timeout(Some(Duration::from_secs(20)))
        .start()
        .await
        .expect("client starts");
    Fixture {
        server,
        client,
        read,
        dropped,
    }
}

impl Fixture {
    async fn close(self) {
        let _ = self.client.close(Duration::from_secs(1)).await;
        let _ = self.server.close(Duration::from_secs(1)).await;
    }
}

/// A stream that counts the items taken from it.
fn counted(n: u64, taken: Arc<AtomicUsize>) -> impl Stream<Item = u64> + Send + 'static {
    futures::stream::iter(0..n).inspect(move |_| {
        taken.fetch_add(1, Ordering::SeqCst);
    })
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_client_stream_sums_every_item_in_one_result() {
    let f = fixture().await;
    let total: i64 = f
        .client
        .client_stream("sum", (), futures::stream::iter(1..=20_000i64))
        .await
        .unwrap();
    assert_eq!(total, 20_000 * 20_001 / 2);
    // Parameters come before the items; an empty stream is a stream.
    let n: u64 = f
        .client
        .client_stream(
            "count_from",
            (7u64,),
            futures::stream::iter(vec![Value::Nil; 3]),
        )
        .await
        .unwrap();
    assert_eq!(n, 10);
    let n: u64 = f
        .client
        .client_stream("count_from", (7u64,), futures::stream::empty::<i64>())
        .await
        .unwrap();
    assert_eq!(n, 7);
    f.close().await;
}

#[tokio::test]
async fn a_bidirectional_stream_answers_item_by_item_in_order() {
    let f = fixture().await;
    let words: Vec<String> = (0..500).map(|i| format!("word{i}")).collect();
    let mut upper = f
        .client
        .bidi_stream::<_, _, String>("upper", (), futures::stream::iter(words.clone()))
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(w) = upper.next().await {
        got.push(w.unwrap());
    }
    let want: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    assert_eq!(got, want);

    // The answers come while the caller is still sending: the first one
    // arrives before the caller's stream has ended.
    let (tx, rx) = futures::channel::mpsc::unbounded::<String>();
    tx.unbounded_send("first".into()).unwrap();
    let mut upper = f
        .client
        .bidi_stream::<_, _, String>("upper", (), rx)
        .await
        .unwrap();
    assert_eq!(upper.next().await.unwrap().unwrap(), "FIRST");
    tx.unbounded_send("second".into()).unwrap();
    assert_eq!(upper.next().await.unwrap().unwrap(), "SECOND");
    drop(tx);
    assert!(
        upper.next().await.is_none(),
        "the caller's end ends the answers"
    );
    f.close().await;
}

#[tokio::test]
async fn a_slow_server_slows_the_caller_instead_of_queueing_its_items() {
    let f = fixture().await;
    let taken = Arc::new(AtomicUsize::new(0));
    let call = {
        let client = f.client.clone();
        let taken = taken.clone();
        tokio::spawn(async move {
            client
                .client_stream::<_, _, usize>("slow", (), counted(100_000, taken))
                .await
        })
    };
    // The handler reads one item per 5 ms: the caller may be ahead by its
    // credit (a window of at most 100, and one item read ahead), no more.
    let mut most_ahead = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let ahead = taken.load(Ordering::SeqCst)
            - f.read
                .load(Ordering::SeqCst)
                .min(taken.load(Ordering::SeqCst));
        most_ahead = most_ahead.max(ahead);
    }
    assert!(f.read.load(Ordering::SeqCst) > 10, "the handler is reading");
    assert!(
        most_ahead <= 102,
        "the caller got {most_ahead} items ahead of a slow handler"
    );
    // Dropping the call cancels the handler at once.
    call.abort();
    let _ = call.await;
    wait_for("the handler is dropped", || {
        f.dropped.load(Ordering::SeqCst)
    })
    .await;
    f.close().await;
}

#[tokio::test]
async fn either_side_failing_ends_the_call_as_an_error() {
    let f = fixture().await;
    // The server fails part-way: the caller sees its error and stops
    // sending (an endless stream does not keep the call open).
    let e = f
        .client
        .client_stream::<_, _, i64>("fail_at", (5usize,), futures::stream::repeat(1i64))
        .await
        .unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(
        (remote.name.as_str(), remote.message.as_str()),
        ("ValueError", "item 5 is bad")
    );

    // An item the method cannot take fails the call with a TypeError
    // naming it.
    let items = futures::stream::iter(vec![Value::from(1), Value::from(2), Value::from("three")]);
    let e = f
        .client
        .request_dynamic_with_items("sum", vec![], items.map(Ok), CallOptions::default())
        .await
        .unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(remote.name, "TypeError");
    assert!(remote.message.contains("item 3"), "{remote}");

    // The caller fails its stream: the call fails here, and the server
    // drops the handler.
    let items = futures::stream::iter(vec![
        Ok(Value::from(1u64)),
        Err(ServiceError::new("IOError", "the file went away")),
    ]);
    let e = f
        .client
        .request_dynamic_with_items("slow", vec![], items, CallOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ItemsFailed { error, .. } if error.name == "IOError"),
        "{e:?}"
    );
    wait_for("the handler is dropped", || {
        f.dropped.load(Ordering::SeqCst)
    })
    .await;
    f.close().await;
}

#[tokio::test]
async fn the_deadline_covers_the_whole_upload() {
    let f = fixture().await;
    let started = Instant::now();
    let e = f
        .client
        .client_stream_with::<_, _, usize>(
            "slow",
            (),
            futures::stream::iter(0..1_000_000u64),
            CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_for("the handler is dropped", || {
        f.dropped.load(Ordering::SeqCst)
    })
    .await;
    f.close().await;
}

#[tokio::test]
async fn plain_calls_and_stream_calls_are_kept_apart() {
    let f = fixture().await;
    // A plain call to a method that takes items is refused, not run with
    // none (a zerorpc peer calling it would otherwise get a wrong sum).
    let e = f.client.call::<_, i64>("sum", ()).await.unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(remote.name, "TypeError");
    assert!(
        remote.message.contains("takes a stream of items"),
        "{remote}"
    );
    // A stream call to a plain method, or to no method.
    let e = f
        .client
        .client_stream::<_, _, i64>("add", (1, 2), futures::stream::iter(vec![1]))
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("TypeError"),
        "{e:?}"
    );
    let e = f
        .client
        .client_stream::<_, _, i64>("nope", (), futures::stream::iter(vec![1]))
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("NameError"),
        "{e:?}"
    );
    // The dynamic API keeps msgpack types both ways.
    let items = futures::stream::iter(vec![Ok(Value::Binary(vec![1, 2])), Ok(Value::from("s"))]);
    let got = f
        .client
        .request_dynamic_with_items("types", vec![Value::from(1)], items, CallOptions::default())
        .await
        .unwrap();
    let zerorpc::Response::Value(v) = got else {
        panic!("a client-stream method answers one value")
    };
    assert_eq!(
        v,
        Value::Array(vec![
            Value::Array(vec![Value::from(1)]),
            Value::Array(vec![Value::Binary(vec![1, 2]), Value::from("s")]),
        ])
    );
    f.close().await;
}

// ---- against other peers ----

/// Run tests/python/py_stream_call.py SCENARIO against `ep`.
fn py_stream_call(ep: &str, scenario: &str) {
    let out = std::process::Command::new(common::python())
        .arg(common::script("py_stream_call.py"))
        .arg(ep)
        .arg(scenario)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {scenario}")),
        "py_stream_call.py {scenario}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_python_peer_speaks_the_extension() {
    let f = fixture().await;
    let ep = f.server.endpoints()[0].clone();
    for scenario in ["sum", "upper", "plain", "excess"] {
        let ep = ep.clone();
        tokio::task::spawn_blocking(move || py_stream_call(&ep, scenario))
            .await
            .unwrap();
    }
    f.close().await;
}

/// A zerorpc server (no extension) answers a stream call at once with an
/// error the caller reads as such, and keeps serving.
async fn refused_by(ep: &str) {
    // (zerorpc-node ignores the request: the client gives up when nothing
    // came within two heartbeats.)
    let client = Client::builder()
        .connect(ep)
        .heartbeat(Some(Duration::from_millis(500)))
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let taken = Arc::new(AtomicUsize::new(0));
    let e = client
        .client_stream::<_, _, i64>("add", (1, 2), counted(1000, taken.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NoStreams { method, .. } if method == "add"),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not take a stream"), "{e}");
    let e = client
        .bidi_stream::<_, _, String>("echo", ("x",), futures::stream::iter(["a"]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoStreams { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not within the timeout"
    );
    assert!(
        taken.load(Ordering::SeqCst) <= 1,
        "items were sent to a server that never asked"
    );
    let sum: i64 = client.call("add", (1, 2)).await.unwrap();
    assert_eq!(sum, 3, "the server still serves");
    client.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zerorpc_python_refuses_a_stream_call_clearly() {
    let (_py, ep) = common::python_server(5.0);
    refused_by(&ep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zerorpc_node_refuses_a_stream_call_clearly() {
    let (_node, ep) = tokio::task::spawn_blocking(|| common::node_server(5000))
        .await
        .unwrap();
    refused_by(&ep).await;
}

#[tokio::test]
async fn a_stream_call_waiting_for_a_pool_slot_is_taken_and_waits() {
    // One slot, held by a slow upload: the second call waits for it longer
    // than the two heartbeats in which a server must take a stream call.
    // The server took it (it beats on it while it waits), so it waits, and
    // is then served whole.
    let read = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let server = Server::builder(service(read, dropped))
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(Duration::from_millis(200)))
        .pool_size(1)
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .connect(server.endpoints()[0].clone())
        .heartbeat(Some(Duration::from_millis(200)))
        .timeout(Some(Duration::from_secs(20)))
        .start()
        .await
        .unwrap();
    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            let taken = Arc::new(AtomicUsize::new(0));
            client
                .client_stream::<_, _, usize>("slow", (), counted(150, taken))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let total: i64 = client
        .client_stream("sum", (), futures::stream::iter(1..=10i64))
        .await
        .unwrap();
    assert_eq!(total, 55);
    assert!(
        started.elapsed() > Duration::from_millis(400),
        "the second call did not wait for the slot ({:?})",
        started.elapsed()
    );
    assert_eq!(first.await.unwrap().unwrap(), 150);
    client.close(Duration::from_secs(1)).await.unwrap();
    server.close(Duration::from_secs(1)).await.unwrap();
}

// ---- typed: #[zerorpc::service] ----

/// Words streamed by their caller.
#[zerorpc::service(name = "words")]
trait Words {
    /// How many words, plus `start`.
    async fn count(&self, start: u64, words: Items<String>) -> Result<u64, ServiceError>;

    /// Each word with `suffix`, as it arrives.
    fn suffixed(&self, suffix: String, words: Items<String>) -> impl Stream<Item = String>;
}

struct WordsImpl;

impl Words for WordsImpl {
    async fn count(&self, start: u64, words: Items<String>) -> Result<u64, ServiceError> {
        Ok(start + words.count().await as u64)
    }

    fn suffixed(
        &self,
        suffix: String,
        words: Items<String>,
    ) -> impl Stream<Item = String> + Send + 'static {
        words.map(move |w| format!("{w}{suffix}"))
    }
}

#[tokio::test]
async fn typed_services_take_streams_and_typed_clients_send_them() {
    let service = WordsImpl.into_service();
    assert!(service.takes_items("count") && service.takes_items("suffixed"));
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let client = Client::connect(server.endpoints()[0].clone())
        .await
        .unwrap();
    let words = WordsClient::new(client.clone());
    let words_of = |n: usize| futures::stream::iter((0..n).map(|i| format!("w{i}")));
    assert_eq!(words.count(10, words_of(25)).await.unwrap(), 35);
    let got: Vec<String> = words
        .suffixed("!".into(), words_of(3))
        .await
        .unwrap()
        .map(|w| w.unwrap())
        .collect()
        .await;
    assert_eq!(got, ["w0!", "w1!", "w2!"]);
    // An item of the wrong type is the caller's TypeError.
    let e = client
        .client_stream::<_, _, u64>("count", (0u64,), futures::stream::iter([1, 2]))
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("TypeError"),
        "{e:?}"
    );
    client.close(Duration::from_secs(1)).await.unwrap();
    server.close(Duration::from_secs(1)).await.unwrap();
}

// ---- the examples ----

#[test]
fn the_chat_example_hears_the_room_in_order() {
    let out = std::process::Command::new(common::example("chat"))
        .output()
        .expect("run the chat example");
    assert!(out.status.success(), "{out:?}");
    let transcript = String::from_utf8_lossy(&out.stdout);
    let want = [
        "alice hears: * alice joined",
        "bob hears: * bob joined",
        "alice hears: * bob joined",
        "bob hears: alice: hello, bob",
        "alice hears: alice: hello, bob",
        "alice hears: bob: hi alice",
        "bob hears: bob: hi alice",
        "bob hears: * bob left",
        "alice hears: * bob left",
        "alice hears: * alice left",
    ];
    assert_eq!(transcript.lines().collect::<Vec<_>>(), want);
}

#[test]
fn the_upload_example_stores_a_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("stored");
    std::fs::create_dir(&stored).unwrap();
    // 3.5 pieces of data that is not a repeated pattern.
    let data: Vec<u8> = (0..(3 << 20) + (1 << 19) + 5)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let ep = format!("tcp://127.0.0.1:{}", common::free_port());
    let _server = common::spawn_until(
        std::process::Command::new(common::example("upload"))
            .args(["serve", &ep])
            .arg(&stored),
        "serving files",
        false,
    );
    let send = |extra: &[&str]| {
        let out = std::process::Command::new(common::example("upload"))
            .args(["send", &ep])
            .arg(&file)
            .args(extra)
            .output()
            .expect("run the upload example");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let field = |json: &str, key: &str| {
        let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
        v[key].clone()
    };
    let upload = send(&["--json"]);
    assert_eq!(field(&upload, "bytes"), data.len());
    assert_eq!(
        std::fs::read(stored.join("data.bin")).unwrap(),
        data,
        "stored whole"
    );
    // The server's checksum of what it stored is the client's of what came
    // back from echo calls: the same bytes.
    let echo = send(&["--echo", "--json"]);
    assert_eq!(field(&upload, "checksum"), field(&echo, "checksum"));
}

#[tokio::test]
async fn stream_calls_reach_namespaces_and_check_versions() {
    let counter = Service::new("counter")
        .version(zerorpc::Version::new(2, 1))
        .client_stream("sum", |(): (), items: Items<i64>| async move {
            Ok::<_, ServiceError>(items.fold(0, |s, n| async move { s + n }).await)
        });
    let server = Server::builder(Service::new("main"))
        .service(counter)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let client = Client::connect(server.endpoints()[0].clone())
        .await
        .unwrap();
    let v2 = client
        .prepare()
        .namespace("counter")
        .version(zerorpc::Version::new(2, 0));
    let total: i64 = v2
        .client_stream("sum", (), futures::stream::iter(1..=4))
        .await
        .unwrap();
    assert_eq!(total, 10);
    let v3 = v2.clone().version(zerorpc::Version::new(3, 0));
    let e = v3
        .client_stream::<_, _, i64>("sum", (), futures::stream::iter(1..=4))
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("UnsupportedVersion"),
        "{e:?}"
    );
    client.close(Duration::from_secs(1)).await.unwrap();
    server.close(Duration::from_secs(1)).await.unwrap();
}
