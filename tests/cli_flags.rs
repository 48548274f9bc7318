//! Each of the command line's flags doing what it says, seen from outside:
//! a bare ROUTER standing in for the server where the flag shapes what the
//! client sends, a real `zrpc --server` elsewhere.

mod common;

use bytes::Bytes;
use common::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zeromq::{RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
use zerorpc::protocol::{self, Event};

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
/// `answer_after` without ever beating; the names of the events the client
/// sent meanwhile, and the client's output.
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
        names.push(Event::decode(&frames[2]).unwrap().name.unwrap().to_string());
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
        what_the_client_sends(&["--heartbeat", "0.2"], Duration::from_millis(700)).await;
    assert!(sent.is_empty(), "passive client sent {sent:?}");
    assert!(out.status.success(), "{out:?}");
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
        let mut dealer = zeromq::DealerSocket::new();
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
    let (mut srv, ep) = server(&["time"]);
    let call = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([&ep, "sleep", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the call is running on the server: a second call's answer
    // comes back only after the first request was read.
    assert_eq!(
        String::from_utf8_lossy(&zrpc(&[&ep, "sleep", "0.2"]).stdout),
        "null\n"
    );
    srv.signal(15);
    let out = call.wait_with_output().unwrap();
    assert!(out.status.success(), "the call in flight was cut: {out:?}");
    let status = srv
        .wait_for(Duration::from_secs(5))
        .expect("the server exits");
    assert!(status.success(), "{status:?}");
}
