//! Context and cancellation against the real peers: zerorpc-python's
//! task-context middleware both ways, and `_zpc_cancel` (what a zrpc
//! client sends when a caller gives up) ignored harmlessly by
//! zerorpc-python and zerorpc-node servers.

use crate::common;

use common::*;
use std::process::Command;
use std::time::Duration;
use zerorpc::{CallOptions, Client, Context, Server, Service, ServiceError, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_clients_task_context_reaches_the_handler() {
    let svc = Service::new("ctx").method("whoami", |(): ()| async {
        let ctx = Context::current().expect("a context");
        let trace = ctx
            .header("trace")
            .and_then(|v| v.as_str().map(String::from));
        Ok::<_, ServiceError>(trace.unwrap_or_default())
    });
    let server = Server::builder(svc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script("py_context.py"))
            .args(["client", &ep])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("PASS client"),
        "{out:?}"
    );
}

/// A zerorpc-python server with a `load_task_context` middleware and its
/// stderr in a file; its `seen()` returns the last request header.
fn python_context_server() -> (Lines, String, tempfile::NamedTempFile) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(script("py_context.py")).args(["server", &ep]);
    let mut lines = Lines::spawn_with_stderr(&mut cmd, log.path());
    lines.expect("READY", Duration::from_secs(20));
    (lines, ep, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_metadata_reaches_a_python_servers_middleware() {
    let (_py, ep, _log) = python_context_server();
    let client = Client::builder()
        .connect(&ep)
        .header("tenant", "acme")
        .start()
        .await
        .unwrap();
    let opts = CallOptions::default().header("trace", "xyz");
    let _: i64 = client
        .call_with("add", (1, 2), opts)
        .await
        .expect("Python takes the extra keys");
    let seen: Value = client.call("seen", ()).await.unwrap();
    let map = seen.as_map().expect("a dict").clone();
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    // `seen` shows the header of the `seen` call itself: the client's keys.
    assert_eq!(get("tenant"), Some(Value::from("acme")), "{seen}");
    assert!(get("timeout_ms").is_some(), "{seen}");
}

/// Gives up on `sleep` calls two ways (at once, before the Python server
/// registered the channel; and while it runs), then checks the server
/// still answers and wrote no traceback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_servers_ignore_cancel_harmlessly() {
    let (mut py, ep, log) = python_context_server();
    let client = Client::connect(&ep).await.unwrap();
    for wait in [Duration::ZERO, Duration::from_millis(400)] {
        let call = client.call::<_, String>("sleep", (1.0,));
        assert!(tokio::time::timeout(wait, call).await.is_err());
    }
    // A long call still completes, and other calls are answered.
    assert_eq!(
        client.call::<_, String>("sleep", (0.3,)).await.unwrap(),
        "slept 0.3"
    );
    assert_eq!(client.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
    assert!(
        py.proc.0.try_wait().unwrap().is_none(),
        "the Python server died"
    );
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    println!("zerorpc-python's log:\n{stderr}");
    assert!(
        stderr.contains("serving"),
        "not the server's stderr: {stderr}"
    );
    assert!(
        !stderr.contains("Traceback") && !stderr.contains("Error"),
        "the Python server complained:\n{stderr}"
    );
    let _ = py.seen();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_servers_ignore_cancel_harmlessly() {
    let (mut node, ep) = node_server(1000);
    let client = Client::connect(&ep).await.unwrap();
    for wait in [Duration::ZERO, Duration::from_millis(400)] {
        let call = client.call::<_, String>("sleep", (1,));
        assert!(tokio::time::timeout(wait, call).await.is_err());
    }
    assert_eq!(
        client.call::<_, String>("sleep", (0,)).await.unwrap(),
        "slept 0"
    );
    assert_eq!(client.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
    // Let the abandoned calls end on the node side (their late replies
    // must not upset it either).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(client.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
    assert!(
        !node.saw("NODE-ERROR"),
        "the node server reported an error: {:?}",
        node.seen()
    );
}
