//! `#[zerorpc::service]`: one trait, its handler table with introspection,
//! and its typed client, end to end.

use crate::common;

use common::serve;
use futures::StreamExt;
use std::time::Duration;
use zerorpc::{CallOptions, Client, Context, ServiceError, Value};

/// A calculator.
#[zerorpc::service(name = "calc")]
pub trait Calc {
    /// Add two integers.
    ///
    /// Returns their sum.
    async fn add(&self, a: i64, b: i64) -> i64;

    /// Divide a by b.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError>;

    /// Greet someone, politely if asked.
    #[zerorpc(name = "sayHello")]
    async fn say_hello(&self, name: String, title: Option<String>) -> String;

    /// The integers 0 to n-1.
    fn count(&self, n: u64) -> impl Stream<Item = u64>;

    /// Fails after n items.
    fn failing(&self, n: u64) -> impl Stream<Item = Result<u64, ServiceError>>;

    /// Fibonacci, on the blocking pool.
    #[zerorpc(blocking)]
    fn fib(&self, n: u32) -> u64;

    /// Who calls, and the time it has left.
    async fn whoami(&self, ctx: Context) -> Option<u64>;

    /// Nothing back.
    async fn ping(&self);
}

struct Impl;

impl Calc for Impl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn divide(&self, a: f64, b: f64) -> Result<f64, ServiceError> {
        if b == 0.0 {
            return Err(ServiceError::new("ZeroDivisionError", "division by zero"));
        }
        Ok(a / b)
    }

    async fn say_hello(&self, name: String, title: Option<String>) -> String {
        match title {
            Some(t) => format!("Hello, {t} {name}!"),
            None => format!("Hello, {name}!"),
        }
    }

    fn count(&self, n: u64) -> impl futures::Stream<Item = u64> + Send + 'static {
        futures::stream::iter(0..n)
    }

    fn failing(
        &self,
        n: u64,
    ) -> impl futures::Stream<Item = Result<u64, ServiceError>> + Send + 'static {
        futures::stream::iter(0..=n).map(move |i| {
            if i < n {
                Ok(i)
            } else {
                Err(ServiceError::new("ValueError", "enough"))
            }
        })
    }

    fn fib(&self, n: u32) -> u64 {
        (0..n).fold((0u64, 1u64), |(a, b), _| (b, a + b)).0
    }

    async fn whoami(&self, ctx: Context) -> Option<u64> {
        ctx.remaining().map(|d| d.as_secs())
    }

    async fn ping(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_calls_the_typed_service() {
    let (_server, ep) = serve(Impl.into_service()).await;
    let calc = CalcClient::new(Client::connect(&ep).await.unwrap());
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(calc.divide(1.0, 4.0).await.unwrap(), 0.25);
    let e = calc.divide(1.0, 0.0).await.unwrap_err();
    assert_eq!(e.remote().unwrap().name, "ZeroDivisionError");
    assert_eq!(
        calc.say_hello("Ada".into(), None).await.unwrap(),
        "Hello, Ada!"
    );
    assert_eq!(
        calc.say_hello("Ada".into(), Some("Dr".into()))
            .await
            .unwrap(),
        "Hello, Dr Ada!"
    );
    let items: Vec<u64> = calc
        .count(5)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, vec![0, 1, 2, 3, 4]);
    let items: Vec<_> = calc.failing(2).await.unwrap().collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[2].as_ref().unwrap_err().remote().unwrap().name,
        "ValueError"
    );
    assert_eq!(calc.fib(50).await.unwrap(), 12_586_269_025);
    // The context parameter is not an argument on the wire.
    let left = calc
        .with_options(CallOptions::timeout(Duration::from_secs(9)))
        .whoami()
        .await
        .unwrap();
    assert!(matches!(left, Some(8 | 9)), "{left:?}");
    calc.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_python_like_argument_errors() {
    let (_server, ep) = serve(Impl.into_service()).await;
    let client = Client::connect(&ep).await.unwrap();
    let name: String = client.call("_zerorpc_name", ()).await.unwrap();
    assert_eq!(name, "calc");
    let list: Vec<String> = client.call("_zerorpc_list", ()).await.unwrap();
    assert_eq!(
        list,
        ["add", "count", "divide", "failing", "fib", "ping", "sayHello", "whoami"]
    );
    let help: String = client.call("_zerorpc_help", ("add",)).await.unwrap();
    assert_eq!(help, "Add two integers.\n\nReturns their sum.");
    let args: Value = client.call("_zerorpc_args", ("sayHello",)).await.unwrap();
    assert_eq!(
        args,
        Value::Array(vec![
            Value::Array(vec!["name".into(), "title".into()]),
            Value::Nil,
            Value::Nil,
            Value::Array(vec![Value::Nil]),
        ])
    );
    let args: Value = client.call("_zerorpc_args", ("whoami",)).await.unwrap();
    assert_eq!(args.as_array().unwrap()[0], Value::Array(vec![]));
    for (method, args, expect) in [
        (
            "add",
            vec![1.into()],
            "add() missing 1 required positional argument: 'b'",
        ),
        (
            "add",
            vec![],
            "add() missing 2 required positional arguments: 'a' and 'b'",
        ),
        (
            "add",
            vec![1.into(), 2.into(), 3.into()],
            "add() takes 2 positional arguments but 3 were given",
        ),
        (
            "sayHello",
            vec!["a".into(), "b".into(), "c".into()],
            "sayHello() takes from 1 to 2 positional arguments but 3 were given",
        ),
        (
            "add",
            vec![1.into(), "x".into()],
            "add() argument 'b' must be i64",
        ),
    ] {
        let e = client.call_dynamic(method, args).await.unwrap_err();
        let remote = e.remote().unwrap();
        assert_eq!(remote.name, "TypeError");
        assert!(remote.message.starts_with(expect), "{}", remote.message);
    }
    // A dynamic method beside the typed ones.
    let svc = Impl
        .into_service()
        .dynamic("echo", |v: Vec<Value>| async move {
            Ok::<_, ServiceError>(Value::Array(v))
        });
    let (_s2, ep2) = serve(svc).await;
    let c2 = Client::connect(&ep2).await.unwrap();
    assert_eq!(
        c2.call_dynamic("echo", vec![1.into()]).await.unwrap(),
        Value::Array(vec![1.into()])
    );
    assert_eq!(c2.call::<_, i64>("add", (1, 1)).await.unwrap(), 2);
}

/// A zerorpc-python client lists and inspects the typed service (docs and
/// argument names), gets `TypeError`s naming the parameters, and leaves out
/// the trailing optional argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_sees_the_typed_service_as_a_python_one() {
    let (_server, ep) = serve(Impl.into_service()).await;
    tokio::task::spawn_blocking(move || common::python_client(&ep, "typed"))
        .await
        .unwrap();
}

/// The two examples, run as their docs say: the server on an address given
/// as its argument, the client calling it.
#[test]
fn the_typed_examples_run_as_documented() {
    let ep = format!("tcp://127.0.0.1:{}", common::free_port());
    let mut cmd = std::process::Command::new(common::example("typed_server"));
    cmd.arg(&ep);
    let mut server = common::Lines::spawn(&mut cmd);
    server.expect("serving calc", Duration::from_secs(20));
    let out = std::process::Command::new(common::example("typed_client"))
        .arg(&ep)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "add(2, 3) = 5",
        "Hello, Ada!",
        "Hello, Dr Ada!",
        "divide(1, 0): remote error ZeroDivisionError: division by zero",
        "count(5) = [0, 1, 2, 3, 4]",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
