//! Each of the command line's flags doing what it says, seen from outside:
//! a bare ROUTER standing in for the server where the flag shapes what the
//! client sends, a real `zrpc --server` elsewhere.

use crate::common;

use bytes::Bytes;
use common::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zerorpc::protocol::{self, Event};
use zerorpc_zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

fn zrpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .output()
        .expect("run zrpc")
}

fn server(args: &[&str]) -> (Proc, String) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(["--server", "--bind", &ep]).args(args);
    (spawn_until(&mut cmd, "serving", true), ep)
}

/// Run `zrpc ARGS… ADDR sleep` against a bare ROUTER that answers after
/// `answer_after` without ever beating (but answers `_zerorpc_ping`, as
/// every zerorpc server does); the names of the events the client sent
/// meanwhile (pings left out), and the client's output.
async fn what_the_client_sends(flags: &[&str], answer_after: Duration) -> (Vec<String>, Output) {
    let mut router = RouterSocket::new();
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(flags).args([&ep, "sleep"]);
    let client = std::thread::spawn(move || cmd.output().unwrap());
    let request = tokio::time::timeout(Duration::from_secs(10), router.recv())
        .await
        .expect("a request")
        .unwrap()
        .into_vec();
    let id = Event::decode(&request[2])
        .unwrap()
        .message_id
        .unwrap()
        .to_vec();
    let mut names = Vec::new();
    let end = Instant::now() + answer_after;
    while let Ok(Ok(msg)) =
        tokio::time::timeout(end.saturating_duration_since(Instant::now()), router.recv()).await
    {
        let frames = msg.into_vec();
        let ev = Event::decode(&frames[2]).unwrap();
        let name = ev.name.unwrap().to_string();
        if name == "_zerorpc_ping" {
            let pong = protocol::encode_reply(
                ev.message_id.unwrap(),
                protocol::OK,
                &[0x91, 0x92, 0xa4, b'p', b'o', b'n', b'g', 0xa1, b'x'],
            );
            let pong = ZmqMessage::try_from(vec![frames[0].clone(), Bytes::new(), pong.into()]);
            let _ = router.send(pong.unwrap()).await;
            continue;
        }
        names.push(name);
    }
    let ok = protocol::encode_reply(&id, protocol::OK, &[0x91, 0xa2, b'o', b'k']);
    let reply = ZmqMessage::try_from(vec![request[0].clone(), Bytes::new(), ok.into()]).unwrap();
    // (A client that gave up has gone: nobody to answer.)
    let _ = router.send(reply).await;
    (names, client.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_flags_shape_what_the_client_sends() {
    // Passive by default: nothing until the server beats (and this one
    // never does), so no heartbeat.
    let (sent, out) =
        what_the_client_sends(&["--heartbeat", "0.2"], Duration::from_millis(450)).await;
    assert!(sent.is_empty(), "passive client sent {sent:?}");
    assert!(out.status.success(), "{out:?}");
    // Passive, it still judges a server that never beats lost after 3
    // periods (0.6 s), before an answer at 0.9 s (it waited for ever).
    let (sent, out) =
        what_the_client_sends(&["--heartbeat", "0.2"], Duration::from_millis(900)).await;
    assert!(sent.is_empty(), "passive client sent {sent:?}");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost remote"),
        "{out:?}"
    );
    // --active-hb: it beats from the start.
    let (sent, out) = what_the_client_sends(
        &["--heartbeat", "0.2", "--active-hb"],
        Duration::from_millis(700),
    )
    .await;
    assert!(
        sent.iter().filter(|n| *n == protocol::HEARTBEAT).count() >= 2,
        "{sent:?}"
    );
    // And a server that never beats back is lost after 3 periods (0.6 s),
    // before the answer at 0.7 s.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost remote"),
        "{out:?}"
    );
    // --heartbeat 0: no heartbeats, and no lost remote, however long.
    let (sent, out) = what_the_client_sends(
        &["--heartbeat", "0", "--active-hb"],
        Duration::from_millis(700),
    )
    .await;
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{out:?}");
}

#[test]
fn pool_size_caps_requests_running_at_once() {
    let (_srv, ep) = server(&["--pool-size", "2", "time"]);
    let start = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_zrpc"))
                .args([&ep, "sleep", "0.5"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in calls {
        assert!(c.wait_with_output().unwrap().status.success());
    }
    // Two run at once; the third waits for a slot.
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "3 calls of 0.5 s took {:?} with a pool of 2",
        start.elapsed()
    );
}

#[test]
fn max_message_size_bounds_what_a_client_and_a_puller_accept() {
    let (_srv, ep) = server(&["echo"]);
    let big = "x".repeat(4096);
    let out = zrpc(&["--max-message-size", "2048", &ep, "echo", &big]);
    assert_eq!(out.status.code(), Some(1), "a 4 KiB reply was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lost remote"),
        "{out:?}"
    );
    assert_eq!(zrpc(&[&ep, "echo", &big]).status.code(), Some(0));

    let pull_ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut puller = Lines::spawn(Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
        "--pull",
        "--bind",
        &pull_ep,
        "--max-message-size",
        "2048",
    ]));
    let push = |arg: &str| {
        let out = zrpc(&["--push", "--connect", &pull_ep, "note", arg]);
        assert!(out.status.success(), "{out:?}");
    };
    push(&big);
    push("small");
    puller.expect("small", Duration::from_secs(5));
    assert!(!puller.saw(&big), "the 4 KiB event was taken");
}

#[test]
fn send_queue_drops_for_a_client_that_does_not_read() {
    let port = free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    let mut log = Lines::spawn_stderr(Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
        "--server",
        "--bind",
        &ep,
        "--send-queue",
        "10",
        "echo",
    ]));
    log.expect("serving", Duration::from_secs(20));
    // A raw DEALER asks for 5000 replies and reads none.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut dealer = zerorpc_zeromq::DealerSocket::new();
        dealer.connect(&ep).await.unwrap();
        for _ in 0..5000 {
            let (_, req) = protocol::encode_request("echo", &[0x91, 0xa1, b'x']);
            let msg = ZmqMessage::try_from(vec![Bytes::new(), req.into()]).unwrap();
            dealer.send(msg).await.unwrap();
        }
        log.expect("peer is not reading", Duration::from_secs(10));
    });
    // Others are still served.
    assert_eq!(
        String::from_utf8_lossy(&zrpc(&[&ep, "echo", "still"]).stdout),
        "still\n"
    );
}

#[test]
fn exec_beside_a_built_in_service() {
    let (_srv, ep) = server(&["--exec", "greet=echo hi", "calc"]);
    assert_eq!(
        String::from_utf8_lossy(&zrpc(&[&ep, "add", "2", "3"]).stdout),
        "5\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&zrpc(&[&ep, "greet", "you"]).stdout),
        "hi you\n"
    );
    let listing = String::from_utf8_lossy(&zrpc(&[&ep]).stdout).into_owned();
    assert!(
        listing.contains("add") && listing.contains("greet"),
        "{listing}"
    );
}

#[test]
fn sigterm_drains_a_call_in_flight() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let (mut srv, ep) = server(&["--metrics", &metrics, "time"]);
    let call = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([&ep, "sleep", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the call is running on the server.
    let t0 = Instant::now();
    while !scrape(&metrics).contains("zrpc_server_in_flight 1") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the call never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.signal(15);
    let out = call.wait_with_output().unwrap();
    assert!(out.status.success(), "the call in flight was cut: {out:?}");
    let status = srv
        .wait_for(Duration::from_secs(5))
        .expect("the server exits");
    assert!(status.success(), "{status:?}");
}

/// `GET /metrics` on a raw TCP connection (no HTTP client in the tree).
pub(crate) fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("the metrics endpoint");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    body
}

#[test]
fn metrics_serves_prometheus_text_over_http() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (_srv, ep) = server(&["--metrics", &addr, "calc"]);
    for _ in 0..2 {
        assert!(zrpc(&[&ep, "add", "1", "2"]).status.success());
    }
    assert_eq!(zrpc(&[&ep, "divide", "1", "0"]).status.code(), Some(1));
    let body = scrape(&addr);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        "zrpc_server_requests_total{method=\"add\",outcome=\"ok\"} 2",
        "zrpc_server_requests_total{method=\"divide\",outcome=\"error\"} 1",
        "zrpc_server_request_duration_seconds_count{method=\"add\"} 2",
        "zrpc_server_in_flight 0",
    ] {
        assert!(body.contains(line), "no {line:?} in:\n{body}");
    }
    // Buckets, so the histogram adds up across servers.
    assert!(
        body.contains("zrpc_server_request_duration_seconds_bucket{method=\"add\",le=\"0.001\"}"),
        "{body}"
    );
    // A port in use is one line and exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([
            "--server",
            "--metrics",
            &addr,
            "--bind",
            "tcp://127.0.0.1:0",
            "calc",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().count() == 1 && err.contains("cannot serve metrics"),
        "{err}"
    );
}

/// A Rust server whose `slow` notes when it is dropped and whose `hdr(key)`
/// returns a request header key.
async fn context_server() -> (
    zerorpc::Server,
    String,
    std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use zerorpc::{Context, Service, ServiceError, Value};
    let dropped = Arc::new(Mutex::new(None));
    let started = Arc::new(AtomicBool::new(false));
    struct Guard(Arc<Mutex<Option<Instant>>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(Instant::now());
        }
    }
    let (d, s) = (dropped.clone(), started.clone());
    let svc = Service::new("ctx")
        .method("slow", move |(): ()| {
            let guard = Guard(d.clone());
            s.store(true, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(guard);
                Ok::<_, ServiceError>(())
            }
        })
        .method("hdr", |(key,): (String,)| async move {
            let ctx = Context::current().expect("a context");
            Ok::<_, ServiceError>(ctx.header(&key).unwrap_or(Value::Nil))
        });
    let server = zerorpc::Server::builder(svc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let ep = server.endpoints()[0].clone();
    (server, ep, dropped, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_call_on_the_server() {
    use std::sync::atomic::Ordering;
    let (_server, ep, dropped, started) = context_server().await;
    let child = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([&ep, "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let mut stderr = proc.0.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let t0 = Instant::now();
    while !started.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the call never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proc.signal(2); // SIGINT, as Ctrl-C sends
    let interrupted = Instant::now();
    let status = tokio::task::spawn_blocking(move || proc.wait_for(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("zrpc exits after Ctrl-C");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(
        err.join().unwrap(),
        "zrpc: interrupted; the call was cancelled\n"
    );
    let t1 = Instant::now();
    let at = loop {
        if let Some(at) = *dropped.lock().unwrap() {
            break at;
        }
        assert!(t1.elapsed() < Duration::from_secs(3), "the handler ran on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        at.saturating_duration_since(interrupted) < Duration::from_millis(1000),
        "cancelled {:?} after Ctrl-C",
        at.saturating_duration_since(interrupted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_flag_sends_metadata() {
    let (_server, ep, _, _) = context_server().await;
    let ep2 = ep.clone();
    let out = tokio::task::spawn_blocking(move || {
        zrpc(&[
            "--header",
            "tenant=acme",
            "--header",
            "n=5",
            "-pj",
            &ep2,
            "hdr",
            "n",
        ])
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n", "{out:?}");
    let out = tokio::task::spawn_blocking(move || {
        zrpc(&["--header", "tenant=acme", &ep, "hdr", "tenant"])
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "acme\n", "{out:?}");
    let out = zrpc(&["--header", "novalue", "tcp://127.0.0.1:1", "hdr", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn debug_logs_are_plain_text_when_piped() {
    let (_srv, ep) = server(&["calc"]);
    let out = zrpc(&["-d", &ep, "add", "1", "2"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG"), "no debug log: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a piped log: {err:?}"
    );
}

/// Run `zrpc` with raw (possibly non-UTF-8) arguments, bounded in time.
fn zrpc_os(args: &[std::ffi::OsString], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zrpc");
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("zrpc {args:?} still ran after {limit:?}: {out:?}");
}

/// Issue 27, the command line's own inputs: each bad one is a short error
/// and exit 2 (usage) or 1 (runtime), within seconds: no panic (exit 101),
/// no hang.
#[test]
fn bad_inputs_are_one_error_and_a_status_never_a_panic_or_a_hang() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let (_srv, ep) = server(&["calc"]);
    let s = |a: &str| OsString::from(a);
    let bad_utf8 = |bytes: &[u8]| OsString::from_vec(bytes.to_vec());
    let cases: Vec<(Vec<OsString>, i32, &str)> = vec![
        (vec![s(&ep), bad_utf8(b"ad\xffd")], 2, "not valid UTF-8"),
        (
            vec![s(&ep), s("add"), bad_utf8(b"\xfe")],
            2,
            "not valid UTF-8",
        ),
        (
            vec![
                s("--heartbeat"),
                s("1e-9"),
                s(&ep),
                s("add"),
                s("1"),
                s("2"),
            ],
            2,
            "at least 0.001",
        ),
        (
            vec![
                s("--server"),
                s("--heartbeat"),
                s("1e-9"),
                s("--bind"),
                s("tcp://127.0.0.1:0"),
                s("calc"),
            ],
            2,
            "at least 0.001",
        ),
        (
            vec![s("--curve-server"), s("@/dev/zero"), s(&ep), s("add")],
            1,
            "not a key file",
        ),
        (
            vec![
                s("--curve-server"),
                s("@/nonexistent/key"),
                s(&ep),
                s("add"),
            ],
            1,
            "cannot read --curve-server file",
        ),
        (
            vec![s("tcp://[::1"), s("add"), s("1"), s("2")],
            2,
            "neither an address nor a name",
        ),
        (
            vec![
                s("--max-message-size"),
                s("0"),
                s("--server"),
                s("--bind"),
                s("tcp://127.0.0.1:0"),
                s("calc"),
            ],
            2,
            "at least",
        ),
        (
            vec![
                s("--send-queue"),
                s("0"),
                s("--server"),
                s("--bind"),
                s("tcp://127.0.0.1:0"),
                s("calc"),
            ],
            2,
            "at least 1",
        ),
        (
            vec![s("--pool-size"), s("0"), s("--server"), s("calc")],
            2,
            "at least 1",
        ),
    ];
    for (args, code, says) in cases {
        let t0 = Instant::now();
        let out = zrpc_os(&args, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // One error line (clap adds a pointer to --help after a blank line).
        let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(lines <= 2, "{args:?}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            t0.elapsed()
        );
    }
}

/// Issue 27: `@` is one of Z85's characters, so about one key in 85 starts
/// with it; such a key given inline is a key, not a file name.
#[test]
fn an_inline_key_starting_with_at_is_a_key() {
    use zerorpc::security::{z85, CurveKeyPair};
    let keys = (0..10_000)
        .map(|_| CurveKeyPair::generate())
        .find(|k| z85::encode(&k.public()).unwrap().starts_with('@'))
        .expect("a key starting with @ within 10 000");
    let secret = z85::encode(&keys.secret()).unwrap();
    let public = z85::encode(&keys.public()).unwrap();
    let (_srv, ep) = server(&["--curve-secret", &secret, "--curve-allow-any", "calc"]);
    let out = zrpc(&[
        "--timeout",
        "5",
        "--curve-server",
        &public,
        &ep,
        "add",
        "2",
        "3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n", "{out:?}");
}
