//! CURVE against libzmq 4.3.5 (pyzmq's wheel, which has CURVE): pyzmq
//! sockets and zerorpc-python over CURVE talking to zrpc, both ways; keys
//! made by either side accepted by the other; refused keys get no data.

use crate::common;

use common::*;
use std::process::{Command, Output};
use std::time::Duration;
use zerorpc::security::{parse_key, z85, Curve, CurveKeyPair, Key};
use zerorpc::{Client, Server, Service, ServiceError};

fn py(args: &[&str]) -> Output {
    Command::new(python())
        .arg(script("py_curve.py"))
        .args(args)
        .output()
        .expect("run py_curve.py")
}

/// A py_curve.py server (`router` or `zserver`) with `keys`, once ready.
fn py_serving(mode: &str, ep: &str, keys: &CurveKeyPair) -> Lines {
    let mut cmd = Command::new(python());
    cmd.arg(script("py_curve.py"))
        .args([mode, ep, &text(&keys.public()), &text(&keys.secret())]);
    let mut lines = Lines::spawn(&mut cmd);
    lines.expect("READY", Duration::from_secs(20));
    lines
}

fn text(k: &Key) -> String {
    z85::encode(k).unwrap()
}

fn service() -> Service {
    Service::new("sec").method("add", |(a, b): (i64, i64)| async move {
        Ok::<_, ServiceError>(a + b)
    })
}

async fn curve_server(keys: &CurveKeyPair, allow: &Key) -> (Server, String) {
    let server = Server::builder(service())
        .bind("tcp://127.0.0.1:0")
        .curve(Curve::server(keys.clone()).allow(*allow))
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    (server, ep)
}

#[test]
fn keys_from_either_side_agree() {
    // zrpc --keygen: pyzmq derives the same public key from the secret.
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .arg("--keygen")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines.iter().all(|l| l.len() == 40), "{stdout}");
    let derived = py(&["public", lines[1]]);
    assert_eq!(String::from_utf8_lossy(&derived.stdout).trim(), lines[0]);
    // pyzmq's zmq.curve_keypair(): zrpc derives the same public key.
    let out = py(&["keypair"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let pair = CurveKeyPair::from_secret(parse_key(lines[1]).unwrap());
    assert_eq!(text(&pair.public()), lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_dealer_calls_a_zrpc_curve_server() {
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let (_server, ep) = curve_server(&server_keys, &client_keys.public()).await;
    let out = tokio::task::spawn_blocking(move || {
        py(&[
            "dealer",
            &ep,
            &text(&server_keys.public()),
            &text(&client_keys.public()),
            &text(&client_keys.secret()),
        ])
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS dealer"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_libzmq_clients_get_no_reply_and_the_server_serves_on() {
    let (server_keys, allowed, other) = (
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
        CurveKeyPair::generate(),
    );
    let (_server, ep) = curve_server(&server_keys, &allowed.public()).await;
    for (what, server_pub, client) in [
        ("a client key not allowed", server_keys.public(), &other),
        ("the wrong server key", other.public(), &allowed),
    ] {
        let (ep, client) = (ep.clone(), client.clone());
        let out = tokio::task::spawn_blocking(move || {
            py(&[
                "dealer",
                &ep,
                &text(&server_pub),
                &text(&client.public()),
                &text(&client.secret()),
            ])
        })
        .await
        .unwrap();
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("FAIL no reply"),
            "{what}: {out:?}"
        );
    }
    // The allowed client is served.
    let client = Client::builder()
        .connect(&ep)
        .curve(Curve::client(allowed, server_keys.public()))
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (40, 2)).await.unwrap(), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zrpc_client_calls_a_libzmq_curve_router() {
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let _router = py_serving("router", &ep, &server_keys);
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(5)))
        .curve(Curve::client(client_keys, server_keys.public()))
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
    let name: String = client.call("_zerorpc_name", ()).await.unwrap();
    assert_eq!(name, "pyzmq-router");
    // With the wrong server key, nothing gets through.
    let wrong = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_millis(1500)))
        .curve(Curve::client(
            CurveKeyPair::generate(),
            CurveKeyPair::generate().public(),
        ))
        .start()
        .await
        .unwrap();
    assert!(wrong.call::<_, i64>("add", (2, 3)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zerorpc_python_over_curve_both_ways() {
    // A zerorpc-python server whose socket is a CURVE server (libzmq lets
    // in any client without a ZAP handler).
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let _zserver = py_serving("zserver", &ep, &server_keys);
    let client = Client::builder()
        .connect(&ep)
        .timeout(Some(Duration::from_secs(5)))
        .curve(Curve::client(client_keys.clone(), server_keys.public()))
        .start()
        .await
        .unwrap();
    assert_eq!(client.call::<_, i64>("add", (20, 22)).await.unwrap(), 42);

    // A zerorpc-python client over CURVE calling a zrpc server.
    let (_server, ep) = curve_server(&server_keys, &client_keys.public()).await;
    let out = tokio::task::spawn_blocking(move || {
        py(&[
            "zclient",
            &ep,
            &text(&server_keys.public()),
            &text(&client_keys.public()),
            &text(&client_keys.secret()),
        ])
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PASS zclient"),
        "{out:?}"
    );
}

/// The command line: keys from `--keygen` files, a CURVE server and client,
/// push/pull and pub/sub over CURVE, and `--exec` refused in clear text
/// beyond loopback.
#[test]
fn the_command_line_over_curve() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .arg("--keygen")
            .output()
            .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &out.stdout).unwrap();
        format!("@{}", path.display())
    };
    let (server, client) = (keygen("server.keys"), keygen("client.keys"));
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(["--server", "--bind", &ep, "--curve-secret", &server])
        .args(["--curve-allow", &client, "calc"]);
    let _srv = spawn_until(&mut cmd, "serving", true);
    let zrpc = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zrpc"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = zrpc(&[
        "--curve-secret",
        &client,
        "--curve-server",
        &server,
        &ep,
        "add",
        "2",
        "3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n", "{out:?}");
    // Another client key: no answer.
    let stranger = keygen("stranger.keys");
    let out = zrpc(&[
        "--timeout",
        "1",
        "--curve-secret",
        &stranger,
        "--curve-server",
        &server,
        &ep,
        "add",
        "2",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Push to a CURVE puller.
    let pull_ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(["--pull", "--bind", &pull_ep, "--curve-secret", &server])
        .args(["--curve-allow", &client]);
    let mut puller = Lines::spawn(&mut cmd);
    let out = zrpc(&[
        "--push",
        "--connect",
        &pull_ep,
        "--curve-secret",
        &client,
        "--curve-server",
        &server,
        "record",
        "42",
    ]);
    assert!(out.status.success(), "{out:?}");
    puller.expect("\"args\":[42]", Duration::from_secs(5));

    // --exec beyond loopback in clear text: refused with the reason.
    let out = zrpc(&[
        "--server",
        "--bind",
        "tcp://0.0.0.0:1",
        "--exec",
        "up=uptime",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--insecure") && err.contains("--curve-secret"),
        "{err}"
    );
    // A CURVE server without --curve-allow: a usage error, before binding.
    let out = zrpc(&[
        "--server",
        "--bind",
        "tcp://127.0.0.1:1",
        "--curve-secret",
        &server,
        "calc",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--curve-allow"));
}
