//! A typed zrpc client for `examples/server.rs`.
//! Run: `cargo run --example client`

use serde::{Deserialize, Serialize};
use std::time::Duration;
use zerorpc::{CallOptions, Client, Error};

#[derive(Serialize, Deserialize, Debug)]
struct Rect {
    width: f64,
    height: f64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::builder()
        .connect("tcp://127.0.0.1:4343")
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await?;
    let area: f64 = client.call("area", (3.0, 4.0)).await?;
    println!("area(3, 4) = {area}");
    let big: Rect = client
        .call(
            "scale",
            (
                Rect {
                    width: 1.0,
                    height: 2.0,
                },
                3.0,
            ),
        )
        .await?;
    println!("scale = {big:?}");
    let fib: u64 = client.call("fib", (50,)).await?;
    println!("fib(50) = {fib}");
    match client
        .call::<_, Rect>(
            "scale",
            (
                Rect {
                    width: 1.0,
                    height: 1.0,
                },
                -1.0,
            ),
        )
        .await
    {
        Err(Error::Remote(e)) => println!("remote error as expected: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    match client
        .call_with::<_, String>(
            "slow",
            (5.0,),
            CallOptions::timeout(Duration::from_millis(500)),
        )
        .await
    {
        Err(e @ Error::Timeout { .. }) => println!("{e}"),
        other => println!("unexpected: {other:?}"),
    }
    // Many calls in flight on one client.
    let calls = (0..10).map(|i| client.call::<_, f64>("area", (i as f64, 2.0)));
    let areas: Result<Vec<f64>, _> = futures::future::join_all(calls).await.into_iter().collect();
    println!("areas = {:?}", areas?);
    Ok(())
}
