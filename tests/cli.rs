//! The `zrpc` command as an operator uses it: real processes on loopback.

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::Duration;

fn zrpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .output()
        .expect("run zrpc")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `zrpc --server --bind <free port> ARGS…`, ready to serve.
fn server(args: &[&str]) -> (Proc, String) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
    cmd.args(["--server", "--bind", &ep]).args(args);
    (spawn_until(&mut cmd, "serving", true), ep)
}

#[test]
fn time_service_prints_todays_date() {
    let (_srv, ep) = server(&["time"]);
    let out = zrpc(&["--client", "--connect", &ep, "strftime", "%Y/%m/%d"]);
    assert!(out.status.success(), "{out:?}");
    let today = chrono::Local::now().format("%Y/%m/%d").to_string();
    assert_eq!(stdout(&out).trim(), today);
    let out = zrpc(&[&ep, "strftime", "%Q"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ValueError"), "{}", stderr(&out));
    let out = zrpc(&["-pj", &ep, "time"]);
    let t: f64 = stdout(&out).trim().parse().expect("a float");
    assert!(t > 1.7e9);
}

#[test]
fn calc_service_does_what_users_mean() {
    let (_srv, ep) = server(&["calc"]);
    let out = zrpc(&[&ep, "add", "2", "3"]);
    assert_eq!(stdout(&out), "5\n", "{out:?}");
    assert_eq!(stdout(&zrpc(&[&ep, "subtract", "2", "3.5"])), "-1.5\n");
    assert_eq!(stdout(&zrpc(&[&ep, "multiply", "-4", "3"])), "-12\n");
    assert_eq!(stdout(&zrpc(&[&ep, "divide", "7", "2"])), "3.5\n");
    assert_eq!(stdout(&zrpc(&[&ep, "hello", "world"])), "Hello, world!\n");
    // -j keeps exact JSON: a JSON string is a string (and calc still coerces it).
    assert_eq!(stdout(&zrpc(&["-j", &ep, "add", "\"2\"", "3"])), "5\n");
    let out = zrpc(&[&ep, "divide", "1", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "zrpc: remote error ZeroDivisionError: division by zero"
    );
    let out = zrpc(&[&ep, "add", "1"]);
    assert_eq!(
        stderr(&out).trim(),
        "zrpc: remote error TypeError: add() takes 2 positional arguments but 1 was given"
    );
    let out = zrpc(&[&ep, "add", "x", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("TypeError"), "{}", stderr(&out));
    let out = zrpc(&["-j", &ep, "add", "{bad json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
}

#[test]
fn listing_and_inspection() {
    let (_srv, ep) = server(&["calc"]);
    let out = zrpc(&[&ep]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("[calc]\nadd      Add two numbers.\n"),
        "{text}"
    );
    assert!(text.contains("divide   Divide a by b"), "{text}");
    let text = stdout(&zrpc(&["-?", &ep]));
    assert!(
        text.contains("\nadd(a, b)\n") && text.contains("\nhello(name)\n"),
        "{text}"
    );
    let text = stdout(&zrpc(&["-?", &ep, "divide"]));
    assert!(
        text.starts_with("[calc]\ndivide(a, b)\n\nDivide a by b"),
        "{text}"
    );
}

#[test]
fn echo_keeps_values_and_prints_json() {
    let (_srv, ep) = server(&["echo"]);
    let out = zrpc(&["-j", "-pj", &ep, "echo", r#"{"a":[1,2.5,"x",null,true]}"#]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v, serde_json::json!({"a": [1, 2.5, "x", null, true]}));
    assert_eq!(
        stdout(&zrpc(&[&ep, "echo", "18446744073709551615"])),
        "18446744073709551615\n"
    );
}

#[test]
fn exec_exposes_shell_commands_safely() {
    let (_srv, ep) = server(&[
        "--exec",
        "greet=echo hello",
        "--exec",
        "fails=sh -c 'echo oops >&2; exit 3'",
    ]);
    assert_eq!(
        stdout(&zrpc(&[&ep, "greet", "a b", "$(id)"])),
        "hello a b $(id)\n"
    );
    let out = zrpc(&[&ep, "fails"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "zrpc: remote error ExecError: fails exited with status 3: oops"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let (mut srv, ep) = server(&["calc"]);
    assert_eq!(stdout(&zrpc(&[&ep, "add", "1", "1"])), "2\n");
    srv.signal(15);
    let status = srv
        .wait_for(Duration::from_secs(5))
        .expect("server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn failures_are_one_line_and_non_zero() {
    // Nothing listens here: the call times out.
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let out = zrpc(&["--timeout", "1", &ep, "add", "1", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "zrpc: timeout after 1s, when calling remote method add"
    );
    for bad in [
        &["--server", "--bind", "tcp://127.0.0.1:1", "nosuch"][..],
        &[][..],
        &["--timeout", "-1", "tcp://127.0.0.1:1", "x"][..],
        &["not-an-endpoint", "x"][..],
    ] {
        let out = zrpc(bad);
        assert!(!out.status.success(), "{bad:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("zrpc: ") && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
    }
    let (_srv, ep) = server(&["calc"]);
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(["--server", "--bind", &ep, "calc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot bind"), "{}", stderr(&out));
}
