//! A cluster on one machine: "hosts" in network namespaces joined by a
//! bridge, each running `zrpc --server`, dnsmasq answering their names (A
//! and SRV), and a client host running `zrpc-bench` against the pool while
//! the test partitions a host, restarts every server, or changes DNS.
//!
//! Everything is made by the test and removed when it ends (also on
//! failure): namespaces `zc<pid>-…`, `/etc/netns/<client>/`, the processes.
//! It needs root (network namespaces), `ip` (iproute2) and dnsmasq;
//! `scripts/test.sh` installs dnsmasq. Without them a test fails saying
//! what is missing.
//!
//! A partition is the host's bridge port taken down: its packets vanish
//! both ways, no FIN, no RST (`tc netem` needs a kernel module this
//! machine may not have).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The scenarios run one at a time: their timings are the point.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PORT: u16 = 4242;
/// The name every host of the pool answers to (A records), and its SRV.
const NAME: &str = "svc.zt";
const SRV: &str = "_zrpc._tcp.svc.zt";

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

/// One host: its namespace, its address, its bridge port, its server.
struct Host {
    ns: String,
    ip: String,
    port_on_bridge: String,
    server: Option<Lines>,
}

struct Cluster {
    bridge: String,
    client: String,
    hosts: Vec<Host>,
    dns: Option<Proc>,
    /// dnsmasq's configuration and its hosts directory (watched).
    dir: tempfile::TempDir,
    service: String,
    heartbeat: f64,
}

impl Cluster {
    /// `n` hosts and a client host on one bridge, DNS in the client's
    /// namespace; no server started yet.
    fn new(n: usize, service: &str, heartbeat: f64) -> Cluster {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        if Command::new("ip").arg("-V").output().is_err() {
            panic!("`ip` (iproute2) is missing: apt-get install iproute2");
        }
        let tag = format!(
            "zc{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let bridge = format!("{tag}-br");
        if let Err(e) = run(&["ip", "netns", "add", &bridge]) {
            panic!("cannot make network namespaces (the cluster tests need root): {e}");
        }
        let mut c = Cluster {
            bridge,
            client: format!("{tag}-c"),
            hosts: Vec::new(),
            dns: None,
            dir: tempfile::tempdir().unwrap(),
            service: service.to_string(),
            heartbeat,
        };
        let br = c.bridge.clone();
        must(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        let client = c.client.clone();
        c.attach(&client, "vc", "10.77.0.100");
        for k in 0..n {
            let ns = format!("{tag}-h{}", k + 1);
            let port = format!("vh{}", k + 1);
            let ip = format!("10.77.0.{}", k + 1);
            c.attach(&ns, &port, &ip);
            c.hosts.push(Host {
                ns,
                ip,
                port_on_bridge: port,
                server: None,
            });
        }
        c.start_dns();
        c
    }

    /// A namespace `ns` plugged into the bridge through port `port`, with
    /// address `ip` on its `eth0`.
    fn attach(&self, ns: &str, port: &str, ip: &str) {
        must(&["ip", "netns", "add", ns]);
        let br = &self.bridge;
        must(&[
            "ip", "-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ]);
        must(&["ip", "-n", br, "link", "set", port, "master", "br0", "up"]);
        must(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    /// dnsmasq on the client host's loopback, and its resolv.conf.
    fn start_dns(&mut self) {
        let dnsmasq = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("dnsmasq is missing: apt-get install dnsmasq-base (scripts/test.sh does)")
            });
        let hosts = self.dir.path().join("hosts");
        std::fs::create_dir(&hosts).unwrap();
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.set_dns(&all);
        let etc = self.etc();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n",
        )
        .unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client, dnsmasq])
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local-ttl=0",
                "--log-facility=-",
            ])
            .arg(format!("--hostsdir={}", hosts.display()));
        // SRV: one record per host, each naming the host's own name.
        for (k, h) in self.hosts.iter().enumerate() {
            cmd.arg(format!("--srv-host={SRV},h{}.zt,{PORT},0,10", k + 1));
            cmd.arg(format!("--host-record=h{}.zt,{}", k + 1, h.ip));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.dns = Some(Proc(cmd.spawn().expect("start dnsmasq")));
        // Answering?
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.resolves() {
            assert!(
                Instant::now() < deadline,
                "dnsmasq does not answer for {NAME}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Does `NAME` resolve from the client host (through its resolv.conf)?
    fn resolves(&self) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.client, "getent", "hosts", NAME])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The client host's /etc overrides (`ip netns exec` mounts them).
    fn etc(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.client)
    }

    /// `NAME` stands for the hosts `which` now (dnsmasq watches the file).
    fn set_dns(&self, which: &[usize]) {
        let hosts = self.dir.path().join("hosts");
        let text: String = which
            .iter()
            .map(|&k| format!("{} {NAME}\n", self.hosts[k].ip))
            .collect();
        let tmp = self.dir.path().join("pool.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, hosts.join("pool")).unwrap();
    }

    /// Start host `k`'s server and wait until it serves.
    fn start_server(&mut self, k: usize) {
        let h = &self.hosts[k];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.ns, &common::release_zrpc()])
            .args(["--server", "--bind", &format!("tcp://{}:{PORT}", h.ip)])
            .args(["--heartbeat", &self.heartbeat.to_string()])
            .arg(&self.service);
        let mut lines = Lines::spawn_stderr(&mut cmd);
        lines.expect("serving", Duration::from_secs(20));
        self.hosts[k].server = Some(lines);
    }

    /// SIGTERM host `k`'s server; how long it took to exit (panics past
    /// 15 s: its grace is 10 s).
    fn stop_server(&mut self, k: usize) -> Duration {
        let mut lines = self.hosts[k].server.take().expect("a running server");
        let t0 = Instant::now();
        // `ip netns exec` runs the server in its own process: signal that.
        lines.proc.signal(15);
        let status = lines.proc.wait_for(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "host {} did not stop cleanly: {status:?}, log {:?}",
            k + 1,
            lines.seen()
        );
        t0.elapsed()
    }

    /// Cut host `k` off (no FIN, no RST: its packets just vanish).
    fn partition(&self, k: usize) {
        let port = &self.hosts[k].port_on_bridge;
        must(&["ip", "-n", &self.bridge, "link", "set", port, "down"]);
    }

    fn heal(&self, k: usize) {
        let port = &self.hosts[k].port_on_bridge;
        must(&["ip", "-n", &self.bridge, "link", "set", port, "up"]);
    }

    fn endpoint(&self, k: usize) -> String {
        format!("tcp://{}:{PORT}", self.hosts[k].ip)
    }

    /// Start `zrpc-bench` on the client host: `window` calls of `add` in
    /// flight for `seconds` against `target`; returns once its load began.
    fn bench(&self, target: &str, window: usize, seconds: f64) -> Bench {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                env!("CARGO_BIN_EXE_zrpc-bench"),
            ])
            .args(["--connect", target, "--method", "add", "--args", "[1, 2]"])
            .args(["--heartbeat", &self.heartbeat.to_string()])
            .args(["--resolve-every", "0.5", "--json"])
            .args(["--window", &window.to_string()])
            .args(["--duration", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zrpc-bench");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            // Progress lines end in '\r' or '\n'.
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&buf).to_string();
                if text.contains("[load]") {
                    let _ = tx.send(());
                }
                log.push(text);
                buf.clear();
            }
            log
        });
        let ok = rx.recv_timeout(Duration::from_secs(20));
        let mut b = Bench {
            child: Some(child),
            started: Instant::now(),
        };
        if ok.is_err() {
            let out = b.finish_raw();
            panic!("zrpc-bench did not start its load within 20 s: {out}");
        }
        b
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.server.take();
        }
        self.dns.take();
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.client]);
        let _ = run(&["ip", "netns", "del", &self.bridge]);
        let _ = std::fs::remove_dir_all(self.etc());
    }
}

/// A running `zrpc-bench --duration`.
struct Bench {
    child: Option<Child>,
    /// When its load began (as seen from here).
    started: Instant,
}

/// What a run reported.
struct Report {
    answered: u64,
    longest_gap_ms: u64,
    bucket_ms: u64,
    /// (seconds since the load began, kind, message)
    failures: Vec<(f64, String, String)>,
    per_endpoint: std::collections::BTreeMap<String, Vec<u64>>,
}

impl Bench {
    /// Seconds since its load began.
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn finish_raw(&mut self) -> String {
        let Some(child) = self.child.take() else {
            return String::new();
        };
        let out = child.wait_with_output().expect("zrpc-bench output");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn finish(mut self) -> Report {
        let out = self.finish_raw();
        let j: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("zrpc-bench printed no JSON ({e}): {out:?}"));
        let failures = j["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["t_ms"].as_f64().unwrap() / 1e3,
                    f["kind"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let per_endpoint = j["per_endpoint"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(ep, v)| {
                let row = v.as_array().unwrap().iter().map(|n| n.as_u64().unwrap());
                (ep.clone(), row.collect())
            })
            .collect();
        Report {
            answered: j["answered"].as_u64().unwrap(),
            longest_gap_ms: j["longest_gap_ms"].as_u64().unwrap(),
            bucket_ms: j["bucket_ms"].as_u64().unwrap(),
            failures,
            per_endpoint,
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Report {
    /// Calls `ep` answered from second `from` to second `to`.
    fn answered_by(&self, ep: &str, from: f64, to: f64) -> u64 {
        let b = self.bucket_ms as f64 / 1e3;
        self.per_endpoint.get(ep).map_or(0, |row| {
            row.iter()
                .enumerate()
                .filter(|(i, _)| {
                    let t = *i as f64 * b;
                    t >= from && t < to
                })
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// The first second after `from` at which `ep` answered again.
    fn back_at(&self, ep: &str, from: f64) -> Option<f64> {
        let b = self.bucket_ms as f64 / 1e3;
        let row = self.per_endpoint.get(ep)?;
        row.iter()
            .enumerate()
            .find(|(i, n)| *i as f64 * b >= from && **n > 0)
            .map(|(i, _)| i as f64 * b)
    }
}

/// (a) A host partitioned during calls (no FIN): the pool keeps answering,
/// the host is declared lost 1.25 to 1.75 heartbeat periods after its last
/// sign of life (it did not answer a ping), only its calls fail, and it is
/// used again within two periods of the heal (over a fresh connection).
#[test]
fn a_partitioned_host_is_lost_fast_and_used_again_after_the_heal() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let hb = 1.0;
    let mut c = Cluster::new(3, "calc", hb);
    for k in 0..3 {
        c.start_server(k);
    }
    let target = format!("tcp://{NAME}:{PORT}");
    let busy = c.bench(&target, 16, 11.0);
    let one = c.bench(&target, 1, 11.0);
    std::thread::sleep(Duration::from_secs(2));
    let cut_busy = busy.at();
    let cut_one = one.at();
    c.partition(1);
    std::thread::sleep(Duration::from_secs(4));
    let healed = busy.at();
    c.heal(1);
    let (busy, one) = (busy.finish(), one.finish());
    let h2 = c.endpoint(1);
    for (name, r, cut, window) in [
        ("16 in flight", &busy, cut_busy, 16),
        ("1 in flight", &one, cut_one, 1),
    ] {
        let lost: Vec<f64> = r.failures.iter().map(|f| f.0 - cut).collect();
        let back = r.back_at(&h2, healed).map(|t| t - healed);
        println!(
            "PARTITION ({name}, heartbeat {hb} s): {} answered, {} failed, detected {:?} s after the cut, longest pause {} ms, host back {:?} s after the heal",
            r.answered,
            r.failures.len(),
            lost,
            r.longest_gap_ms,
            back
        );
        assert!(
            r.failures.len() <= window,
            "{name}: more calls failed than were in flight: {:?}",
            r.failures
        );
        for (t, kind, msg) in &r.failures {
            assert_eq!(kind, "LostRemote", "{name}: {msg}");
            assert!(
                msg.contains("10.77.0.2"),
                "{name}: a call failed elsewhere: {msg}"
            );
            let after = t - cut;
            // Its last sign of life was just before the cut; checked every
            // half period.
            assert!(
                after > 1.25 * hb - 0.1 && after < 1.75 * hb + 0.3,
                "{name}: lost {after:.2} s after the cut"
            );
        }
        let back = back.unwrap_or_else(|| panic!("{name}: {h2} never answered after the heal"));
        assert!(
            back < 2.0 * hb + 0.3,
            "{name}: back {back:.2} s after the heal"
        );
        // Other hosts kept answering while one was cut off.
        for k in [0, 2] {
            let ep = c.endpoint(k);
            assert!(
                r.answered_by(&ep, cut + 0.5, healed) > 0,
                "{name}: {ep} answered nothing during the partition"
            );
        }
    }
    // The busy client never stalled: its other calls flowed throughout.
    assert!(
        busy.longest_gap_ms < 300,
        "the pool stalled for {} ms",
        busy.longest_gap_ms
    );
    assert!(
        one.longest_gap_ms as f64 <= (1.75 * hb + 0.3) * 1e3,
        "the sequential client stalled for {} ms",
        one.longest_gap_ms
    );
}

/// (b) Every server restarted in turn with SIGTERM under load (16 and 1 in
/// flight, found by DNS): zero failed calls. A stopping server tells its
/// clients (`_zpc_drain`), answers what it reads, and closes when idle; a
/// call it never read goes to another server.
#[test]
fn a_rolling_restart_loses_no_call() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new(3, "calc", 0.5);
    for k in 0..3 {
        c.start_server(k);
    }
    let target = format!("tcp://{NAME}:{PORT}");
    let busy = c.bench(&target, 16, 9.0);
    let one = c.bench(&target, 1, 9.0);
    let mut stops = Vec::new();
    for k in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        stops.push(c.stop_server(k));
        c.start_server(k);
    }
    let (busy, one) = (busy.finish(), one.finish());
    println!(
        "ROLLING RESTART: servers stopped {:?} after SIGTERM; 16 in flight: {} answered, {} failed; 1 in flight: {} answered, {} failed",
        stops, busy.answered, busy.failures.len(), one.answered, one.failures.len()
    );
    assert!(
        busy.failures.is_empty(),
        "16 in flight: {:?}",
        busy.failures
    );
    assert!(one.failures.is_empty(), "1 in flight: {:?}", one.failures);
    assert!(busy.answered > 1000 && one.answered > 100);
    for k in 0..3 {
        // Each server came back and took calls again.
        let ep = c.endpoint(k);
        assert!(busy.answered_by(&ep, 7.5, 9.0) > 0, "{ep} never came back");
    }
}

/// (c) A host removed from DNS and another added: the traffic follows
/// within the re-resolve period (0.5 s here), with no failed call.
#[test]
fn traffic_follows_a_dns_change_without_failures() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new(3, "calc", 0.5);
    for k in 0..3 {
        c.start_server(k);
    }
    c.set_dns(&[0, 1]);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("tcp://{NAME}:{PORT}");
    let busy = c.bench(&target, 16, 5.0);
    let one = c.bench(&target, 1, 5.0);
    std::thread::sleep(Duration::from_millis(1500));
    let changed = busy.at();
    c.set_dns(&[1, 2]);
    let (busy, one) = (busy.finish(), one.finish());
    for (name, r) in [("16 in flight", &busy), ("1 in flight", &one)] {
        let h3 = c.endpoint(2);
        let h1 = c.endpoint(0);
        let joined = r.back_at(&h3, changed).map(|t| t - changed);
        let left = r.answered_by(&h1, changed + 1.5, 5.0);
        println!(
            "DNS CHANGE ({name}): {} answered, {} failed; new host answering {:?} s after the change; removed host answered {left} calls from 1.5 s after it",
            r.answered,
            r.failures.len(),
            joined
        );
        assert!(r.failures.is_empty(), "{name}: {:?}", r.failures);
        let joined = joined.unwrap_or_else(|| panic!("{name}: {h3} never got a call"));
        assert!(
            joined < 1.5,
            "{name}: {h3} joined {joined:.2} s after the change"
        );
        assert_eq!(left, 0, "{name}: {h1} still got calls");
    }
}

/// (d) Equal servers, found through SRV records, share a sequential
/// client's calls evenly (within 20% of an even share).
#[test]
fn equal_servers_share_a_sequential_client_evenly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new(3, "calc", 0.5);
    for k in 0..3 {
        c.start_server(k);
    }
    let r = c.bench(&format!("srv://{SRV}"), 1, 3.0).finish();
    let counts: Vec<u64> = (0..3)
        .map(|k| r.answered_by(&c.endpoint(k), 0.0, 10.0))
        .collect();
    println!(
        "EVEN SHARE (1 in flight, SRV): {counts:?} of {}",
        r.answered
    );
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let even = r.answered as f64 / 3.0;
    for (k, n) in counts.iter().enumerate() {
        assert!(
            (*n as f64 - even).abs() <= 0.2 * even,
            "host {} got {n} of {} calls",
            k + 1,
            r.answered
        );
    }
}
