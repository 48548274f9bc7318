//! Interop with the real zerorpc-python 0.6.3, in both directions.
//! Requires the Python peer (scripts/test.sh installs it into .venv).

use crate::common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use zerorpc::{CallOptions, Client, Error, Value};

async fn py_scenario(ep: &str, scenario: &'static str) {
    let ep = ep.to_string();
    tokio::task::spawn_blocking(move || python_client(&ep, scenario))
        .await
        .expect("scenario thread");
}

// ---- Python client -> zrpc server ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_calls() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "calls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_every_msgpack_type_through_echo() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "types").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sends_bytes_to_a_blob_argument() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "blobs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sees_errors_with_their_names() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "errors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_introspection() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "introspection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_long_call_kept_alive_by_heartbeats() {
    let (_server, ep) = start_server(Some(Duration::from_secs(1))).await;
    py_scenario(&ep, "long_call").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_50_concurrent_slow_calls() {
    let (_server, ep) = start_server(Some(Duration::from_secs(5))).await;
    py_scenario(&ep, "concurrent").await;
}

// ---- zrpc client -> Python server ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_python_server() {
    let (_py, ep) = python_server(5.0);
    let client = Client::connect(&ep).await.unwrap();
    let sum: i64 = client.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    let s: String = client.call("add", ("ab", "cd")).await.unwrap();
    assert_eq!(s, "abcd");
    // Types survive a Python round trip, bin and u64 included.
    for v in [
        Value::Binary(vec![0, 255, 7]),
        Value::from(u64::MAX),
        Value::from(-5),
        Value::F64(0.25),
        Value::from("héllo"),
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
}

/// Workers layout with Python workers: the zrpc client binds (a ROUTER),
/// two zerorpc-python servers connect to it; calls reach both, and long
/// calls (beyond two heartbeats) keep their heartbeats on their worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workers_connect_to_a_bound_rust_client() {
    let (client, ep) = bound_client(Duration::from_millis(500)).await;
    let workers: Vec<Proc> = (0..2)
        .map(|_| {
            spawn_until(
                Command::new(python()).arg(script("py_server.py")).args([
                    ep.as_str(),
                    "0.5",
                    "connect",
                ]),
                "READY",
                false,
            )
        })
        .collect();
    two_workers_take_long_calls(&client).await;
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_gets_python_errors_with_traceback() {
    let (_py, ep) = python_server(5.0);
    let client = Client::connect(&ep).await.unwrap();
    let err = client
        .call::<_, Value>("boom", ("kaput",))
        .await
        .unwrap_err();
    let remote = err.remote().expect("a remote error");
    assert_eq!(remote.name, "ValueError");
    assert_eq!(remote.message, "kaput");
    assert!(
        remote
            .traceback
            .contains("Traceback (most recent call last)"),
        "{}",
        remote.traceback
    );
    let err = client.call::<_, Value>("nosuch", ()).await.unwrap_err();
    assert_eq!(err.remote().map(|r| r.name.as_str()), Some("NameError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_times_out_on_python_server() {
    let (_py, ep) = python_server(5.0);
    let client = Client::connect(&ep).await.unwrap();
    let start = Instant::now();
    let err = client
        .call_with::<_, Value>(
            "sleep",
            (3,),
            CallOptions::timeout(Duration::from_millis(800)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_millis(2500));
    // The client is still usable.
    assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_long_call_kept_alive_by_heartbeats() {
    let (_py, ep) = python_server(1.0);
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(Some(Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    let r: String = client.call("sleep", (3.5,)).await.unwrap();
    assert_eq!(r, "slept 3.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_lost_remote_when_python_server_is_killed() {
    let (mut py, ep) = python_server(1.0);
    let client = Client::builder()
        .connect(&ep)
        .heartbeat(Some(Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<_, String>("sleep", (30,)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    let _ = py.0.kill();
    let _ = py.0.wait();
    let err = pending.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::LostRemote { .. }), "{err:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "lost remote took {:?}",
        killed.elapsed()
    );
}

// ---- zrpc command line -> Python server ----

fn zrpc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .output()
        .expect("run zrpc")
}

#[test]
fn cli_calls_python_server() {
    let (_py, ep) = python_server(5.0);
    let out = zrpc(&[&ep, "add", "2", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n");
    let out = zrpc(&["-j", &ep, "echo", r#"{"a": [1, 2.5, null]}"#]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"a": [1, 2.5, null]}));
    // Listing falls back to the legacy calls (Python 3.11 servers cannot inspect).
    let out = zrpc(&[&ep]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("[Svc]\n"), "{text}");
    assert!(
        text.contains("add") && text.contains("Add two numbers."),
        "{text}"
    );
}

#[test]
fn cli_reports_python_errors_in_one_line() {
    let (_py, ep) = python_server(5.0);
    let out = zrpc(&[&ep, "boom", "kaput"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end(), "zrpc: remote error ValueError: kaput");
    assert!(out.stdout.is_empty());
    // -d adds the remote traceback.
    let out = zrpc(&["-d", &ep, "boom", "kaput"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Traceback (most recent call last)"));
}
