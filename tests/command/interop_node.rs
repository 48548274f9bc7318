//! Interop with the real zerorpc-node 0.9.8, in both directions. Node is
//! stricter than Python in places (it drops any event without the empty
//! delimiter, and declares a peer lost after two heartbeat periods without a
//! `_zpc_hb`), so it catches what Python forgives. Requires the node peer
//! (scripts/test.sh installs it into tests/node/node_modules).

use crate::common;

use common::*;
use futures::StreamExt;
use std::process::Command;
use std::time::{Duration, Instant};
use zerorpc::{Client, Error, Value};

async fn node_scenario(ep: &str, scenario: &'static str) {
    let ep = ep.to_string();
    tokio::task::spawn_blocking(move || node_client(&ep, scenario))
        .await
        .expect("scenario thread");
}

// ---- node client -> zrpc server ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_calls() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    node_scenario(&ep, "calls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_every_value_type_through_echo() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    node_scenario(&ep, "types").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_sees_errors_with_their_names() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    node_scenario(&ep, "errors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_introspection() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    node_scenario(&ep, "introspection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_reads_zrpc_streams() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    node_scenario(&ep, "streams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_long_call_kept_alive_by_heartbeats() {
    let (_server, ep) = start_server(Some(Duration::from_secs(1))).await;
    node_scenario(&ep, "long_call").await;
}

// ---- zrpc client -> node server ----

/// Nothing zrpc sent made the node server report an error.
fn assert_no_node_errors(server: &mut Lines) {
    assert!(
        !server.saw("NODE-ERROR"),
        "the node server reported errors: {:?}",
        server.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_node_server() {
    let (mut server, ep) = node_server(5000);
    let client = Client::connect(&ep).await.unwrap();
    let sum: i64 = client.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    for v in [
        Value::Binary(vec![0, 255, 7]),
        Value::from(-5),
        Value::F64(0.25),
        Value::from("héllo"),
        Value::Nil,
        Value::Map(vec![(
            Value::from("k"),
            Value::Array(vec![Value::Nil, Value::Boolean(true)]),
        )]),
    ] {
        assert_eq!(
            client.call_dynamic("echo", vec![v.clone()]).await.unwrap(),
            v
        );
    }
    let e = client
        .call::<_, ()>("boom", ("bad input",))
        .await
        .unwrap_err();
    let remote = e.remote().expect("a remote error");
    assert_eq!(
        (remote.name.as_str(), remote.message.as_str()),
        ("ValueError", "bad input")
    );
    assert_no_node_errors(&mut server);
}

/// Workers layout with node workers: the zrpc client binds (a ROUTER), two
/// zerorpc-node servers connect to it; calls reach both, and calls longer
/// than two heartbeats keep their heartbeats on their worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_workers_connect_to_a_bound_rust_client() {
    let (client, ep) = bound_client(Duration::from_millis(500)).await;
    let mut workers: Vec<Lines> = (0..2)
        .map(|_| {
            let mut w = Lines::spawn(Command::new("node").current_dir(node()).args([
                "node_server.js",
                ep.as_str(),
                "500",
                "connect",
            ]));
            w.expect("READY", Duration::from_secs(20));
            w
        })
        .collect();
    two_workers_take_long_calls(&client).await;
    for w in &mut workers {
        assert_no_node_errors(w);
    }
}

/// The credit a zrpc reader grants reaches node (it drops events without
/// the empty delimiter: the stream stalled after its first item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_reads_a_node_stream() {
    let (mut server, ep) = node_server(5000);
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(5)))
        .start()
        .await
        .unwrap();
    let items = client.stream::<_, u64>("count", (1000,)).await.unwrap();
    let items: Vec<u64> = tokio::time::timeout(Duration::from_secs(20), items.collect::<Vec<_>>())
        .await
        .expect("the node stream stalled")
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(items, (0..1000).collect::<Vec<_>>());
    assert_no_node_errors(&mut server);
}

/// A call longer than two heartbeat periods: zrpc's heartbeats must reach
/// node, or it declares zrpc lost (and zrpc node's late reply then crashed
/// the node server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_long_call_kept_alive_by_heartbeats() {
    let (mut server, ep) = node_server(1000);
    for passive in [false, true] {
        let client = Client::builder()
            .connect(&ep)
            .heartbeat(Some(Duration::from_secs(1)))
            .passive_heartbeat(passive)
            .start()
            .await
            .unwrap();
        let start = Instant::now();
        let r: String = client.call("sleep", (3.5,)).await.unwrap();
        assert_eq!(r, "slept 3.5");
        assert!(start.elapsed() >= Duration::from_millis(3400));
    }
    // Still alive and serving, with nothing reported.
    let client = Client::connect(&ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    assert_no_node_errors(&mut server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_lost_remote_when_node_server_is_killed() {
    let (server, ep) = node_server(1000);
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(Some(Duration::from_secs(1)))
        .timeout(Some(Duration::from_secs(30)))
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (1, 2)).await.unwrap(), 3);
    let c = client.clone();
    let call = tokio::spawn(async move { c.call::<_, String>("sleep", (20,)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server); // SIGKILL
    let start = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call was not failed")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::LostRemote { .. }), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn zrpc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .output()
        .expect("run zrpc")
}

#[test]
fn cli_calls_and_streams_from_node_server() {
    let (mut server, ep) = node_server(5000);
    let out = zrpc(&[&ep, "add", "2", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    let out = zrpc(&["-pj", &ep, "count", "250"]);
    assert!(out.status.success(), "{out:?}");
    let items: Vec<u64> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(items, (0..250).collect::<Vec<_>>());
    let out = zrpc(&[&ep, "boom", "oops"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "zrpc: remote error ValueError: oops\n"
    );
    assert_no_node_errors(&mut server);
}
