//! OpenStack's RPC model on zrpc, as oslo.messaging's own example has it:
//! two servers, `server1` and `server2`, each serving a `test(arg)`
//! endpoint and a `control` endpoint, both at version 2.0, `control.stop`
//! stopping that server; a client that calls `test` with a keyword argument at
//! version 2.0 on `server1`, casts to one worker, fans out to all, sends a
//! notification, then stops `server1` remotely. In one process, on
//! loopback ports the OS picks.
//! Run: `cargo run --example oslo_style`

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use zerorpc::oneway::{NotificationListener, Notifier, Publisher, Puller, Pusher, Subscriber};
use zerorpc::{Client, Error, Server, Service, ServiceError, Value, Version};

/// One oslo "server": its RPC endpoints, a worker for casts, a listener
/// for fanouts.
struct Host {
    rpc: Server,
    cast: zerorpc::oneway::Receiver,
    fanout: zerorpc::oneway::Receiver,
    stop: Arc<Notify>,
}

async fn host(name: &'static str, fanout_from: &str) -> Result<Host, Error> {
    let test = Service::new("test")
        .version(Version::new(2, 0))
        .method("test", move |(arg,): (String,)| async move {
            Ok::<_, ServiceError>(format!("{name} tested {arg}"))
        })
        .doc("Test something.")
        .args(["arg"]);
    let stop = Arc::new(Notify::new());
    let stopping = stop.clone();
    let control = Service::new("control")
        .version(Version::new(2, 0))
        .method("stop", move |(): ()| {
            let stopping = stopping.clone();
            async move {
                stopping.notify_one();
                Ok::<_, ServiceError>(true)
            }
        })
        .doc("Stop this server.");
    let rpc = Server::builder(test)
        .service(control)
        .name(name)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let worker = |kind: &'static str| {
        Service::new("worker").method("test", move |(arg,): (String,)| async move {
            println!("{kind}: {name} got test({arg:?})");
            Ok::<_, ServiceError>(())
        })
    };
    let cast = Puller::builder(worker("cast"))
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let fanout = Subscriber::builder(worker("fanout"))
        .connect(fanout_from)
        .start()
        .await?;
    Ok(Host {
        rpc,
        cast,
        fanout,
        stop,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let publisher = Publisher::bind("tcp://127.0.0.1:0").await?;
    let fanout_at = publisher.endpoints()[0].clone();
    let hosts = [
        host("server1", &fanout_at).await?,
        host("server2", &fanout_at).await?,
    ];
    let mut builder = Client::builder().timeout(Some(Duration::from_secs(10)));
    for h in &hosts {
        builder = builder.connect(&h.rpc.endpoints()[0]);
    }
    let client = builder.start().await?;

    // client.prepare(version="2.0", server="server1").call(ctxt, "test", arg="hello")
    let v2_on_server1 = client
        .prepare()
        .version(Version::new(2, 0))
        .server("server1");
    let kwargs = vec![("arg".to_string(), Value::from("hello"))];
    let answer: String = v2_on_server1.call_kwargs("test", vec![], kwargs).await?;
    println!("call test(arg=hello) at 2.0 on server1: {answer}");
    // A version the servers do not serve is refused, naming both.
    let v3 = client.prepare().version(Version::new(3, 0));
    match v3.call::<_, String>("test", ("hello",)).await {
        Err(Error::Remote(e)) => println!("call test at 3.0: {}: {}", e.name, e.message),
        other => println!("call test at 3.0: unexpected {other:?}"),
    }

    // client.cast(ctxt, "test", arg="work"): one worker takes it.
    let pusher = Pusher::builder()
        .connect(&hosts[0].cast.endpoints()[0])
        .connect(&hosts[1].cast.endpoints()[0])
        .start()
        .await?;
    pusher.push("test", ("work",))?;
    pusher.close(Duration::from_secs(5)).await?;
    println!("cast test(arg=work): sent to one worker");

    // client.prepare(fanout=True).cast(ctxt, "test", arg="everyone")
    publisher.wait_for_subscriber(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions settle
    publisher.publish("test", ("everyone",))?;
    println!("fanout test(arg=everyone): sent to every server");

    // Notifier(transport, publisher_id="server1").error(ctxt, "compute.fail", payload)
    let notifier = Notifier::builder("server1")
        .bind("tcp://127.0.0.1:0")
        .start()
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let endpoint = Service::new("alerts").method(
        "error",
        move |(_ctxt, publisher, event, payload, _meta): (Value, String, String, Value, Value)| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("{publisher} {event} {payload}"));
                Ok::<_, ServiceError>(())
            }
        },
    );
    let _listener = NotificationListener::builder(endpoint)
        .event_type("compute.*")
        .connect(&notifier.endpoints()[0])
        .start()
        .await?;
    notifier.wait_for_listener(Duration::from_secs(5)).await;
    let ctxt = Value::Map(vec![("user".into(), "ada".into())]);
    let heard = loop {
        // (Until the listener's subscription has reached the notifier.)
        notifier.error(&ctxt, "compute.fail", "disk full")?;
        if let Ok(Some(heard)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            break heard;
        }
    };
    println!("notification error: {heard}");

    // client.prepare(namespace="control", version="2.0", server="server1").call(ctxt, "stop")
    let control = client
        .prepare()
        .namespace("control")
        .version(Version::new(2, 0))
        .server("server1");
    let stopped: bool = control.call("stop", ()).await?;
    hosts[0].stop.notified().await;
    hosts[0].rpc.close(Duration::from_secs(5)).await?;
    println!("control.stop on server1: {stopped}; server1 stopped");
    let answer: String = client.call("test", ("still here",)).await?;
    println!("call test after the stop: {answer}");
    let gone: Result<bool, Error> = control.call("stop", ()).await;
    println!(
        "control.stop on server1 again: {}",
        gone.err().map_or("?".into(), |e| e.kind().to_string())
    );

    tokio::time::sleep(Duration::from_millis(200)).await; // let the fanout print
    for h in &hosts[1..] {
        h.rpc.close(Duration::from_secs(1)).await?;
    }
    for h in &hosts {
        h.cast.close(Duration::from_secs(1)).await?;
        h.fanout.close(Duration::from_secs(1)).await?;
    }
    Ok(())
}
