//! One round of one framework: its server in a process of its own, the
//! clients in this process, every figure taken the same way for all.

use crate::frameworks::{pipelined, Client, Framework};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How much each figure does.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub seq: usize,
    pub pipelined: usize,
    pub large_mb: usize,
}

/// In flight on one connection for the pipelined figure.
pub const WINDOW: usize = 256;
/// Connections of the many-connections figure (each with WINDOW / 8 in
/// flight, so the same number of calls wait in both figures).
pub const CONNECTIONS: usize = 8;
/// In flight for the 1 MiB echo.
const LARGE_WINDOW: usize = 4;
const SMALL: usize = 64;
const LARGE: usize = 1 << 20;

/// The figures of one round, by name (see [`FIGURES`]).
pub type Figures = BTreeMap<&'static str, f64>;

/// Every figure: name, unit, and whether more is better.
pub const FIGURES: &[(&str, &str, bool)] = &[
    ("seq_latency_median_us", "µs", false),
    ("seq_latency_p99_us", "µs", false),
    ("calls_per_s_1conn_256", "calls/s", true),
    ("calls_per_s_8conn", "calls/s", true),
    ("echo_1mib_mb_per_s", "MB/s", true),
    ("server_cpu_us_per_call", "µs", false),
    ("client_cpu_us_per_call", "µs", false),
    ("cpu_us_per_call", "µs", false),
    ("server_rss_idle_mb", "MB", false),
    ("server_rss_after_100k_mb", "MB", false),
    ("server_rss_peak_mb", "MB", false),
];

/// The server process of one framework; killed when dropped.
struct ServerProc {
    child: Child,
    port: u16,
}

impl ServerProc {
    fn start(name: &str, runtime: &str) -> Result<ServerProc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["serve", name, runtime])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {name} server: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("the {name} server said {line:?}"))?;
        Ok(ServerProc { child, port })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_s(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (in parentheses): utime is the 12th.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A `/proc/PID/status` line (VmRSS, VmHWM) in MB.
fn status_mb(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Every figure of `fw` once.
pub async fn round(fw: Framework, runtime: &str, counts: Counts) -> Result<Figures, String> {
    let server = ServerProc::start(fw.name(), runtime)?;
    let pid = server.pid();
    let mut f = Figures::new();
    let client = Client::connect(fw, server.port).await?;
    // Idle: connected, nothing called yet.
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.insert("server_rss_idle_mb", status_mb(pid, "VmRSS:"));
    let small = Bytes::from(vec![7u8; SMALL]);
    for _ in 0..1000.min(counts.seq) {
        client.echo(&small).await?;
    }

    let mut samples = Vec::with_capacity(counts.seq);
    for _ in 0..counts.seq {
        let t = Instant::now();
        client.echo(&small).await?;
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    f.insert("seq_latency_median_us", at(0.5));
    f.insert("seq_latency_p99_us", at(0.99));

    let (server_cpu, own_cpu) = (cpu_s(&pid.to_string()), cpu_s("self"));
    let one = std::slice::from_ref(&client);
    f.insert(
        "calls_per_s_1conn_256",
        pipelined(one, &small, counts.pipelined, WINDOW).await?,
    );
    let n = counts.pipelined as f64;
    let server_us = (cpu_s(&pid.to_string()) - server_cpu) / n * 1e6;
    let client_us = (cpu_s("self") - own_cpu) / n * 1e6;
    f.insert("server_cpu_us_per_call", server_us);
    f.insert("client_cpu_us_per_call", client_us);
    f.insert("cpu_us_per_call", server_us + client_us);

    let mut many = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let c = Client::connect(fw, server.port).await?;
        // Each connection made and used once before the clock starts, as
        // the first one was: the figure is calls, not connection setup
        // (zrpc's `start` returns before its socket has connected; tarpc's
        // and tonic's `connect` return after).
        c.echo(&small).await?;
        many.push(c);
    }
    f.insert(
        "calls_per_s_8conn",
        pipelined(&many, &small, counts.pipelined, WINDOW / CONNECTIONS).await?,
    );
    drop(many);
    f.insert("server_rss_after_100k_mb", status_mb(pid, "VmRSS:"));

    let large = Bytes::from(vec![9u8; LARGE]);
    // Untimed first, as the small calls are: the first large buffers of a
    // process come fresh from the system.
    pipelined(one, &large, 2 * LARGE_WINDOW, LARGE_WINDOW).await?;
    let calls = counts.large_mb.max(LARGE_WINDOW);
    let per_s = pipelined(one, &large, calls, LARGE_WINDOW).await?;
    f.insert("echo_1mib_mb_per_s", per_s * LARGE as f64 / 1e6);
    f.insert("server_rss_peak_mb", status_mb(pid, "VmHWM:"));
    Ok(f)
}

/// The floor's sequential figures (see `floor.rs`), measured as a round's.
pub async fn floor_round(runtime: &str, counts: Counts) -> Result<Figures, String> {
    let server = ServerProc::start(crate::floor::NAME, runtime)?;
    let (median, p99) = crate::floor::sequential(server.port, counts.seq, SMALL).await?;
    let mut f = Figures::new();
    f.insert("seq_latency_median_us", median);
    f.insert("seq_latency_p99_us", p99);
    Ok(f)
}
