//! A chat room on a bidirectional stream: each chatter's call streams its
//! lines to the server and, on the same call, receives everyone's lines as
//! they are said. Ending one's input leaves the room.
//!
//! Run `cargo run --example chat` for two chatters talking in one process,
//! or, in several shells:
//!   cargo run --example chat -- serve tcp://127.0.0.1:4244
//!   cargo run --example chat -- join tcp://127.0.0.1:4244 alice
//! (a joined chatter says each line of its standard input).

use futures::{Stream, StreamExt};
use std::time::Duration;
use tokio::sync::broadcast;
use zerorpc::{Client, Items, Server};

/// A room where everyone hears everyone.
#[zerorpc::service(name = "chat")]
trait Room {
    /// Join as `name`: say the lines streamed, hear everyone's (yours
    /// included) until your stream ends.
    fn join(&self, name: String, lines: Items<String>) -> impl Stream<Item = String>;
}

struct Chat {
    said: broadcast::Sender<String>,
}

impl Room for Chat {
    fn join(
        &self,
        name: String,
        mut lines: Items<String>,
    ) -> impl Stream<Item = String> + Send + 'static {
        let said = self.said.clone();
        let left = format!("* {name} left");
        let heard = heard_until(self.said.subscribe(), left);
        // The chatter's lines are read while what is said streams back.
        tokio::spawn(async move {
            let _ = said.send(format!("* {name} joined"));
            while let Some(line) = lines.next().await {
                let _ = said.send(format!("{name}: {line}"));
            }
            let _ = said.send(format!("* {name} left"));
        });
        heard
    }
}

/// Everything said from now on, up to the line `last` included (a slow
/// chatter misses lines rather than holding the room up).
fn heard_until(
    rx: broadcast::Receiver<String>,
    last: String,
) -> impl Stream<Item = String> + Send + 'static {
    futures::stream::unfold(Some(rx), move |rx| {
        let last = last.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(line) if line == last => Some((line, None)),
                Ok(line) => Some((line, Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Some((format!("* {n} lines missed"), Some(rx)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }
    })
}

async fn serve(addr: &str) -> Result<Server, zerorpc::Error> {
    let (said, _) = broadcast::channel(256);
    Server::builder(Chat { said }.into_service())
        .bind(addr)
        .start()
        .await
}

#[tokio::main]
async fn main() -> Result<(), zerorpc::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", addr] => {
            let server = serve(addr).await?;
            println!("chat room at {}", server.endpoints()[0]);
            let _ = tokio::signal::ctrl_c().await;
            server.close(Duration::from_secs(1)).await
        }
        ["join", addr, name] => {
            let room = RoomClient::new(Client::connect(*addr).await?);
            let (tx, lines) = futures::channel::mpsc::unbounded();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines().map_while(Result::ok) {
                    if tx.unbounded_send(line).is_err() {
                        break;
                    }
                }
            });
            let mut heard = room.join(name.to_string(), lines).await?;
            while let Some(line) = heard.next().await {
                println!("{}", line?);
            }
            Ok(())
        }
        [] => demo().await,
        _ => {
            eprintln!("usage: chat [serve ADDRESS | join ADDRESS NAME]");
            std::process::exit(2)
        }
    }
}

/// Alice and Bob: each hears the room, in the order things were said.
async fn demo() -> Result<(), zerorpc::Error> {
    let server = serve("tcp://127.0.0.1:0").await?;
    let room = RoomClient::new(Client::connect(server.endpoints()[0].clone()).await?);
    let (alice_says, alice_lines) = futures::channel::mpsc::unbounded::<String>();
    let mut alice = room.join("alice".into(), alice_lines).await?;
    hear("alice", &mut alice, 1).await?;
    let (bob_says, bob_lines) = futures::channel::mpsc::unbounded::<String>();
    let mut bob = room.join("bob".into(), bob_lines).await?;
    hear("bob", &mut bob, 1).await?;
    hear("alice", &mut alice, 1).await?;
    let _ = alice_says.unbounded_send("hello, bob".into());
    hear("bob", &mut bob, 1).await?;
    hear("alice", &mut alice, 1).await?;
    let _ = bob_says.unbounded_send("hi alice".into());
    hear("alice", &mut alice, 1).await?;
    // Bob leaves: he hears everything up to his leaving, then his call ends.
    drop(bob_says);
    hear("bob", &mut bob, usize::MAX).await?;
    hear("alice", &mut alice, 1).await?;
    drop(alice_says);
    hear("alice", &mut alice, usize::MAX).await?;
    server.close(Duration::from_secs(1)).await
}

/// Print the next `n` lines `who` hears (all of them, until the call
/// ends, for `usize::MAX`).
async fn hear(
    who: &str,
    heard: &mut zerorpc::ReplyStream<String>,
    n: usize,
) -> Result<(), zerorpc::Error> {
    for _ in 0..n {
        match heard.next().await {
            Some(line) => println!("{who} hears: {}", line?),
            None if n == usize::MAX => return Ok(()),
            None => return Err(zerorpc::Error::Protocol("the room closed".into())),
        }
    }
    Ok(())
}
