//! The floor under the sequential figure: the same 64-byte exchange over
//! plain tokio TCP, with no framework at all, server in a process of its
//! own as the frameworks' are. On loopback most of a sequential call is the
//! kernel waking the other side; this shows how much, on this machine and
//! in this run, so a latency target can be read against what is possible.

use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The name `serve` and the rounds know the floor by.
pub const NAME: &str = "tcp";

/// Echo every byte received, on each connection, until the process ends.
pub async fn serve() -> Result<(u16, Box<dyn std::any::Any>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok((port, Box::new(task)))
}

/// `seq` timed exchanges of `size` bytes (after 1 000 untimed ones): the
/// median and p99 in µs.
pub async fn sequential(port: u16, seq: usize, size: usize) -> Result<(f64, f64), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let out = vec![7u8; size];
    let mut back = vec![0u8; size];
    let mut samples = Vec::with_capacity(seq);
    for i in 0..seq + 1000.min(seq) {
        let t = Instant::now();
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        s.read_exact(&mut back).await.map_err(|e| e.to_string())?;
        if i >= 1000.min(seq) {
            samples.push(t.elapsed());
        }
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Ok((at(0.5), at(0.99)))
}
