//! Rust-to-Rust behaviour of client and server: calls, errors, concurrency,
//! heartbeats, timeouts, reconnects, draining, and malformed input.

use crate::common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::{CallOptions, Client, Error, Server, Service, ServiceError, Value};
use zerorpc_zeromq::{DealerSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

const HB_FAST: Option<Duration> = Some(Duration::from_millis(200));

/// A client with fast heartbeats and the given call timeout.
async fn fast_client(ep: &str, timeout: Duration) -> Client {
    Client::builder()
        .connect(ep)
        .heartbeat(HB_FAST)
        .timeout(Some(timeout))
        .start()
        .await
        .unwrap()
}

/// Sets its flag when dropped: shows that a handler was cancelled.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A service whose `wait` runs for 30 s unless cancelled: `started` counts
/// its runs, and `cancelled` is set when one is dropped.
fn wait_service(cancelled: &Arc<AtomicBool>, started: &Arc<AtomicUsize>) -> Service {
    let (cancelled, started) = (cancelled.clone(), started.clone());
    Service::new("s").method("wait", move |(): ()| {
        let guard = SetOnDrop(cancelled.clone());
        started.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(guard);
            Ok::<_, ServiceError>(())
        }
    })
}

/// Whether `flag` is set within `limit`.
async fn set_within(flag: &AtomicBool, limit: Duration) -> bool {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flag.load(Ordering::SeqCst)
}

/// `Blob` arguments and results, small and large (shared with their
/// message past 1 KiB), from typed and dynamic callers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_arguments_and_results_round_trip() {
    let (_server, ep) = start_server(HB_FAST).await;
    let client = Client::connect(&ep).await.unwrap();
    for n in [0usize, 3, 1023, 1024, 70_000, 1 << 20] {
        let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let (len, back): (usize, zerorpc::Blob) = client
            .call("blob_echo", (zerorpc::Blob::from(data.clone()),))
            .await
            .unwrap();
        assert_eq!((len, &back[..]), (n, &data[..]), "{n} bytes");
    }
    // A dynamic caller's string and byte list are bytes to a Blob too.
    let r = client
        .call_dynamic("blob_echo", vec![Value::from("héllo")])
        .await
        .unwrap();
    assert_eq!(
        r,
        Value::Array(vec![6.into(), Value::Binary("héllo".into()),])
    );
    let list = Value::Array(vec![1.into(), 2.into(), 255.into()]);
    let r = client.call_dynamic("blob_echo", vec![list]).await.unwrap();
    assert_eq!(
        r,
        Value::Array(vec![3.into(), Value::Binary(vec![1, 2, 255])])
    );
    // Not binary at all: the handler is not called, the caller told why.
    let e = client
        .call_dynamic("blob_echo", vec![Value::from(5)])
        .await
        .unwrap_err();
    assert_eq!(e.remote().unwrap().name, "TypeError", "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_dynamic_and_error_calls() {
    let (_server, ep) = start_server(HB_FAST).await;
    let client = Client::connect(&ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (40, 2)).await.unwrap(), 42);
    assert_eq!(
        client.call::<_, String>("hello", ("rust",)).await.unwrap(),
        "Hello, rust!"
    );
    assert_eq!(client.call::<_, ()>("nothing", ()).await.unwrap(), ());
    let p: serde_json::Value = client.call("point", (1, 2)).await.unwrap();
    assert_eq!(p, serde_json::json!({"x": 1, "y": 2, "label": "1,2"}));
    let bin = Value::Binary(vec![1, 2, 3]);
    assert_eq!(
        client
            .call_dynamic("echo", vec![bin.clone()])
            .await
            .unwrap(),
        bin
    );
    let e = client.call::<_, i64>("divide", (1, 0)).await.unwrap_err();
    let r = e.remote().unwrap();
    assert_eq!(
        (r.name.as_str(), r.message.as_str()),
        ("ZeroDivisionError", "division by zero")
    );
    let e = client.call::<_, i64>("add", (1,)).await.unwrap_err();
    assert_eq!(e.remote().unwrap().name, "TypeError");
    // A result that does not fit the requested type is a decode error.
    let e = client.call::<_, i64>("hello", ("x",)).await.unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_client() {
    many_concurrent_calls_share_one_client_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn many_concurrent_calls_share_one_client_current_thread() {
    many_concurrent_calls_share_one_client_body().await
}

async fn many_concurrent_calls_share_one_client_body() {
    let (_server, ep) = start_server(HB_FAST).await;
    let client = Client::connect(&ep).await.unwrap();
    let start = Instant::now();
    let calls = (0..200).map(|i| {
        let c = client.clone();
        tokio::spawn(async move {
            let r: String = c.call("sleep", (0.3,)).await.unwrap();
            let s: i64 = c.call("add", (i, 1)).await.unwrap();
            (r, s, i)
        })
    });
    for h in futures::future::join_all(calls).await {
        let (r, s, i) = h.unwrap();
        assert_eq!(r, "slept 0.3");
        assert_eq!(s, i + 1);
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "calls did not run concurrently: {:?}",
        start.elapsed()
    );
}

/// A waiting caller reads the sockets for every caller (see `relay.rs`); one
/// that is polled once and then left alone must not hold up the others.
#[tokio::test]
async fn a_call_left_unpolled_does_not_hold_up_other_calls() {
    let (_server, ep) = start_server(None).await;
    let client = Client::connect(&ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    let mut parked = Box::pin(client.call::<_, String>("sleep", (0.05,)));
    assert!(futures::poll!(parked.as_mut()).is_pending(), "it now reads");
    let mut worst = Duration::ZERO;
    for i in 0..20i64 {
        let start = Instant::now();
        let sum =
            tokio::time::timeout(Duration::from_secs(5), client.call::<_, i64>("add", (i, 1)))
                .await
                .expect("a call behind an unpolled one got no reply within 5 s")
                .unwrap();
        assert_eq!(sum, i + 1);
        worst = worst.max(start.elapsed());
    }
    assert!(
        worst < Duration::from_millis(500),
        "calls waited {worst:?} behind an unpolled call"
    );
    assert_eq!(parked.await.unwrap(), "slept 0.05");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_work_does_not_stall_other_calls() {
    let (_server, ep) = start_server(HB_FAST).await;
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(HB_FAST)
        .start()
        .await
        .unwrap();
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<_, bool>("spin", (2500,)).await })
        })
        .collect();
    until_running(&client, 4).await;
    let start = Instant::now();
    assert_eq!(client.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "fast call waited {:?}",
        start.elapsed()
    );
    // The spinning calls outlive several heartbeat periods and still succeed.
    for s in spinning {
        assert!(s.await.unwrap().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_call_survives_on_heartbeats_and_timeouts_apply() {
    long_call_survives_on_heartbeats_and_timeouts_apply_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn long_call_survives_on_heartbeats_and_timeouts_apply_current_thread() {
    long_call_survives_on_heartbeats_and_timeouts_apply_body().await
}

async fn long_call_survives_on_heartbeats_and_timeouts_apply_body() {
    let (_server, ep) = start_server(HB_FAST).await;
    let client = fast_client(&ep, Duration::from_secs(5)).await;
    // 1.5 s is more than 7 heartbeat periods.
    assert_eq!(
        client.call::<_, String>("sleep", (1.5,)).await.unwrap(),
        "slept 1.5"
    );
    let e = client
        .call_with::<_, String>(
            "sleep",
            (2,),
            CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { method, .. } if method == "sleep"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "timeout after 0.3s, when calling remote method sleep"
    );
}

/// Calls with different timeouts each time out on their own deadline, in
/// whatever order they were made (the client keeps one timer for all of
/// them), a call that answers in time is not failed, and timeouts still fire
/// after thousands of calls have come and gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_timeouts_each_fire_on_their_own_deadline() {
    mixed_timeouts_each_fire_on_their_own_deadline_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn mixed_timeouts_each_fire_on_their_own_deadline_current_thread() {
    mixed_timeouts_each_fire_on_their_own_deadline_body().await
}

async fn mixed_timeouts_each_fire_on_their_own_deadline_body() {
    use futures::StreamExt;
    let (_server, ep) = start_server(HB_FAST).await;
    let client = fast_client(&ep, Duration::from_secs(20)).await;
    assert_eq!(client.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    let timed = |secs: f64, timeout: Option<Duration>| {
        let c = client.clone();
        tokio::spawn(async move {
            let opts = CallOptions {
                timeout: timeout.map(Some),
                ..CallOptions::default()
            };
            let start = Instant::now();
            let r = c.call_with::<_, String>("sleep", (secs,), opts).await;
            (r, start.elapsed())
        })
    };
    // Longest deadline first, shortest last: each new one is earlier.
    let answered = timed(1.2, None);
    let long = timed(5.0, Some(Duration::from_millis(900)));
    let short = timed(5.0, Some(Duration::from_millis(300)));
    let (r, t) = short.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(
        t >= Duration::from_millis(290) && t < Duration::from_millis(800),
        "300 ms timeout fired after {t:?}"
    );
    let (r, t) = long.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(
        t >= Duration::from_millis(890) && t < Duration::from_millis(1500),
        "900 ms timeout fired after {t:?}"
    );
    let (r, _) = answered.await.unwrap();
    assert_eq!(r.unwrap(), "slept 1.2");

    // Thousands of calls leave their deadlines behind; a timeout still fires.
    let results: Vec<_> = futures::stream::iter(0..5000i64)
        .map(|i| {
            let c = client.clone();
            async move { c.call::<_, i64>("add", (i, 1)).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5000);
    let (r, t) = timed(5.0, Some(Duration::from_millis(300))).await.unwrap();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(
        t < Duration::from_millis(800),
        "300 ms timeout fired after {t:?}"
    );
}

/// A handler that panics (before returning its future, on its first poll,
/// or after waiting) answers its caller with a `Panic` error, and the
/// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handlers_answer_with_an_error() {
    let svc = Service::new("s")
        .method("sync_boom", |(): ()| {
            if std::hint::black_box(true) {
                panic!("sync boom");
            }
            async { Ok::<_, ServiceError>(()) }
        })
        .method("first_poll_boom", |(): ()| async {
            if std::hint::black_box(true) {
                panic!("first poll boom");
            }
            Ok::<_, ServiceError>(())
        })
        .method("later_boom", |(): ()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if std::hint::black_box(true) {
                panic!("later boom {}", 42);
            }
            Ok::<_, ServiceError>(())
        })
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        });
    let server = Server::builder(svc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let client = Client::connect(&server.endpoints()[0]).await.unwrap();
    for (method, message) in [
        ("sync_boom", "sync boom"),
        ("first_poll_boom", "first poll boom"),
        ("later_boom", "later boom 42"),
    ] {
        let e = client.call::<_, ()>(method, ()).await.unwrap_err();
        let r = e.remote().unwrap_or_else(|| panic!("{method}: {e:?}"));
        assert_eq!((r.name.as_str(), r.message.as_str()), ("Panic", message));
        assert_eq!(client.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cancels_handlers_of_silent_clients() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let server = Server::builder(wait_service(&cancelled, &started))
        .bind("tcp://127.0.0.1:0")
        .heartbeat(HB_FAST)
        .start()
        .await
        .unwrap();
    // A raw client that sends the request and never heartbeats.
    let mut raw = DealerSocket::new();
    raw.connect(&server.endpoints()[0]).await.unwrap();
    raw.send(request(b"wait", &[0x90])).await.unwrap();
    let start = Instant::now();
    assert!(
        set_within(&cancelled, Duration::from_secs(3)).await,
        "handler still running after 3 s of client silence"
    );
    assert_eq!(started.load(Ordering::SeqCst), 1);
    // 3 periods max without any heartbeat, plus a tick.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "cancelled too early: {:?}",
        start.elapsed()
    );
}

/// `Client::close` fails the calls in flight, refuses new ones, and closes
/// the connection: the server cancels the call's handler at once (its
/// heartbeat period is far longer than the test, so only the disconnect
/// can do that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_fails_calls_and_disconnects() {
    close_fails_calls_and_disconnects_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn close_fails_calls_and_disconnects_current_thread() {
    close_fails_calls_and_disconnects_body().await
}

async fn close_fails_calls_and_disconnects_body() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let server = Server::builder(wait_service(&cancelled, &started))
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(Duration::from_secs(20)))
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .connect(&server.endpoints()[0])
        .heartbeat(Some(Duration::from_secs(20)))
        .start()
        .await
        .unwrap();
    let c = client.clone();
    let pending = tokio::spawn(async move { c.call::<_, ()>("wait", ()).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!pending.is_finished(), "the call should still be running");
    let closed = client.close(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(closed, Error::Unfinished { count: 1, .. }),
        "{closed:?}"
    );
    let e = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the pending call was not failed by close")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    let e = client.call::<_, ()>("wait", ()).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    assert!(
        set_within(&cancelled, Duration::from_secs(3)).await,
        "the server did not see the connection close within 3 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reports_lost_remote_when_server_goes_silent() {
    client_reports_lost_remote_when_server_goes_silent_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn client_reports_lost_remote_when_server_goes_silent_current_thread() {
    client_reports_lost_remote_when_server_goes_silent_body().await
}

async fn client_reports_lost_remote_when_server_goes_silent_body() {
    // A ROUTER that takes requests and never answers or heartbeats (nor
    // the ping the client sends it once its call is overdue: lost 1.25 to
    // 1.75 periods after the request).
    let mut router = RouterSocket::new();
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let sink = tokio::spawn(async move {
        while let Ok(m) = router.recv().await {
            drop(m);
        }
    });
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(HB_FAST)
        .start()
        .await
        .unwrap();
    let start = Instant::now();
    let e = client.call::<_, i64>("add", (1, 2)).await.unwrap_err();
    assert!(matches!(e, Error::LostRemote { .. }), "{e:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_secs(2),
        "lost after {took:?}"
    );
    sink.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_before_the_server_is_up_wait_for_it() {
    calls_made_before_the_server_is_up_wait_for_it_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn calls_made_before_the_server_is_up_wait_for_it_current_thread() {
    calls_made_before_the_server_is_up_wait_for_it_body().await
}

async fn calls_made_before_the_server_is_up_wait_for_it_body() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    let call = {
        let c = client.clone();
        tokio::spawn(async move { c.call::<_, i64>("add", (2, 3)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _server = Server::builder(test_service())
        .bind(&ep)
        .start()
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_server_restart() {
    client_reconnects_after_server_restart_body().await
}

/// (On `current_thread` the waiting callers read the sockets themselves.)
#[tokio::test]
async fn client_reconnects_after_server_restart_current_thread() {
    client_reconnects_after_server_restart_body().await
}

async fn client_reconnects_after_server_restart_body() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let server = Server::builder(test_service())
        .bind(&ep)
        .heartbeat(HB_FAST)
        .start()
        .await
        .unwrap();
    let client = fast_client(&ep, Duration::from_secs(5)).await;
    assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.call::<_, String>("sleep", (10,)).await })
    };
    until_running(&client, 1).await;
    drop(server); // abrupt stop, mid-call
    let e = pending.await.unwrap().unwrap_err();
    assert!(matches!(e, Error::LostRemote { .. }), "{e:?}");
    let _server = Server::builder(test_service())
        .bind(&ep)
        .heartbeat(HB_FAST)
        .start()
        .await
        .unwrap();
    let start = Instant::now();
    assert_eq!(client.call::<_, i64>("add", (2, 2)).await.unwrap(), 4);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "reconnect took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_connect_to_a_bound_client() {
    let client = Client::builder()
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = client.endpoints()[0].clone();
    let _worker = Server::builder(test_service())
        .connect(&ep)
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (3, 4)).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_endpoints_work() {
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}", dir.path().join("zrpc.sock").display());
    let _server = Server::builder(test_service())
        .bind(&ep)
        .start()
        .await
        .unwrap();
    let client = Client::connect(&ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (3, 4)).await.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_size_limits_concurrency() {
    let server = Server::builder(test_service())
        .bind("tcp://127.0.0.1:0")
        .pool_size(1)
        .start()
        .await
        .unwrap();
    let client = Client::connect(&server.endpoints()[0]).await.unwrap();
    let start = Instant::now();
    let (a, b) = tokio::join!(
        client.call::<_, String>("sleep", (0.4,)),
        client.call::<_, String>("sleep", (0.4,))
    );
    a.unwrap();
    b.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(780),
        "pool of 1 ran both at once: {:?}",
        start.elapsed()
    );
}

/// `close(grace)` drains: the server tells its clients it is stopping
/// (`_zpc_drain`), still answers whatever it reads (a client with no other
/// server keeps calling it; a zerorpc peer that knows nothing of draining
/// loses nothing), lets the call in flight finish, and closes once it has
/// read nothing for a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_in_flight_calls_and_answers_what_arrives() {
    let (server, ep) = start_server(HB_FAST).await;
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(3)))
        .start()
        .await
        .unwrap();
    let in_flight = {
        let c = client.clone();
        tokio::spawn(async move { c.call::<_, String>("sleep", (0.5,)).await })
    };
    until_running(&client, 1).await;
    let t0 = Instant::now();
    let stopping = tokio::spawn(async move { server.close(Duration::from_secs(5)).await });
    // The client hears that the server is stopping...
    let deadline = Instant::now() + Duration::from_secs(3);
    while !client.servers()[0].skipped {
        assert!(Instant::now() < deadline, "the client was never told");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and, having no other server, still gets answers from it.
    for _ in 0..3 {
        assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    }
    assert_eq!(in_flight.await.unwrap().unwrap(), "slept 0.5");
    tokio::time::timeout(Duration::from_secs(3), stopping)
        .await
        .expect("stop returns")
        .unwrap()
        .expect("nothing was cancelled");
    // Closed once idle, long before its 5 s grace.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// At the end of the grace period a stopping server answers every request
/// it still has: one that was running is `ServerStopped`, one that never
/// got a pool slot is handed back (`ServerStopping`: not run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_ends_with_an_answer_for_every_request() {
    let server = Server::builder(test_service())
        .bind("tcp://127.0.0.1:0")
        .pool_size(1)
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    let running = {
        let c = client.clone();
        tokio::spawn(async move { c.call::<_, String>("sleep", (5.0,)).await })
    };
    // (Not `until_running`: its own call would wait for the one slot.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = {
        let c = client.clone();
        tokio::spawn(async move { c.call::<_, String>("sleep", (0.1,)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closed = server.close(Duration::from_millis(300)).await;
    assert!(
        matches!(closed, Err(Error::Unfinished { count: 2, .. })),
        "{closed:?}"
    );
    let running = running.await.unwrap().unwrap_err();
    assert_eq!(
        running.remote().map(|r| r.name.as_str()),
        Some("ServerStopped"),
        "{running:?}"
    );
    let waiting = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        waiting.remote().map(|r| r.name.as_str()),
        Some("ServerStopping"),
        "{waiting:?}"
    );
}

// ---- malformed input (notes §6.2) ----

fn request(name: &[u8], args: &[u8]) -> ZmqMessage {
    request_with_id(b"0123456789abcdef0123456789abcdef", name, args)
}

fn request_with_id(id: &[u8; 32], name: &[u8], args: &[u8]) -> ZmqMessage {
    let mut p = vec![0x93, 0x82, 0xaa];
    p.extend_from_slice(b"message_id");
    p.extend_from_slice(&[0xc4, 0x20]);
    p.extend_from_slice(id);
    p.extend_from_slice(&[0xa1, b'v', 0x03]);
    p.push(0xa0 | name.len() as u8);
    p.extend_from_slice(name);
    p.extend_from_slice(args);
    frames(p)
}

fn frames(payload: Vec<u8>) -> ZmqMessage {
    let mut m = ZmqMessage::from(bytes::Bytes::new());
    m.push_back(payload.into());
    m
}

async fn recv_reply(sock: &mut DealerSocket) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(3), sock.recv())
        .await
        .expect("a reply within 3 s")
        .unwrap();
    let payload = msg.get(msg.len() - 1).unwrap().clone();
    rmpv::decode::read_value(&mut &payload[..]).unwrap()
}

fn response_to(reply: &Value) -> Value {
    let header = reply.as_array().unwrap()[0].as_map().unwrap();
    header
        .iter()
        .find(|(k, _)| k.as_str() == Some("response_to"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no response_to in {reply}"))
}

fn err_of(reply: &Value) -> (String, Vec<Value>) {
    let arr = reply.as_array().unwrap();
    (
        arr[1].as_str().unwrap().to_string(),
        arr[2].as_array().unwrap().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_errors_or_are_dropped_and_the_server_keeps_serving() {
    let (_server, ep) = start_server(HB_FAST).await;
    let mut raw = DealerSocket::new();
    raw.connect(&ep).await.unwrap();

    // Dropped silently (nothing sensible to reply to), per the notes' table.
    let dropped: Vec<Vec<u8>> = vec![
        b"not msgpack at all \xc1".to_vec(),
        vec![0x92, 0x80, 0xa1, b'x'], // event array of 2
        vec![0x93, 0xc0, 0xa3, b'a', b'd', b'd', 0x92, 1, 2], // header nil
        vec![0x93, 0x81, 0xc4, 0x01, b'v', 0x03, 0xa1, b'x', 0x90], // header keys as bin
        vec![0x93, 0x81, 0xa1, b'v', 0x03, 0xa1, b'x', 0x90], // no message_id
        vec![0x93, 0x90, 0xa3, b'a', b'd', b'd', 0x90], // header as an array
        vec![0xdd, 0xff, 0xff, 0xff, 0xff], // 4G-element array
        vec![],                       // empty payload
    ];
    for p in dropped {
        raw.send(frames(p)).await.unwrap();
    }
    // A request without the empty delimiter frame is still served.
    let p = request(b"add", &[0x92, 1, 2]);
    raw.send(ZmqMessage::from(p.get(1).unwrap().clone()))
        .await
        .unwrap();
    let reply = recv_reply(&mut raw).await;
    assert_eq!(err_of(&reply).0, "OK", "{reply}");
    assert_eq!(err_of(&reply).1, vec![Value::from(3)]);

    let cases: Vec<(&[u8], Vec<u8>, &str, &str)> = vec![
        (
            b"add",
            vec![0x05],
            "TypeError",
            "must be a msgpack array, got int",
        ),
        (b"add", vec![0xc0], "TypeError", "got nil"),
        (b"add", vec![0x81, 0xa1, b'x', 0x01], "TypeError", "got map"),
        (b"nosuch", vec![0x90], "NameError", "nosuch"),
        (b"add", vec![0x93, 1, 2, 3], "TypeError", "but 3 were given"),
        (
            b"add",
            vec![0x92, 0xa1, b'x', 2],
            "TypeError",
            "expects arguments",
        ),
        // The rest of these are not valid msgpack, but their request id is
        // readable, so the caller is told what was wrong.
        (
            b"add",
            vec![0x91; 1_000_000],
            "ProtocolError",
            "nested deeper than",
        ),
        (
            b"add",
            vec![0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, b'x'],
            "ProtocolError",
            "malformed request",
        ),
        (
            b"add",
            vec![0x92, 0x01],
            "ProtocolError",
            "malformed request",
        ),
        (
            b"add",
            vec![0x91, 0xc1],
            "ProtocolError",
            "malformed request",
        ),
    ];
    for (i, (method, args, name, fragment)) in cases.into_iter().enumerate() {
        // A different id per case, so each answer is shown to be to its own request.
        let id: [u8; 32] = std::array::from_fn(|k| b'a' + ((i + k) % 26) as u8);
        raw.send(request_with_id(&id, method, &args)).await.unwrap();
        let reply = recv_reply(&mut raw).await;
        assert_eq!(response_to(&reply), Value::Binary(id.to_vec()), "{reply}");
        let (ev, args) = err_of(&reply);
        assert_eq!(ev, "ERR", "{reply}");
        assert_eq!(args[0].as_str(), Some(name), "{reply}");
        assert!(args[1].as_str().unwrap().contains(fragment), "{reply}");
        assert_eq!(args.len(), 3);
    }

    // Bin method name -> NameError, response_to echoed with its bin type.
    let mut p = vec![0x93, 0x82, 0xaa];
    p.extend_from_slice(b"message_id\xc4\x20");
    p.extend_from_slice(b"ffffffffffffffffffffffffffffffff");
    p.extend_from_slice(b"\xa1v\x03\xc4\x03add\x92\x01\x02");
    raw.send(frames(p)).await.unwrap();
    let reply = recv_reply(&mut raw).await;
    assert_eq!(err_of(&reply).1[0].as_str(), Some("NameError"), "{reply}");
    assert_eq!(
        response_to(&reply),
        Value::Binary(b"ffffffffffffffffffffffffffffffff".to_vec())
    );

    // A str id and an int id are echoed with their own types.
    for (id_raw, expect) in [
        (&b"\xa4abcd"[..], Value::from("abcd")),
        (&b"\xcd\x30\x39"[..], Value::from(12345)),
    ] {
        let mut p = vec![0x93, 0x82, 0xaa];
        p.extend_from_slice(b"message_id");
        p.extend_from_slice(id_raw);
        p.extend_from_slice(b"\xa1v\x03\xa3add\x92\x01\x02");
        raw.send(frames(p)).await.unwrap();
        let reply = recv_reply(&mut raw).await;
        assert_eq!(response_to(&reply), expect);
    }

    // A v1 request (no `v`) gets a one-element ERR, as zerorpc-python sends.
    let mut p = vec![0x93, 0x81, 0xaa];
    p.extend_from_slice(b"message_id\xa2id\xa6nosuch\x90");
    raw.send(frames(p)).await.unwrap();
    let reply = recv_reply(&mut raw).await;
    assert_eq!(
        err_of(&reply).1,
        vec![Value::from("NameError('nosuch')")],
        "{reply}"
    );

    // Python drops maps with non-str keys and invalid UTF-8 in strings; zrpc
    // is lenient and echoes them back byte for byte.
    for arg in [&[0x81, 0x01, 0x02][..], &[0xa2, 0xff, 0xfe][..]] {
        let mut args = vec![0x91];
        args.extend_from_slice(arg);
        raw.send(request(b"echo", &args)).await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(3), raw.recv())
            .await
            .unwrap()
            .unwrap();
        let payload = msg.get(msg.len() - 1).unwrap().clone();
        let mut ok = vec![0xa2, b'O', b'K', 0x91];
        ok.extend_from_slice(arg);
        assert!(payload.ends_with(&ok), "{payload:?}");
    }

    // Heartbeats and credit for unknown channels are ignored.
    let mut p = vec![0x93, 0x83, 0xaa];
    p.extend_from_slice(b"message_id\xa1x\xa1v\x03\xabresponse_to\xa7unknown\xa7_zpc_hb\x91\x00");
    raw.send(frames(p)).await.unwrap();

    // After all that, a normal client is served.
    let client = Client::connect(&ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
}
