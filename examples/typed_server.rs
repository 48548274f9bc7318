//! A service defined with `#[zerorpc::service]`. Run
//! `cargo run --example typed_server [ADDRESS]` (default
//! `tcp://127.0.0.1:4242`), then `cargo run --example typed_client
//! [ADDRESS]`, or from a shell `zrpc tcp://127.0.0.1:4242 add 2 3`, or
//! from Python `zerorpc.Client("tcp://127.0.0.1:4242").hello("Ada")`.

mod calc_api;

use calc_api::Calc;
use std::time::Duration;
use zerorpc::{Server, ServiceError};

/// The implementation: ordinary Rust, checked against the trait.
struct Calculator;

impl Calc for Calculator {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn hello(&self, name: String, title: Option<String>) -> String {
        match title {
            Some(t) => format!("Hello, {t} {name}!"),
            None => format!("Hello, {name}!"),
        }
    }

    async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError> {
        if b == 0.0 {
            return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
        }
        Ok(a / b)
    }

    fn count(&self, n: u64) -> impl futures::Stream<Item = u64> + Send + 'static {
        futures::stream::iter(0..n)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:4242".to_string());
    let server = Server::builder(Calculator.into_service())
        .bind(&address)
        .start()
        .await?;
    println!("serving calc on {}", server.endpoints().join(", "));
    tokio::signal::ctrl_c().await?;
    server.close(Duration::from_secs(5)).await?;
    Ok(())
}
