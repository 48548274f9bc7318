//! A typed zrpc server. Run: `cargo run --example server`
//! then `cargo run --example client` (or `zrpc tcp://127.0.0.1:4343 area 3 4`).

use serde::{Deserialize, Serialize};
use std::time::Duration;
use zerorpc::{Server, Service, ServiceError};

#[derive(Serialize, Deserialize, Debug)]
struct Rect {
    width: f64,
    height: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("zerorpc=info")
        .init();
    let service = Service::new("shapes")
        .method("area", |(w, h): (f64, f64)| async move {
            Ok::<_, ServiceError>(w * h)
        })
        .doc("Area of a w × h rectangle.")
        .args(["w", "h"])
        .method("scale", |(r, k): (Rect, f64)| async move {
            if k <= 0.0 {
                return Err(ServiceError::new("ValueError", "factor must be positive"));
            }
            Ok(Rect {
                width: r.width * k,
                height: r.height * k,
            })
        })
        .doc("Scale a rectangle ({width, height}) by k.")
        .args(["rect", "k"])
        .method("slow", |(secs,): (f64,)| async move {
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Ok::<_, ServiceError>("done")
        })
        .doc("Wait, without blocking anyone else.")
        .args(["secs"])
        .method_blocking("fib", |(n,): (u32,)| {
            let (mut a, mut b) = (0u64, 1u64);
            for _ in 0..n {
                (a, b) = (
                    b,
                    a.checked_add(b)
                        .ok_or_else(|| ServiceError::new("OverflowError", "too big"))?,
                );
            }
            Ok::<_, ServiceError>(a)
        })
        .doc("n-th Fibonacci number, computed on the blocking pool.")
        .args(["n"]);
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:4343")
        .start()
        .await?;
    println!("serving shapes on {}", server.endpoints().join(", "));
    tokio::signal::ctrl_c().await?;
    server.close(Duration::from_secs(5)).await.ok();
    Ok(())
}
