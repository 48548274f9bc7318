#[zerorpc::service]
trait Calc {
    async fn add(&self, a: i64, b: i64) -> i64;
    #[zerorpc(name = "add")]
    async fn plus(&self, a: i64, b: i64) -> i64;
}

fn main() {}
