//! Fire-and-forget events: a work queue (push → pull) and a broadcast
//! (publish → subscribe), in one process.
//! Run: `cargo run --example oneway`

use std::time::Duration;
use zerorpc::oneway::{Publisher, Puller, Pusher, Subscriber};
use zerorpc::{Error, Service, ServiceError};

fn worker(name: &'static str) -> Service {
    Service::new(name).method("job", move |(n,): (u32,)| async move {
        println!("{name} took job {n}");
        Ok::<_, ServiceError>(())
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Cast: two workers share the jobs; each job runs once.
    let a = Puller::builder(worker("worker-a"))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let b = Puller::builder(worker("worker-b"))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let pusher = Pusher::builder()
        .connect(a.endpoints()[0].clone())
        .connect(b.endpoints()[0].clone())
        .start()
        .await?;
    pusher.wait_for_puller(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // let both connect
    for n in 0..6 {
        pusher.push("job", (n,))?;
    }
    pusher.close(Duration::from_secs(5)).await?;

    // Fanout: every subscriber sees every event published after it joined.
    let publisher = Publisher::bind("tcp://127.0.0.1:0").await?;
    let news = |who: &'static str| {
        Service::new(who).method("news", move |(text,): (String,)| async move {
            println!("{who} read: {text}");
            Ok::<_, ServiceError>(())
        })
    };
    let s1 = Subscriber::builder(news("reader-1"))
        .connect(&publisher.endpoints()[0])
        .start()
        .await?;
    let s2 = Subscriber::builder(news("reader-2"))
        .connect(&publisher.endpoints()[0])
        .start()
        .await?;
    publisher.wait_for_subscriber(Duration::from_secs(5)).await;
    // Slow joiners: give both subscriptions time to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.publish("news", ("zrpc speaks zerorpc",))?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    publisher.close(Duration::from_secs(1)).await.ok();
    for r in [a, b, s1, s2] {
        r.close(Duration::from_secs(1)).await.ok();
    }
    Ok(())
}
