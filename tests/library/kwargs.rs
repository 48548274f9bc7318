//! Keyword arguments on a wire that only has positions: the names placed
//! by the server's own introspection (a zrpc server's declared arguments,
//! zerorpc-python's argspecs), defaults filled in, and mistakes caught
//! before anything is sent.

use crate::common;

use common::python_kwargs_server;
use std::time::Duration;
use zerorpc::{Client, Error, Server, Service, ServiceError, Value};

fn kw(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

async fn client(ep: &str) -> Client {
    Client::builder()
        .connect(ep)
        .timeout(Some(Duration::from_secs(10)))
        .start()
        .await
        .expect("client starts")
}

#[tokio::test]
async fn a_zrpc_servers_declared_arguments_place_keywords() {
    let service = Service::new("calc")
        .method("add", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a + b)
        })
        .args(["a", "b=10"])
        .method("sub", |(a, b): (i64, i64)| async move {
            Ok::<_, ServiceError>(a - b)
        })
        .args(["a", "b"])
        .method(
            "opaque",
            |(a,): (i64,)| async move { Ok::<_, ServiceError>(a) },
        );
    let server = Server::builder(service)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let c = client(&server.endpoints()[0]).await;
    let sum: i64 = c
        .call_kwargs("add", vec![], kw(&[("a", 5.into())]))
        .await
        .unwrap();
    assert_eq!(sum, 15, "b takes its declared default");
    let diff: i64 = c
        .call_kwargs("sub", vec![], kw(&[("b", 2.into()), ("a", 10.into())]))
        .await
        .unwrap();
    assert_eq!(diff, 8, "names, not order, decide");
    let diff: i64 = c
        .call_kwargs("sub", vec![Value::from(1)], kw(&[("b", 5.into())]))
        .await
        .unwrap();
    assert_eq!(diff, -4);
    // Mistakes are the caller's, caught here, naming the parameters.
    let e = c
        .call_kwargs::<i64>("sub", vec![], kw(&[("c", 1.into())]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Arguments(m) if m.contains("sub(a, b) has no parameter \"c\"")),
        "{e}"
    );
    let e = c
        .call_kwargs::<i64>("sub", vec![], kw(&[("b", 1.into())]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Arguments(m) if m.contains("missing \"a\"")),
        "{e}"
    );
    // A method registered without argument names cannot take keywords.
    let e = c
        .call_kwargs::<i64>("opaque", vec![], kw(&[("a", 1.into())]))
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Arguments(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zerorpc_python_server_takes_keywords_by_its_argspecs() {
    let (_py, ep) = tokio::task::spawn_blocking(|| python_kwargs_server("shim"))
        .await
        .unwrap();
    let c = client(&ep).await;
    let sum: i64 = c
        .call_kwargs("add", vec![], kw(&[("a", 5.into())]))
        .await
        .unwrap();
    assert_eq!(sum, 15);
    let sum: i64 = c
        .call_kwargs("add", vec![], kw(&[("b", 2.into()), ("a", 1.into())]))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    let hi: String = c
        .call_kwargs(
            "greet",
            vec!["Ada".into()],
            kw(&[("punctuation", "?".into())]),
        )
        .await
        .unwrap();
    assert_eq!(hi, "Hello, Ada?");
    let e = c
        .call_kwargs::<i64>("add", vec![], kw(&[("self", 1.into())]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Arguments(m) if m.contains("add(a, b=10) has no parameter \"self\"")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_report_its_parameters_gets_a_clear_error() {
    // zerorpc-python 0.6.3 as released, on Python 3.11: its introspection
    // of arguments fails (inspect.getargspec is gone).
    let (_py, ep) = tokio::task::spawn_blocking(|| python_kwargs_server("stock"))
        .await
        .unwrap();
    let c = client(&ep).await;
    let e = c
        .call_kwargs::<i64>("add", vec![], kw(&[("a", 5.into())]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Arguments(m) if m.contains("the server does not report them")),
        "{e}"
    );
    // Positional calls are unaffected.
    let sum: i64 = c.call("add", (5,)).await.unwrap();
    assert_eq!(sum, 15);
}
