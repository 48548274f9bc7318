//! One client must never hurt another: attacks on a `zrpc --server`
//! process, each while a well-behaved client keeps calling it. For every
//! attack the test checks (and prints, with `--nocapture`) that the
//! well-behaved client's calls stay answered with a p99 under 100 ms, that
//! the server's memory stays under 300 MB, and that it recovers within 2 s
//! of the attacker leaving.
//!
//! Under `cargo test` the attacks run one at a time (a mutex); the test
//! command runs them two at a time, each against a server of its own
//! (`.config/nextest.toml`), and attacks the release binary (see
//! [`server_bin`]).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zerorpc::{Client, Value};

/// Held by each attack for its whole length (across awaits: an async lock).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the server under attack -------------------------------------------

/// `zrpc --server --bind tcp://127.0.0.1:PORT ARGS…`, ready, its log
/// captured.
struct Target {
    log: Lines,
    ep: String,
    port: u16,
}

impl Target {
    fn start(args: &[&str]) -> Target {
        Self::start_with(args, |c| c)
    }

    fn start_with(args: &[&str], wrap: impl FnOnce(&mut Command) -> &mut Command) -> Target {
        let port = free_port();
        let ep = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(common::release_zrpc());
        cmd.args(["--server", "--bind", &ep])
            .args(args)
            .env("MALLOC_ARENA_MAX", "1");
        let mut log = Lines::spawn_stderr(wrap(&mut cmd));
        log.expect("serving", Duration::from_secs(20));
        Target { log, ep, port }
    }

    fn pid(&self) -> u32 {
        self.log.proc.pid()
    }

    /// CPU seconds the server has used.
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which is in parentheses).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    fn alive(&mut self) -> bool {
        self.log.proc.0.try_wait().unwrap().is_none()
    }

    fn logged(&mut self, what: &str) -> usize {
        self.log.seen().iter().filter(|l| l.contains(what)).count()
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

// ---- the well-behaved client and the figures ----------------------------

/// A well-behaved client calling `method(args)` every 10 ms, and a sampler
/// of the server's memory, for the length of an attack.
/// When a call ended, and its latency or error.
type Calls = Arc<Mutex<Vec<(Instant, Result<Duration, String>)>>>;

struct Watch {
    calls: Calls,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a watch saw.
struct Figures {
    p99_ms: f64,
    calls: usize,
    failed: usize,
    peak_mb: f64,
    recovered_ms: f64,
}

impl Watch {
    async fn start(target: &Target, method: &'static str, args: Vec<Value>) -> Watch {
        let client = Client::builder()
            .connect(&target.ep)
            .timeout(Some(Duration::from_secs(1)))
            .start()
            .await
            .unwrap();
        // Warm: the connection is up before the attack starts.
        client
            .call_dynamic(method, args.clone())
            .await
            .expect("the server answers before the attack");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (calls.clone(), stop.clone());
        let caller = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = client.call_dynamic(method, args.clone()).await;
                let r = r.map(|_| t0.elapsed()).map_err(|e| e.to_string());
                c.lock().unwrap().push((Instant::now(), r));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let (p, s, pid) = (peak_kib.clone(), stop.clone(), target.pid());
        let sampler = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                // (The process may be gone: no panic here.)
                if std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                    p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Watch {
            calls,
            peak_kib,
            stop,
            tasks: vec![caller, sampler],
        }
    }

    /// The attacker left at `left`: keep watching 2 s more, then report.
    async fn finish(self, name: &str, left: Instant) -> Figures {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let calls = self.calls.lock().unwrap();
        let during: Vec<&(Instant, Result<Duration, String>)> =
            calls.iter().filter(|(at, _)| *at <= left).collect();
        let mut lat: Vec<f64> = during
            .iter()
            .map(|(_, r)| match r {
                Ok(d) => d.as_secs_f64() * 1e3,
                Err(_) => f64::INFINITY,
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let p99 = lat
            .get((lat.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(f64::INFINITY);
        let failed = during.iter().filter(|(_, r)| r.is_err()).count();
        // Recovered: from this call on, every call was answered in < 100 ms.
        let after: Vec<&(Instant, Result<Duration, String>)> =
            calls.iter().filter(|(at, _)| *at > left).collect();
        let good = |r: &Result<Duration, String>| {
            r.as_ref().is_ok_and(|d| *d < Duration::from_millis(100))
        };
        let recovered_ms = after
            .iter()
            .position(|_| true)
            .and_then(|_| {
                (0..after.len())
                    .find(|&i| after[i..].iter().all(|(_, r)| good(r)))
                    .map(|i| {
                        let t = if i == 0 { left } else { after[i - 1].0 };
                        t.saturating_duration_since(left).as_secs_f64() * 1e3
                    })
            })
            .unwrap_or(f64::INFINITY);
        let f = Figures {
            p99_ms: p99,
            calls: during.len(),
            failed,
            peak_mb: self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
            recovered_ms,
        };
        println!(
            "ATTACK {name}: well-behaved client {} calls, {} failed, p99 {:.1} ms; server peak RSS {:.0} MB; recovered {:.0} ms after the attacker left",
            f.calls, f.failed, f.p99_ms, f.peak_mb, f.recovered_ms
        );
        f
    }
}

impl Figures {
    /// The bar every attack must clear.
    fn assert_unhurt(&self, name: &str) {
        assert!(
            self.calls >= 20,
            "{name}: too few calls measured ({})",
            self.calls
        );
        assert_eq!(self.failed, 0, "{name}: calls failed during the attack");
        assert!(self.p99_ms < 100.0, "{name}: p99 {:.1} ms", self.p99_ms);
        assert!(
            self.peak_mb < 300.0,
            "{name}: peak RSS {:.0} MB",
            self.peak_mb
        );
        assert!(
            self.recovered_ms < 2000.0,
            "{name}: recovered only after {:.0} ms",
            self.recovered_ms
        );
    }
}

// ---- a raw ZMTP peer -----------------------------------------------------

/// A ZMTP 3.0 DEALER spoken by hand over TCP, so an attack can send what it
/// likes and never read.
struct Raw {
    s: TcpStream,
}

impl Raw {
    /// Greet with `mechanism` and say READY (with `identity`, if any).
    fn connect(port: u16, mechanism: &str, identity: Option<&[u8]>) -> Raw {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // (Each write its own segment: no Nagle wait behind the last one.)
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
        greeting.extend_from_slice(mechanism.as_bytes());
        greeting.resize(64, 0);
        let _ = s.write_all(&greeting);
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        let mut prop = |name: &[u8], value: &[u8]| {
            body.push(name.len() as u8);
            body.extend_from_slice(name);
            body.extend_from_slice(&(value.len() as u32).to_be_bytes());
            body.extend_from_slice(value);
        };
        prop(b"Socket-Type", b"DEALER");
        if let Some(id) = identity {
            prop(b"Identity", id);
        }
        // (A server that refuses the greeting may have closed already.)
        let _ = s.write_all(&[0x04, body.len() as u8]);
        let _ = s.write_all(&body);
        Raw { s }
    }

    /// Read the server's greeting and READY.
    fn handshake(&mut self) -> bool {
        let mut greeting = [0u8; 64];
        if self.s.read_exact(&mut greeting).is_err() {
            return false;
        }
        let mut head = [0u8; 2];
        if self.s.read_exact(&mut head).is_err() {
            return false;
        }
        let mut body = vec![0u8; head[1] as usize];
        self.s.read_exact(&mut body).is_ok()
    }

    fn send(&mut self, frames: &[&[u8]]) -> std::io::Result<()> {
        for (i, f) in frames.iter().enumerate() {
            let more = u8::from(i + 1 < frames.len());
            if f.len() > 255 {
                self.s.write_all(&[0x02 | more])?;
                self.s.write_all(&(f.len() as u64).to_be_bytes())?;
            } else {
                self.s.write_all(&[more, f.len() as u8])?;
            }
            self.s.write_all(f)?;
        }
        Ok(())
    }

    /// Send a request `[empty, event]`.
    fn call(&mut self, id: u64, method: &str, args: Vec<Value>, v: Option<i64>) {
        let _ = self.send(&[b"", &event(id, method, args, v)]);
    }

    /// True once the server has closed the connection (reading anything it
    /// sends until then), within `limit`.
    fn closed_within(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        self.s
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 65536];
        while Instant::now() < end {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// A zerorpc request event; `v` None makes it a v1 request.
fn event(id: u64, method: &str, args: Vec<Value>, v: Option<i64>) -> Vec<u8> {
    let mut header = vec![(
        Value::from("message_id"),
        Value::Binary(id.to_be_bytes().to_vec()),
    )];
    if let Some(v) = v {
        header.push((Value::from("v"), Value::from(v)));
    }
    let ev = Value::Array(vec![
        Value::Map(header),
        Value::from(method),
        Value::Array(args),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &ev).unwrap();
    out
}

fn more(id: u64, response_to: u64, n: u64) -> Vec<u8> {
    let ev = Value::Array(vec![
        Value::Map(vec![
            (
                Value::from("message_id"),
                Value::Binary(id.to_be_bytes().to_vec()),
            ),
            (Value::from("v"), Value::from(3)),
            (
                Value::from("response_to"),
                Value::Binary(response_to.to_be_bytes().to_vec()),
            ),
        ]),
        Value::from("_zpc_more"),
        Value::Array(vec![Value::from(n)]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &ev).unwrap();
    out
}

// ---- the attacks -----------------------------------------------------------

/// Finding 1: A second connection with the victim's routing identity is refused;
/// the victim keeps its replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_routing_identity_cannot_take_over_replies() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["calc"]);
    let dealer = |id: &'static [u8]| {
        let mut opts = SocketOptions::default();
        opts.peer_identity(id.to_vec().try_into().unwrap());
        DealerSocket::with_options(opts)
    };
    let mut victim = dealer(b"victim");
    victim.connect(&target.ep).await.unwrap();
    let mut thief = dealer(b"victim");
    // Refused at once: the thief's connect may even report it.
    let _ = tokio::time::timeout(Duration::from_secs(2), thief.connect(&target.ep)).await;
    for i in 0..12u64 {
        let req = event(i, "add", vec![Value::from(i), Value::from(1)], Some(3));
        victim
            .send(ZmqMessage::try_from(vec![bytes::Bytes::new(), req.into()]).unwrap())
            .await
            .unwrap();
    }
    for _ in 0..12 {
        let reply = tokio::time::timeout(Duration::from_secs(3), victim.recv())
            .await
            .expect("the victim's reply went elsewhere")
            .unwrap();
        assert_eq!(reply.len(), 2, "[empty, reply]");
    }
    let stolen = tokio::time::timeout(Duration::from_millis(300), thief.recv()).await;
    assert!(stolen.is_err(), "the thief received {stolen:?}");
    assert!(target.alive());
    wait_for(
        || target.logged("already in use") >= 1,
        "no log of the refusal",
    )
    .await;
}

/// Finding 2: Eight streams of ten million items, credit granted by the million,
/// nothing read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granting_credit_without_reading_does_not_run_the_producer_away() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = Target::start(&["echo"]);
    let watch = Watch::start(&target, "echo", vec![Value::from("hi")]).await;
    let port = target.port;
    let attack = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port, "NULL", None);
        raw.handshake();
        for s in 0..8u64 {
            raw.call(s, "count", vec![Value::from(10_000_000u64)], Some(3));
        }
        let until = Instant::now() + Duration::from_secs(4);
        let mut id = 100;
        while Instant::now() < until {
            for s in 0..8u64 {
                id += 1;
                let _ = raw.send(&[b"", &more(id, s, 1_000_000)]);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        raw
    });
    let raw = attack.await.unwrap();
    let left = Instant::now();
    drop(raw);
    let f = watch.finish("stream credit abuse", left).await;
    f.assert_unhurt("stream credit abuse");
}

/// Finding 3: A thousand 1 MiB replies asked for and never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_large_replies_are_bounded_in_bytes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["echo"]);
    let watch = Watch::start(&target, "echo", vec![Value::from("hi")]).await;
    let port = target.port;
    let attack = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port, "NULL", None);
        raw.handshake();
        let blob = Value::Binary(vec![7u8; 1 << 20]);
        for i in 0..1000u64 {
            raw.call(i, "echo", vec![blob.clone()], Some(3));
        }
        std::thread::sleep(Duration::from_secs(2));
        raw
    });
    let raw = attack.await.unwrap();
    let left = Instant::now();
    drop(raw);
    let f = watch.finish("unread 1 MiB replies", left).await;
    f.assert_unhurt("unread 1 MiB replies");
    assert_eq!(target.logged("peer is not reading"), 1, "named once");
}

/// Finding 4: `--pool-size 4`, and one client sends 100 000 `sleep(60)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_calls_does_not_starve_the_pool() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = Target::start(&["--pool-size", "4", "time"]);
    let watch = Watch::start(&target, "time", vec![]).await;
    let port = target.port;
    let attack = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port, "NULL", None);
        raw.handshake();
        for i in 0..100_000u64 {
            raw.call(i, "sleep", vec![Value::from(60)], Some(3));
        }
        // Keep the connection (and its heartbeats unanswered) a moment.
        std::thread::sleep(Duration::from_secs(2));
        raw
    });
    let raw = attack.await.unwrap();
    let left = Instant::now();
    drop(raw);
    let f = watch.finish("pool flood", left).await;
    f.assert_unhurt("pool flood");
}

/// Finding 5: `--max-message-size 1MiB`, and 40 MB of empty MORE frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_frames_count_against_the_size_limit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["--max-message-size", "1048576", "calc"]);
    let watch = Watch::start(&target, "add", vec![Value::from(2), Value::from(3)]).await;
    let port = target.port;
    let dropped = tokio::task::spawn_blocking(move || {
        // Again and again for 2 s: each connection sends up to 40 MB.
        let until = Instant::now() + Duration::from_secs(2);
        let mut every_one_dropped = true;
        while Instant::now() < until {
            let mut raw = Raw::connect(port, "NULL", None);
            raw.handshake();
            let chunk = [0x01u8, 0x00].repeat(1 << 16); // 65 536 empty MORE frames
            let mut sent = 0usize;
            let mut closed = false;
            while sent < 40 << 20 {
                if raw.s.write_all(&chunk).is_err() {
                    closed = true; // the server closed it
                    break;
                }
                sent += chunk.len();
            }
            every_one_dropped &= closed || raw.closed_within(Duration::from_secs(3));
        }
        every_one_dropped
    })
    .await
    .unwrap();
    let left = Instant::now();
    assert!(dropped, "the peer sending endless frames was not dropped");
    let f = watch.finish("empty frames", left).await;
    f.assert_unhurt("empty frames");
    assert!(target.logged("more frames than allowed") + target.logged("maximum message size") >= 1);
}

/// Finding 6: Connections that never finish the handshake are closed after the
/// handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_greeted_connections_are_closed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["--handshake-timeout", "1", "calc"]);
    let port = target.port;
    let closed = tokio::task::spawn_blocking(move || {
        let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
        half.write_all(&[0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3])
            .unwrap();
        let mut greeted = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
        g.extend_from_slice(b"NULL");
        g.resize(64, 0);
        greeted.write_all(&g).unwrap();
        let started = Instant::now();
        let all: Vec<bool> = [silent, half, greeted]
            .into_iter()
            .map(|s| Raw { s }.closed_within(Duration::from_secs(4)))
            .collect();
        (all, started.elapsed())
    })
    .await
    .unwrap();
    println!(
        "ATTACK silent connections: closed {:?} after {:?}",
        closed.0, closed.1
    );
    assert_eq!(closed.0, [true, true, true], "each was closed");
    assert!(target.alive());
    wait_for(|| target.logged("handshake") >= 1, "no log of the refusals").await;
}

/// Finding 7: Out of file descriptors: the accept loop pauses instead of spinning,
/// says so once, and serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_does_not_spin() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start_with(&["calc"], |c| {
        // The server's own limit: a few descriptors beyond what it uses.
        let program = c.get_program().to_owned();
        let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("ulimit -n 48 && exec \"$0\" \"$@\"")
            .arg(program)
            .args(args);
        *c = sh;
        c
    });
    let watch = Watch::start(&target, "add", vec![Value::from(2), Value::from(3)]).await;
    let port = target.port;
    let cpu_before = target.cpu_s();
    let held = tokio::task::spawn_blocking(move || {
        let conns: Vec<TcpStream> = (0..80)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        conns
    })
    .await
    .unwrap();
    let cpu = target.cpu_s() - cpu_before;
    // Said once for the whole time it lasted, not once per failed accept.
    let said = target.logged("pausing new connections");
    let left = Instant::now();
    drop(held);
    println!("ATTACK out of descriptors: server used {cpu:.2} s of CPU in 3 s");
    let f = watch.finish("out of descriptors", left).await;
    assert!(cpu < 1.0, "the accept loop spun: {cpu:.2} s of CPU in 3 s");
    assert_eq!(said, 1, "said once: {:?}", target.log.seen());
    // The watching client had its connection before: it was never hurt.
    f.assert_unhurt("out of descriptors");
    // And new clients are served once descriptors are free again.
    let client = Client::connect(&target.ep).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
}

/// Finding 8: A greeting announcing CURVE then a NULL READY, ZMTP 2.0 and
/// ZMTP 1.0: closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_mismatch_or_old_zmtp_is_closed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["calc"]);
    let port = target.port;
    let (curve, old, oldest) = tokio::task::spawn_blocking(move || {
        let mut curve = Raw::connect(port, "CURVE", None);
        curve.call(1, "add", vec![Value::from(2), Value::from(3)], Some(3));
        let curve = curve.closed_within(Duration::from_secs(3));
        // ZMTP 2.0: signature and revision 1, socket type, then it waits.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 5])
            .unwrap();
        let started = Instant::now();
        let old = Raw { s }.closed_within(Duration::from_secs(3));
        let old = old && started.elapsed() < Duration::from_secs(2);
        // Round two: ZMTP 1.0, an anonymous identity frame, then it waits
        // (it was held open until the 30 s handshake timeout).
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&[0x01, 0x00]).unwrap();
        let started = Instant::now();
        let oldest = Raw { s }.closed_within(Duration::from_secs(3));
        (
            curve,
            old,
            oldest && started.elapsed() < Duration::from_secs(2),
        )
    })
    .await
    .unwrap();
    assert!(curve, "a CURVE greeting with a NULL READY was served");
    assert!(old, "a ZMTP 2.0 peer was not closed at once");
    assert!(oldest, "a ZMTP 1.0 peer was not closed at once");
    assert!(target.alive());
    wait_for(|| target.logged("mechanism") >= 1, "no log of the mismatch").await;
}

/// Finding 9: A v1 request (no `v`) whose caller goes silent is cancelled like a
/// v3 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_v1_calls_expire() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["-d", "--heartbeat", "0.2", "time"]);
    let port = target.port;
    let raw = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(port, "NULL", None);
        raw.handshake();
        raw.call(7, "sleep", vec![Value::from(100)], None);
        raw
    })
    .await
    .unwrap();
    // Silent for 2 heartbeats (0.4 s), counted from 1 period after opening.
    wait_for(
        || target.logged("request cancelled") >= 1,
        "the abandoned v1 call was never cancelled",
    )
    .await;
    drop(raw);
}

/// Finding 10: ipc: a socket file left by a killed server does not block a restart,
/// and `ipc://*` is an error, not a panic.
#[test]
fn ipc_restart_after_kill_and_wildcard() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calc.sock");
    let ep = format!("ipc://{}", path.display());
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zrpc"));
        cmd.args(["--server", "--bind", &ep, "calc"]);
        spawn_until(&mut cmd, "serving", true)
    };
    let first = start();
    first.signal(9);
    drop(first);
    assert!(path.exists(), "the killed server left its socket file");
    let _second = start();
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args([&ep, "add", "2", "3"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5\n", "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc"))
        .args(["--server", "--bind", "ipc://*", "calc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wildcard") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Finding 11: `--exec`: a cancelled call's whole process tree dies; callers cannot
/// pass options; the number of commands running is capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_children_die_with_their_call_and_take_no_options() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("M");
    let find = format!("search=find {} -name", dir.path().display());
    // Two sleeps under one shell: grandchildren of the server.
    let target = Target::start(&[
        "--exec",
        "nap=sleep 987 & sleep",
        "--exec",
        "pause=sleep",
        "--exec",
        &find,
        "--exec-max",
        "3",
        "--heartbeat",
        "0.5",
    ]);
    let sleeping = || {
        let out = Command::new("pgrep")
            .args(["-f", "^sleep 987$"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(sleeping(), 0);
    for _ in 0..3 {
        let client = Client::builder()
            .connect(&target.ep)
            .timeout(Some(Duration::from_millis(300)))
            .start()
            .await
            .unwrap();
        let e = client.call::<_, String>("nap", (987,)).await.unwrap_err();
        assert!(matches!(e, zerorpc::Error::Timeout { .. }), "{e:?}");
        client.close(Duration::ZERO).await.ok(); // the server sees it gone
    }
    wait_for(
        || sleeping() == 0,
        "cancelled commands left processes behind",
    )
    .await;

    let client = Client::connect(&target.ep).await.unwrap();
    let e = client
        .call::<_, String>(
            "search",
            ("*", "-exec", "touch", marker.to_str().unwrap(), ";"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("ValueError"),
        "{e:?}"
    );
    assert!(!marker.exists(), "a caller's option ran a command");
    // Three pauses run; the fourth is refused, not queued without bound.
    let naps: Vec<_> = (0..3)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<_, String>("pause", (1,)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = client.call::<_, String>("pause", (1,)).await.unwrap_err();
    assert_eq!(
        e.remote().map(|r| r.name.as_str()),
        Some("ServerBusy"),
        "{e:?}"
    );
    for n in naps {
        n.await.unwrap().unwrap();
    }
}

/// Finding 12: Built-ins given huge inputs: bounded, off the core, and errors that
/// do not quote a 40 MiB argument back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_inputs_to_built_ins_are_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = Target::start(&["time"]);
    let calc = Target::start(&["calc"]);
    let watch = Watch::start(&target, "time", vec![]).await;
    let client = Client::connect(&target.ep).await.unwrap();
    let calc_client = Client::connect(&calc.ep).await.unwrap();
    // Again and again for 2 s.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let e = client
            .call::<_, String>("strftime", ("%c".repeat(2 << 20),))
            .await
            .unwrap_err();
        assert_eq!(
            e.remote().map(|r| r.name.as_str()),
            Some("ValueError"),
            "{e:?}"
        );
        let e = calc_client
            .call::<_, ()>("add", ("x".repeat(40 << 20), 1))
            .await
            .unwrap_err();
        let remote = e.remote().expect("a TypeError");
        assert_eq!(remote.name, "TypeError");
        assert!(
            remote.message.len() < 2048,
            "the error quoted {} bytes",
            remote.message.len()
        );
    }
    let left = Instant::now();
    let f = watch.finish("huge built-in inputs", left).await;
    f.assert_unhurt("huge built-in inputs");
}

/// Round two, finding 1: clients that open a stream, read one item and
/// vanish, again and again from two threads. Connection churn raced the
/// transport's peer map: a blocking map lock taken in async code wedged the
/// server for good (no answer, SIGTERM ignored) within a few hundred
/// streams. The server must keep answering and stop on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_streams_under_connection_churn_do_not_wedge_the_server() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut target = Target::start(&["echo"]);
    let watch = Watch::start(&target, "echo", vec![Value::from("hi")]).await;
    let port = target.port;
    let churn = |seconds: u64| {
        tokio::task::spawn_blocking(move || {
            let until = Instant::now() + Duration::from_secs(seconds);
            let mut streams = 0u64;
            while Instant::now() < until {
                let mut raw = Raw::connect(port, "NULL", None);
                if !raw.handshake() {
                    continue;
                }
                raw.call(1, "count", vec![Value::from(1_000_000u64)], Some(3));
                // One read: the first item (or more) has arrived.
                let mut buf = [0u8; 512];
                if matches!(raw.s.read(&mut buf), Ok(n) if n > 0) {
                    streams += 1;
                }
            }
            streams
        })
    };
    let workers = [churn(5), churn(5)];
    let mut streams = 0;
    for w in workers {
        streams += w.await.unwrap();
    }
    let left = Instant::now();
    println!("CHURN: {streams} streams opened and abandoned in 5 s by 2 clients");
    assert!(
        streams > 1000,
        "too little churn to prove anything: {streams}"
    );
    let f = watch.finish("abandoned streams under churn", left).await;
    f.assert_unhurt("abandoned streams under churn");
    let t0 = Instant::now();
    target.log.proc.signal(15);
    let status = target.log.proc.wait_for(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "the server did not stop within 5 s of SIGTERM: {status:?}"
    );
    println!(
        "CHURN: stopped {:.0} ms after SIGTERM",
        t0.elapsed().as_secs_f64() * 1e3
    );
}

/// A request whose arguments are `[[nil × n], 1]`, encoded by hand (a
/// `Value` tree of 32 Mi nils would cost the test itself a gigabyte).
fn nil_request(id: u64, method: &str, n: usize) -> Vec<u8> {
    let mut args = vec![0x92, 0xdd];
    args.extend_from_slice(&(n as u32).to_be_bytes());
    args.resize(args.len() + n, 0xc0);
    args.push(0x01);
    let head = event(id, method, vec![], Some(3));
    // `event` wrote `[header, method, []]`: swap its empty args for ours.
    assert_eq!(head.last(), Some(&0x90));
    let mut out = head[..head.len() - 1].to_vec();
    out.extend_from_slice(&args);
    out
}

/// Round two, finding 2: one request of 32 MiB of msgpack nils, decoded into
/// dynamic values at 40 bytes each, took a server from 7 MB to 3.3 GB and
/// held up other clients for seconds. Now decoding stops at its budget
/// (`max_decoded_size`): the caller gets `ERR MemoryError` naming the limit,
/// the memory comes back, and nobody else waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_cannot_decode_into_a_hundred_times_its_size() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
    let _one = ONE_AT_A_TIME.lock().await;
    let target = Target::start(&["calc"]);
    let echo = Target::start(&["echo"]);
    let watch = Watch::start(&target, "add", vec![Value::from(1), Value::from(2)]).await;
    let baseline_kib = rss_kib(target.pid());
    let attack = |ep: String, method: &'static str, n: usize| async move {
        let mut dealer = DealerSocket::new();
        dealer.connect(&ep).await.unwrap();
        let req = nil_request(1, method, n);
        let t0 = Instant::now();
        dealer
            .send(ZmqMessage::try_from(vec![bytes::Bytes::new(), req.into()]).unwrap())
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
            .await
            .expect("no reply within 10 s")
            .unwrap();
        let payload = reply.get(reply.len() - 1).unwrap().clone();
        let ev = zerorpc::protocol::Event::decode(&payload).unwrap();
        let args: Value = rmpv::decode::read_value(&mut &ev.args[..]).unwrap();
        (ev.name.unwrap().to_string(), args.to_string(), t0.elapsed())
    };
    for (ep, method, n) in [
        (target.ep.clone(), "add", 32 << 20),
        (target.ep.clone(), "add", 4 << 20),
        (echo.ep.clone(), "echo", 32 << 20),
    ] {
        let (name, args, took) = attack(ep, method, n).await;
        println!(
            "BUDGET: {method}([nil × {} Mi], 1) answered {name} in {:.0} ms: {}",
            n >> 20,
            took.as_secs_f64() * 1e3,
            &args[..args.len().min(160)]
        );
        assert_eq!(name, "ERR");
        assert!(args.contains("MemoryError"), "{args}");
        assert!(
            args.contains("max_decoded_size"),
            "the limit is named: {args}"
        );
    }
    let left = Instant::now();
    let f = watch.finish("32 MiB of nils", left).await;
    f.assert_unhurt("32 MiB of nils");
    let after_kib = rss_kib(target.pid());
    println!(
        "BUDGET: server RSS {:.0} MB before, {:.0} MB peak, {:.0} MB after",
        baseline_kib as f64 / 1024.0,
        f.peak_mb,
        after_kib as f64 / 1024.0
    );
    assert!(
        f.peak_mb < 200.0,
        "peak {:.0} MB for 32 MiB requests",
        f.peak_mb
    );
    assert!(
        after_kib < baseline_kib + 32 * 1024,
        "the memory did not come back: {after_kib} KiB after, {baseline_kib} KiB before"
    );
}

/// Wait (up to 10 s) for `cond`.
async fn wait_for(mut cond: impl FnMut() -> bool, why: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An event on stream call `call` (`STREAM`, `STREAM_DONE`, `ERR`), with
/// `args` as raw msgpack.
fn on_call(call: u64, name: &str, args: &[u8]) -> Vec<u8> {
    zerorpc::protocol::encode_reply(&rmp_bin(call), name, args)
}

/// A u64 as the raw msgpack bin `event` gives ids.
fn rmp_bin(id: u64) -> Vec<u8> {
    let mut out = vec![0xc4, 8];
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// zrpc's client-stream extension misused: malformed stream calls, items
/// after the end, a junk `ERR` from the caller, and a thousand stream calls
/// opened and never fed. Each gets an `ERR` or is dropped, the server's
/// memory stays small, and a quiet client's calls stay fast throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misused_stream_calls_are_refused_and_cost_little() {
    use zerorpc_zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};
    let _one = ONE_AT_A_TIME.lock().await;
    let target = Target::start(&["echo"]);
    let watch = Watch::start(&target, "echo", vec![Value::from(1)]).await;
    let mut dealer = DealerSocket::new();
    dealer.connect(&target.ep).await.unwrap();
    let send =
        |payload: Vec<u8>| ZmqMessage::try_from(vec![bytes::Bytes::new(), payload.into()]).unwrap();
    // The next event for call `id` other than a heartbeat or a grant.
    async fn answer(dealer: &mut DealerSocket, id: u64) -> (String, String) {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
                .await
                .expect("an answer within 5 s")
                .unwrap();
            let payload = msg.get(msg.len() - 1).unwrap().clone();
            let ev = zerorpc::protocol::Event::decode(&payload).unwrap();
            if ev.response_to != Some(&rmp_bin(id)[..]) {
                continue;
            }
            let name = ev.name.unwrap().to_string();
            if name == "_zpc_hb" || name == "_zpc_more" {
                continue;
            }
            let args: Value = rmpv::decode::read_value(&mut &ev.args[..]).unwrap();
            return (name, args.to_string());
        }
    }
    // Wait for the server's first grant on call `id`.
    async fn granted(dealer: &mut DealerSocket, id: u64) {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
                .await
                .expect("a grant within 5 s")
                .unwrap();
            let payload = msg.get(msg.len() - 1).unwrap().clone();
            let ev = zerorpc::protocol::Event::decode(&payload).unwrap();
            if ev.response_to == Some(&rmp_bin(id)[..]) && ev.name == Ok("_zpc_more") {
                return;
            }
        }
    }
    // Malformed stream calls.
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (vec![], "takes the method's name"),
        (vec![Value::from(42)], "takes the method's name"),
        (vec![Value::Binary(vec![0xff])], "takes the method's name"),
        (vec![Value::from("nope")], "NameError"),
        (
            vec![Value::from("echo"), Value::from(1)],
            "does not take a stream",
        ),
    ];
    for (i, (args, want)) in cases.into_iter().enumerate() {
        let id = 100 + i as u64;
        dealer
            .send(send(event(id, "_zrpc_stream_call", args, Some(3))))
            .await
            .unwrap();
        let (name, args) = answer(&mut dealer, id).await;
        assert_eq!(name, "ERR", "{args}");
        assert!(args.contains(want), "wanted {want:?}: {args}");
    }
    // Items after the end.
    dealer
        .send(send(event(
            200,
            "_zrpc_stream_call",
            vec![Value::from("sum")],
            Some(3),
        )))
        .await
        .unwrap();
    granted(&mut dealer, 200).await;
    dealer
        .send(send(on_call(200, "STREAM", &[1])))
        .await
        .unwrap();
    dealer
        .send(send(on_call(200, "STREAM_DONE", &[0xc0])))
        .await
        .unwrap();
    dealer
        .send(send(on_call(200, "STREAM", &[2])))
        .await
        .unwrap();
    let (name, args) = answer(&mut dealer, 200).await;
    // (The sum may answer before the stray item arrives; either way the
    // stray item is never counted.)
    assert!(
        (name == "OK" && args == "[1]") || args.contains("after the end"),
        "{name} {args}"
    );
    // A junk ERR from the caller cancels its call: no answer comes.
    dealer
        .send(send(event(
            300,
            "_zrpc_stream_call",
            vec![Value::from("sum")],
            Some(3),
        )))
        .await
        .unwrap();
    dealer
        .send(send(on_call(300, "ERR", &[0xc0])))
        .await
        .unwrap();
    dealer
        .send(send(event(
            302,
            "echo",
            vec![Value::from("after")],
            Some(3),
        )))
        .await
        .unwrap();
    let (name, args) = answer(&mut dealer, 302).await;
    assert_eq!((name.as_str(), args.as_str()), ("OK", "[\"after\"]"));
    // A thousand stream calls opened, granted credit, never fed.
    let baseline_kib = rss_kib(target.pid());
    for id in 1000..2000u64 {
        dealer
            .send(send(event(
                id,
                "_zrpc_stream_call",
                vec![Value::from("sum")],
                Some(3),
            )))
            .await
            .unwrap();
    }
    dealer
        .send(send(event(
            5000,
            "echo",
            vec![Value::from("still")],
            Some(3),
        )))
        .await
        .unwrap();
    let (name, _) = answer(&mut dealer, 5000).await;
    assert_eq!(name, "OK");
    let open_kib = rss_kib(target.pid());
    println!(
        "STREAM CALLS: 1000 open and unfed took the server from {} to {} MiB",
        baseline_kib / 1024,
        open_kib / 1024
    );
    assert!(
        open_kib < baseline_kib + 64 * 1024,
        "{open_kib} KiB with 1000 open stream calls"
    );
    // Held open a while, as a client that went quiet would.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(dealer);
    let left = Instant::now();
    let f = watch.finish("misused stream calls", left).await;
    f.assert_unhurt("misused stream calls");
}
