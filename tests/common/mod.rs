//! Helpers shared by the integration tests: the test service, the Python
//! peer, child processes that are always killed, free ports.
#![allow(dead_code)]

use futures::StreamExt;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zerorpc::{Server, Service, ServiceError, Value};

#[derive(Serialize)]
pub struct Point {
    pub x: i64,
    pub y: i64,
    pub label: String,
}

/// The service the interop tests call.
pub fn test_service() -> Service {
    // How many `sleep` and `spin` calls are running, for `until_running`.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (r_sleep, r_spin) = (Counted(running.clone()), Counted(running.clone()));
    Service::new("test")
        .method("running", move |(): ()| {
            let n = running.load(std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, ServiceError>(n) }
        })
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        })
        .doc("Add two integers.\n\nReturns their sum.")
        .args(["a", "b"])
        .method("hello", |(name,): (String,)| async move {
            Ok::<_, ServiceError>(format!("Hello, {name}!"))
        })
        .method("point", |(x, y): (i64, i64)| async move {
            Ok::<_, ServiceError>(Point {
                x,
                y,
                label: format!("{x},{y}"),
            })
        })
        .method("nothing", |(): ()| async { Ok::<_, ServiceError>(()) })
        // Its argument shared with the request, not copied (zerorpc::Blob).
        .method("blob_echo", |(data,): (zerorpc::Blob,)| async move {
            Ok::<_, ServiceError>((data.len(), data))
        })
        .dynamic("echo", |args: Vec<Value>| async move {
            args.into_iter()
                .next()
                .ok_or_else(|| ServiceError::type_error("echo() takes 1 argument"))
        })
        .method("fail", |(msg,): (String,)| async move {
            Err::<(), _>(ServiceError::new("ValueError", msg))
        })
        .method("divide", |(a, b): (i64, i64)| async move {
            if b == 0 {
                return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
            }
            Ok(a / b)
        })
        .method("sleep", move |(secs,): (f64,)| {
            let guard = r_sleep.enter();
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                Ok::<_, ServiceError>(format!("slept {secs:?}"))
            }
        })
        .stream("count", |(n,): (u64,)| {
            futures::stream::iter(0..n).map(Ok::<_, ServiceError>)
        })
        .doc("Stream the integers 0..n.")
        .stream("count_then_fail", |(n,): (u64,)| {
            futures::stream::iter(0..=n).map(move |i| {
                if i < n {
                    Ok(i)
                } else {
                    Err(ServiceError::new("ValueError", format!("failed after {n}")))
                }
            })
        })
        .method_blocking("spin", move |(ms,): (u64,)| {
            let _guard = r_spin.enter();
            // Busy CPU work: must not stall other calls or heartbeats.
            let end = std::time::Instant::now() + Duration::from_millis(ms);
            let mut n = 0u64;
            while std::time::Instant::now() < end {
                n = n.wrapping_add(1);
            }
            Ok::<_, ServiceError>(n > 0)
        })
}

/// Counts the calls of a method that are running.
#[derive(Clone)]
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

struct Running(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    fn enter(&self) -> Running {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(self.0.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Wait (up to 5 s) until the test service runs at least `n` `sleep` or
/// `spin` calls: the condition tests otherwise guessed with a sleep.
pub async fn until_running(client: &zerorpc::Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now: usize = client.call("running", ()).await.expect("running()");
        if now >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {now} of {n} calls started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait (up to 10 s) until `client` has `n` servers connected.
pub async fn until_connected(client: &zerorpc::Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.servers().iter().filter(|s| s.connected).count() < n {
        assert!(
            Instant::now() < deadline,
            "{n} servers did not connect: {:?}",
            client.servers()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bound `client` with two workers (zerorpc servers of any language
/// that connected to it, with `add` and `sleep`, heartbeating at 0.5 s):
/// once both are connected, four 1.5 s calls (three heartbeats each)
/// succeed, and both workers took calls.
pub async fn two_workers_take_long_calls(client: &zerorpc::Client) {
    until_connected(client, 2).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<_, String>("sleep", (1.5,)).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().expect("a 3-heartbeat call on a worker");
    }
    let sum: i64 = client.call("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    let busy = client.servers().iter().filter(|s| s.answered >= 2).count();
    assert_eq!(busy, 2, "both workers took calls: {:?}", client.servers());
}

/// Serve `service` on a free loopback port.
/// A client bound to a free loopback port (the workers layout: servers
/// connect to it), heartbeating every `heartbeat`; with its endpoint.
pub async fn bound_client(heartbeat: Duration) -> (zerorpc::Client, String) {
    let client = zerorpc::Client::builder()
        .bind("tcp://127.0.0.1:0")
        .heartbeat(Some(heartbeat))
        .start()
        .await
        .expect("client binds");
    let ep = client.endpoints()[0].clone();
    (client, ep)
}

pub async fn serve(service: Service) -> (Server, String) {
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("server starts");
    let ep = server.endpoints()[0].clone();
    (server, ep)
}

/// Start the test service on a free loopback port.
pub async fn start_server(heartbeat: Option<Duration>) -> (Server, String) {
    let server = Server::builder(test_service())
        .bind("tcp://127.0.0.1:0")
        .heartbeat(heartbeat)
        .start()
        .await
        .expect("server starts");
    let ep = server.endpoints()[0].clone();
    (server, ep)
}

/// The Python interpreter with zerorpc 0.6.3. Fails loudly when missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("ZRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import zerorpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "zerorpc-python is not available at {}.\nInstall it with: scripts/test.sh (does it for you), or\n  \
         python3 -m venv .venv && .venv/bin/pip install zerorpc==0.6.3\n(or set ZRPC_PYTHON to a python that has it)",
        path.display()
    );
    path
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Send a signal by number (e.g. 15 for SIGTERM).
    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Wait for exit up to `limit`; None if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a process and wait (bounded) until a line of its stdout (or
/// stderr, with `on_stderr`) contains `ready`.
pub fn spawn_until(cmd: &mut Command, ready: &str, on_stderr: bool) -> Proc {
    cmd.stdin(Stdio::null());
    if on_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().expect("spawn child process");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    let pipe: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if !seen && line.contains(&ready) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    let proc = Proc(child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("child process did not become ready within 20 s");
    proc
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `zrpc` that users run, for tests whose bars are about it (attacks,
/// memory under a soak, failover on a cluster): `$ZRPC_RELEASE_BIN` when
/// set (the test command builds the release binary and sets it; a debug
/// build's per-message cost is ~10x), else this build's `zrpc`.
pub fn release_zrpc() -> String {
    match std::env::var("ZRPC_RELEASE_BIN") {
        Ok(bin) => {
            assert!(
                std::path::Path::new(&bin).exists(),
                "ZRPC_RELEASE_BIN={bin} does not exist: build it with `cargo build --release --features cli --bin zrpc`"
            );
            bin
        }
        Err(_) => {
            eprintln!("note: running the debug zrpc; scripts/test.sh runs the release build (ZRPC_RELEASE_BIN)");
            env!("CARGO_BIN_EXE_zrpc").to_string()
        }
    }
}

/// An example binary (`cargo test` builds the examples next to the test
/// binaries).
pub fn example(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test` (which builds the examples)",
        path.display()
    );
    path
}

/// Start the real Python zerorpc server on a free port.
pub fn python_server(heartbeat: f64) -> (Proc, String) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let proc = spawn_until(
        Command::new(python())
            .arg(script("py_server.py"))
            .arg(&ep)
            .arg(heartbeat.to_string()),
        "READY",
        false,
    );
    (proc, ep)
}

/// zerorpc-python serving `add(self, a, b=10)` and `greet(self, name,
/// greeting="Hello", punctuation="!")` (tests/python/py_kwargs.py), as
/// released (`"stock"`) or with the getargspec its introspection needs on
/// Python ≥ 3.11 (`"shim"`).
pub fn python_kwargs_server(mode: &str) -> (Proc, String) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let proc = spawn_until(
        Command::new(python())
            .arg(script("py_kwargs.py"))
            .arg(&ep)
            .arg(mode),
        "READY",
        false,
    );
    (proc, ep)
}

/// Run a Python client scenario against `ep`; panics with its output on failure.
pub fn python_client(ep: &str, scenario: &str) {
    let out = Command::new(python())
        .arg(script("py_client.py"))
        .arg(ep)
        .arg(scenario)
        .stdin(Stdio::null())
        .output()
        .expect("run python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {scenario}")),
        "python scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// A child process whose stdout lines can be waited for.
pub struct Lines {
    pub proc: Proc,
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Start `cmd` with its stdout captured line by line (stderr inherited).
    pub fn spawn(cmd: &mut Command) -> Lines {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn child process");
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        Self::reading(child, out)
    }

    /// Start `cmd` with its stdout captured line by line and its stderr
    /// written to the file `log`.
    pub fn spawn_with_stderr(cmd: &mut Command, log: &std::path::Path) -> Lines {
        let file = std::fs::File::create(log).expect("create the log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file));
        let mut child = cmd.spawn().expect("spawn child process");
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        Self::reading(child, out)
    }

    /// Start `cmd` with its stderr (the log of a `zrpc` command) captured
    /// line by line, and stdout discarded.
    pub fn spawn_stderr(cmd: &mut Command) -> Lines {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn child process");
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        Self::reading(child, err)
    }

    fn reading(child: Child, out: Box<dyn std::io::Read + Send>) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            proc: Proc(child),
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait until a line contains `pat`; panics after `limit` with what was
    /// printed.
    pub fn expect(&mut self, pat: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(pat);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line containing {pat:?} within {limit:?}; output so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Every line received so far.
    pub fn seen(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Non-blocking: has a line containing `pat` arrived?
    pub fn saw(&mut self, pat: &str) -> bool {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|l| l.contains(pat))
    }
}

/// A Python one-way peer (tests/python/py_oneway.py), started and ready.
pub fn python_oneway(role: &str, ep: &str, n: usize, extra: &[&str]) -> Lines {
    let mut lines = Lines::spawn(
        Command::new(python())
            .arg(script("py_oneway.py"))
            .args([role, ep, &n.to_string()])
            .args(extra),
    );
    lines.expect("READY", Duration::from_secs(20));
    lines
}

/// The zerorpc-node 0.9.8 peer: `node` and `tests/node/node_modules`.
/// Fails loudly when missing.
pub fn node() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let ok = Command::new("node")
        .current_dir(&dir)
        .args(["-e", "require('zerorpc')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "zerorpc-node is not installed in {}.\nInstall it with: scripts/test.sh (does it for you), or\n  \
         (cd tests/node && npm ci)\n(needs Node.js ≥ 18 and npm; zeromq 6's prebuilt binaries, no compiler)",
        dir.display()
    );
    dir
}

/// Start the real zerorpc-node server on a free port (heartbeat in ms);
/// its stdout lines (READY, NODE-ERROR ...) can be checked.
pub fn node_server(heartbeat_ms: u64) -> (Lines, String) {
    let dir = node();
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut lines = Lines::spawn(
        Command::new("node")
            .current_dir(&dir)
            .arg("node_server.js")
            .arg(&ep)
            .arg(heartbeat_ms.to_string()),
    );
    lines.expect("READY", Duration::from_secs(20));
    (lines, ep)
}

/// Run a zerorpc-node client scenario against `ep`; panics with its output
/// on failure.
pub fn node_client(ep: &str, scenario: &str) {
    let out = Command::new("node")
        .current_dir(node())
        .arg("node_client.js")
        .arg(ep)
        .arg(scenario)
        .stdin(Stdio::null())
        .output()
        .expect("run node client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {scenario}")),
        "node scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
