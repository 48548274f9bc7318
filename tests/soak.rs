//! Soak and scale, against a `zrpc --server` process whose memory (RSS) is
//! read from /proc: many calls from many clients, 10 000 calls in flight on
//! one client, and connect/disconnect churn. Each checks that the server's
//! memory stops growing — per-call and per-client state is freed — and
//! prints its figures (`cargo test --test soak -- --nocapture`).

mod common;

use common::*;
use futures::{stream, StreamExt};
use std::process::Command;
use std::time::{Duration, Instant};
use zerorpc::Client;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn zrpc_server(service: &str) -> (Proc, String) {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let proc = spawn_until(
        Command::new(common::release_zrpc())
            .args(["--server", "--bind", &ep, service])
            // One malloc arena: RSS then reflects what is live, not which
            // thread happened to allocate.
            .env("MALLOC_ARENA_MAX", "1"),
        "serving",
        true,
    );
    (proc, ep)
}

async fn client(ep: &str) -> Client {
    Client::builder()
        .connect(ep)
        .timeout(Some(Duration::from_secs(30)))
        .start()
        .await
        .unwrap()
}

/// `calls` calls of `add` spread over `clients` clients, each keeping 8 in
/// flight; checks every sum.
async fn add_load(clients: &[Client], calls: usize) {
    let per = calls / clients.len();
    let runs = clients.iter().enumerate().map(|(c, client)| async move {
        stream::iter(0..per)
            .map(|i| async move {
                let x = (c * per + i) as i64;
                let sum: i64 = client.call("add", (x, 1)).await.expect("call");
                assert_eq!(sum, x + 1);
            })
            .buffer_unordered(8)
            .count()
            .await
    });
    let done: usize = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(done, per * clients.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_200k_calls_from_20_clients_leaves_server_memory_flat() {
    let (server, ep) = zrpc_server("calc");
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(client(&ep).await);
    }
    // Warm up: allocator arenas, buffers and tables reach their working size.
    add_load(&clients, 20_000).await;
    let warm = rss_kib(server.pid());
    let started = Instant::now();
    add_load(&clients, 200_000).await;
    let secs = started.elapsed().as_secs_f64();
    let after = rss_kib(server.pid());
    println!(
        "soak: 200000 calls from 20 clients in {secs:.1} s ({:.0} calls/s); server RSS {warm} KiB after warm-up, {after} KiB after",
        200_000.0 / secs
    );
    // A leak of even 50 bytes per call would add 10 MB.
    assert!(
        after <= warm + 4 * 1024,
        "server memory grew from {warm} KiB to {after} KiB over 200 000 calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_in_flight_on_one_client() {
    let (server, ep) = zrpc_server("time");
    let c = client(&ep).await;
    let base = rss_kib(server.pid());
    let mut peaks = Vec::new();
    let mut afters = Vec::new();
    for round in 0..6 {
        let started = Instant::now();
        let calls = (0..10_000).map(|_| {
            let c = c.clone();
            async move { c.call::<_, ()>("sleep", (0.5,)).await }
        });
        let all = tokio::spawn(futures::future::join_all(calls));
        // Sample while every call is sleeping in the server.
        tokio::time::sleep(Duration::from_millis(400)).await;
        peaks.push(rss_kib(server.pid()));
        let results = all.await.unwrap();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok,
            10_000,
            "round {round}: {:?}",
            results.iter().find(|r| r.is_err())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        afters.push(rss_kib(server.pid()));
        println!(
            "in flight, round {round}: 10000 calls of sleep(0.5) done in {:.2} s; server RSS {base} KiB before, {} KiB with all in flight, {} KiB after",
            started.elapsed().as_secs_f64(),
            peaks[round],
            afters[round],
        );
    }
    // Memory proportional to the calls: well under 10 KiB each.
    let peak = peaks.iter().max().unwrap() - base;
    assert!(peak < 100 * 1024, "10 000 calls in flight took {peak} KiB");
    // Released after: later bursts reuse the earlier ones' memory (glibc
    // keeps freed memory mapped, so RSS does not drop, but it stops growing).
    // Rounds 0 to 2 are a warm-up: on a busy machine fewer of their calls
    // overlap in the server, so their high-water mark can be lower than a
    // later round's (seen: round 2 still 1 MB above round 1). A leak of 100
    // bytes per call would add 3 MB over rounds 3 to 5.
    assert!(
        afters[5] <= afters[2] + 1024,
        "memory was not released after each burst: {afters:?} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_churn_does_not_leak_per_client_state() {
    let (server, ep) = zrpc_server("calc");
    // Short-lived clients, 10 at a time: connect, call, close.
    let churn = |n: usize| {
        let ep = ep.clone();
        async move {
            stream::iter(0..n)
                .map(|i| {
                    let ep = ep.clone();
                    async move {
                        let c = client(&ep).await;
                        let sum: i64 = c.call("add", (i as i64, 1)).await.expect("call");
                        assert_eq!(sum, i as i64 + 1);
                        c.close(Duration::from_secs(1)).await.unwrap();
                    }
                })
                .buffer_unordered(10)
                .count()
                .await
        }
    };
    assert_eq!(churn(300).await, 300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warm = rss_kib(server.pid());
    let started = Instant::now();
    assert_eq!(churn(5000).await, 5000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(server.pid());
    println!(
        "churn: 5000 short-lived clients in {:.1} s; server RSS {warm} KiB after 300, {after} KiB after 5300",
        started.elapsed().as_secs_f64()
    );
    // 64 bytes kept per client (one identity) would add 320 KiB.
    assert!(
        after <= warm + 320,
        "server memory grew from {warm} KiB to {after} KiB over 5000 clients"
    );
    // And it still answers.
    let c = client(&ep).await;
    assert_eq!(c.call::<_, i64>("add", (2, 3)).await.unwrap(), 5);
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A client stream of 1 GiB in 1 MiB pieces to a `zrpc --server` process
/// (echo's `size`): both sides stay within 64 MiB, whatever the volume,
/// because each piece leaves only under the server's credit. Prints the
/// throughput beside 1 MiB echo calls (4 in flight) measured in the same
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_upload_stays_within_64_mib_on_both_sides() {
    const PIECE: usize = 1 << 20;
    const PIECES: u64 = 1024;
    let (server, ep) = zrpc_server("echo");
    let client = client(&ep).await;
    let piece = bytes::Bytes::from(vec![7u8; PIECE]);
    let pieces = {
        let piece = piece.clone();
        stream::iter(0..PIECES).map(move |_| zerorpc::Blob::new(piece.clone()))
    };
    let started = Instant::now();
    let (n, total): (u64, u64) = client
        .client_stream_with(
            "size",
            (),
            pieces,
            zerorpc::CallOptions::timeout(Duration::from_secs(120)),
        )
        .await
        .expect("the upload");
    let upload = started.elapsed();
    assert_eq!((n, total), (PIECES, PIECES * PIECE as u64));
    let server_peak = peak_rss_kib(server.0.id());
    let client_peak = peak_rss_kib(std::process::id());

    // The baseline: the same bytes as echo calls.
    let echoes = 256u64;
    let started = Instant::now();
    let echoed: Vec<usize> = stream::iter(0..echoes)
        .map(|_| {
            let client = client.clone();
            let piece = zerorpc::Blob::new(piece.clone());
            async move {
                let back: zerorpc::Blob = client.call("echo", (piece,)).await.expect("an echo");
                back.len()
            }
        })
        .buffered(4)
        .collect()
        .await;
    let echo = started.elapsed();
    assert!(echoed.iter().all(|&n| n == PIECE));
    let mbps = |bytes: u64, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let up = mbps(PIECES * PIECE as u64, upload);
    let base = mbps(echoes * PIECE as u64, echo);
    println!(
        "UPLOAD 1 GiB in 1 MiB pieces: {up:.0} MB/s; 1 MiB echo, 4 in flight: {base:.0} MB/s ({:.2}x); peak RSS server {} MiB, client {} MiB",
        up / base,
        server_peak / 1024,
        client_peak / 1024
    );
    assert!(
        server_peak < 64 * 1024,
        "the server peaked at {server_peak} KiB"
    );
    assert!(
        client_peak < 64 * 1024,
        "the client peaked at {client_peak} KiB"
    );
    client.close(Duration::from_secs(1)).await.unwrap();
}
