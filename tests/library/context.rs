//! Request context, middleware, deadlines, cancellation and spans, with
//! zrpc on both sides (tests/library/context_interop.rs has the real peers, and
//! tests/metrics.rs the metrics).

use crate::common;

use common::serve;

use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zerorpc::middleware::{CallHook, Outgoing, Request};
use zerorpc::{CallOptions, Client, Context, Error, Server, Service, ServiceError, Value};

/// Sets its flag, and the time, when dropped: proof that a handler was
/// cancelled (its future dropped) and when.
#[derive(Clone, Default)]
struct Dropped(Arc<Mutex<Option<Instant>>>);

impl Dropped {
    fn guard(&self) -> DropGuard {
        DropGuard(self.0.clone())
    }

    /// When the handler was dropped, waiting up to `limit` for it.
    async fn within(&self, limit: Duration) -> Option<Instant> {
        let end = Instant::now() + limit;
        loop {
            if let Some(at) = *self.0.lock().unwrap() {
                return Some(at);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct DropGuard(Arc<Mutex<Option<Instant>>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(Instant::now());
    }
}

/// A service whose `slow(s)` sleeps, noting when it is dropped, and whose
/// `whoami()` returns what its context says.
fn service(dropped: &Dropped) -> Service {
    let d = dropped.clone();
    Service::new("ctx")
        .method("slow", move |(secs,): (f64,)| {
            let guard = d.guard();
            async move {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                drop(guard);
                Ok::<_, ServiceError>("done".to_string())
            }
        })
        .method("whoami", |(): ()| async {
            let ctx = Context::current().expect("a handler has a context");
            Ok::<_, ServiceError>(describe(&ctx))
        })
        .method_blocking("whoami_blocking", |(): ()| {
            let ctx = Context::current().expect("a blocking handler has a context");
            Ok::<_, ServiceError>(describe(&ctx))
        })
        .stream("whoami_stream", |(): ()| {
            futures::stream::iter(0..2).map(|_| {
                let ctx = Context::current().expect("a stream has a context");
                Ok::<_, ServiceError>(describe(&ctx))
            })
        })
}

/// What a handler tells of its context.
fn describe(ctx: &Context) -> Value {
    let headers = ctx
        .headers()
        .into_iter()
        .map(|(k, v)| (Value::from(k), v))
        .collect();
    Value::Map(vec![
        ("method".into(), ctx.method().into()),
        ("peer".into(), Value::Binary(ctx.peer().to_vec())),
        ("id".into(), Value::Binary(ctx.request_id().to_vec())),
        (
            "remaining_ms".into(),
            ctx.remaining()
                .map_or(Value::Nil, |r| (r.as_millis() as u64).into()),
        ),
        ("headers".into(), Value::Map(headers)),
    ])
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_their_context_and_the_callers_metadata() {
    let dropped = Dropped::default();
    let (_server, ep) = serve(service(&dropped)).await;
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(5)))
        .header("tenant", "acme")
        .header("user", 1)
        .start()
        .await
        .unwrap();
    // A call's own keys come after the client's, and win over them.
    let opts = CallOptions::default()
        .header("user", 7)
        .header("trace", "t1");
    let seen = client
        .call_dynamic_with("whoami", vec![], opts.clone())
        .await
        .unwrap();
    assert_eq!(get(&seen, "method"), &Value::from("whoami"));
    assert!(!get(&seen, "peer").as_slice().unwrap().is_empty());
    assert_eq!(get(&seen, "id").as_slice().unwrap()[..2], [0xc4, 0x20]);
    let remaining = get(&seen, "remaining_ms").as_u64().unwrap();
    assert!((4000..=5000).contains(&remaining), "{remaining} ms left");
    assert_eq!(
        get(&seen, "headers"),
        &Value::Map(vec![
            ("tenant".into(), "acme".into()),
            ("user".into(), 7.into()),
            ("trace".into(), "t1".into()),
        ])
    );
    // Blocking handlers and streams see it too.
    let seen = client
        .call_dynamic_with("whoami_blocking", vec![], opts.clone())
        .await
        .unwrap();
    assert_eq!(get(&seen, "method"), &Value::from("whoami_blocking"));
    assert_eq!(get(get(&seen, "headers"), "user"), &Value::from(7));
    let items: Vec<Value> = client
        .stream_with::<_, Value>("whoami_stream", (), opts)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(get(get(item, "headers"), "tenant"), &Value::from("acme"));
    }
    // The deadline covers a stream's first item only, as the caller's
    // timeout does: the second has none.
    assert_ne!(get(&items[0], "remaining_ms"), &Value::Nil);
    assert_eq!(get(&items[1], "remaining_ms"), &Value::Nil);
    // Outside a handler there is none.
    assert!(Context::current().is_none());
}

#[tokio::test]
async fn the_protocols_own_header_keys_are_refused() {
    let (_server, ep) = serve(service(&Dropped::default())).await;
    let client = Client::connect(&ep).await.unwrap();
    for key in ["message_id", "v", "response_to", "timeout_ms"] {
        let opts = CallOptions::default().header(key, 1);
        let e = client
            .call_dynamic_with("whoami", vec![], opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains(key)),
            "{key}: {e:?}"
        );
    }
}

/// A layer that rejects calls without the right token, with its own error.
fn auth_layer(
) -> tower::filter::FilterLayer<impl Fn(Request) -> Result<Request, ServiceError> + Clone> {
    tower::filter::FilterLayer::new(|req: Request| {
        match req
            .context()
            .header("token")
            .as_ref()
            .and_then(Value::as_str)
        {
            Some("s3cret") => Ok(req),
            _ => Err(ServiceError::new(
                "PermissionDenied",
                format!("{} needs a valid token", req.method()),
            )),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_rejects_with_its_own_error_and_tower_layers_apply() {
    let dropped = Dropped::default();
    // Layers added first are outermost: they see a request first.
    let order = Arc::new(Mutex::new(Vec::new()));
    let note = |name: &'static str| {
        let order = order.clone();
        tower::util::MapRequestLayer::new(move |req: Request| {
            order.lock().unwrap().push(name);
            req
        })
    };
    let server = Server::builder(service(&dropped))
        .bind("tcp://127.0.0.1:0")
        .layer(note("outer"))
        .layer(auth_layer())
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            300,
        )))
        .layer(note("inner"))
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let client = Client::connect(&ep).await.unwrap();

    let e = client.call::<_, Value>("whoami", ()).await.unwrap_err();
    let remote = e.remote().expect("an ERR");
    assert_eq!(remote.name, "PermissionDenied");
    assert_eq!(remote.message, "whoami needs a valid token");
    assert_eq!(
        *order.lock().unwrap(),
        vec!["outer"],
        "rejected before the inner layers"
    );

    let with_token = || CallOptions::default().header("token", "s3cret");
    let seen = client
        .call_dynamic_with("whoami", vec![], with_token())
        .await
        .unwrap();
    assert_eq!(get(&seen, "method"), &Value::from("whoami"));
    assert_eq!(*order.lock().unwrap(), vec!["outer", "outer", "inner"]);

    // tower's TimeoutLayer: its error answers the caller, and the handler
    // is dropped.
    let e = client
        .call_dynamic_with("slow", vec![Value::from(5.0)], with_token())
        .await
        .unwrap_err();
    let remote = e.remote().expect("an ERR");
    assert_eq!(remote.name, "MiddlewareError");
    assert!(remote.message.contains("timed out"), "{remote:?}");
    assert!(dropped.within(Duration::from_secs(1)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_layer_queues_requests() {
    let dropped = Dropped::default();
    let server = Server::builder(service(&dropped))
        .bind("tcp://127.0.0.1:0")
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .start()
        .await
        .unwrap();
    let client = Client::connect(&server.endpoints()[0]).await.unwrap();
    let start = Instant::now();
    let calls = (0..3).map(|_| client.call::<_, String>("slow", (0.2,)));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), "done");
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "three 200 ms calls one at a time took {took:?}"
    );
}

/// Counts calls and adds a header; refuses method `forbidden` unsent.
struct Audit {
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl CallHook for Audit {
    fn before(&self, call: &mut Outgoing<'_>) -> Result<(), Error> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} before {}", self.name, call.method()));
        if call.method() == "forbidden" {
            return Err(Error::Config("forbidden by policy".into()));
        }
        call.set_header("audited_by", self.name);
        Ok(())
    }

    fn after(&self, method: &str, result: Result<(), &Error>, elapsed: Duration) {
        let outcome = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.remote().map_or("failed".into(), |r| r.name.clone()),
        };
        assert!(elapsed < Duration::from_secs(5));
        self.log
            .lock()
            .unwrap()
            .push(format!("{} after {method} {outcome}", self.name));
    }
}

#[tokio::test]
async fn client_hooks_run_in_order_around_each_call() {
    let (_server, ep) = serve(service(&Dropped::default())).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let client = Client::builder()
        .connect(&ep)
        .hook(Audit {
            log: log.clone(),
            name: "first",
        })
        .hook(Audit {
            log: log.clone(),
            name: "second",
        })
        .start()
        .await
        .unwrap();
    let seen: Value = client.call("whoami", ()).await.unwrap();
    // The last hook to set a key wins.
    assert_eq!(
        get(get(&seen, "headers"), "audited_by"),
        &Value::from("second")
    );
    let e = client.call::<_, Value>("nosuch", ()).await.unwrap_err();
    assert_eq!(e.remote().unwrap().name, "NameError");
    let e = client.call::<_, Value>("forbidden", ()).await.unwrap_err();
    assert!(matches!(e, Error::Config(_)));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "first before whoami",
            "second before whoami",
            "second after whoami ok",
            "first after whoami ok",
            "first before nosuch",
            "second before nosuch",
            "second after nosuch NameError",
            "first after nosuch NameError",
            "first before forbidden",
            "second after forbidden failed",
            "first after forbidden failed",
        ]
    );
}

/// The acceptance run: timeout 1 s, a 10 s handler, cancelled
/// within 1.2 s. (The server's deadline and the client's `_zpc_cancel` on
/// timeout each do it; `no_late_reply_after_the_deadline` checks the
/// deadline alone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_cancelled_at_its_callers_deadline() {
    let dropped = Dropped::default();
    let (_server, ep) = serve(service(&dropped)).await;
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    let start = Instant::now();
    let e = client.call::<_, String>("slow", (10.0,)).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    let at = dropped
        .within(Duration::from_secs(3))
        .await
        .expect("the handler was cancelled");
    let after = at - start;
    assert!(
        after <= Duration::from_millis(1200),
        "cancelled {after:?} after the call began"
    );
}

/// The server sends nothing after the deadline: a raw DEALER with
/// `timeout_ms: 300` waits 1.5 s and gets no reply to `slow(1)`, whose
/// handler was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_late_reply_after_the_deadline() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
    let dropped = Dropped::default();
    let (_server, ep) = serve(service(&dropped)).await;
    let mut raw = DealerSocket::new();
    raw.connect(&ep).await.unwrap();
    let mut extra = zerorpc::protocol::HeaderExtra::default();
    extra.set_timeout_ms(300);
    let args = Value::Array(vec![Value::from(1.0)]);
    let mut frame = Vec::new();
    rmpv::encode::write_value(&mut frame, &args).unwrap();
    let (_, request) = zerorpc::protocol::encode_request_with_header("slow", &extra, &frame);
    let mut msg = ZmqMessage::from(bytes::Bytes::new());
    msg.push_back(request.into());
    raw.send(msg).await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            let m = raw.recv().await.unwrap();
            let payload = m.get(m.len() - 1).unwrap().clone();
            let ev = zerorpc::protocol::Event::decode(&payload).unwrap();
            if ev.name != Ok("_zpc_hb") {
                return ev.name.unwrap().to_string();
            }
        }
    })
    .await;
    assert!(got.is_err(), "a reply came after the deadline: {got:?}");
    assert!(dropped.within(Duration::ZERO).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_inside_a_handler_inherits_its_deadline() {
    // B sleeps; A calls B from its handler. The client gives A 1 s, so B's
    // handler is cancelled at that deadline too, not at its own 30 s.
    let dropped_b = Dropped::default();
    let (_b, ep_b) = serve(service(&dropped_b)).await;
    let to_b = Client::connect(&ep_b).await.unwrap();
    let to_b2 = to_b.clone();
    let a = Service::new("a")
        .method("relay", move |(secs,): (f64,)| {
            let to_b = to_b.clone();
            async move {
                let r: String = to_b.call("slow", (secs,)).await?;
                Ok::<_, ServiceError>(r)
            }
        })
        .method("relay_whoami", move |(): ()| {
            let to_b = to_b2.clone();
            async move {
                to_b.call::<_, Value>("whoami", ())
                    .await
                    .map_err(ServiceError::from)
            }
        });
    let (_a, ep_a) = serve(a).await;
    let client = Client::builder()
        .connect(&ep_a)
        .timeout(Some(Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    // B is told the time A has left (its own client would give 30 s).
    let seen: Value = client.call("relay_whoami", ()).await.unwrap();
    let left = get(&seen, "remaining_ms").as_u64().unwrap();
    assert!(left <= 1000, "B was given {left} ms");
    let start = Instant::now();
    assert!(client.call::<_, String>("relay", (10.0,)).await.is_err());
    let at = dropped_b
        .within(Duration::from_secs(3))
        .await
        .expect("B's handler was cancelled");
    assert!(
        at - start <= Duration::from_millis(1300),
        "B cancelled {:?} after the call began",
        at - start
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_cancels_its_handler_at_once() {
    let dropped = Dropped::default();
    let (_server, ep) = serve(service(&dropped)).await;
    // Default heartbeats (5 s): without a cancel event the server would
    // notice after 10-15 s.
    let client = Client::connect(&ep).await.unwrap();
    let call = client.call::<_, String>("slow", (30.0,));
    assert!(tokio::time::timeout(Duration::from_millis(300), call)
        .await
        .is_err());
    let gave_up = Instant::now();
    let at = dropped
        .within(Duration::from_secs(3))
        .await
        .expect("the handler was cancelled");
    assert!(
        at.saturating_duration_since(gave_up) <= Duration::from_millis(300),
        "cancelled {:?} after the caller gave up",
        at.saturating_duration_since(gave_up)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_stops_its_producer_at_once() {
    let stopped = Arc::new(AtomicBool::new(false));
    let s = stopped.clone();
    let svc = Service::new("s").stream("forever", move |(): ()| {
        let s = s.clone();
        futures::stream::unfold((0u64, DropFlag(s)), |(i, f)| async move {
            Some((Ok::<_, ServiceError>(i), (i + 1, f)))
        })
    });
    let (_server, ep) = serve(svc).await;
    let client = Client::connect(&ep).await.unwrap();
    let mut items = client.stream::<_, u64>("forever", ()).await.unwrap();
    for i in 0..10 {
        assert_eq!(items.next().await.unwrap().unwrap(), i);
    }
    drop(items);
    let start = Instant::now();
    while !stopped.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "the producer ran on after the reader dropped the stream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A handler's first poll runs inline in the server's core, with its
/// context lent rather than moved into the task-local: the context is the
/// request's own before and after an await, a scope opened inside that
/// first poll wins over it, and nothing of it leaks to the next request or
/// out of the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_poll_sees_its_own_context_and_inner_scopes_win() {
    let remembered: Arc<Mutex<Option<Context>>> = Arc::default();
    let keep = remembered.clone();
    let other = remembered.clone();
    let id =
        |ctx: Option<Context>| ctx.map_or(Value::Nil, |c| Value::from(c.request_id().to_vec()));
    let svc = Service::new("lent")
        .method("remember", move |(): ()| {
            let ctx = Context::current().expect("a handler has a context");
            let id = Value::from(ctx.request_id().to_vec());
            *keep.lock().unwrap() = Some(ctx);
            async move { Ok::<_, ServiceError>(id) }
        })
        .method("nested", move |(): ()| {
            // All of this runs in the first poll, before any await.
            let own = id(Context::current());
            let earlier = other.lock().unwrap().clone().expect("remember ran first");
            let in_sync_scope = id(earlier.clone().sync_scope(Context::current));
            let in_scope =
                futures::FutureExt::now_or_never(earlier.scope(async { Context::current() }))
                    .map(id)
                    .unwrap_or(Value::Nil);
            let after_scopes = id(Context::current());
            async move {
                tokio::task::yield_now().await;
                let after_await = id(Context::current());
                Ok::<_, ServiceError>(Value::Array(vec![
                    own,
                    in_sync_scope,
                    in_scope,
                    after_scopes,
                    after_await,
                ]))
            }
        });
    let (_server, ep) = serve(svc).await;
    let client = Client::connect(&ep).await.unwrap();
    let earlier = client.call_dynamic("remember", vec![]).await.unwrap();
    let seen = client.call_dynamic("nested", vec![]).await.unwrap();
    let seen = seen.as_array().unwrap();
    let own = &seen[0];
    assert!(own.as_slice().is_some(), "the first poll has a context");
    assert_ne!(own, &earlier);
    assert_eq!(&seen[1], &earlier, "sync_scope inside the first poll");
    assert_eq!(&seen[2], &earlier, "scope inside the first poll");
    assert_eq!(&seen[3], own, "after the scopes");
    assert_eq!(&seen[4], own, "after an await (in the request's task)");
    assert!(Context::current().is_none());
}
