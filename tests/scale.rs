//! Scale runs, bounded and on loopback: 1 client x 16 servers and 16
//! clients x 4 servers, 100 000 calls each, one server (5 ms per call)
//! slower than the rest, one killed and one started mid-run. Every call
//! must be answered except those in flight on the killed server, which fail
//! with `LostRemote`; the slow server must get under a quarter of an even
//! share; the newcomer must get calls. `--nocapture` prints the
//! distributions.

mod common;
#[path = "common/pool.rs"]
mod pool;

use common::{free_port, until_connected};
use pool::{Replica, Tally};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::Client;

/// The runs share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CALLS: usize = 100_000;

async fn run(name: &str, clients: usize, servers: usize, per_client: usize) {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut replicas: Vec<Option<Replica>> = (0..servers)
        .map(|i| {
            let (who, delay) = match i {
                0 => ("slow".to_string(), Duration::from_millis(5)),
                _ => (format!("s{i}"), Duration::ZERO),
            };
            Some(Replica::start("tcp://127.0.0.1:0", &who, delay))
        })
        .collect();
    let newcomer_ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut cs = Vec::new();
    for _ in 0..clients {
        let mut b = Client::builder().timeout(Some(Duration::from_secs(20)));
        for r in replicas.iter().flatten() {
            b = b.connect(&r.endpoint);
        }
        cs.push(b.connect(&newcomer_ep).start().await.unwrap());
    }
    for c in &cs {
        until_connected(c, servers).await;
    }
    let left = Arc::new(AtomicUsize::new(CALLS));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in &cs {
        for _ in 0..per_client {
            let (c, left, done) = (c.clone(), left.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    t.add(c.call("whoami", ()).await);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                t
            }));
        }
    }
    // A third in: a server starts; two thirds in: one is killed.
    let until = |n: usize| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    until(CALLS / 3).await;
    let newcomer = Replica::start(&newcomer_ep, "newcomer", Duration::ZERO);
    until(2 * CALLS / 3).await;
    let victim = replicas[1].take().unwrap();
    let victim_name = victim.name.clone();
    victim.kill();
    let mut t = Tally::default();
    for task in tasks {
        t.merge(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let lost = t.errors.get("LostRemote").copied().unwrap_or(0);
    println!(
        "SCALE {name}: {} calls in {:.1} s ({:.0}/s), {} answered, {lost} LostRemote, other errors {:?}",
        CALLS,
        elapsed.as_secs_f64(),
        CALLS as f64 / elapsed.as_secs_f64(),
        t.ok(),
        t.errors.iter().filter(|(k, _)| *k != "LostRemote").collect::<Vec<_>>()
    );
    println!("SCALE {name}: answered per server {:?}", t.by_server);
    let even = t.ok() / servers;
    assert_eq!(
        t.ok() + lost,
        CALLS,
        "{name}: calls lost otherwise: {:?}",
        t.errors
    );
    assert!(
        lost <= clients * per_client,
        "{name}: {lost} lost, more than were ever in flight"
    );
    assert!(t.get(&victim_name) > 0, "{name}: the victim never answered");
    assert!(t.get("newcomer") > 0, "{name}: the newcomer got no call");
    assert!(
        t.get("slow") * 4 < even,
        "{name}: the slow server got {} calls, even share {even}",
        t.get("slow")
    );
    drop(newcomer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_sixteen_servers() {
    run("1 client x 16 servers", 1, 16, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_four_servers() {
    run("16 clients x 4 servers", 16, 4, 2).await;
}
