//! How the core hands a request to its handler: straight into the service
//! table, or through the tower layers the server was built with.

use crate::context::Context;
use crate::error::ServiceError;
use crate::middleware::{self, Request, Stack};
use crate::service::{Args, Reply, Service};
use futures::future::BoxFuture;
use std::sync::Arc;

#[derive(Clone)]
pub(super) enum Dispatch {
    /// No middleware: nothing wrapped, nothing spent.
    Direct(Arc<Service>),
    /// Through the layers (the service kept for its method names).
    Layered(Arc<Service>, Stack),
}

impl Dispatch {
    pub(super) fn service(&self) -> &Service {
        match self {
            Dispatch::Direct(s) | Dispatch::Layered(s, _) => s,
        }
    }

    /// The handler's future for `name(args)`. Called, and the future
    /// polled, with the request's context current (the layers get it in
    /// their [`Request`]).
    pub(super) fn call(
        &self,
        name: &str,
        args: Args,
    ) -> BoxFuture<'static, Result<Reply, ServiceError>> {
        match self {
            Dispatch::Direct(service) => service.dispatch(name, args),
            Dispatch::Layered(service, stack) => match Context::current() {
                Some(ctx) => middleware::call_stack(stack, Request::new(ctx, args)),
                None => service.dispatch(name, args),
            },
        }
    }
}
