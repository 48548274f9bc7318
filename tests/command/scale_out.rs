//! Many servers per client: where calls go (the least-loaded healthy
//! server), what happens when a server stops answering or dies (skipped,
//! calls fail with `LostRemote` or are retried when allowed), servers found
//! by DNS name (A and SRV records from a DNS server the test runs on
//! 127.0.0.1), and the scale runs (1 client x 16 servers, 16 clients x 4
//! servers, 100 000 calls, a server killed and one started mid-run).

use crate::common;
use crate::{dns, pool};

use common::*;
use pool::{hammer, Replica, Tally};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::{CallOptions, Client, DnsResolver, Error, Retry};

// ---- balancing ------------------------------------------------------------

/// Calls from 8 callers for 1.5 s over a "fast" (1 ms) and a "slow"
/// (50 ms) server: none fails, and the slow one gets under a quarter of an
/// even share (round-robin would give it half).
async fn slow_gets_little(client: &Client, layout: &str) -> Tally {
    let until = Instant::now() + Duration::from_millis(1500);
    let t = hammer(client, 8, usize::MAX, until).await;
    let (fast, slow) = (t.get("fast"), t.get("slow"));
    println!("{layout}: fast {fast} slow {slow} errors {:?}", t.errors);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    let even = t.ok() / 2;
    assert!(
        slow * 4 < even,
        "the slow server got {slow} of {} calls (even share {even})",
        t.ok()
    );
    t
}

/// A server 50 times slower than its peer gets far fewer calls; round-robin
/// would give it half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_the_least_loaded_server() {
    let fast = Replica::start("tcp://127.0.0.1:0", "fast", Duration::from_millis(1));
    let slow = Replica::start("tcp://127.0.0.1:0", "slow", Duration::from_millis(50));
    let client = Client::builder()
        .connect(&fast.endpoint)
        .connect(&slow.endpoint)
        .start()
        .await
        .unwrap();
    // Both connected (each answers a call) before counting.
    until_connected(&client, 2).await;
    let t = slow_gets_little(&client, "servers").await;
    // The client says the same.
    let answered: u64 = client.servers().iter().map(|s| s.answered).sum();
    assert!(answered >= t.ok() as u64);
    drop((fast, slow));
}

/// Workers layout: the client binds, workers connect to it. Calls are
/// balanced over the workers by the same rule, every event of a call
/// reaches the worker that runs it (calls longer than two heartbeats
/// succeed), and a worker that goes takes only its own calls with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_client_balances_over_its_workers() {
    let (client, ep) = bound_client(Duration::from_millis(100)).await;
    let fast = Replica::worker(&ep, "fast", Duration::from_millis(1));
    let slow = Replica::worker(&ep, "slow", Duration::from_millis(50));
    until_connected(&client, 2).await;
    slow_gets_little(&client, "workers").await;
    drop((fast, slow));

    // Long calls (10 heartbeats) on three workers at once: each worker
    // hears its calls' heartbeats, so none is cancelled.
    let long: Vec<Replica> = (0..3)
        .map(|i| Replica::worker(&ep, &format!("long{i}"), Duration::from_millis(1000)))
        .collect();
    until_connected(&client, 3).await;
    let t = hammer(&client, 6, 6, Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(t.ok(), 6, "{t:?}");
    assert_eq!(t.by_server.len(), 3, "spread over the three workers: {t:?}");

    // One worker dies mid-call: its calls fail, the others' succeed.
    let before = client.servers();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.call::<_, String>("whoami", ()).await })
        })
        .collect();
    let sent = until_sent(&client, &before, 6).await;
    let mut long = long;
    long.remove(0).kill();
    let mut ok = 0;
    let mut lost = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(name) => {
                assert_ne!(name, "long0");
                ok += 1
            }
            Err(Error::LostRemote { .. }) => lost += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Exactly the calls in flight on the worker that went are lost.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.servers().len() != 2 {
        assert!(Instant::now() < deadline, "{:?}", client.servers());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = client.servers();
    let gone = sent
        .iter()
        .find(|s| left.iter().all(|l| l.endpoint != s.endpoint))
        .expect("one worker went");
    assert!(gone.in_flight > 0, "{sent:?}");
    assert_eq!((ok, lost), (6 - gone.in_flight, gone.in_flight), "{sent:?}");
}

// ---- health ---------------------------------------------------------------

fn zrpc_server(port: u16) -> Proc {
    spawn_until(
        Command::new(env!("CARGO_BIN_EXE_zrpc")).args([
            "--server",
            "--heartbeat",
            "0.2",
            "--bind",
            &format!("tcp://127.0.0.1:{port}"),
            "calc",
        ]),
        "serving",
        true,
    )
}

/// Wait (up to 5 s) until `n` calls started after `before` (a snapshot of
/// `client.servers()`) have all been sent: each is in flight or answered.
/// Returns the calls in flight per server then.
async fn until_sent(
    client: &Client,
    before: &[zerorpc::ServerInfo],
    n: usize,
) -> Vec<zerorpc::ServerInfo> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = client.servers();
        let answered_before = |ep: &str| {
            before
                .iter()
                .find(|s| s.endpoint == ep)
                .map_or(0, |s| s.answered)
        };
        let sent: u64 = now
            .iter()
            .map(|s| s.in_flight as u64 + s.answered - answered_before(&s.endpoint))
            .sum();
        if sent as usize >= n {
            return now;
        }
        assert!(Instant::now() < deadline, "only {sent} of {n} calls sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server frozen (SIGSTOP: connection open, nothing answered) costs at
/// most the call that found out; it is then skipped, and used again once
/// it answers (SIGCONT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_skipped_and_used_again() {
    let (pa, pb) = (free_port(), free_port());
    let (a, _b) = (zrpc_server(pa), zrpc_server(pb));
    let ep_a = format!("tcp://127.0.0.1:{pa}");
    let client = Client::builder()
        .connect(&ep_a)
        .connect(format!("tcp://127.0.0.1:{pb}"))
        .heartbeat(Some(Duration::from_millis(200)))
        .timeout(Some(Duration::from_secs(5)))
        .start()
        .await
        .unwrap();
    // (Made now: a frozen server cannot complete a new connection.)
    let retrying = Client::builder()
        .connect(&ep_a)
        .connect(format!("tcp://127.0.0.1:{pb}"))
        .heartbeat(Some(Duration::from_millis(200)))
        .retry(Retry::attempts(2).backoff(Duration::from_millis(10)))
        .start()
        .await
        .unwrap();
    for c in [&client, &retrying] {
        until_connected(c, 2).await;
        let r: i64 = c.call("add", (1, 2)).await.unwrap();
        assert_eq!(r, 3);
    }
    a.signal(19); // SIGSTOP
                  // A signal is delivered, not obeyed, by the time kill(1) returns: on a
                  // busy machine the server could still answer a call or two.
    let stopped = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{}/stat", a.pid()))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .map(str::trim_start)
                .is_some_and(|s| !s.starts_with('T'))
        })
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < stopped,
            "the server did not stop on SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    // Calls at once, so some go to the frozen server: those are lost once
    // their heartbeats lapse (they were sent: never silently re-sent).
    let burst = |c: &Client| {
        (0..10)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.call::<_, i64>("add", (1, 2)).await })
            })
            .collect::<Vec<_>>()
    };
    // Every call of a burst is either answered by the other server or
    // lost with the frozen one: so B's answers count what went to A (read
    // from the outcome, not from a snapshot the heartbeat may have
    // overtaken on a loaded machine). A burst that all went to B proves
    // nothing: burst again (the balancer alternates, so this is rare).
    let answered_elsewhere = |c: &Client| -> u64 {
        c.servers()
            .iter()
            .filter(|s| s.endpoint != ep_a)
            .map(|s| s.answered)
            .sum()
    };
    let mut lost = 0;
    for _ in 0..5 {
        let before = answered_elsewhere(&client);
        let mut failed = 0;
        for c in burst(&client) {
            match c.await.unwrap() {
                Ok(3) => {}
                Err(Error::LostRemote { .. }) => failed += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let answered = answered_elsewhere(&client) - before;
        assert_eq!(
            answered + failed,
            10,
            "exactly the calls on the frozen server are lost ({failed} lost, {answered} answered elsewhere)"
        );
        lost += failed;
        if failed > 0 {
            break;
        }
    }
    assert!(lost > 0, "no call went to the frozen server in five bursts");
    println!(
        "{lost} calls lost with the frozen server after {:?}",
        t0.elapsed()
    );
    let info = client.servers();
    let frozen = info.iter().find(|s| s.endpoint == ep_a).unwrap();
    assert!(frozen.skipped, "{info:?}");
    // From now on it is skipped: nothing else is lost, nothing waits.
    let t1 = Instant::now();
    for c in burst(&client) {
        assert_eq!(c.await.unwrap().unwrap(), 3);
    }
    assert!(t1.elapsed() < Duration::from_secs(1), "{:?}", t1.elapsed());

    // With a retry policy, not even the calls on the frozen server are
    // lost: they are sent again to the other one. (A call that lapsed on
    // the frozen server marks it skipped for this client too: proof that
    // one went there; burst again until one has.)
    let mut went_to_a = false;
    for _ in 0..5 {
        for c in burst(&retrying) {
            assert_eq!(c.await.unwrap().unwrap(), 3);
        }
        let info = retrying.servers();
        went_to_a = info.iter().any(|s| s.endpoint == ep_a && s.skipped);
        if went_to_a {
            break;
        }
    }
    assert!(
        went_to_a,
        "no retried call went to the frozen server in five bursts"
    );

    a.signal(18); // SIGCONT
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let back = client
            .servers()
            .iter()
            .any(|s| s.endpoint == ep_a && !s.skipped);
        if back {
            break;
        }
        assert!(Instant::now() < deadline, "the server was never used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = client
        .servers()
        .iter()
        .find(|s| s.endpoint == ep_a)
        .unwrap()
        .answered;
    for c in burst(&client) {
        assert_eq!(c.await.unwrap().unwrap(), 3);
    }
    let after = client
        .servers()
        .iter()
        .find(|s| s.endpoint == ep_a)
        .unwrap()
        .answered;
    assert!(after > before, "no call went back to the thawed server");
}

/// Killed mid-call: its calls fail with `LostRemote` (never silently sent
/// elsewhere), unless the caller allowed a retry, and the survivors keep
/// answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_lost_with_a_killed_server_fail_unless_retryable() {
    let delay = Duration::from_millis(400);
    let victim = Replica::start("tcp://127.0.0.1:0", "victim", delay);
    let survivor = Replica::start("tcp://127.0.0.1:0", "survivor", delay);
    let build = || {
        Client::builder()
            .connect(&victim.endpoint)
            .connect(&survivor.endpoint)
            .timeout(Some(Duration::from_secs(10)))
    };
    let plain = build().start().await.unwrap();
    let retrying = build()
        .retry(Retry::attempts(3).backoff(Duration::from_millis(20)))
        .start()
        .await
        .unwrap();
    for c in [&plain, &retrying] {
        until_connected(c, 2).await;
    }
    let (before_plain, before_retrying) = (plain.servers(), retrying.servers());
    let mut calls = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 { &plain } else { &retrying };
        let c = c.clone();
        let opts = CallOptions::default();
        calls.push(tokio::spawn(async move {
            c.call_with::<_, String>("whoami", (), opts).await
        }));
    }
    until_sent(&retrying, &before_retrying, 10).await;
    let on_victim: usize = until_sent(&plain, &before_plain, 10)
        .await
        .iter()
        .filter(|s| s.endpoint == victim.endpoint)
        .map(|s| s.in_flight)
        .sum();
    assert!(on_victim > 0, "no plain call went to the victim");
    victim.kill();
    let mut plain_lost = 0;
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(name) => assert_eq!(name, "survivor"),
            Err(Error::LostRemote { .. }) if i % 2 == 0 => plain_lost += 1,
            Err(e) => panic!("call {i} (retrying: {}) failed: {e}", i % 2 == 1),
        }
    }
    assert_eq!(
        plain_lost, on_victim,
        "exactly the plain calls in flight on the victim are lost"
    );
    let r: String = plain.call("whoami", ()).await.unwrap();
    assert_eq!(r, "survivor");
}

// ---- discovery ------------------------------------------------------------

async fn until_names(client: &Client, want: &BTreeSet<String>, limit: Duration) -> Tally {
    let deadline = Instant::now() + limit;
    loop {
        let mut t = Tally::default();
        for _ in 0..30 {
            t.add(client.call("whoami", ()).await);
        }
        let seen: BTreeSet<String> = t.by_server.keys().cloned().collect();
        if &seen == want {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "calls reached {seen:?}, not {want:?}; servers: {:?}",
            client.servers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// A host name connects to every address it resolves to, and follows the
/// answer as it changes: an address that goes is dropped, one that comes
/// back is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_connects_to_every_address_and_follows_changes() {
    let port = free_port();
    let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let _replicas: Vec<Replica> = ips
        .iter()
        .map(|ip| {
            Replica::start(
                &format!("tcp://{ip}:{port}"),
                &ip.to_string(),
                Duration::ZERO,
            )
        })
        .collect();
    let dns = dns::Dns::start();
    dns.set_a("calc.zrpc.test", &ips);
    let client = Client::builder()
        .resolver(DnsResolver::with_nameserver(dns.addr).unwrap())
        .resolve_every(Duration::from_millis(200))
        .connect(format!("tcp://calc.zrpc.test:{port}"))
        .start()
        .await
        .unwrap();
    assert_eq!(client.endpoints(), [format!("tcp://calc.zrpc.test:{port}")]);
    let all = names(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    until_names(&client, &all, Duration::from_secs(10)).await;

    dns.set_a("calc.zrpc.test", &[ips[0], ips[2]]);
    until_names(
        &client,
        &names(&["127.0.0.1", "127.0.0.3"]),
        Duration::from_secs(10),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.servers().len() != 2 {
        assert!(Instant::now() < deadline, "{:?}", client.servers());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    dns.set_a("calc.zrpc.test", &ips);
    until_names(&client, &all, Duration::from_secs(10)).await;
}

/// `srv://NAME`: each SRV record's target and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_hosts_and_ports() {
    let a = Replica::start("tcp://127.0.0.2:0", "a", Duration::ZERO);
    let b = Replica::start("tcp://127.0.0.3:0", "b", Duration::ZERO);
    let port = |ep: &str| ep.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let dns = dns::Dns::start();
    dns.set_a("a.zrpc.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    dns.set_a("b.zrpc.test", &[Ipv4Addr::new(127, 0, 0, 3)]);
    dns.set_srv(
        "_zrpc._tcp.calc.zrpc.test",
        &[
            ("a.zrpc.test", port(&a.endpoint)),
            ("b.zrpc.test", port(&b.endpoint)),
        ],
    );
    let client = Client::builder()
        .resolver(DnsResolver::with_nameserver(dns.addr).unwrap())
        .resolve_every(Duration::from_millis(200))
        .connect("srv://_zrpc._tcp.calc.zrpc.test")
        .start()
        .await
        .unwrap();
    until_names(&client, &names(&["a", "b"]), Duration::from_secs(10)).await;
    let mut eps: Vec<String> = client.servers().into_iter().map(|s| s.endpoint).collect();
    eps.sort();
    assert_eq!(eps, [a.endpoint.clone(), b.endpoint.clone()]);
}

/// A name that cannot be a DNS name is refused when the client starts; one
/// that does not resolve leaves calls waiting (and timing out) with a log.
#[tokio::test]
async fn bad_names_are_refused_and_unknown_names_time_out() {
    let dns = dns::Dns::start();
    let e = Client::builder()
        .resolver(DnsResolver::with_nameserver(dns.addr).unwrap())
        .connect("consul://calc")
        .start()
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("srv://NAME"), "{e}");
    let client = Client::builder()
        .resolver(DnsResolver::with_nameserver(dns.addr).unwrap())
        .connect("tcp://nowhere.zrpc.test:4242")
        .timeout(Some(Duration::from_millis(300)))
        .start()
        .await
        .unwrap();
    let e = client.call::<_, String>("whoami", ()).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
}

/// A custom [`zerorpc::Resolver`]: any scheme, any source.
#[tokio::test]
async fn a_custom_resolver_is_followed() {
    struct Listed(Arc<std::sync::Mutex<Vec<String>>>);
    #[async_trait::async_trait]
    impl zerorpc::Resolver for Listed {
        async fn resolve(&self, name: &str) -> Result<Vec<String>, Error> {
            assert_eq!(name, "list://pool");
            Ok(self.0.lock().unwrap().clone())
        }
    }
    let one = Replica::start("tcp://127.0.0.1:0", "one", Duration::ZERO);
    let two = Replica::start("tcp://127.0.0.1:0", "two", Duration::ZERO);
    let list = Arc::new(std::sync::Mutex::new(vec![one.endpoint.clone()]));
    let client = Client::builder()
        .resolver(Listed(list.clone()))
        .resolve_every(Duration::from_millis(100))
        .connect("list://pool")
        .start()
        .await
        .unwrap();
    until_names(&client, &names(&["one"]), Duration::from_secs(5)).await;
    *list.lock().unwrap() = vec![two.endpoint.clone()];
    until_names(&client, &names(&["two"]), Duration::from_secs(5)).await;
}
