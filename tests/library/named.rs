//! Calls to one named server among several (oslo.messaging's
//! `Target(server=...)`): the client learns its servers' names, a call by
//! name goes there and nowhere else, and a name nobody has fails at once.

use crate::common;

use common::{python_server, until_connected};
use std::time::{Duration, Instant};
use zerorpc::{CallOptions, Client, Error, Server, Service, ServiceError, Value};

/// A server called `name` whose `whoami` says so.
async fn named(name: &'static str) -> Server {
    let service = Service::new("test").method("whoami", move |(): ()| async move {
        Ok::<_, ServiceError>(name)
    });
    Server::builder(service)
        .name(name)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .expect("server starts")
}

#[tokio::test]
async fn a_call_by_name_goes_to_that_server_only() {
    let servers = [
        named("server1").await,
        named("server2").await,
        named("server3").await,
    ];
    assert_eq!(servers[1].name(), "server2");
    let mut builder = Client::builder().timeout(Some(Duration::from_secs(10)));
    for s in &servers {
        builder = builder.connect(&s.endpoints()[0]);
    }
    let client = builder.start().await.unwrap();
    until_connected(&client, 3).await;
    // Without a name, calls spread over the three.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let who: String = client.call("whoami", ()).await.unwrap();
        seen.insert(who);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // By name, every call lands on that one.
    for name in ["server2", "server3", "server1", "server2"] {
        for _ in 0..5 {
            let who: String = client
                .call_with("whoami", (), CallOptions::default().to(name))
                .await
                .unwrap();
            assert_eq!(who, name);
        }
    }
    let names: Vec<Option<String>> = client.servers().into_iter().map(|s| s.name).collect();
    assert_eq!(names.iter().flatten().count(), 3, "{names:?}");
    // A name nobody has fails at once, listing those there are.
    let started = Instant::now();
    let e = client
        .call_with::<_, Value>("whoami", (), CallOptions::default().to("server9"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match &e {
        Error::UnknownServer { name, servers } => {
            assert_eq!(name, "server9");
            assert!(servers.contains("server1 (tcp://127.0.0.1:"), "{servers}");
        }
        other => panic!("expected UnknownServer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_named_server_that_goes_away_fails_its_calls_at_once() {
    let (one, two) = (named("one").await, named("two").await);
    let client = Client::builder()
        .connect(&one.endpoints()[0])
        .connect(&two.endpoints()[0])
        .timeout(Some(Duration::from_secs(30)))
        .start()
        .await
        .unwrap();
    until_connected(&client, 2).await;
    let to_two = || CallOptions::default().to("two");
    let who: String = client.call_with("whoami", (), to_two()).await.unwrap();
    assert_eq!(who, "two");
    drop(two);
    // Gone: not sent elsewhere, not left waiting for its 30 s timeout.
    let started = Instant::now();
    let e = client
        .call_with::<_, Value>("whoami", (), to_two())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::UnknownServer { .. } | Error::LostRemote { .. }),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let who: String = client
        .call_with("whoami", (), CallOptions::default().to("one"))
        .await
        .unwrap();
    assert_eq!(who, "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zerorpc_python_server_has_no_name_and_is_never_picked_by_one() {
    let (_py, py_ep) = tokio::task::spawn_blocking(|| python_server(5.0))
        .await
        .unwrap();
    let zrpc = named("rusty").await;
    let client = Client::builder()
        .connect(&py_ep)
        .connect(&zrpc.endpoints()[0])
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    until_connected(&client, 2).await;
    for _ in 0..5 {
        let who: String = client
            .call_with("whoami", (), CallOptions::default().to("rusty"))
            .await
            .unwrap();
        assert_eq!(who, "rusty");
    }
    let e = client
        .call_with::<_, Value>("add", (1, 2), CallOptions::default().to("python"))
        .await
        .unwrap_err();
    match e {
        Error::UnknownServer { servers, .. } => {
            assert!(
                servers.contains(&format!("{py_ep} (not zrpc: no name)")),
                "{servers}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// oslo's `client.prepare(namespace=, version=, server=, timeout=)`.
#[tokio::test]
async fn a_prepared_view_overrides_namespace_version_server_and_timeout() {
    let control = |name: &'static str| {
        Service::new("control")
            .version(zerorpc::Version::new(2, 1))
            .method("whoami", move |(): ()| async move {
                Ok::<_, ServiceError>(name)
            })
            .method("tenant", |(): ()| async {
                let ctx = zerorpc::Context::current().expect("a request");
                Ok::<_, ServiceError>(ctx.header("tenant").unwrap_or(Value::Nil))
            })
            .method("slow", |(): ()| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, ServiceError>(())
            })
    };
    let mut servers = Vec::new();
    for name in ["s1", "s2"] {
        let server = Server::builder(Service::new("default"))
            .service(control(name))
            .name(name)
            .bind("tcp://127.0.0.1:0")
            .start()
            .await
            .unwrap();
        servers.push(server);
    }
    let client = Client::builder()
        .connect(&servers[0].endpoints()[0])
        .connect(&servers[1].endpoints()[0])
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .unwrap();
    until_connected(&client, 2).await;
    let prepared = client
        .prepare()
        .namespace("control")
        .version(zerorpc::Version::new(2, 0))
        .server("s2")
        .header("tenant", "acme");
    for _ in 0..4 {
        let who: String = prepared.call("whoami", ()).await.unwrap();
        assert_eq!(who, "s2");
    }
    let tenant: String = prepared.call("tenant", ()).await.unwrap();
    assert_eq!(tenant, "acme");
    // Each override is checked: a version too new, a timeout too short.
    let e = prepared
        .clone()
        .version(zerorpc::Version::new(2, 2))
        .call::<_, Value>("whoami", ())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Remote(r) if r.name == "UnsupportedVersion"),
        "{e:?}"
    );
    let started = Instant::now();
    let e = prepared
        .clone()
        .timeout(Some(Duration::from_millis(200)))
        .call::<_, Value>("slow", ())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The client itself is unchanged.
    let e = client.call::<_, Value>("whoami", ()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Remote(r) if r.name == "NameError"),
        "{e:?}"
    );
}
