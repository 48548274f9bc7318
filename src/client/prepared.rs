//! [`Prepared`]: a view of a client with its target overridden — namespace,
//! version, server, timeout, header keys — as oslo.messaging's
//! `client.prepare(...)`; cheap enough to make per call.

use super::{CallOptions, Client, ReplyStream};
use crate::error::Error;
use crate::service::Version;
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;

/// A [`Client`] with a target of its own ([`Client::prepare`]): its calls
/// go to `namespace.method`, require `version`, go to the server named
/// `server`, and carry the timeout and header keys set here. Made per call
/// if need be: it holds the client (one reference count) and the options.
///
/// ```no_run
/// # async fn demo(client: zerorpc::Client) -> Result<(), zerorpc::Error> {
/// use zerorpc::Version;
/// // oslo: client.prepare(namespace="control", version="2.0", server="server1").call(ctxt, "stop")
/// let stopped: bool = client
///     .prepare()
///     .namespace("control")
///     .version(Version::new(2, 0))
///     .server("server1")
///     .call("stop", ())
///     .await?;
/// # let _ = stopped;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a prepared client does nothing until called"]
pub struct Prepared {
    client: Client,
    namespace: Option<String>,
    options: CallOptions,
}

impl Prepared {
    pub(super) fn new(client: Client) -> Prepared {
        Prepared {
            client,
            namespace: None,
            options: CallOptions::default(),
        }
    }

    /// Call methods under `namespace` (`namespace.method`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Require this API version ([`CallOptions::api_version`]).
    pub fn version(mut self, version: Version) -> Self {
        self.options = self.options.api_version(version);
        self
    }

    /// Send calls to the server with this name ([`CallOptions::to`]).
    pub fn server(mut self, name: impl Into<String>) -> Self {
        self.options = self.options.to(name);
        self
    }

    /// This timeout instead of the client's (`None`: wait forever).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Add a header key to every call (the request context; see
    /// [`CallOptions::header`]).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.options = self.options.header(key, value);
        self
    }

    /// The options its calls carry.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    fn method<'m>(&self, method: &'m str) -> Cow<'m, str> {
        match &self.namespace {
            Some(ns) => Cow::Owned(format!("{ns}.{method}")),
            None => Cow::Borrowed(method),
        }
    }

    /// [`Client::call`] with this target.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<R, Error> {
        let method = self.method(method);
        self.client
            .call_with(&method, args, self.options.clone())
            .await
    }

    /// [`Client::call_dynamic`] with this target.
    pub async fn call_dynamic(&self, method: &str, args: Vec<Value>) -> Result<Value, Error> {
        let method = self.method(method);
        self.client
            .call_dynamic_with(&method, args, self.options.clone())
            .await
    }

    /// [`Client::call_kwargs`] with this target.
    pub async fn call_kwargs<R: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
    ) -> Result<R, Error> {
        let method = self.method(method);
        let args = self.client.positional(&method, args, kwargs).await?;
        self.client
            .call_with(&method, args, self.options.clone())
            .await
    }

    /// [`Client::stream`] with this target.
    pub async fn stream<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: A,
    ) -> Result<ReplyStream<R>, Error> {
        let method = self.method(method);
        self.client
            .stream_with(&method, args, self.options.clone())
            .await
    }

    /// [`Client::client_stream`] with this target.
    pub async fn client_stream<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<R, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        let method = self.method(method);
        self.client
            .client_stream_with(&method, args, items, self.options.clone())
            .await
    }

    /// [`Client::bidi_stream`] with this target.
    pub async fn bidi_stream<A, T, R>(
        &self,
        method: &str,
        args: A,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> Result<ReplyStream<R>, Error>
    where
        A: Serialize,
        T: Serialize + Send + 'static,
        R: DeserializeOwned,
    {
        let method = self.method(method);
        self.client
            .bidi_stream_with(&method, args, items, self.options.clone())
            .await
    }
}
