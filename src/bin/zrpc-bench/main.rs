//! `zrpc-bench`: zrpc beside its floor, the raw transport (`zerorpc_zeromq`), measured
//! in one run on loopback.
//!
//! Every zrpc figure has a raw counterpart doing the same traffic without the
//! RPC layer: a DEALER sends `[empty, payload]` where the payload is an
//! encoded zerorpc request of the same size, and a ROUTER sends each message
//! straight back. zrpc's side is a real [`Server`] with an `echo` method and a
//! real [`Client`]. Both run in this process, on the same tokio runtime
//! (`--runtime`), one after the other.

// The same JSON reading as `zrpc` (one file, two commands).
#[allow(dead_code)]
#[path = "../zrpc/json.rs"]
mod json;

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use json::from_json;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::protocol;
use zerorpc::Value;
use zerorpc::{CallOptions, Client, Server, Service, ServiceError};
use zerorpc_zeromq::{DealerSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

#[derive(Parser, Debug)]
#[command(
    name = "zrpc-bench",
    about = "Benchmark zrpc against the raw zeromq transport (and optionally zerorpc-python) on loopback",
    after_help = "Ratios compare each zrpc figure with the raw floor measured in the same run. \
                  With --connect, benchmarks calls of --method on a live server instead."
)]
struct Opts {
    /// tokio runtime flavour: current (current_thread: client and server
    /// share one thread, the fastest for both raw and zrpc on this 2-core
    /// machine) or multi (multi-thread, one worker per CPU by default).
    #[arg(long, default_value = "current", value_parser = ["multi", "current"])]
    runtime: String,
    /// Worker threads of the multi-thread runtime (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Rounds: raw and zrpc alternate this many times, so drift on a busy
    /// machine affects both alike; figures are over all rounds (medians).
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = at_least_one)]
    rounds: usize,
    /// Sequential round trips (one in flight) to time.
    #[arg(long, default_value_t = 5000, value_name = "N", value_parser = at_least_one)]
    seq: usize,
    /// Pipelined round trips on one connection.
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = at_least_one)]
    pipelined: usize,
    /// Round trips in flight when pipelining.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = at_least_one)]
    window: usize,
    /// Payload bytes of the small messages.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    size: usize,
    /// Payload sizes of the large-message runs (comma-separated; empty to skip).
    #[arg(long, default_value = "65536,1048576", value_name = "BYTES,...")]
    large: String,
    /// Megabytes to move in each large-message run.
    #[arg(long, default_value_t = 256, value_name = "MB")]
    large_mb: usize,
    /// Clients (and raw DEALERs) at once for the many-clients run; 0 skips it.
    #[arg(long, default_value_t = 8, value_name = "N")]
    clients: usize,
    /// Also measure zerorpc-python (client → Python server, client → zrpc server).
    #[arg(long)]
    python: bool,
    /// Python interpreter that has zerorpc (default: $ZRPC_PYTHON, else .venv/bin/python).
    #[arg(long, value_name = "PATH")]
    python_bin: Option<String>,
    /// Benchmark live servers instead (with --method and --args):
    /// repeatable, a pool of servers balanced as any client does; a host
    /// name stands for every address it resolves to.
    #[arg(long, value_name = "ADDRESS")]
    connect: Vec<String>,
    /// Method to call with --connect.
    #[arg(long, default_value = "_zerorpc_ping", value_name = "NAME")]
    method: String,
    /// Arguments for --method, as a JSON array.
    #[arg(long, default_value = "[]", value_name = "JSON")]
    args: String,
    /// With --connect: the client's heartbeat period in seconds (default
    /// 5; shorter periods find a lost server sooner).
    #[arg(long, value_name = "SECONDS")]
    heartbeat: Option<f64>,
    /// With --connect: how often host names are resolved again, in seconds.
    #[arg(long, value_name = "SECONDS")]
    resolve_every: Option<f64>,
    /// With --connect: instead of the sequential and pipelined runs, keep
    /// --window calls in flight for this many seconds and report every
    /// failure with its time, and each server's answers over time (for
    /// watching a pool through restarts, partitions and DNS changes).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Measure CURVE against NULL instead (zrpc both times, in the same
    /// run): sequential, pipelined and 64 KiB calls.
    #[arg(long)]
    curve: bool,
    /// Measure a method defined with `#[zerorpc::service]` against the same
    /// method registered as a closure (in the same run).
    #[arg(long)]
    typed: bool,
    /// Measure calls through a broker (`zerorpc::Broker`, its worker a
    /// server that connects) against direct calls to a server, in the same
    /// run: sequential, pipelined and 64 KiB calls.
    #[arg(long)]
    broker: bool,
    /// Install a Prometheus metrics recorder first (to measure what
    /// recording metrics costs).
    #[arg(long)]
    metrics: bool,
    /// Install a tracing subscriber taking zrpc's debug spans first (output
    /// discarded; to measure what spans cost).
    #[arg(long)]
    spans: bool,
}

fn main() {
    std::process::exit(run_main());
}

/// Parse the arguments, run, and return the exit code.
fn run_main() -> i32 {
    let opts = match Opts::try_parse() {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if opts.metrics {
        // The Prometheus recorder, as `zrpc --server --metrics` installs it
        // (without its HTTP listener): what recording costs.
        if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
            eprintln!("zrpc-bench: cannot install the metrics recorder: {e}");
            return 1;
        }
    }
    if opts.spans {
        // A subscriber that takes every zrpc span and event at debug level,
        // formatting them to nowhere: what tracing costs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("zerorpc=debug")
            .with_writer(std::io::sink)
            .try_init();
    }
    let rt = match opts.runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = opts.threads {
                b.worker_threads(n.max(1));
            }
            b.enable_all().build()
        }
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zrpc-bench: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        if !opts.connect.is_empty() {
            live(&opts).await
        } else if opts.curve {
            curve_vs_null(&opts).await
        } else if opts.typed {
            typed_vs_closure(&opts).await
        } else if opts.broker {
            broker_vs_direct(&opts).await
        } else {
            side_by_side(&opts).await
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            done_progress();
            eprintln!("zrpc-bench: {e}");
            1
        }
    }
}

/// One progress line on stderr, overwritten as the run goes.
fn progress(step: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{step}");
    let _ = err.flush();
}

fn done_progress() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

/// Latency figures of a sequential run.
struct Latency {
    median_us: f64,
    p99_us: f64,
    per_s: f64,
}

/// Round-trip times and the wall time they took.
#[derive(Default)]
struct Timed {
    samples: Vec<Duration>,
    total: Duration,
}

impl Timed {
    fn add(&mut self, other: Timed) {
        self.samples.extend(other.samples);
        self.total += other.total;
    }
}

/// The median of some rates.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn latency(Timed { mut samples, total }: Timed) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Latency {
        median_us: at(0.5),
        p99_us: at(0.99),
        per_s: samples.len() as f64 / total.as_secs_f64(),
    }
}

/// The zerorpc request a zrpc client sends for `echo(payload)`: the raw
/// side sends exactly this many bytes.
fn request_like(payload: &[u8]) -> Bytes {
    let mut args = Vec::new();
    let array = Value::Array(vec![Value::Binary(payload.to_vec())]);
    // (Writing to a Vec cannot fail.)
    let _ = rmpv::encode::write_value(&mut args, &array);
    Bytes::from(protocol::encode_request("echo", &args).1)
}

// ------------------------------------------------------------------ raw side

/// Counts that must not be zero (zero used to be run silently as one).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A ROUTER that sends every message straight back.
async fn raw_echo_server() -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let mut router = RouterSocket::new();
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .map_err(|e| format!("raw echo server: {e}"))?
        .to_string();
    let task = tokio::spawn(async move {
        while let Ok(msg) = router.recv().await {
            if router.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok((ep, task))
}

async fn raw_dealer(ep: &str) -> Result<DealerSocket, String> {
    let mut d = DealerSocket::new();
    d.connect(ep)
        .await
        .map_err(|e| format!("raw dealer: {e}"))?;
    Ok(d)
}

fn raw_message(payload: &Bytes) -> ZmqMessage {
    let mut m = ZmqMessage::from(Bytes::new());
    m.push_back(payload.clone());
    m
}

async fn raw_sequential(ep: &str, payload: &Bytes, n: usize) -> Result<Timed, String> {
    let mut d = raw_dealer(ep).await?;
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        d.send(raw_message(payload))
            .await
            .map_err(|e| e.to_string())?;
        recv_within(&mut d).await?;
        samples.push(t.elapsed());
    }
    Ok(Timed {
        samples,
        total: started.elapsed(),
    })
}

async fn recv_within(d: &mut impl SocketRecv) -> Result<ZmqMessage, String> {
    match tokio::time::timeout(Duration::from_secs(10), d.recv()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(format!("raw receive: {e}")),
        Err(_) => Err("raw echo: no reply within 10 s".into()),
    }
}

/// `n` round trips with up to `window` in flight on one DEALER; messages/s.
async fn raw_pipelined(ep: &str, payload: &Bytes, n: usize, window: usize) -> Result<f64, String> {
    let d = raw_dealer(ep).await?;
    let (mut tx, mut rx) = d.split();
    let credit = Arc::new(tokio::sync::Semaphore::new(window));
    let started = Instant::now();
    let sender = {
        let credit = credit.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                match credit.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
                if tx.send(raw_message(&payload)).await.is_err() {
                    return;
                }
            }
        })
    };
    for _ in 0..n {
        recv_within(&mut rx).await?;
        credit.add_permits(1);
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = sender.await;
    Ok(n as f64 / secs)
}

async fn raw_many(
    ep: &str,
    payload: &Bytes,
    clients: usize,
    n: usize,
    window: usize,
) -> Result<f64, String> {
    let per = n / clients;
    let started = Instant::now();
    let runs = (0..clients).map(|_| raw_pipelined(ep, payload, per, window));
    for r in futures::future::join_all(runs).await {
        r?;
    }
    Ok((per * clients) as f64 / started.elapsed().as_secs_f64())
}

// ----------------------------------------------------------------- zrpc side

/// A typed `echo(bytes) -> bytes`, the way a Rust service takes binary
/// (a [`Blob`](zerorpc::Blob): a view of the request, not a copy).
fn echo_service() -> Service {
    Service::new("bench").method("echo", |(b,): (zerorpc::Blob,)| async move {
        Ok::<_, ServiceError>(b)
    })
}

/// What each benchmarked call sends.
#[derive(Clone, Copy)]
enum CallArgs<'a> {
    /// One binary argument, borrowed: a typed call encodes it straight into
    /// the request (what the raw echo's prebuilt request stands for).
    Bytes(&'a [u8]),
    /// Dynamic values (with --connect: whatever the user gave).
    Values(&'a [Value]),
}

/// How long `--connect` waits for the server's first answer.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

async fn zrpc_client(ep: &str) -> Result<Client, String> {
    Client::builder()
        .connect(ep)
        .timeout(Some(Duration::from_secs(30)))
        .start()
        .await
        .map_err(|e| e.to_string())
}

async fn call_once(c: &Client, method: &str, args: CallArgs<'_>) -> Result<(), String> {
    match args {
        CallArgs::Bytes(b) => c
            .call::<_, zerorpc::Blob>(method, (serde_bytes::Bytes::new(b),))
            .await
            .map(drop),
        CallArgs::Values(v) => c.call_dynamic(method, v.to_vec()).await.map(drop),
    }
    .map_err(|e| format!("{method}: {e}"))
}

async fn zrpc_sequential(
    c: &Client,
    method: &str,
    args: CallArgs<'_>,
    n: usize,
) -> Result<Timed, String> {
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        call_once(c, method, args).await?;
        samples.push(t.elapsed());
    }
    Ok(Timed {
        samples,
        total: started.elapsed(),
    })
}

async fn zrpc_pipelined(
    c: &Client,
    method: &str,
    args: CallArgs<'_>,
    n: usize,
    window: usize,
) -> Result<f64, String> {
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..n)
        .map(|_| call_once(c, method, args))
        .buffer_unordered(window);
    while let Some(r) = calls.next().await {
        r?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn zrpc_many(
    ep: &str,
    args: CallArgs<'_>,
    clients: usize,
    n: usize,
    window: usize,
) -> Result<f64, String> {
    let mut cs = Vec::new();
    for _ in 0..clients {
        let c = zrpc_client(ep).await?;
        call_once(&c, "echo", args).await?;
        cs.push(c);
    }
    let per = n / clients;
    let started = Instant::now();
    let runs = cs
        .iter()
        .map(|c| zrpc_pipelined(c, "echo", args, per, window));
    for r in futures::future::join_all(runs).await {
        r?;
    }
    Ok((per * clients) as f64 / started.elapsed().as_secs_f64())
}

// ------------------------------------------------------------------- report

/// One line of the table: a zrpc figure beside its floor.
struct Row {
    what: String,
    unit: &'static str,
    raw: Option<f64>,
    zrpc: f64,
    /// Lower is better (latency): the ratio is zrpc / raw; else zrpc / raw
    /// shown as a percentage.
    lower_better: bool,
}

fn fmt_num(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn print_table(title: &str, rows: &[Row], notes: &[String]) {
    print_table_of(title, ["raw zeromq", "zrpc", "zrpc/raw"], rows, notes)
}

/// A table whose two columns (and their ratio) are named `heads`.
fn print_table_of(title: &str, heads: [&str; 3], rows: &[Row], notes: &[String]) {
    println!("{title}");
    println!(
        "{:<34} {:>12} {:>12} {:>10}",
        "", heads[0], heads[1], heads[2]
    );
    for r in rows {
        let raw = r
            .raw
            .map_or("-".to_string(), |v| format!("{} {}", fmt_num(v), r.unit));
        let ratio = match r.raw {
            Some(raw) if raw > 0.0 && r.lower_better => format!("{:.2}×", r.zrpc / raw),
            Some(raw) if raw > 0.0 => format!("{:.0}%", 100.0 * r.zrpc / raw),
            _ => "-".into(),
        };
        println!(
            "{:<34} {:>12} {:>12} {:>10}",
            r.what,
            raw,
            format!("{} {}", fmt_num(r.zrpc), r.unit),
            ratio
        );
    }
    for n in notes {
        println!("{n}");
    }
}

/// `zrpc-bench --curve`: the same zrpc calls over NULL and over CURVE,
/// alternating round by round.
async fn curve_vs_null(o: &Opts) -> Result<(), String> {
    use zerorpc::security::{Curve, CurveKeyPair};
    let (server_keys, client_keys) = (CurveKeyPair::generate(), CurveKeyPair::generate());
    let start = |curve: Option<Curve>| async move {
        let mut b = Server::builder(echo_service()).bind("tcp://127.0.0.1:0");
        if let Some(c) = curve {
            b = b.curve(c);
        }
        b.start().await.map_err(|e| e.to_string())
    };
    let null_server = start(None).await?;
    let curve_server = start(Some(
        Curve::server(server_keys.clone()).allow(client_keys.public()),
    ))
    .await?;
    let null = zrpc_client(&null_server.endpoints()[0]).await?;
    let curve = Client::builder()
        .connect(curve_server.endpoints()[0].clone())
        .timeout(Some(Duration::from_secs(30)))
        .curve(Curve::client(client_keys, server_keys.public()))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    a_against_b(o, ["NULL", "CURVE"], "null", "curve", [&null, &curve]).await
}

/// `zrpc-bench --broker`: the same calls straight to a server and through
/// a broker to a worker that connects to it, alternating round by round.
async fn broker_vs_direct(o: &Opts) -> Result<(), String> {
    let direct_server = Server::builder(echo_service())
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let broker = zerorpc::Broker::builder()
        .frontend("tcp://127.0.0.1:0")
        .backend("tcp://127.0.0.1:0")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let _worker = Server::builder(echo_service())
        .connect(broker.backend()[0].clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    while broker.workers().await.is_empty() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the worker did not reach the broker within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let direct = zrpc_client(&direct_server.endpoints()[0]).await?;
    let brokered = zrpc_client(&broker.frontend()[0]).await?;
    a_against_b(
        o,
        ["direct", "broker"],
        "direct",
        "broker",
        [&direct, &brokered],
    )
    .await
}

/// A service with `echo` defined with `#[zerorpc::service]`.
#[zerorpc::service(name = "bench")]
trait TypedEcho {
    /// Return the bytes.
    async fn echo(&self, b: zerorpc::Blob) -> zerorpc::Blob;
}

struct Echo;

impl TypedEcho for Echo {
    async fn echo(&self, b: zerorpc::Blob) -> zerorpc::Blob {
        b
    }
}

/// `zrpc-bench --typed`: the same calls to a closure-registered `echo` and
/// to one defined with `#[zerorpc::service]`, alternating round by round.
async fn typed_vs_closure(o: &Opts) -> Result<(), String> {
    let start = |service: Service| async move {
        Server::builder(service)
            .bind("tcp://127.0.0.1:0")
            .start()
            .await
            .map_err(|e| e.to_string())
    };
    let closure_server = start(echo_service()).await?;
    let typed_server = start(Echo.into_service()).await?;
    let closure = zrpc_client(&closure_server.endpoints()[0]).await?;
    let typed = zrpc_client(&typed_server.endpoints()[0]).await?;
    a_against_b(
        o,
        ["closure", "macro"],
        "closure",
        "typed",
        [&closure, &typed],
    )
    .await
}

/// Sequential, pipelined and 64 KiB calls of `echo` through two clients
/// (`heads`: what each is), alternating round by round; one table or one
/// JSON object (keys prefixed `keys[i]_`).
async fn a_against_b(
    o: &Opts,
    heads: [&str; 2],
    prefix_a: &str,
    prefix_b: &str,
    clients: [&Client; 2],
) -> Result<(), String> {
    let payload = Bytes::from(vec![0x5a; o.size]);
    let big = Bytes::from(vec![0xa5; 64 << 10]);
    let (args, big_args) = (CallArgs::Bytes(&payload), CallArgs::Bytes(&big));
    progress("warming up");
    let warm = (o.seq / 10).clamp(1, 500);
    for c in clients {
        zrpc_sequential(c, "echo", args, warm).await?;
    }
    let rounds = o.rounds;
    let (mut seq, mut pipe, mut large) = (
        [Timed::default(), Timed::default()],
        [vec![], vec![]],
        [vec![], vec![]],
    );
    for r in 1..=rounds {
        progress(&format!(
            "{} and {}, round {r}/{rounds}",
            heads[0], heads[1]
        ));
        for (i, c) in clients.into_iter().enumerate() {
            seq[i].add(zrpc_sequential(c, "echo", args, (o.seq / rounds).max(1)).await?);
            let n = (o.pipelined / rounds).max(1);
            pipe[i].push(zrpc_pipelined(c, "echo", args, n, o.window).await?);
            let n = ((o.large_mb << 20) / big.len() / rounds).max(2);
            large[i]
                .push(zrpc_pipelined(c, "echo", big_args, n, 8).await? * big.len() as f64 / 1e6);
        }
    }
    done_progress();
    let [seq_a, seq_b] = seq.map(latency);
    let [pipe_a, pipe_b] = pipe.map(median);
    let [large_a, large_b] = large.map(median);
    if o.json {
        let mut json = serde_json::Map::new();
        for (k, v) in [
            (format!("{prefix_a}_rtt_us"), seq_a.median_us),
            (format!("{prefix_b}_rtt_us"), seq_b.median_us),
            (format!("{prefix_a}_calls_per_s"), pipe_a),
            (format!("{prefix_b}_calls_per_s"), pipe_b),
            (format!("{prefix_a}_64k_mb_per_s"), large_a),
            (format!("{prefix_b}_64k_mb_per_s"), large_b),
        ] {
            json.insert(k, json_number(v));
        }
        println!("{}", serde_json::Value::Object(json));
        return Ok(());
    }
    let row = |what: &str, unit, a: f64, b: f64, lower_better| Row {
        what: what.into(),
        unit,
        raw: Some(a),
        zrpc: b,
        lower_better,
    };
    let rows = [
        row(
            "sequential round trip, median",
            "µs",
            seq_a.median_us,
            seq_b.median_us,
            true,
        ),
        row(
            &format!("pipelined ({} in flight) per s", o.window),
            "/s",
            pipe_a,
            pipe_b,
            false,
        ),
        row(
            "64 KiB payload, MB/s (8 in flight)",
            "MB/s",
            large_a,
            large_b,
            false,
        ),
    ];
    let ratio = format!("{}/{}", heads[1], heads[0]);
    print_table_of(
        &format!(
            "zrpc-bench: loopback, {}-byte payload, echo, {} vs {}",
            o.size, heads[0], heads[1]
        ),
        [heads[0], heads[1], &ratio],
        &rows,
        &[],
    );
    Ok(())
}

fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64((v * 100.0).round() / 100.0)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Largest payload benchmarked: zrpc's default message limit is 100 MiB,
/// and the encoded request must fit under it.
const MAX_PAYLOAD: usize = 64 << 20;

async fn side_by_side(o: &Opts) -> Result<(), String> {
    let mut large = Vec::new();
    for part in o.large.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        large.push(
            part.parse::<usize>()
                .map_err(|_| format!("--large: {part:?} is not a size in bytes"))?,
        );
    }
    if let Some(too_big) = large.iter().chain([&o.size]).find(|&&n| n > MAX_PAYLOAD) {
        return Err(format!(
            "payloads of {too_big} bytes are over the {} MiB this tool benchmarks (zrpc's default message limit is 100 MiB)",
            MAX_PAYLOAD >> 20
        ));
    }
    let mut json = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut put = |k: &str, v: f64| {
        json.insert(k.to_string(), json_number(v));
    };
    let payload = Bytes::from(vec![0x5a; o.size]);
    let raw_payload = request_like(&payload);
    let args = CallArgs::Bytes(&payload);

    let (raw_ep, raw_task) = raw_echo_server().await?;
    let server = Server::builder(echo_service())
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let ep = server.endpoints()[0].clone();
    let client = zrpc_client(&ep).await?;

    // Warm both paths (connections, allocator, caches).
    progress("warming up");
    let warm = (o.seq / 10).clamp(1, 500);
    raw_sequential(&raw_ep, &raw_payload, warm).await?;
    zrpc_sequential(&client, "echo", args, warm).await?;

    let rounds = o.rounds;
    let (mut raw_t, mut call_t) = (Timed::default(), Timed::default());
    for r in 1..=rounds {
        progress(&format!("[1/5] sequential round trips, round {r}/{rounds}"));
        raw_t.add(raw_sequential(&raw_ep, &raw_payload, (o.seq / rounds).max(1)).await?);
        call_t.add(zrpc_sequential(&client, "echo", args, (o.seq / rounds).max(1)).await?);
    }
    let (raw_seq, seq) = (latency(raw_t), latency(call_t));
    put("raw_rtt_us", raw_seq.median_us);
    put("call_rtt_us", seq.median_us);
    put("raw_rtt_p99_us", raw_seq.p99_us);
    put("call_rtt_p99_us", seq.p99_us);
    put("raw_seq_msgs_per_s", raw_seq.per_s);
    put("seq_calls_per_s", seq.per_s);
    rows.push(Row {
        what: "sequential round trip, median".into(),
        unit: "µs",
        raw: Some(raw_seq.median_us),
        zrpc: seq.median_us,
        lower_better: true,
    });
    rows.push(Row {
        what: "sequential round trip, p99".into(),
        unit: "µs",
        raw: Some(raw_seq.p99_us),
        zrpc: seq.p99_us,
        lower_better: true,
    });
    rows.push(Row {
        what: "sequential calls/s".into(),
        unit: "/s",
        raw: Some(raw_seq.per_s),
        zrpc: seq.per_s,
        lower_better: false,
    });

    let (mut raws, mut calls) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        progress(&format!(
            "[2/5] pipelined, {} in flight, round {r}/{rounds}",
            o.window
        ));
        let n = (o.pipelined / rounds).max(1);
        raws.push(raw_pipelined(&raw_ep, &raw_payload, n, o.window).await?);
        calls.push(zrpc_pipelined(&client, "echo", args, n, o.window).await?);
    }
    let (raw_pipe, pipe) = (median(raws), median(calls));
    put("raw_msgs_per_s", raw_pipe);

    put("calls_per_s", pipe);
    rows.push(Row {
        what: format!("pipelined ({} in flight) per s", o.window),
        unit: "/s",
        raw: Some(raw_pipe),
        zrpc: pipe,
        lower_better: false,
    });

    for size in large {
        let count = ((o.large_mb << 20) / size.max(1)).clamp(4, 1_000_000);
        let big = Bytes::from(vec![0xa5; size]);
        let raw_big = request_like(&big);
        let big_args = CallArgs::Bytes(&big);
        let window = 8;
        let n = (count / rounds).max(2);
        let (mut raws, mut calls) = (Vec::new(), Vec::new());
        for r in 1..=rounds {
            progress(&format!("[3/5] {size}-byte payloads, round {r}/{rounds}"));
            raws.push(raw_pipelined(&raw_ep, &raw_big, n, window).await? * size as f64 / 1e6);
            calls.push(
                zrpc_pipelined(&client, "echo", big_args, n, window).await? * size as f64 / 1e6,
            );
        }
        let (raw_rate, rate) = (median(raws), median(calls));
        put(&format!("raw_mb_per_s_{size}"), raw_rate);
        put(&format!("call_mb_per_s_{size}"), rate);
        rows.push(Row {
            what: format!("{} payload, MB/s (8 in flight)", human_size(size)),
            unit: "MB/s",
            raw: Some(raw_rate),
            zrpc: rate,
            lower_better: false,
        });
    }

    if o.clients > 0 {
        let (mut raws, mut calls) = (Vec::new(), Vec::new());
        for r in 1..=rounds {
            progress(&format!(
                "[4/5] {} clients at once, round {r}/{rounds}",
                o.clients
            ));
            let n = (o.pipelined / rounds).max(1);
            raws.push(raw_many(&raw_ep, &raw_payload, o.clients, n, o.window).await?);
            calls.push(zrpc_many(&ep, args, o.clients, n, o.window).await?);
        }
        let (raw_many_rate, many) = (median(raws), median(calls));
        put("raw_clients_msgs_per_s", raw_many_rate);
        put("clients_calls_per_s", many);
        rows.push(Row {
            what: format!("{} clients, {} in flight each, per s", o.clients, o.window),
            unit: "/s",
            raw: Some(raw_many_rate),
            zrpc: many,
            lower_better: false,
        });
    }

    if o.python {
        progress("[5/5] zerorpc-python (this takes a few seconds)");
        let py = python_anchor(o, &ep).await?;
        put("python_calls_per_s", py.0);
        put("python_to_zrpc_calls_per_s", py.1);
        notes.push(format!(
            "zerorpc-python 0.6.3, sequential: Python client → Python server {} calls/s; Python client → zrpc server {} calls/s; zrpc → zrpc is {:.0}× Python → Python",
            fmt_num(py.0), fmt_num(py.1), seq.per_s / py.0
        ));
        put("seq_vs_python", seq.per_s / py.0);
    }
    done_progress();

    let _ = server.close(Duration::from_secs(1)).await;
    raw_task.abort();
    let flavour = if o.runtime == "current" {
        "current_thread"
    } else {
        "multi-thread"
    };
    if o.json {
        json.insert("runtime".into(), flavour.into());
        json.insert("size".into(), o.size.into());
        json.insert("window".into(), o.window.into());
        json.insert("seq".into(), o.seq.into());
        json.insert("pipelined".into(), o.pipelined.into());
        json.insert("rounds".into(), rounds.into());
        println!("{}", serde_json::Value::Object(json));
    } else {
        print_table(
            &format!(
                "zrpc-bench: loopback, tokio {flavour} runtime, {}-byte payload, echo",
                o.size
            ),
            &rows,
            &notes,
        );
    }
    Ok(())
}

fn human_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// Benchmark live servers: sequential and pipelined calls of one method,
/// over every server given (balanced as any client does). Failed calls
/// are counted by kind, not fatal: a pool may lose a server mid-run.
async fn live(o: &Opts) -> Result<(), String> {
    let args: Vec<Value> = match serde_json::from_str::<serde_json::Value>(&o.args) {
        Ok(serde_json::Value::Array(a)) => a.iter().map(from_json).collect(),
        _ => return Err(format!("--args must be a JSON array, got {:?}", o.args)),
    };
    let shown = o.connect.join(", ");
    let mut builder = Client::builder().timeout(Some(Duration::from_secs(30)));
    if let Some(hb) = o.heartbeat {
        builder = builder.heartbeat(Some(positive_secs(hb, "--heartbeat")?));
    }
    if let Some(every) = o.resolve_every {
        builder = builder.resolve_every(positive_secs(every, "--resolve-every")?);
    }
    for ep in &o.connect {
        builder = builder.connect(ep);
    }
    let client = builder.start().await.map_err(|e| e.to_string())?;
    progress(&format!("connecting to {shown}"));
    // Every zerorpc server answers a ping at once: a wrong address fails
    // in seconds, not after the 30 s a slow method may need.
    let ping = CallOptions::timeout(PING_TIMEOUT);
    match client
        .call_dynamic_with("_zerorpc_ping", vec![], ping)
        .await
    {
        Ok(_) => {}
        Err(zerorpc::Error::Timeout { .. }) => {
            return Err(format!(
                "no zerorpc server answered at {shown} within {} s",
                PING_TIMEOUT.as_secs()
            ))
        }
        Err(e) => return Err(format!("_zerorpc_ping: {e}")),
    }
    // The others get a moment to connect too, so the pool is measured.
    let settle = Instant::now() + Duration::from_secs(1);
    while client.servers().iter().any(|s| !s.connected) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    call_once(&client, &o.method, CallArgs::Values(&args)).await?;
    if let Some(secs) = o.duration {
        let report = load(&client, o, &args, positive_secs(secs, "--duration")?).await;
        done_progress();
        report.print(o.json);
        return Ok(());
    }
    let mut errors = std::collections::BTreeMap::<&'static str, usize>::new();
    progress(&format!("[1/2] {} sequential calls of {}", o.seq, o.method));
    let mut samples = Vec::with_capacity(o.seq);
    let started = Instant::now();
    for _ in 0..o.seq {
        let t = Instant::now();
        match client.call_dynamic(&o.method, args.clone()).await {
            Ok(_) => samples.push(t.elapsed()),
            Err(e) => *errors.entry(e.kind()).or_default() += 1,
        }
    }
    let seq = latency(Timed {
        samples,
        total: started.elapsed(),
    });
    progress(&format!(
        "[2/2] {} pipelined calls, {} in flight",
        o.pipelined, o.window
    ));
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..o.pipelined)
        .map(|_| client.call_dynamic(&o.method, args.clone()))
        .buffer_unordered(o.window);
    let mut answered = 0usize;
    while let Some(r) = calls.next().await {
        match r {
            Ok(_) => answered += 1,
            Err(e) => *errors.entry(e.kind()).or_default() += 1,
        }
    }
    let pipe = answered as f64 / started.elapsed().as_secs_f64();
    drop(calls);
    done_progress();
    let per_endpoint: Vec<(String, u64)> = client
        .servers()
        .into_iter()
        .map(|s| (s.endpoint, s.answered))
        .collect();
    if o.json {
        let mut j = serde_json::Map::new();
        j.insert("endpoints".into(), o.connect.clone().into());
        j.insert("method".into(), o.method.clone().into());
        j.insert("call_rtt_us".into(), json_number(seq.median_us));
        j.insert("call_rtt_p99_us".into(), json_number(seq.p99_us));
        j.insert("seq_calls_per_s".into(), json_number(seq.per_s));
        j.insert("calls_per_s".into(), json_number(pipe));
        let per: serde_json::Map<String, serde_json::Value> = per_endpoint
            .into_iter()
            .map(|(ep, n)| (ep, n.into()))
            .collect();
        j.insert("per_endpoint_calls".into(), per.into());
        let errs: serde_json::Map<String, serde_json::Value> = errors
            .into_iter()
            .map(|(k, n)| (k.to_string(), n.into()))
            .collect();
        j.insert("errors".into(), errs.into());
        println!("{}", serde_json::Value::Object(j));
    } else {
        println!("zrpc-bench: {} on {shown}", o.method);
        println!(
            "sequential round trip: median {:.1} µs, p99 {:.1} µs, {} calls/s",
            seq.median_us,
            seq.p99_us,
            fmt_num(seq.per_s)
        );
        println!(
            "pipelined ({} in flight): {} calls/s",
            o.window,
            fmt_num(pipe)
        );
        for (ep, n) in per_endpoint {
            println!("  {ep}: {n} calls answered");
        }
        for (kind, n) in errors {
            println!("  failed with {kind}: {n}");
        }
    }
    Ok(())
}

/// A duration given in seconds on the command line: positive and finite.
fn positive_secs(s: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds"))
}

/// The width of a load run's timeline buckets.
const BUCKET: Duration = Duration::from_millis(50);

/// What a load run saw (`--duration`).
struct LoadReport {
    answered: u64,
    /// (milliseconds since the start, error kind, message).
    failures: Vec<(u64, &'static str, String)>,
    /// Calls answered per bucket, all servers together.
    totals: Vec<u64>,
    /// Each server's answers per bucket (servers as they came and went).
    per_endpoint: std::collections::BTreeMap<String, Vec<u64>>,
    window: usize,
    seconds: f64,
}

impl LoadReport {
    /// The longest time without a single answer, in milliseconds (bucket
    /// resolution).
    fn longest_gap_ms(&self) -> u64 {
        let (mut run, mut longest) = (0u64, 0u64);
        for &n in &self.totals {
            run = if n == 0 { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        longest * BUCKET.as_millis() as u64
    }

    fn print(&self, json: bool) {
        let gap = self.longest_gap_ms();
        if json {
            let mut j = serde_json::Map::new();
            j.insert("seconds".into(), json_number(self.seconds));
            j.insert("window".into(), self.window.into());
            j.insert("answered".into(), self.answered.into());
            j.insert("longest_gap_ms".into(), gap.into());
            j.insert("bucket_ms".into(), (BUCKET.as_millis() as u64).into());
            let failures: Vec<serde_json::Value> = self
                .failures
                .iter()
                .map(|(t, kind, msg)| serde_json::json!({"t_ms": t, "kind": kind, "message": msg}))
                .collect();
            j.insert("failures".into(), failures.into());
            j.insert("totals".into(), self.totals.clone().into());
            let per: serde_json::Map<String, serde_json::Value> = self
                .per_endpoint
                .iter()
                .map(|(ep, v)| (ep.clone(), v.clone().into()))
                .collect();
            j.insert("per_endpoint".into(), per.into());
            println!("{}", serde_json::Value::Object(j));
            return;
        }
        println!(
            "zrpc-bench: {} calls in flight for {:.1} s: {} answered, {} failed, longest time without an answer {} ms",
            self.window,
            self.seconds,
            self.answered,
            self.failures.len(),
            gap
        );
        for (ep, v) in &self.per_endpoint {
            println!("  {ep}: {} calls answered", v.iter().sum::<u64>());
        }
        for (t, kind, msg) in &self.failures {
            println!("  at {:.3} s: {kind}: {msg}", *t as f64 / 1e3);
        }
    }
}

/// Keep `o.window` calls of `o.method` in flight for `duration`, sampling
/// each server's answers every [`BUCKET`].
async fn load(client: &Client, o: &Opts, args: &[Value], duration: Duration) -> LoadReport {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    progress(&format!(
        "[load] {} calls in flight for {:.1} s",
        o.window,
        duration.as_secs_f64()
    ));
    // (On a line of its own, for whoever watches the run from outside.)
    eprintln!();
    let start = Instant::now();
    let until = start + duration;
    let answered = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..o.window)
        .map(|_| {
            let (client, method, args) = (client.clone(), o.method.clone(), args.to_vec());
            let (answered, failures) = (answered.clone(), failures.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    match client.call_dynamic(&method, args.clone()).await {
                        Ok(_) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let t = start.elapsed().as_millis() as u64;
                            if let Ok(mut f) = failures.lock() {
                                f.push((t, e.kind(), e.to_string()));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut totals = Vec::new();
    let mut per_endpoint = std::collections::BTreeMap::<String, Vec<u64>>::new();
    let mut last_total = 0;
    let mut last_seen = std::collections::HashMap::<String, u64>::new();
    let mut tick = tokio::time::interval(BUCKET);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut bucket = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let total = answered.load(Ordering::Relaxed);
        totals.push(total - last_total);
        last_total = total;
        for s in client.servers() {
            let before = last_seen
                .insert(s.endpoint.clone(), s.answered)
                .unwrap_or(0);
            let row = per_endpoint.entry(s.endpoint).or_default();
            row.resize(bucket, 0);
            row.push(s.answered.saturating_sub(before));
        }
        bucket += 1;
    }
    for w in workers {
        let _ = w.await;
    }
    for row in per_endpoint.values_mut() {
        row.resize(bucket, 0);
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    LoadReport {
        answered: answered.load(Ordering::Relaxed),
        failures,
        totals,
        per_endpoint,
        window: o.window,
        seconds: start.elapsed().as_secs_f64(),
    }
}

// ------------------------------------------------------------------ python

const PY_BENCH: &str = include_str!("py_bench.py");

/// (Python → Python, Python → zrpc) sequential calls/s.
async fn python_anchor(o: &Opts, zrpc_ep: &str) -> Result<(f64, f64), String> {
    let py = o
        .python_bin
        .clone()
        .or_else(|| std::env::var("ZRPC_PYTHON").ok())
        .unwrap_or_else(|| ".venv/bin/python".into());
    let dir = std::env::temp_dir().join(format!("zrpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let script = dir.join("py_bench.py");
    std::fs::write(&script, PY_BENCH).map_err(|e| e.to_string())?;
    let n = (o.seq / 2).clamp(200, 2000).to_string();
    let size = o.size.to_string();
    let run = |ep: String| {
        let (py, script, n, size) = (py.clone(), script.clone(), n.clone(), size.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(&py)
                .arg(&script)
                .args(["both", &ep, &n, &size])
                .output()
        })
    };
    // Python client → Python server: the script starts its own server.
    let out_py = run("self".into())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| python_missing(&py, &e.to_string()))?;
    let out_zrpc = run(zrpc_ep.to_string())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| python_missing(&py, &e.to_string()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let rate = |out: &std::process::Output| -> Result<f64, String> {
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("CALLS_PER_S "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                python_missing(
                    &py,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("no output"),
                )
            })
    };
    Ok((rate(&out_py)?, rate(&out_zrpc)?))
}

fn python_missing(py: &str, why: &str) -> String {
    format!(
        "--python needs zerorpc-python at {py} ({why}); install it with: python3 -m venv .venv && .venv/bin/pip install zerorpc==0.6.3 (or pass --python-bin)"
    )
}
