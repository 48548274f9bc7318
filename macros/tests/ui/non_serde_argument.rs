/// Not serde: cannot travel as an argument.
pub struct Point {
    pub x: i64,
}

#[zerorpc::service]
trait Geometry {
    async fn norm(&self, p: Point) -> i64;
}

fn main() {}
