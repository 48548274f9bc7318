//! Several services on one server, each under a namespace and at a
//! version (oslo.messaging's endpoints and targets): calls by
//! `namespace.method` from zrpc, zerorpc-python and zerorpc-node clients,
//! oslo's version rule, introspection of every namespace, and the typed
//! client of a namespaced, versioned trait.

use crate::common;

use common::{node_client, python_client, python_server, test_service};
use std::time::Duration;
use zerorpc::{CallOptions, Client, Error, Server, Service, ServiceError, Value, Version};

/// The control endpoint of oslo's example: version 2.0, in its own
/// namespace.
fn control() -> Service {
    Service::new("control")
        .version(Version::new(2, 0))
        .method("status", |(): ()| async {
            Ok::<_, ServiceError>("running")
        })
        .doc("What the server is doing.")
        .method(
            "echo",
            |(v,): (Value,)| async move { Ok::<_, ServiceError>(v) },
        )
        .args(["value"])
        .method("scale", |(x, factor): (i64, i64)| async move {
            Ok::<_, ServiceError>(x * factor)
        })
        .args(["x", "factor=2"])
}

/// The test service as the default, `control` beside it, and a `misc`
/// service with a catch-all.
async fn server() -> (Server, String) {
    let misc = Service::new("misc").catch_all(|name, args| async move {
        Ok::<_, ServiceError>(Value::from(format!(
            "misc got {name} with {} args",
            args.len()
        )))
    });
    let server = Server::builder(test_service())
        .service(control())
        .service(misc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("server starts");
    let ep = server.endpoints()[0].clone();
    (server, ep)
}

async fn client(ep: &str) -> Client {
    Client::builder()
        .connect(ep)
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .expect("client starts")
}

fn remote(e: Error) -> (String, String) {
    match e {
        Error::Remote(r) => (r.name, r.message),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn each_namespace_answers_under_its_prefix_and_the_default_without() {
    let (_server, ep) = server().await;
    let c = client(&ep).await;
    let sum: i64 = c.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    let status: String = c.call("control.status", ()).await.unwrap();
    assert_eq!(status, "running");
    let echoed: String = c.call("control.echo", ("x",)).await.unwrap();
    assert_eq!(echoed, "x");
    // A mounted catch-all sees names without the prefix.
    let misc: String = c.call("misc.anything", (1, 2)).await.unwrap();
    assert_eq!(misc, "misc got anything with 2 args");
    // The prefix is not optional, and other namespaces do not leak.
    let (name, msg) = remote(c.call::<_, Value>("status", ()).await.unwrap_err());
    assert_eq!(name, "NameError", "{msg}");
    let (name, _) = remote(c.call::<_, Value>("control.add", (1, 2)).await.unwrap_err());
    assert_eq!(name, "NameError");
    let (name, _) = remote(c.call::<_, Value>("nosuch.add", (1, 2)).await.unwrap_err());
    assert_eq!(name, "NameError");
}

#[tokio::test]
async fn introspection_shows_every_namespace_and_version() {
    let (_server, ep) = server().await;
    let c = client(&ep).await;
    let list: Vec<String> = c.call("_zerorpc_list", ()).await.unwrap();
    assert!(list.contains(&"add".to_string()), "{list:?}");
    assert!(list.contains(&"control.status".to_string()), "{list:?}");
    assert!(list.contains(&"control.echo".to_string()), "{list:?}");
    let name: String = c.call("_zerorpc_name", ()).await.unwrap();
    assert_eq!(name, "test", "the default service names the server");
    let doc: String = c.call("_zerorpc_help", ("control.status",)).await.unwrap();
    assert_eq!(doc, "What the server is doing.");
    let inspect: Value = c.call("_zerorpc_inspect", ()).await.unwrap();
    let get = |v: &Value, k: &str| -> Value {
        v.as_map()
            .and_then(|m| m.iter().find(|(key, _)| key.as_str() == Some(k)))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Nil)
    };
    let methods = get(&inspect, "methods");
    let echo = get(&methods, "control.echo");
    assert_eq!(
        get(&echo, "args"),
        Value::Array(vec![Value::Map(vec![("name".into(), "value".into())])])
    );
    let versions = get(&inspect, "versions");
    assert_eq!(get(&versions, ""), Value::from("1.0"));
    assert_eq!(get(&versions, "control"), Value::from("2.0"));
    assert_eq!(get(&versions, "misc"), Value::from("1.0"));
}

#[tokio::test]
async fn calls_require_a_compatible_version_by_oslos_rule() {
    let (_server, ep) = server().await;
    let c = client(&ep).await;
    let at = |major, minor| CallOptions::default().api_version(Version::new(major, minor));
    // control serves 2.0: 2.0 is served, 2.1 and 1.0 and 3.0 are not.
    let ok: String = c.call_with("control.status", (), at(2, 0)).await.unwrap();
    assert_eq!(ok, "running");
    for (major, minor) in [(2, 1), (1, 0), (3, 0)] {
        let e = c
            .call_with::<_, Value>("control.status", (), at(major, minor))
            .await
            .unwrap_err();
        let (name, msg) = remote(e);
        assert_eq!(name, "UnsupportedVersion", "{msg}");
        assert!(
            msg.contains("control.status is served at version 2.0")
                && msg.contains(&format!("requires {major}.{minor}")),
            "{msg}"
        );
    }
    // The default service serves 1.0 (declared by nobody).
    let sum: i64 = c.call_with("add", (1, 2), at(1, 0)).await.unwrap();
    assert_eq!(sum, 3);
    let (name, _) = remote(
        c.call_with::<_, Value>("add", (1, 2), at(2, 0))
            .await
            .unwrap_err(),
    );
    assert_eq!(name, "UnsupportedVersion");
    // A malformed version is refused, not ignored.
    let bad = CallOptions::default().header("api_version", "two");
    let (name, msg) = remote(
        c.call_with::<_, Value>("add", (1, 2), bad)
            .await
            .unwrap_err(),
    );
    assert_eq!(name, "UnsupportedVersion");
    assert!(msg.contains("not a version"), "{msg}");
    // Introspection answers whatever version is asked.
    let list: Vec<String> = c.call_with("_zerorpc_list", (), at(9, 9)).await.unwrap();
    assert!(!list.is_empty());
    // A client-wide version applies to every call.
    let v2 = Client::builder()
        .connect(&ep)
        .api_version(Version::new(2, 0))
        .start()
        .await
        .unwrap();
    let ok: String = v2.call("control.status", ()).await.unwrap();
    assert_eq!(ok, "running");
    let (name, _) = remote(v2.call::<_, Value>("add", (1, 2)).await.unwrap_err());
    assert_eq!(name, "UnsupportedVersion");
}

/// The control endpoint, as a trait.
#[zerorpc::service(name = "control", namespace = "control", version = "2.3")]
pub trait Control {
    /// Whether the server runs.
    async fn status(&self) -> String;
}

struct Running;

impl Control for Running {
    async fn status(&self) -> String {
        "running".into()
    }
}

#[tokio::test]
async fn a_typed_service_declares_its_namespace_and_version() {
    let service = Running.into_service();
    assert_eq!(service.namespace_name(), "control");
    assert_eq!(service.served_version(), Version::new(2, 3));
    let server = Server::builder(test_service())
        .service(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let c = client(&server.endpoints()[0]).await;
    // The typed client calls control.status and requires 2.3.
    let typed = ControlClient::new(c.clone());
    assert_eq!(typed.status().await.unwrap(), "running");
    let with_default_prefix: String = c
        .call_with(
            "control.status",
            (),
            CallOptions::default().api_version(Version::new(2, 3)),
        )
        .await
        .unwrap();
    assert_eq!(with_default_prefix, "running");
    // Asking for more than is served fails, naming both versions.
    let newer = typed.with_options(CallOptions::default().api_version(Version::new(2, 4)));
    let (name, msg) = remote(newer.status().await.unwrap_err());
    assert_eq!(name, "UnsupportedVersion");
    assert!(msg.contains("2.3") && msg.contains("2.4"), "{msg}");
    // Served as a server's default service, it answers without a prefix.
    let alone = Server::builder(Running.into_service())
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let c = client(&alone.endpoints()[0]).await;
    let typed = ControlClient::new(c).with_namespace(None);
    assert_eq!(typed.status().await.unwrap(), "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zerorpc_python_and_node_clients_call_namespaced_methods() {
    let (_server, ep) = server().await;
    let py = {
        let ep = ep.clone();
        tokio::task::spawn_blocking(move || python_client(&ep, "namespaces"))
    };
    let node = {
        let ep = ep.clone();
        tokio::task::spawn_blocking(move || node_client(&ep, "namespaces"))
    };
    py.await.unwrap();
    node.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zerorpc_python_server_ignores_a_required_version() {
    let (_py, ep) = tokio::task::spawn_blocking(|| python_server(5.0))
        .await
        .unwrap();
    let c = Client::builder()
        .connect(&ep)
        .api_version(Version::new(7, 1))
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    let sum: i64 = c.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
}

/// examples/oslo_style.rs, oslo.messaging's example on zrpc, runs to the
/// end and does each step.
#[test]
fn the_oslo_style_example_runs() {
    let out = std::process::Command::new(common::example("oslo_style"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "call test(arg=hello) at 2.0 on server1: server1 tested hello",
        "call test at 3.0: UnsupportedVersion: test is served at version 2.0; the call requires 3.0",
        "cast test(arg=work): sent to one worker",
        "fanout: server1 got test(\"everyone\")",
        "fanout: server2 got test(\"everyone\")",
        "notification error: server1 compute.fail \"disk full\"",
        "control.stop on server1: true; server1 stopped",
        "call test after the stop: server2 tested still here",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    // The stopped server by name: unknown once the client saw it go,
    // lost if the call raced its connection closing; never served.
    let again = stdout
        .lines()
        .find_map(|l| l.strip_prefix("control.stop on server1 again: "))
        .unwrap_or_default();
    assert!(
        again == "UnknownServer" || again == "LostRemote",
        "{again:?} in:\n{stdout}"
    );
    let casts = stdout.lines().filter(|l| l.starts_with("cast: ")).count();
    assert_eq!(casts, 1, "a cast runs once:\n{stdout}");
}

/// The other way round: zrpc clients (dynamic, prepared, typed with a
/// namespace and a version) calling `control.status` on a zerorpc-python
/// server that serves namespaced names (a dict of methods), and ignores
/// the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_clients_call_namespaced_methods_of_a_zerorpc_python_server() {
    let ep = format!("tcp://127.0.0.1:{}", common::free_port());
    let _py = {
        let ep = ep.clone();
        tokio::task::spawn_blocking(move || {
            common::spawn_until(
                std::process::Command::new(common::python())
                    .arg(common::script("py_namespaced.py"))
                    .arg(&ep),
                "READY",
                false,
            )
        })
        .await
        .unwrap()
    };
    let c = client(&ep).await;
    let status: String = c.call("control.status", ()).await.unwrap();
    assert_eq!(status, "running");
    let prepared: String = c
        .prepare()
        .namespace("control")
        .version(Version::new(2, 0))
        .call("status", ())
        .await
        .unwrap();
    assert_eq!(prepared, "running");
    assert_eq!(
        ControlClient::new(c.clone()).status().await.unwrap(),
        "running"
    );
    let sum: i64 = c.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
}
