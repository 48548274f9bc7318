/// Not serde: cannot travel as a result.
pub struct Point {
    pub x: i64,
}

#[zerorpc::service]
trait Geometry {
    async fn origin(&self) -> Point;
}

fn main() {}
