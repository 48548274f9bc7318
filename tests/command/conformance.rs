//! The conformance kit (`zrpc --conformance`) run against all six peers:
//! zrpc's server and client, zerorpc-python's and zerorpc-node's. zrpc
//! passes everything; each reference implementation's known deviations
//! (PROTOCOL.md lists them) are asserted as the exact set of failures, so
//! the kit is shown to catch them.

use crate::common;

use common::*;
use futures::StreamExt;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;
use zerorpc::Client;

/// The kit's JSON report, and its exit code.
struct Kit {
    /// Every check reported, whatever its result.
    all: BTreeSet<String>,
    failed: BTreeSet<String>,
    not_run: BTreeSet<String>,
    passed: usize,
    code: Option<i32>,
    raw: String,
}

fn kit(args: &[&str]) -> Kit {
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(["--conformance", "-pj", "--heartbeat", "1"])
        .args(args)
        .output()
        .expect("run zrpc --conformance");
    parse(out)
}

fn parse(out: Output) -> Kit {
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Json = serde_json::from_str(raw.trim())
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {raw}\n{out:?}"));
    let names = |result: &str| -> BTreeSet<String> {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["result"] == result)
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    Kit {
        all: ["pass", "fail", "not run"]
            .into_iter()
            .flat_map(names)
            .collect(),
        failed: names("fail"),
        not_run: names("not run"),
        passed: report["passed"].as_u64().unwrap() as usize,
        code: out.status.code(),
        raw,
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every check of a server probe.
const SERVER_CHECKS: usize = 29;

/// The checks of zrpc's client-stream extension: not run against servers
/// without it, never failed for lacking it.
const EXTENSION: [&str; 3] = [
    "ext.stream_call.credit_granted",
    "ext.stream_call.answered_after_done",
    "ext.stream_call.plain_call_refused",
];

/// The checks PROTOCOL.md's conformance table lists as checks `of` a
/// server or of a client, so the reference and the kit cannot drift apart.
fn documented(of: &str) -> BTreeSet<String> {
    include_str!("../../PROTOCOL.md")
        .lines()
        .filter_map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", name, role, _, ""] if *role == of && name.starts_with('`') => {
                    Some(name.trim_matches('`').to_string())
                }
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zrpc_server_passes_everything() {
    // The test service, and a client-stream method for the extension's
    // checks.
    let service =
        test_service().client_stream("sum", |(): (), items: zerorpc::Items<i64>| {
            use futures::StreamExt;
            async move {
                Ok::<_, zerorpc::ServiceError>(items.fold(0, |s, n| async move { s + n }).await)
            }
        });
    let server = zerorpc::Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(Duration::from_secs(1)))
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    let report = tokio::task::spawn_blocking(move || kit(&[&ep, "count", "300"]))
        .await
        .unwrap();
    assert!(
        report.failed.is_empty() && report.not_run.is_empty(),
        "{}",
        report.raw
    );
    assert_eq!(report.passed, SERVER_CHECKS, "{}", report.raw);
    assert_eq!(
        report.all,
        documented("server"),
        "PROTOCOL.md §13 vs the kit"
    );
    assert_eq!(report.code, Some(0));
}

#[test]
fn python_server_deviations_are_caught() {
    let (_py, ep) = python_server(1.0);
    let report = kit(&[&ep, "count", "300"]);
    // zerorpc-python 0.6.3 on Python 3.11: inspect.getargspec is gone, so
    // _zerorpc_inspect and _zerorpc_args raise AttributeError.
    assert_eq!(
        report.failed,
        set(&["introspection.inspect", "introspection.args"]),
        "{}",
        report.raw
    );
    assert_eq!(report.not_run, set(&EXTENSION), "{}", report.raw);
    assert_eq!(report.code, Some(1));
}

#[test]
fn node_server_deviations_are_caught() {
    let (_node, ep) = node_server(1000);
    let report = kit(&[&ep, "count", "300"]);
    // zerorpc-node 0.9.8 answers only _zerorpc_ping and _zerorpc_inspect,
    // and sends nothing at all for an unknown method or non-array args.
    assert_eq!(
        report.failed,
        set(&[
            "introspection.list",
            "introspection.name",
            "introspection.help",
            "introspection.args",
            "errors.unknown_method_answered",
            "errors.non_array_args_answered",
            "v1.err_one_element",
        ]),
        "{}",
        report.raw
    );
    let mut not_run = set(&EXTENSION);
    not_run.insert("errors.err_shape".into());
    assert_eq!(report.not_run, not_run, "{}", report.raw);
    assert_eq!(report.code, Some(1));
}

/// `zrpc --conformance --bind` on a free port, its report read once it
/// exits, with `clients` run against it meanwhile.
fn check_clients(clients: impl FnOnce(&str)) -> Kit {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let checker = {
        let ep = ep.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_zrpc"))
                .args([
                    "--conformance",
                    "-pj",
                    "--heartbeat",
                    "1",
                    "--timeout",
                    "30",
                ])
                .args(["--bind", &ep])
                .output()
                .expect("run zrpc --conformance --bind")
        })
    };
    clients(&ep);
    parse(checker.join().unwrap())
}

#[test]
fn zrpc_client_passes_everything() {
    let report = check_clients(|ep| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = Client::builder()
                .connect(ep)
                .heartbeat(Some(Duration::from_secs(1)))
                .start()
                .await
                .unwrap();
            let echoed: Vec<i64> = client.call("add", (1, 2)).await.unwrap();
            assert_eq!(echoed, [1, 2]);
            let slow: String = client.call("slow", ()).await.unwrap();
            assert_eq!(slow, "slow done");
            let items: Vec<u64> = client
                .stream::<_, u64>("count", (300,))
                .await
                .unwrap()
                .map(|i| i.unwrap())
                .collect()
                .await;
            assert_eq!(items.len(), 300);
        });
    });
    assert!(
        report.failed.is_empty() && report.not_run.is_empty(),
        "{}",
        report.raw
    );
    assert_eq!(
        report.all,
        documented("client"),
        "PROTOCOL.md §13 vs the kit"
    );
    assert_eq!(report.code, Some(0));
}

#[test]
fn zrpc_command_line_client_passes_everything() {
    // The command line heartbeats passively: it starts once the server does.
    let mut failures = Vec::new();
    let report = check_clients(|ep| {
        for args in [&["add", "1", "2"][..], &["slow"], &["count", "300"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
                .args(["--heartbeat", "1", ep])
                .args(args)
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    });
    assert!(
        failures.is_empty() && report.failed.is_empty() && report.not_run.is_empty(),
        "{failures:?}\n{}",
        report.raw
    );
}

#[test]
fn python_client_passes_everything() {
    let report = check_clients(|ep| python_client(ep, "conformance"));
    assert!(
        report.failed.is_empty() && report.not_run.is_empty(),
        "{}",
        report.raw
    );
}

#[test]
fn node_client_passes_everything() {
    let report = check_clients(|ep| node_client(ep, "conformance"));
    assert!(
        report.failed.is_empty() && report.not_run.is_empty(),
        "{}",
        report.raw
    );
}
