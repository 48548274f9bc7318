//! The three frameworks, each serving and calling the same method: echo
//! a byte string back. zrpc (zerorpc over ZeroMQ, msgpack), tarpc 0.38
//! (bincode over TCP, its own framing) and tonic 0.14 (gRPC over HTTP/2,
//! protobuf; the service is written out by hand, as `tonic-build` would
//! generate it, so no `protoc` is needed).

use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    Zrpc,
    Tarpc,
    Tonic,
}

pub const ALL: [Framework; 3] = [Framework::Zrpc, Framework::Tarpc, Framework::Tonic];

impl Framework {
    pub fn name(self) -> &'static str {
        match self {
            Framework::Zrpc => "zrpc",
            Framework::Tarpc => "tarpc",
            Framework::Tonic => "tonic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|f| f.name() == s)
    }
}

// ---- zrpc ------------------------------------------------------------------

async fn serve_zrpc() -> Result<(u16, Box<dyn std::any::Any>), String> {
    // (`Blob`: the argument is a view of the request, not a copy; as
    // tonic's `bytes` field is with prost. bincode has no such type, so
    // tarpc's echo copies, as its users' would.)
    let svc = zerorpc::Service::new("bench")
        .method("echo", |(data,): (zerorpc::Blob,)| async move {
            Ok::<_, zerorpc::ServiceError>(data)
        });
    let server = zerorpc::Server::builder(svc)
        .bind("tcp://127.0.0.1:0")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let port = port_of(&server.endpoints()[0])?;
    Ok((port, Box::new(server)))
}

fn port_of(endpoint: &str) -> Result<u16, String> {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {endpoint}"))
}

// ---- tarpc -----------------------------------------------------------------

#[tarpc::service]
pub trait Bench {
    async fn echo(data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf;
}

#[derive(Clone)]
struct TarpcEcho;

impl Bench for TarpcEcho {
    async fn echo(
        self,
        _: tarpc::context::Context,
        data: serde_bytes::ByteBuf,
    ) -> serde_bytes::ByteBuf {
        data
    }
}

/// Frames up to 64 MiB (the default 8 MiB is enough for 1 MiB; the same
/// limit on both sides).
const TARPC_MAX_FRAME: usize = 64 << 20;

async fn serve_tarpc() -> Result<(u16, Box<dyn std::any::Any>), String> {
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;
    let mut listener = tarpc::serde_transport::tcp::listen(("127.0.0.1", 0), Bincode::default)
        .await
        .map_err(|e| e.to_string())?;
    listener.config_mut().max_frame_length(TARPC_MAX_FRAME);
    let port = listener.local_addr().port();
    let task = tokio::spawn(async move {
        listener
            .filter_map(|r| futures::future::ready(r.ok()))
            .for_each(|transport| async move {
                // As tarpc's README serves: one task per request.
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(TarpcEcho.serve())
                        .for_each(|response| async move {
                            tokio::spawn(response);
                        }),
                );
            })
            .await;
    });
    Ok((port, Box::new(task)))
}

// ---- tonic -----------------------------------------------------------------

/// `message Blob { bytes data = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Blob {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

const TONIC_PATH: &str = "/bench.Bench/Echo";

/// `service Bench { rpc Echo(Blob) returns (Blob); }`, server side, as
/// `tonic-build` writes it.
#[derive(Clone)]
struct TonicBench;

impl tonic::server::NamedService for TonicBench {
    const NAME: &'static str = "bench.Bench";
}

#[derive(Clone)]
struct TonicEcho;

impl tonic::server::UnaryService<Blob> for TonicEcho {
    type Response = Blob;
    type Future = futures::future::Ready<Result<tonic::Response<Blob>, tonic::Status>>;
    fn call(&mut self, request: tonic::Request<Blob>) -> Self::Future {
        futures::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for TonicBench
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        if req.uri().path() != TONIC_PATH {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(TonicEcho, req).await)
        })
    }
}

async fn serve_tonic() -> Result<(u16, Box<dyn std::any::Any>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let incoming = tokio_stream_of(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TonicBench)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok((port, Box::new(task)))
}

/// Accepted connections as the stream tonic serves (with Nagle off, as
/// zrpc and tarpc have it).
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

// ---- serving and calling -----------------------------------------------------

/// Serve `fw` on a loopback port until the process ends; returns the port
/// and what keeps the server alive.
pub async fn serve(fw: Framework) -> Result<(u16, Box<dyn std::any::Any>), String> {
    match fw {
        Framework::Zrpc => serve_zrpc().await,
        Framework::Tarpc => serve_tarpc().await,
        Framework::Tonic => serve_tonic().await,
    }
}

/// One connection of one framework.
#[derive(Clone)]
pub enum Client {
    Zrpc(zerorpc::Client),
    Tarpc(BenchClient),
    Tonic(tonic::client::Grpc<tonic::transport::Channel>),
}

impl Client {
    pub async fn connect(fw: Framework, port: u16) -> Result<Client, String> {
        match fw {
            Framework::Zrpc => zerorpc::Client::builder()
                .connect(format!("tcp://127.0.0.1:{port}"))
                .timeout(Some(Duration::from_secs(60)))
                .start()
                .await
                .map(Client::Zrpc)
                .map_err(|e| e.to_string()),
            Framework::Tarpc => {
                use tarpc::tokio_serde::formats::Bincode;
                let mut connect =
                    tarpc::serde_transport::tcp::connect(("127.0.0.1", port), Bincode::default);
                connect.config_mut().max_frame_length(TARPC_MAX_FRAME);
                let transport = connect.await.map_err(|e| e.to_string())?;
                let client = BenchClient::new(tarpc::client::Config::default(), transport).spawn();
                Ok(Client::Tarpc(client))
            }
            Framework::Tonic => {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .map_err(|e| e.to_string())?
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .map_err(|e| e.to_string())?;
                Ok(Client::Tonic(tonic::client::Grpc::new(channel)))
            }
        }
    }

    /// Echo `payload`; returns the length of what came back.
    pub async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        match self {
            Client::Zrpc(c) => echo_zrpc(c, payload).await,
            Client::Tarpc(c) => echo_tarpc(c, payload).await,
            Client::Tonic(g) => echo_tonic(g, payload).await,
        }
    }
}

/// Calls of `n` in all, `window` in flight on each of `clients` (all of one
/// framework). Each framework's own call future is what waits: not
/// [`Client::echo`]'s, which is as large as the largest of the three
/// (tonic's, 2 KB), and which every call would pay to move.
pub async fn pipelined(
    clients: &[Client],
    payload: &Bytes,
    n: usize,
    window: usize,
) -> Result<f64, String> {
    macro_rules! each {
        ($variant:ident, $echo:ident) => {{
            let own: Vec<_> = clients
                .iter()
                .filter_map(|c| match c {
                    Client::$variant(c) => Some(c),
                    _ => None,
                })
                .collect();
            drive(&own, n, window, |c| $echo(c, payload)).await
        }};
    }
    match clients.first() {
        Some(Client::Zrpc(_)) => each!(Zrpc, echo_zrpc),
        Some(Client::Tarpc(_)) => each!(Tarpc, echo_tarpc),
        Some(Client::Tonic(_)) => each!(Tonic, echo_tonic),
        None => Err("no client".into()),
    }
}

/// Calls per second of `n` calls, `window` in flight on each client.
async fn drive<'a, C, F, Fut>(
    clients: &[&'a C],
    n: usize,
    window: usize,
    echo: F,
) -> Result<f64, String>
where
    F: Fn(&'a C) -> Fut + Copy,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let per = n / clients.len();
    let start = std::time::Instant::now();
    let runs = clients.iter().map(|&c| async move {
        let mut calls = futures::stream::iter(0..per)
            .map(|_| echo(c))
            .buffer_unordered(window);
        while let Some(r) = calls.next().await {
            r?;
        }
        Ok::<_, String>(())
    });
    for r in futures::future::join_all(runs).await {
        r?;
    }
    Ok((per * clients.len()) as f64 / start.elapsed().as_secs_f64())
}

async fn echo_zrpc(c: &zerorpc::Client, payload: &Bytes) -> Result<usize, String> {
    c.call::<_, zerorpc::Blob>("echo", (serde_bytes::Bytes::new(payload),))
        .await
        .map(|b| b.len())
        .map_err(|e| e.to_string())
}

async fn echo_tarpc(c: &BenchClient, payload: &Bytes) -> Result<usize, String> {
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
    c.echo(ctx, serde_bytes::ByteBuf::from(payload.to_vec()))
        .await
        .map(|b| b.len())
        .map_err(|e| e.to_string())
}

async fn echo_tonic(
    g: &tonic::client::Grpc<tonic::transport::Channel>,
    payload: &Bytes,
) -> Result<usize, String> {
    // (Generated tonic clients take `&mut self`: callers clone.)
    let mut g = g.clone();
    g.ready().await.map_err(|e| e.to_string())?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(TONIC_PATH);
    let req = tonic::Request::new(Blob {
        data: payload.clone(),
    });
    g.unary::<Blob, Blob, _>(req, path, tonic_prost::ProstCodec::default())
        .await
        .map(|r| r.into_inner().data.len())
        .map_err(|e| e.to_string())
}
