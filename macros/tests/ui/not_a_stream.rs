#[zerorpc::service]
trait Calc {
    #[zerorpc(stream)]
    fn count(&self, n: u64) -> Vec<u64>;
}

fn main() {}
