//! The `calc` service's contract, shared by `typed_server` and
//! `typed_client` (in a real project: a small crate both depend on).

// The client example uses only the client the trait generates.
#![allow(dead_code)]

use zerorpc::ServiceError;

/// A calculator.
#[zerorpc::service(name = "calc")]
pub trait Calc {
    /// Add two integers.
    async fn add(&self, a: i64, b: i64) -> i64;

    /// Greet someone by name (with a title, if given).
    async fn hello(&self, name: String, title: Option<String>) -> String;

    /// Divide a by b; dividing by zero raises ZeroDivisionError.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError>;

    /// Stream the integers 0 to n-1, one item each.
    fn count(&self, n: u64) -> impl Stream<Item = u64>;
}
