// A version is MAJOR.MINOR.
#[zerorpc::service(namespace = "control", version = "two")]
pub trait Control {
    async fn stop(&self);
}

fn main() {}
