//! The `zrpc` command as an operator uses it: real processes on loopback.

use crate::common;

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
        "zrpc: remote error TypeError: add() missing 1 required positional argument: 'b'"
    );
    let out = zrpc(&[&ep, "add", "x", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("TypeError"), "{}", stderr(&out));
    let out = zrpc(&["-j", &ep, "add", "{bad json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    // A timeout too large for a Duration is a usage error, not a panic.
    let out = zrpc(&["--timeout", "1e300", &ep, "add", "1", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).lines().next(),
        Some("zrpc: --timeout 1e300 is too large")
    );
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
    // Nothing listens here: the call times out. A failure is exit 1 and
    // exactly one line.
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let out = zrpc(&["--timeout", "1", &ep, "add", "1", "2"]);
    assert_eq!(out.status.code(), Some(1));
    // (It says why the call never left: nothing was connected.)
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "zrpc: timeout after 1s, when calling remote method add: it was never sent: no server was connected"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Usage errors are exit 2: one line saying what is wrong, then a hint.
    for bad in [
        &["--server", "--bind", "tcp://127.0.0.1:1", "nosuch"][..],
        &[][..],
        &["--timeout", "-1", "tcp://127.0.0.1:1", "x"][..],
        &["not-an-endpoint", "x"][..],
    ] {
        let out = zrpc(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            lines.len() == 2
                && lines[0].starts_with("zrpc: ")
                && lines[1] == "Try 'zrpc --help' for more information.",
            "{bad:?}: {err}"
        );
    }
    let (_srv, ep) = server(&["calc"]);
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(["--server", "--bind", &ep, "calc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines().count() == 1 && err.starts_with("zrpc: ") && err.contains("cannot bind"),
        "{err}"
    );
}

/// Options go first, as with `zerorpc`: one after a positional, or a
/// misspelled one, is a usage error instead of an address, a service
/// argument or a parameter silently ignored.
#[test]
fn misplaced_or_misspelled_options_are_usage_errors() {
    for bad in [
        &[
            "--server",
            "--bind",
            "tcp://127.0.0.1:1",
            "calc",
            "--max-message-size",
            "4096",
            "--pool-size",
            "1",
            "--bogus",
        ][..],
        &["--tiemout", "5", "tcp://127.0.0.1:1", "add", "1", "2"][..],
        &["--server", "--bind", "tcp://127.0.0.1:1", "calc", "extra"][..],
        &["tcp://127.0.0.1:1", "add", "-pj", "1"][..],
    ] {
        let out = zrpc(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("zrpc: ") && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
    }
    // Negative numbers are parameters, not options.
    let (_srv, ep) = server(&["calc"]);
    assert_eq!(stdout(&zrpc(&[&ep, "add", "-2", "3"])), "1\n");
}

#[test]
fn streams_print_one_item_per_line_or_one_json_array() {
    let (_srv, ep) = server(&["echo"]);
    let out = zrpc(&[&ep, "count", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "0\n1\n2\n");
    assert_eq!(stdout(&zrpc(&["-pj", &ep, "count", "3"])), "[0,1,2]\n");
    assert_eq!(stdout(&zrpc(&["-pj", &ep, "count", "0"])), "[]\n");
    let out = zrpc(&[&ep, "count", "2000"]);
    assert_eq!(stdout(&out).lines().count(), 2000);
    assert_eq!(stdout(&out).lines().last(), Some("1999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_mid_stream_prints_the_items_then_fails() {
    let (server, ep) = start_server(None).await;
    let out = tokio::task::spawn_blocking(move || {
        (
            zrpc(&[&ep, "count_then_fail", "2"]),
            zrpc(&["-pj", &ep, "count_then_fail", "2"]),
        )
    })
    .await
    .unwrap();
    let (plain, json) = out;
    assert_eq!(plain.status.code(), Some(1));
    assert_eq!(stdout(&plain), "0\n1\n");
    let err = stderr(&plain);
    assert!(
        err.lines().count() == 1 && err.contains("ValueError") && err.contains("failed after 2"),
        "{err}"
    );
    assert_eq!(json.status.code(), Some(1));
    assert_eq!(stdout(&json), "[0,1]\n");
    server.close(Duration::from_secs(1)).await.ok();
}

#[test]
fn push_to_a_pulling_zrpc_and_see_json_lines() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut pull =
        Lines::spawn(Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--pull", "--bind", &ep]));
    let out = zrpc(&[
        "--push",
        "--connect",
        &ep,
        "resize",
        "photo.jpg",
        "640",
        "true",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = zrpc(&[
        "--push",
        "-j",
        "--connect",
        &ep,
        "tag",
        r#"{"k": [1, null]}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    pull.expect(
        r#"{"method":"resize","args":["photo.jpg",640,true]}"#,
        Duration::from_secs(10),
    );
    pull.expect(
        r#"{"method":"tag","args":[{"k":[1,null]}]}"#,
        Duration::from_secs(10),
    );
    // Interrupted, it stops cleanly.
    pull.proc.signal(2);
    let st = pull
        .proc
        .wait_for(Duration::from_secs(10))
        .expect("pull exits");
    assert!(st.success(), "{st:?}");
}

#[test]
fn push_with_nobody_pulling_fails_after_the_timeout() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let out = zrpc(&["--push", "--timeout", "0.5", "--connect", &ep, "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not delivered") && err.lines().count() == 1,
        "{err}"
    );
    let out = zrpc(&["--pub", "--timeout", "0.3", "--bind", &ep, "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no subscriber"), "{}", stderr(&out));
}

#[test]
fn publish_reaches_a_subscribed_zrpc() {
    let port = free_port();
    let ep = format!("tcp://127.0.0.1:{port}");
    // The publisher binds and waits for a subscriber before sending.
    let publisher = std::thread::spawn({
        let ep = ep.clone();
        move || zrpc(&["--pub", "--timeout", "20", "--bind", &ep, "news", "hello"])
    });
    let mut sub =
        Lines::spawn(Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--sub", "--connect", &ep]));
    sub.expect(
        r#"{"method":"news","args":["hello"]}"#,
        Duration::from_secs(20),
    );
    let out = publisher.join().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_closed_stdout_ends_a_long_stream_quietly() {
    // `zrpc ADDR count 10000000 | head -3`: stop at once, no panic.
    let (_srv, ep) = server(&["echo"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([&ep, "count", "10000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for want in ["0\n", "1\n", "2\n"] {
        line.clear();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line, want);
    }
    drop(out);
    let mut proc = Proc(child);
    let st = proc
        .wait_for(Duration::from_secs(5))
        .expect("zrpc kept reading the stream after its stdout closed");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(proc.0.stderr.as_mut().unwrap(), &mut err);
    assert!(st.success() && err.is_empty(), "{st:?} {err}");
}

/// `zrpc-bench` runs end to end (tiny counts) and its JSON has the figures
/// the README promises; no assertion on speed.
#[test]
fn zrpc_bench_prints_side_by_side_json_and_benchmarks_a_live_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
        .args([
            "--json",
            "--seq",
            "40",
            "--pipelined",
            "400",
            "--window",
            "10",
        ])
        .args([
            "--large",
            "2048",
            "--large-mb",
            "1",
            "--clients",
            "2",
            "--rounds",
            "2",
        ])
        .output()
        .expect("run zrpc-bench");
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for key in [
        "raw_rtt_us",
        "call_rtt_us",
        "raw_msgs_per_s",
        "calls_per_s",
        "seq_calls_per_s",
        "raw_mb_per_s_2048",
        "call_mb_per_s_2048",
        "clients_calls_per_s",
    ] {
        let v = j[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {j}"));
        assert!(v > 0.0, "{key} = {v}");
    }
    // Progress went to stderr, not stdout.
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());

    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let _srv = spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args(["--server", "--bind", &ep, "calc"]),
        "serving",
        true,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
        .args(["--connect", &ep, "--method", "add", "--args", "[2, 3]"])
        .args(["--seq", "20", "--pipelined", "200", "--json"])
        .output()
        .expect("run zrpc-bench --connect");
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["seq_calls_per_s"].as_f64().unwrap() > 0.0, "{j}");
    // A failing method is one error line and exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
        .args(["--connect", &ep, "--method", "nosuch", "--seq", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NameError"));
    // Nothing listening: one line within seconds (a ping, not the 30 s
    // call timeout), exit 1.
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let start = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
        .args(["--connect", &dead, "--seq", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no zerorpc server answered at {dead} within 5 s")),
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

/// A zero count is a usage error, not silently run as one round trip.
#[test]
fn bench_rejects_zero_counts() {
    for opt in ["--window", "--rounds", "--seq", "--pipelined"] {
        let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
            .args([opt, "0"])
            .output()
            .expect("run zrpc-bench");
        assert_eq!(out.status.code(), Some(2), "{opt} 0: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be at least 1"), "{opt} 0: {err}");
    }
}

/// Several `--connect`s, host names among them: the CLI calls through the
/// pool, and `zrpc-bench` reports which server answered how many calls.
#[test]
fn a_pool_of_servers_by_address_and_by_host_name() {
    let (_a, ep_a) = server(&["calc"]);
    let (_b, ep_b) = server(&["calc"]);
    let port_b = ep_b.rsplit(':').next().unwrap();
    let by_name = format!("tcp://localhost:{port_b}");
    let out = zrpc(&["--client", "--connect", &by_name, "add", "1", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "3");
    let out = zrpc(&[
        "--client",
        "--connect",
        &ep_a,
        "--connect",
        &by_name,
        "add",
        "2",
        "2",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "4");

    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-bench"))
        .args(["--connect", &ep_a, "--connect", &by_name])
        .args(["--method", "add", "--args", "[2, 3]"])
        .args([
            "--seq",
            "50",
            "--pipelined",
            "2000",
            "--window",
            "16",
            "--json",
        ])
        .output()
        .expect("run zrpc-bench");
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let per = j["per_endpoint_calls"]
        .as_object()
        .expect("per_endpoint_calls");
    for ep in [&ep_a, &ep_b] {
        let n = per.get(ep.as_str()).and_then(|n| n.as_u64()).unwrap_or(0);
        assert!(n > 100, "{ep} answered {n} calls: {j}");
    }
    let total: u64 = per.values().filter_map(|n| n.as_u64()).sum();
    assert!(total >= 2050, "{j}");
    assert_eq!(j["errors"], serde_json::json!({}), "{j}");
}

#[test]
fn one_server_serves_several_built_ins_under_their_names() {
    let (_srv, ep) = server(&["calc", "time", "echo"]);
    // The first is the default; the others answer as name.method.
    assert_eq!(stdout(&zrpc(&[&ep, "add", "2", "3"])), "5\n");
    let out = zrpc(&[&ep, "time.strftime", "%Y"]);
    assert!(out.status.success(), "{out:?}");
    let year = chrono::Local::now().format("%Y").to_string();
    assert_eq!(stdout(&out).trim(), year);
    assert_eq!(stdout(&zrpc(&[&ep, "echo.count", "3"])), "0\n1\n2\n");
    let listing = stdout(&zrpc(&[&ep]));
    for method in ["add", "time.strftime", "echo.count"] {
        assert!(listing.contains(method), "{method} missing:\n{listing}");
    }
    assert!(listing.starts_with("[calc]\n"), "{listing}");
    let out = zrpc(&[&ep, "strftime", "%Y"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NameError"), "{}", stderr(&out));
    // Unknown or repeated services are usage errors.
    let ep2 = format!("tcp://127.0.0.1:{}", free_port());
    let out = zrpc(&["--server", "--bind", &ep2, "calc", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("unknown service \"nosuch\""),
        "{}",
        stderr(&out)
    );
    let out = zrpc(&["--server", "--bind", &ep2, "calc", "time", "time"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("named twice"), "{}", stderr(&out));
}

#[test]
fn api_versions_from_the_command_line() {
    let (_srv, ep) = server(&["--api-version", "2.1", "calc", "time"]);
    assert_eq!(
        stdout(&zrpc(&["--api-version", "2.0", &ep, "add", "1", "2"])),
        "3\n"
    );
    let out = zrpc(&["--api-version", "2.2", &ep, "add", "1", "2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("UnsupportedVersion") && err.contains("2.1") && err.contains("2.2"),
        "{err}"
    );
    // time is served at the default version, 1.0.
    let out = zrpc(&["--api-version", "1.0", &ep, "time.time"]);
    assert!(out.status.success(), "{out:?}");
    let out = zrpc(&["-?", &ep]);
    assert!(
        stdout(&out).contains("versions: calc 2.1, time.* 1.0"),
        "{}",
        stdout(&out)
    );
    let out = zrpc(&["--api-version", "two", &ep, "add", "1", "2"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("not a version"), "{}", stderr(&out));
}

#[test]
fn keyword_arguments_from_the_command_line() {
    // zerorpc-python's `def add(self, a, b=10)`.
    let (_py, ep) = python_kwargs_server("shim");
    assert_eq!(stdout(&zrpc(&["--kw", "a=5", &ep, "add"])), "15\n");
    assert_eq!(
        stdout(&zrpc(&["--kw", "b=2", "--kw", "a=1", &ep, "add"])),
        "3\n"
    );
    assert_eq!(stdout(&zrpc(&["--kw", "b=2", &ep, "add", "40"])), "42\n");
    let out = zrpc(&["--kw", "c=1", &ep, "add"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("add(a, b=10) has no parameter \"c\""), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let out = zrpc(&["--kw", "a", &ep, "add"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A zrpc server's declared arguments work the same way.
    let (_srv, ep) = server(&["calc"]);
    assert_eq!(
        stdout(&zrpc(&["--kw", "b=3", "--kw", "a=4", &ep, "subtract"])),
        "1\n"
    );
}

#[test]
fn a_call_goes_to_the_server_named_with_to() {
    let (_a, a) = server(&["--server-name", "alpha", "echo"]);
    let (_b, b) = server(&["--server-name", "beta", "echo"]);
    // Each answers `_zrpc_server_name` with its own name.
    for (ep, name) in [(&a, "alpha"), (&b, "beta")] {
        assert_eq!(
            stdout(&zrpc(&[ep, "_zrpc_server_name"])),
            format!("{name}\n")
        );
    }
    for _ in 0..3 {
        let out = zrpc(&[
            "--connect",
            &a,
            "--connect",
            &b,
            "--to",
            "beta",
            "_zrpc_server_name",
        ]);
        assert_eq!(stdout(&out), "beta\n", "{out:?}");
    }
    let out = zrpc(&[
        "--connect",
        &a,
        "--connect",
        &b,
        "--to",
        "gamma",
        "echo",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("no server named \"gamma\"") && err.contains("alpha"),
        "{err}"
    );
}

#[test]
fn notify_and_listen_from_the_command_line() {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut listener = Lines::spawn(Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
        "--listen",
        "--bind",
        &ep,
        "--event-type",
        "compute.*",
        "--priority",
        "error",
    ]));
    let notify = |priority: &str, event_type: &str| {
        zrpc(&[
            "--notify",
            "--timeout",
            "20",
            "--connect",
            &ep,
            "--priority",
            priority,
            "--header",
            "user=ada",
            "--publisher-id",
            "host1",
            event_type,
            "disk full",
        ])
    };
    // Not wanted: another priority, another event type. Then one that is.
    for (priority, event_type) in [
        ("info", "compute.fail"),
        ("error", "network.fail"),
        ("error", "compute.fail"),
    ] {
        let out = notify(priority, event_type);
        assert!(out.status.success(), "{out:?}");
    }
    listener.expect(
        r#"{"priority":"error","event_type":"compute.fail","publisher_id":"host1","payload":"disk full","ctxt":{"user":"ada"}}"#,
        Duration::from_secs(20),
    );
    let lines: Vec<String> = listener
        .seen()
        .iter()
        .filter(|l| l.starts_with('{'))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let out = zrpc(&["--notify", "--connect", &ep, "--priority", "loud", "x", "1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("not a priority"), "{}", stderr(&out));
    let out = zrpc(&[
        "--notify",
        "--timeout",
        "0.5",
        "--bind",
        &format!("tcp://127.0.0.1:{}", free_port()),
        "x",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("no listener connected"),
        "{}",
        stderr(&out)
    );
}

/// `zrpc ARGS…` with `input` on its standard input.
fn zrpc_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run zrpc");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    // (Written from a thread: zrpc reads it only as the server asks.)
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("zrpc ends");
    writer.join().expect("input written");
    out
}

#[test]
fn stdin_streams_json_lines_to_the_server() {
    let (_srv, ep) = server(&["echo"]);
    let input: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    let out = zrpc_with_input(&["--stdin", &ep, "sum"], &input);
    assert_eq!(stdout(&out), "5000050000\n", "{}", stderr(&out));
    let out = zrpc_with_input(&["--stdin", &ep, "upper"], "\"a\"\n\n\"b\"\n");
    assert_eq!(stdout(&out), "A\nB\n", "{}", stderr(&out));
    // A line that is not JSON fails the call, in one line naming it.
    let out = zrpc_with_input(&["--stdin", &ep, "sum"], "1\nnot json\n3\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 2") && err.contains("not JSON"), "{err}");
    // Without --stdin nothing changes: `-` is a string, and a method that
    // takes a stream is refused, not run without one.
    assert_eq!(stdout(&zrpc(&[&ep, "echo", "-"])), "-\n");
    let out = zrpc(&[&ep, "sum"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("takes a stream of items"),
        "{}",
        stderr(&out)
    );
    // Parameters come first, then the items: a method without a stream says so.
    let out = zrpc_with_input(&["--stdin", &ep, "echo", "x"], "1\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not take a stream"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stdin_answers_print_as_they_arrive() {
    use std::io::{BufRead, Write};
    let (_srv, ep) = server(&["echo"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(["--stdin", &ep, "upper"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run zrpc");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Each answer is read before the next word is written: both directions
    // stream, nothing waits for the end of the input.
    for word in ["first", "second", "third"] {
        writeln!(stdin, "\"{word}\"").expect("write a word");
        stdin.flush().expect("flush");
        let line = lines.next().expect("an answer").expect("read");
        assert_eq!(line, word.to_uppercase());
    }
    drop(stdin);
    assert!(
        lines.next().is_none(),
        "the end of the input ends the answers"
    );
    assert!(child.wait().expect("zrpc ends").success());
}

#[test]
fn stdin_against_zerorpc_servers_fails_clearly_within_the_timeout() {
    let (_py, ep) = python_server(5.0);
    let started = std::time::Instant::now();
    let out = zrpc_with_input(&["--stdin", "--timeout", "10", &ep, "add"], "1\n2\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not take a stream of items"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // zerorpc-node ignores the request: the answer is the lack of one,
    // within two heartbeats.
    let (_node, ep) = node_server(1000);
    let started = std::time::Instant::now();
    let out = zrpc_with_input(&["--stdin", "--heartbeat", "1", &ep, "add"], "1\n2\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("does not take a stream of items"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
