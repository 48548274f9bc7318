//! A file streamed to a server in pieces (a client-stream call): the
//! server stores it and answers its size and checksum; memory stays
//! bounded whatever the file's size, because the client sends a piece only
//! when the server has room for it.
//!
//! Run, in two shells (the server stores into DIR, or nowhere without it):
//!   cargo run --example upload -- serve tcp://127.0.0.1:4243 /tmp/uploads
//!   cargo run --example upload -- send tcp://127.0.0.1:4243 FILE
//! or `send ADDRESS --synthetic BYTES` for generated data, `--echo` to send
//! the same data as 1 MiB echo calls instead (the baseline to compare
//! with), `--json` for one line of figures (bytes, seconds, MB/s, the
//! process's peak memory).

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zerorpc::{Blob, Client, Items, Server, ServiceError};

/// How large each piece is.
const PIECE: usize = 1 << 20;

/// What the server answers for a stored file.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Stored {
    bytes: u64,
    /// FNV-1a (64 bits) over the file's little-endian 8-byte words, the
    /// last one zero-padded; hex.
    checksum: String,
}

/// Files sent in pieces.
#[zerorpc::service(name = "files")]
trait Files {
    /// Store the pieces streamed as file `name`; its size and checksum.
    async fn store(&self, name: String, pieces: Items<Blob>) -> Result<Stored, ServiceError>;

    /// Return `data` unchanged.
    async fn echo(&self, data: Blob) -> Blob;
}

struct Store {
    dir: Option<PathBuf>,
}

impl Files for Store {
    async fn store(&self, name: String, mut pieces: Items<Blob>) -> Result<Stored, ServiceError> {
        let mut file = match &self.dir {
            Some(dir) => {
                let file_name = std::path::Path::new(&name)
                    .file_name()
                    .ok_or_else(|| ServiceError::new("ValueError", "a file name is required"))?;
                Some(
                    tokio::fs::File::create(dir.join(file_name))
                        .await
                        .map_err(io)?,
                )
            }
            None => None,
        };
        let mut sum = Checksum::default();
        while let Some(piece) = pieces.next().await {
            sum.add(&piece);
            if let Some(f) = file.as_mut() {
                f.write_all(&piece).await.map_err(io)?;
            }
        }
        if let Some(f) = file.as_mut() {
            f.flush().await.map_err(io)?;
        }
        Ok(sum.stored())
    }

    async fn echo(&self, data: Blob) -> Blob {
        data
    }
}

fn io(e: std::io::Error) -> ServiceError {
    ServiceError::new("IOError", e.to_string())
}

/// The checksum of [`Stored`], fed piece by piece.
#[derive(Default)]
struct Checksum {
    hash: Option<u64>,
    bytes: u64,
    /// Bytes of an unfinished word.
    partial: Vec<u8>,
}

impl Checksum {
    fn add(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        if !self.partial.is_empty() {
            let take = (8 - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == 8 {
                let word = std::mem::take(&mut self.partial);
                self.words(&word);
            }
        }
        let whole = data.len() / 8 * 8;
        self.words(&data[..whole]);
        self.partial.extend_from_slice(&data[whole..]);
    }

    fn words(&mut self, data: &[u8]) {
        let mut h = self.hash.unwrap_or(0xcbf2_9ce4_8422_2325);
        for w in data.chunks_exact(8) {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.hash = Some(h);
    }

    fn stored(mut self) -> Stored {
        if !self.partial.is_empty() {
            self.partial.resize(8, 0);
            let word = std::mem::take(&mut self.partial);
            self.words(&word);
        }
        Stored {
            bytes: self.bytes,
            checksum: format!("{:016x}", self.hash.unwrap_or(0xcbf2_9ce4_8422_2325)),
        }
    }
}

/// A file's pieces, read as they are sent.
fn file_pieces(path: PathBuf) -> impl Stream<Item = Blob> + Send + 'static {
    futures::stream::unfold(None, move |file: Option<tokio::fs::File>| {
        let path = path.clone();
        async move {
            let mut file = match file {
                Some(f) => f,
                None => match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("upload: cannot open {}: {e}", path.display());
                        return None;
                    }
                },
            };
            let mut piece = vec![0u8; PIECE];
            let mut filled = 0;
            while filled < PIECE {
                match file.read(&mut piece[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        eprintln!("upload: reading {}: {e}", path.display());
                        return None;
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            piece.truncate(filled);
            Some((Blob::new(piece), Some(file)))
        }
    })
}

/// `bytes` of generated data, in pieces (the same pieces each time).
fn synthetic(bytes: u64) -> impl Stream<Item = Blob> + Send + 'static {
    let piece = bytes::Bytes::from((0..PIECE).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>());
    let pieces = bytes.div_ceil(PIECE as u64);
    futures::stream::iter(0..pieces).map(move |i| {
        let len = (bytes - i * PIECE as u64).min(PIECE as u64) as usize;
        Blob::new(piece.slice(..len))
    })
}

/// This process's peak resident memory, in KiB (Linux; 0 elsewhere).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn usage() -> ! {
    eprintln!("usage: upload serve ADDRESS [DIR] | upload send ADDRESS (FILE | --synthetic BYTES) [--echo] [--json]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", addr, rest @ ..] => serve(addr, rest.first().map(PathBuf::from)).await,
        ["send", addr, rest @ ..] => send(addr, rest).await,
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("upload: {e}");
        std::process::exit(1);
    }
}

async fn serve(addr: &str, dir: Option<PathBuf>) -> Result<(), zerorpc::Error> {
    let server = Server::builder(Store { dir }.into_service())
        .bind(addr)
        .start()
        .await?;
    println!("serving files at {}", server.endpoints()[0]);
    let _ = tokio::signal::ctrl_c().await;
    server.close(Duration::from_secs(5)).await
}

async fn send(addr: &str, rest: &[&str]) -> Result<(), zerorpc::Error> {
    let json = rest.contains(&"--json");
    let echo = rest.contains(&"--echo");
    let (name, bytes, pieces): (String, u64, futures::stream::BoxStream<'static, Blob>) = match rest
        .iter()
        .copied()
        .find(|a| !a.starts_with("--") || *a == "--synthetic")
    {
        Some("--synthetic") => {
            let bytes = rest
                .iter()
                .skip_while(|a| **a != "--synthetic")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| usage());
            ("synthetic".into(), bytes, synthetic(bytes).boxed())
        }
        Some(path) => {
            let len = std::fs::metadata(path)
                .map_err(|e| zerorpc::Error::Config(format!("{path}: {e}")))?
                .len();
            (path.to_string(), len, file_pieces(path.into()).boxed())
        }
        None => usage(),
    };
    let client = Client::builder()
        .connect(addr)
        .timeout(None)
        .start()
        .await?;
    let files = FilesClient::new(client.clone());
    let started = Instant::now();
    let answer = match echo {
        // The baseline: the same bytes as echo calls, 4 in flight.
        true => {
            let mut sum = Checksum::default();
            let mut echoed = pieces.map(|p| files.echo(p)).buffered(4);
            while let Some(piece) = echoed.next().await {
                sum.add(&piece?);
            }
            sum.stored()
        }
        false => files.store(name, pieces).await?,
    };
    let secs = started.elapsed().as_secs_f64();
    client.close(Duration::from_secs(1)).await?;
    if answer.bytes != bytes {
        return Err(zerorpc::Error::Protocol(format!(
            "sent {bytes} bytes, the server counted {}",
            answer.bytes
        )));
    }
    let mbps = bytes as f64 / secs / 1e6;
    if json {
        println!(
            "{{\"bytes\": {bytes}, \"checksum\": \"{}\", \"seconds\": {secs:.3}, \"mb_per_s\": {mbps:.1}, \"peak_rss_kib\": {}}}",
            answer.checksum,
            peak_rss_kib()
        );
    } else {
        println!(
            "{} bytes, checksum {}, in {secs:.2} s ({mbps:.0} MB/s)",
            answer.bytes, answer.checksum
        );
    }
    Ok(())
}
