//! The broker: zrpc, zerorpc-python and zerorpc-node clients through it to
//! zrpc and zerorpc-python workers that connect (processes), with streams,
//! long calls, a worker killed mid-call, workers joining, calls waiting
//! for a worker, and nothing kept for peers that left.

use crate::common;

use common::*;
use futures::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};
use zerorpc::{Broker, CallOptions, Client, Error, Value};

/// A broker in this process (heartbeat 1 s), on free loopback ports.
async fn broker() -> Broker {
    Broker::builder()
        .frontend("tcp://127.0.0.1:0")
        .backend("tcp://127.0.0.1:0")
        .heartbeat(Some(Duration::from_secs(1)))
        .start()
        .await
        .expect("the broker starts")
}

/// `zrpc --server --connect BACKEND` serving echo (echo, count, sum …)
/// and `sleep(seconds)` (a shell command), heartbeat 1 s.
fn zrpc_worker(backend: &str, name: &str) -> Proc {
    spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
            "--server",
            "--connect",
            backend,
            "--heartbeat",
            "1",
            "--server-name",
            name,
            "--exec",
            "sleep=sleep",
            "echo",
        ]),
        "serving",
        true,
    )
}

/// zerorpc-python 0.6.3 connecting to BACKEND (echo, count, sleep, …).
fn python_worker(backend: &str) -> Proc {
    spawn_until(
        Command::new(python())
            .arg(script("py_server.py"))
            .arg(backend)
            .arg("1.0")
            .arg("connect"),
        "READY",
        false,
    )
}

async fn until_workers(broker: &Broker, n: usize) {
    let start = Instant::now();
    while broker.workers().await.len() != n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{n} workers did not connect: {:?}",
            broker.workers().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client(ep: &str) -> Client {
    Client::builder()
        .connect(ep)
        .heartbeat(Some(Duration::from_secs(1)))
        .timeout(Some(Duration::from_secs(20)))
        .start()
        .await
        .expect("client starts")
}

async fn until_idle(broker: &Broker) {
    let start = Instant::now();
    loop {
        let load = broker.load().await;
        if load.in_flight == 0 && load.queued == 0 && load.clients == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the broker still holds {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_through_a_broker_to_zrpc_and_python_workers() {
    let broker = broker().await;
    let (front, back) = (broker.frontend()[0].clone(), broker.backend()[0].clone());
    let _zw = zrpc_worker(&back, "zw");
    let _pw = python_worker(&back);
    until_workers(&broker, 2).await;

    // zrpc: calls, streams, long calls (2.5 heartbeats), both workers used.
    let c = client(&front).await;
    for i in 0..20 {
        let v = c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap();
        assert_eq!(v, Value::from(i));
    }
    for _ in 0..4 {
        let items: Vec<u64> = c
            .stream::<_, u64>("count", (500,))
            .await
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(items, (0..500).collect::<Vec<_>>());
    }
    let started = Instant::now();
    let (a, b) = tokio::join!(
        c.call_dynamic("sleep", vec![Value::from(2.5)]),
        c.call_dynamic("sleep", vec![Value::from(2.5)])
    );
    a.unwrap();
    b.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(2400));
    let workers = broker.workers().await;
    assert!(
        workers.iter().all(|w| w.calls >= 10),
        "both workers take calls: {workers:?}"
    );
    // Introspection goes to a worker: the workers' service, not the broker.
    let name = c.call_dynamic("_zerorpc_name", vec![]).await.unwrap();
    assert!(
        name == Value::from("echo") || name == Value::from("Svc"),
        "{name}"
    );
    c.close(Duration::from_secs(1)).await.unwrap();

    // zerorpc-python and zerorpc-node clients, the same calls.
    let ep = front.clone();
    tokio::task::spawn_blocking(move || python_client(&ep, "broker"))
        .await
        .unwrap();
    // zerorpc-node to the zrpc worker alone: node and Python do not
    // stream to each other past node's first credit, nor keep long calls
    // alive, broker or not (see node_client.js).
    drop(_pw);
    until_workers(&broker, 1).await;
    let ep = front.clone();
    tokio::task::spawn_blocking(move || node_client(&ep, "broker"))
        .await
        .unwrap();
    until_idle(&broker).await;
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_call_fails_only_its_calls_at_once() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let doomed = zrpc_worker(&back, "doomed");
    let _kept = zrpc_worker(&back, "kept");
    until_workers(&broker, 2).await;
    let c = client(&broker.frontend()[0]).await;
    // Two long calls: one on each worker (the least loaded takes each).
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let r = c.call_dynamic("sleep", vec![Value::from(3)]).await;
                (Instant::now(), r)
            })
        })
        .collect();
    let start = Instant::now();
    while broker.workers().await.iter().any(|w| w.in_flight != 1) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            broker.workers().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Instant::now();
    doomed.signal(9);
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    outcomes.sort_by_key(|(at, _)| *at);
    let (lost_at, lost) = &outcomes[0];
    assert!(
        matches!(lost, Err(Error::LostRemote { .. })),
        "the call on the killed worker: {lost:?}"
    );
    assert!(
        lost_at.duration_since(killed) < Duration::from_millis(1000),
        "failed {:?} after the kill",
        lost_at.duration_since(killed)
    );
    assert!(outcomes[1].1.is_ok(), "the other call: {:?}", outcomes[1].1);
    // New calls go to the worker that is left.
    until_workers(&broker, 1).await;
    for i in 0..5 {
        let v = c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap();
        assert_eq!(v, Value::from(i));
    }
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_workers_take_a_share_and_calls_wait_for_one() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let c = client(&broker.frontend()[0]).await;
    // No worker yet: the call waits (heartbeated: 3 s is three heartbeat
    // periods), and is answered when one joins.
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { c.call_dynamic("echo", vec![Value::from("waited")]).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(broker.load().await.queued, 1);
    let _first = zrpc_worker(&back, "first");
    assert_eq!(waiting.await.unwrap().unwrap(), Value::from("waited"));
    // A call whose deadline passes while it waits is dropped from the queue.
    let _second = zrpc_worker(&back, "second");
    let _third = zrpc_worker(&back, "third");
    until_workers(&broker, 3).await;
    let before: u64 = broker.workers().await.iter().map(|w| w.calls).sum();
    let calls = (0..60).map(|i| {
        let c = c.clone();
        async move { c.call_dynamic("echo", vec![Value::from(i)]).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let workers = broker.workers().await;
    let after: u64 = workers.iter().map(|w| w.calls).sum();
    assert_eq!(after - before, 60);
    assert!(
        workers.iter().all(|w| w.calls >= 10),
        "every worker takes a share of 60 concurrent calls: {workers:?}"
    );
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_and_deadlines_empty_it() {
    let broker = Broker::builder()
        .frontend("tcp://127.0.0.1:0")
        .backend("tcp://127.0.0.1:0")
        .heartbeat(Some(Duration::from_secs(1)))
        .queue(2)
        .start()
        .await
        .unwrap();
    let c = client(&broker.frontend()[0]).await;
    let short = CallOptions::timeout(Duration::from_millis(700));
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (c, o) = (c.clone(), short.clone());
            tokio::spawn(async move { c.call_dynamic_with("echo", vec![Value::from(1)], o).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = c
        .call_dynamic_with("echo", vec![Value::from(1)], short.clone())
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("ServerBusy"),
        "{e:?}"
    );
    for w in waiting {
        let e = w.await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    }
    // Their deadlines passed: the broker keeps nothing of them (it looks
    // at its queue every half heartbeat).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(broker.load().await.queued, 0);
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_keeps_nothing_of_clients_and_workers_that_left() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let _kept = zrpc_worker(&back, "kept");
    {
        // Workers that come and go.
        let _gone = zrpc_worker(&back, "gone1");
        let _gone2 = zrpc_worker(&back, "gone2");
        until_workers(&broker, 3).await;
    }
    until_workers(&broker, 1).await;
    // Clients that call and leave, one of them in the middle of a long call.
    for i in 0..30 {
        let c = client(&broker.frontend()[0]).await;
        let v = c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap();
        assert_eq!(v, Value::from(i));
        c.close(Duration::from_secs(1)).await.unwrap();
    }
    let c = client(&broker.frontend()[0]).await;
    let long = {
        let c = c.clone();
        tokio::spawn(async move { c.call_dynamic("sleep", vec![Value::from(30)]).await })
    };
    let start = Instant::now();
    while broker.load().await.in_flight != 1 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    long.abort();
    drop(c);
    until_idle(&broker).await;
    let load = broker.load().await;
    assert_eq!(
        (load.in_flight, load.queued, load.clients, load.workers),
        (0, 0, 0, 1)
    );
    let workers = broker.workers().await;
    assert_eq!(workers[0].in_flight, 0, "{workers:?}");
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[test]
fn zrpc_broker_from_the_command_line() {
    let (front, back) = (
        format!("tcp://127.0.0.1:{}", free_port()),
        format!("tcp://127.0.0.1:{}", free_port()),
    );
    let _broker = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
            "--broker",
            "--frontend",
            &front,
            "--backend",
            &back,
        ]),
        "brokering",
        true,
    );
    let _w1 = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--server", "--connect", &back, "calc"]),
        "serving",
        true,
    );
    let _w2 = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--server", "--connect", &back, "calc"]),
        "serving",
        true,
    );
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args(args)
            .output()
            .expect("run zrpc");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // (The workers connect in the background: the first call may wait.)
    assert_eq!(run(&[&front, "add", "2", "3"]).1, "5\n");
    let (_, listing, _) = run(&["-?", &front]);
    assert!(listing.contains("add(a, b)"), "{listing}");
    // Usage errors are one line.
    let (code, _, err) = run(&["--broker", "--frontend", &front]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--backend"), "{err}");
}

/// `zrpc --broker` on the given ports (killed when dropped).
fn broker_process(front: &str, back: &str, extra: &[&str]) -> Proc {
    spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args([
                "--broker",
                "--heartbeat",
                "1",
                "--frontend",
                front,
                "--backend",
                back,
            ])
            .args(extra),
        "brokering",
        true,
    )
}

fn free_endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_fail_over_and_a_restarted_one_is_used_again() {
    let (f1, b1, f2, b2) = (
        free_endpoint(),
        free_endpoint(),
        free_endpoint(),
        free_endpoint(),
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut one = broker_process(&f1, &b1, &["--metrics", &metrics]);
    let two = broker_process(&f2, &b2, &[]);
    // One worker serving both brokers.
    let _worker = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
            "--server",
            "--heartbeat",
            "1",
            "--connect",
            &b1,
            "--connect",
            &b2,
            "echo",
        ]),
        "serving",
        true,
    );
    let c = Client::builder()
        .connect(&f1)
        .connect(&f2)
        .heartbeat(Some(Duration::from_secs(1)))
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    let calls = |c: Client| async move {
        for i in 0..20 {
            let v = c.call_dynamic("echo", vec![Value::from(i)]).await;
            assert_eq!(v.unwrap(), Value::from(i));
        }
    };
    calls(c.clone()).await;
    let body = tokio::task::spawn_blocking(move || crate::cli_flags::scrape(&metrics))
        .await
        .unwrap();
    assert!(body.contains("zrpc_broker_workers 1"), "{body}");
    // Until the client sees broker `ep` connected (or not).
    let until = |c: Client, ep: String, connected: bool| async move {
        let start = Instant::now();
        while !c
            .servers()
            .iter()
            .any(|s| s.endpoint == ep && s.connected == connected)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{:?}",
                c.servers()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // One broker goes: once the client has seen it go (a call sent in the
    // instant before is lost, as with a server), the calls go to the other.
    one.signal(9);
    let _ = one.wait_for(Duration::from_secs(5));
    until(c.clone(), f1.clone(), false).await;
    calls(c.clone()).await;
    // It comes back, and the other goes: the calls go to it.
    let _one = broker_process(&f1, &b1, &[]);
    until(c.clone(), f1.clone(), true).await;
    drop(two);
    until(c.clone(), f2.clone(), false).await;
    calls(c.clone()).await;
    c.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_finishes_its_calls_and_gets_no_new_ones() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let stopping = zrpc_worker(&back, "stopping");
    until_workers(&broker, 1).await;
    let c = client(&broker.frontend()[0]).await;
    let long = {
        let c = c.clone();
        tokio::spawn(async move { c.call_dynamic("sleep", vec![Value::from(1.5)]).await })
    };
    let _other = zrpc_worker(&back, "other");
    until_workers(&broker, 2).await;
    stopping.signal(15);
    let start = Instant::now();
    while !broker.workers().await.iter().any(|w| w.draining) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            broker.workers().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..10 {
        assert_eq!(
            c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap(),
            Value::from(i)
        );
    }
    assert!(
        long.await.unwrap().is_ok(),
        "the stopping worker finishes its call"
    );
    let other = broker.workers().await;
    assert!(
        other.iter().any(|w| !w.draining && w.calls == 10),
        "new calls went to the other worker: {other:?}"
    );
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_on_each_side_lets_in_only_its_own_keys() {
    use zerorpc::security::{Curve, CurveKeyPair};
    let broker_keys = CurveKeyPair::generate();
    let (client_keys, worker_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let broker = Broker::builder()
        .frontend("tcp://127.0.0.1:0")
        .backend("tcp://127.0.0.1:0")
        .frontend_curve(Curve::server(broker_keys.clone()).allow(client_keys.public()))
        .backend_curve(Curve::server(broker_keys.clone()).allow(worker_keys.public()))
        .start()
        .await
        .unwrap();
    let worker = |keys: CurveKeyPair| {
        zerorpc::Server::builder(zerorpc::Service::new("w").dynamic("echo", |v| async move {
            Ok::<_, zerorpc::ServiceError>(v.into_iter().next().unwrap_or(Value::Nil))
        }))
        .connect(broker.backend()[0].clone())
        .curve(Curve::client(keys, broker_keys.public()))
        .start()
    };
    // A worker with a key the backend does not know never joins.
    let _stranger = worker(CurveKeyPair::generate()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(broker.workers().await.is_empty());
    let _worker = worker(worker_keys.clone()).await.unwrap();
    until_workers(&broker, 1).await;
    let client = |keys: CurveKeyPair| {
        Client::builder()
            .connect(broker.frontend()[0].clone())
            .curve(Curve::client(keys, broker_keys.public()))
            .timeout(Some(Duration::from_secs(2)))
            .start()
    };
    let c = client(client_keys).await.unwrap();
    assert_eq!(
        c.call_dynamic("echo", vec![Value::from("secret")])
            .await
            .unwrap(),
        Value::from("secret")
    );
    // The worker's key is not a client's: refused at the frontend.
    let wrong = client(worker_keys).await.unwrap();
    let e = wrong
        .call_dynamic("echo", vec![Value::from(1)])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(
        e.to_string().contains("CURVE")
            || e.to_string().contains("refused")
            || e.to_string().contains("connected"),
        "{e}"
    );
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_reused_ids_are_refused_and_the_broker_keeps_serving() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
    let broker = broker().await;
    let _worker = zrpc_worker(&broker.backend()[0], "w");
    until_workers(&broker, 1).await;
    let msg = |frames: Vec<&'static [u8]>| {
        ZmqMessage::try_from(
            frames
                .into_iter()
                .map(bytes::Bytes::from_static)
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    // A client sending what is not an event, and a request whose id it
    // reuses while the first is in flight.
    let mut raw = DealerSocket::new();
    raw.connect(&broker.frontend()[0]).await.unwrap();
    raw.send(msg(vec![b"", b"\xc1not msgpack"])).await.unwrap();
    raw.send(msg(vec![b"", b"\x93\x80\xa4echo"])).await.unwrap();
    let request = |id: u8, secs: f64| {
        let ev = Value::Array(vec![
            Value::Map(vec![
                (Value::from("message_id"), Value::Binary(vec![id; 16])),
                (Value::from("v"), Value::from(3)),
            ]),
            Value::from("sleep"),
            Value::Array(vec![Value::from(secs)]),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &ev).unwrap();
        ZmqMessage::try_from(vec![bytes::Bytes::new(), out.into()]).unwrap()
    };
    raw.send(request(7, 0.5)).await.unwrap();
    raw.send(request(7, 0.5)).await.unwrap();
    let mut names = Vec::new();
    while names.len() < 2 {
        let reply = tokio::time::timeout(Duration::from_secs(5), raw.recv())
            .await
            .expect("two answers within 5 s")
            .unwrap();
        let payload = reply.get(reply.len() - 1).unwrap().clone();
        let ev = zerorpc::protocol::Event::decode(&payload).unwrap();
        let name = ev.name.unwrap().to_string();
        if name != "_zpc_hb" {
            let args: Value = rmpv::decode::read_value(&mut &ev.args[..]).unwrap();
            names.push(format!("{name} {args}"));
        }
    }
    names.sort();
    assert!(names[0].contains("already a call in flight"), "{names:?}");
    assert!(names[1].starts_with("OK"), "{names:?}");
    // Still serving: a well-behaved client's calls are answered.
    let c = client(&broker.frontend()[0]).await;
    for i in 0..10 {
        let v = c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap();
        assert_eq!(v, Value::from(i));
    }
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_fails_its_calls_and_gets_no_new_ones() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let frozen = zrpc_worker(&back, "frozen");
    let _alive = zrpc_worker(&back, "alive");
    until_workers(&broker, 2).await;
    let c = client(&broker.frontend()[0]).await;
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call_dynamic("sleep", vec![Value::from(4)]).await })
        })
        .collect();
    let start = Instant::now();
    while broker.workers().await.iter().any(|w| w.in_flight != 1) {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Frozen: connected, but nothing comes from it any more.
    frozen.signal(19);
    let frozen_at = Instant::now();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(Error::LostRemote { .. })))
        .count();
    assert_eq!(lost, 1, "{results:?}");
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    // Found within two heartbeat periods and a tick, not at the call's end.
    let workers = broker.workers().await;
    assert!(workers.iter().any(|w| w.silent), "{workers:?}");
    let before: Vec<u64> = workers.iter().map(|w| w.calls).collect();
    for i in 0..6 {
        assert_eq!(
            c.call_dynamic("echo", vec![Value::from(i)]).await.unwrap(),
            Value::from(i)
        );
    }
    let after = broker.workers().await;
    for (w, b) in after.iter().zip(&before) {
        if w.silent {
            assert_eq!(w.calls, *b, "a silent worker got new calls: {after:?}");
        }
    }
    assert!(frozen_at.elapsed() < Duration::from_secs(6));
    frozen.signal(18);
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_a_named_worker_through_the_broker() {
    let broker = broker().await;
    let back = broker.backend()[0].clone();
    let _w1 = zrpc_worker(&back, "w1");
    let _w2 = zrpc_worker(&back, "w2");
    let _py = python_worker(&back);
    until_workers(&broker, 3).await;
    let c = client(&broker.frontend()[0]).await;
    // The broker learns its workers' names as they connect.
    let start = Instant::now();
    loop {
        let names = c.call_dynamic("_zrpc_server_name", vec![]).await.unwrap();
        if names == Value::Array(vec![Value::from("w1"), Value::from("w2")]) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{names}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = broker.workers().await;
    let to_w2 = CallOptions::default().to("w2");
    for i in 0..10 {
        let v = c
            .call_dynamic_with("echo", vec![Value::from(i)], to_w2.clone())
            .await;
        assert_eq!(v.unwrap(), Value::from(i));
    }
    let after = broker.workers().await;
    let given: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.calls - b.calls)
        .collect();
    assert_eq!(given.iter().sum::<u64>(), 10);
    assert!(given.contains(&10), "all ten went to one worker: {given:?}");
    // A name no worker has: refused before anything runs, naming them.
    let e = c
        .call_dynamic_with(
            "echo",
            vec![Value::from(1)],
            CallOptions::default().to("w9"),
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::UnknownServer { .. }), "{e:?}");
    assert!(e.to_string().contains("workers: w1, w2"), "{e}");
    // A worker that joins later is found by name (the broker is asked again).
    let _w3 = zrpc_worker(&back, "w3");
    until_workers(&broker, 4).await;
    let start = Instant::now();
    loop {
        match c
            .call_dynamic_with(
                "echo",
                vec![Value::from("late")],
                CallOptions::default().to("w3"),
            )
            .await
        {
            Ok(v) => break assert_eq!(v, Value::from("late")),
            Err(Error::UnknownServer { .. }) if start.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // From the shell: --to through the broker.
    let front = broker.frontend()[0].clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args(["--to", "w1", &front, "echo", "x"])
            .output()
            .expect("run zrpc")
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n", "{out:?}");
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_from_the_caller_go_through_the_broker() {
    let broker = broker().await;
    let _w = zrpc_worker(&broker.backend()[0], "w");
    until_workers(&broker, 1).await;
    let c = client(&broker.frontend()[0]).await;
    // The worker's credit reaches the caller through the broker, and the
    // caller's items the worker.
    let total: i64 = c
        .client_stream("sum", (), futures::stream::iter(1..=20_000i64))
        .await
        .unwrap();
    assert_eq!(total, 20_000 * 20_001 / 2);
    let words = futures::stream::iter((0..300).map(|i| format!("w{i}")));
    let upper: Vec<String> = c
        .bidi_stream::<_, _, String>("upper", (), words)
        .await
        .unwrap()
        .map(|w| w.unwrap())
        .collect()
        .await;
    assert_eq!(upper, (0..300).map(|i| format!("W{i}")).collect::<Vec<_>>());
    until_idle(&broker).await;
    c.close(Duration::from_secs(1)).await.unwrap();
    broker.close(Duration::from_secs(1)).await.unwrap();
}
