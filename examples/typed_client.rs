//! Calls `typed_server` through the client `#[zerorpc::service]` generated.
//! Run `cargo run --example typed_server` first, then
//! `cargo run --example typed_client [ADDRESS]`.

mod calc_api;

use calc_api::CalcClient;
use futures::StreamExt;
use zerorpc::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:4242".to_string());
    let calc = CalcClient::new(Client::connect(&address).await?);
    println!("add(2, 3) = {}", calc.add(2, 3).await?);
    println!("{}", calc.hello("Ada".into(), None).await?);
    println!("{}", calc.hello("Ada".into(), Some("Dr".into())).await?);
    match calc.divide(1.0, 0.0).await {
        Err(e) => println!("divide(1, 0): {e}"),
        Ok(v) => println!("divide(1, 0) = {v}?"),
    }
    let items: Vec<u64> = calc
        .count(5)
        .await?
        .map(|item| item.expect("an item"))
        .collect()
        .await;
    println!("count(5) = {items:?}");
    Ok(())
}
