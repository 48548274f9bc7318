//! Servers of a `pool` service for the scale-out tests: each on its own
//! thread and runtime, so one can be killed as a crash would; and a tally
//! of who answered.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerorpc::{Client, Error, Server, Service, ServiceError};

/// A server of the `pool` service on its own thread and runtime:
/// `whoami()` answers its name after `delay`. Killing it drops its runtime
/// with everything in it, as a crash would: connections close, nothing is
/// drained.
pub struct Replica {
    pub name: String,
    pub endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn pool_service(name: &str, delay: Duration) -> Service {
    let name = name.to_string();
    Service::new("pool").method("whoami", move |(): ()| {
        let name = name.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, ServiceError>(name)
        }
    })
}

impl Replica {
    /// A replica bound to `bind`.
    pub fn start(bind: &str, name: &str, delay: Duration) -> Replica {
        Self::spawn(bind, false, name, delay)
    }

    /// A worker: the replica connects to a client bound at `client`, with
    /// heartbeats every 100 ms (the client must use the same).
    pub fn worker(client: &str, name: &str, delay: Duration) -> Replica {
        Self::spawn(client, true, name, delay)
    }

    fn spawn(at: &str, connect: bool, name: &str, delay: Duration) -> Replica {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (ep, svc) = (at.to_string(), pool_service(name, delay));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let builder = Server::builder(svc);
                let builder = if connect {
                    builder
                        .connect(ep)
                        .heartbeat(Some(Duration::from_millis(100)))
                } else {
                    builder.bind(ep)
                };
                let server = builder.start().await;
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.endpoints()[0].clone()));
                let _ = stopped.await;
                // (Dropped with the runtime: no drain.)
                std::mem::forget(server);
            });
            rt.shutdown_background();
        });
        let endpoint = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("replica starts")
            .unwrap_or_else(|e| panic!("replica {name} on {at}: {e}"));
        Replica {
            name: name.to_string(),
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Who answered `whoami` how often, and how the other calls ended.
#[derive(Default, Debug)]
pub struct Tally {
    pub by_server: BTreeMap<String, usize>,
    pub errors: BTreeMap<String, usize>,
}

impl Tally {
    pub fn add(&mut self, r: Result<String, Error>) {
        match r {
            Ok(name) => *self.by_server.entry(name).or_default() += 1,
            Err(e) => *self.errors.entry(e.kind().to_string()).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.by_server {
            *self.by_server.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    pub fn ok(&self) -> usize {
        self.by_server.values().sum()
    }

    pub fn get(&self, name: &str) -> usize {
        self.by_server.get(name).copied().unwrap_or(0)
    }
}

/// `callers` tasks calling `whoami` on `client` until `calls` are made
/// between them (or `until` passes).
pub async fn hammer(client: &Client, callers: usize, calls: usize, until: Instant) -> Tally {
    let left = Arc::new(AtomicUsize::new(calls));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (client, left) = (client.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < until
                && left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                tally.add(client.call("whoami", ()).await);
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    all
}
