//! Serving a whole object: one type answers many methods.

use super::handler::{Encoded, Handler, Reply};
use super::{Args, MethodInfo, Service};
use crate::error::ServiceError;
use rmpv::Value;
use std::sync::Arc;

/// A whole service object. Implement this when one type answers many
/// methods (for example a wrapper around existing state), then serve it
/// with [`Service::from_object`].
#[async_trait::async_trait]
pub trait RpcService: Send + Sync + 'static {
    /// The service name (`_zerorpc_name`).
    fn name(&self) -> String;
    /// The methods it answers, with docs and argument names.
    fn methods(&self) -> Vec<MethodInfo>;
    /// Run one method.
    async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, ServiceError>;
}

impl Service {
    /// Serve an object implementing [`RpcService`].
    pub fn from_object<S: RpcService>(object: S) -> Self {
        let object = Arc::new(object);
        let mut service = Service::new(object.name());
        for info in object.methods() {
            let obj = object.clone();
            let method = info.name.clone();
            let handler: Handler = Arc::new(move |args: Args| {
                let obj = obj.clone();
                let method = method.clone();
                Box::pin(async move {
                    let values = args.values()?;
                    Ok(Reply::Value(Encoded::value(
                        &obj.call(&method, values).await?,
                    )))
                })
            });
            let name = info.name.clone();
            service = service.insert(&name, None, handler);
            service.infos.insert(name, info);
        }
        service
    }
}
