#[zerorpc::service]
trait Upload {
    /// A caller's stream is taken as `Items<T>`, not as `impl Stream`.
    async fn sum(&self, items: impl futures::Stream<Item = i64>) -> i64;
}

#[zerorpc::service]
trait Blocking {
    /// A blocking method cannot read a stream.
    #[zerorpc(blocking)]
    fn sum(&self, items: zerorpc::Items<i64>) -> Result<i64, zerorpc::ServiceError>;
}

fn main() {}
