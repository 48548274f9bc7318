#[zerorpc::service]
trait Calc {
    /// A synchronous method without `blocking`.
    fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
