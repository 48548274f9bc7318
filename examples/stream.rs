//! A streaming method and a reader, in one process.
//! Run: `cargo run --example stream`

use futures::{stream, StreamExt};
use std::time::Duration;
use zerorpc::{Client, Error, Server, Service, ServiceError};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let service = Service::new("lines")
        // Produced lazily: the server pulls the next item only when the
        // reader has granted credit for it.
        .stream("numbered", |(words,): (Vec<String>,)| {
            stream::iter(words.into_iter().enumerate())
                .map(|(i, w)| Ok::<_, ServiceError>(format!("{i}: {w}")))
        })
        .doc("Number each word, one item per word.")
        .stream("countdown", |(from,): (i64,)| {
            stream::iter((0..=from).rev()).map(|i| {
                if i == 0 {
                    Err(ServiceError::new(
                        "Liftoff",
                        "the stream ends with an error",
                    ))
                } else {
                    Ok(i)
                }
            })
        });
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let client = Client::connect(&server.endpoints()[0]).await?;

    let words = vec!["zero".to_string(), "mq".into(), "rpc".into()];
    let mut items = client.stream::<_, String>("numbered", (words,)).await?;
    while let Some(line) = items.next().await {
        println!("{}", line?);
    }

    let mut items = client.stream::<_, i64>("countdown", (3,)).await?;
    while let Some(item) = items.next().await {
        match item {
            Ok(i) => println!("{i}…"),
            Err(e) => println!("stream ended with: {e}"),
        }
    }
    server.close(Duration::from_secs(1)).await.ok();
    Ok(())
}
