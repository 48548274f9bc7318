//! Spans: alone in this test binary, because `tracing` caches per call
//! site whether anyone listens, and a test without a subscriber running
//! beside this one could settle that first.

mod common;

use common::serve;

use std::sync::{Arc, Mutex};
use zerorpc::{CallOptions, Client, Context, Service, ServiceError, Value};

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// `whoami()` returns the request's header keys.
fn service() -> Service {
    Service::new("ctx").method("whoami", |(): ()| async {
        let ctx = Context::current().expect("a context");
        let headers = ctx
            .headers()
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect();
        Ok::<_, ServiceError>(Value::Map(vec![("headers".into(), Value::Map(headers))]))
    })
}

/// Spans: one `zrpc.request` per request and one `zrpc.call` per call, with
/// method, outcome and duration; the trace id of the caller's
/// `traceparent` carries through a server that calls another.
#[test]
fn spans_carry_method_outcome_and_the_trace_across_processes() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Arc::new(Mutex::new(Vec::<Closed>::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    // One thread (a current_thread runtime) so the thread-local subscriber
    // sees the servers and clients alike.
    let _default = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_b, ep_b) = serve(service()).await;
        let to_b = Client::connect(&ep_b).await.unwrap();
        let a = Service::new("a").method("relay", move |(): ()| {
            let to_b = to_b.clone();
            async move {
                to_b.call::<_, Value>("whoami", ())
                    .await
                    .map_err(ServiceError::from)
            }
        });
        let (_a, ep_a) = serve(a).await;
        let client = Client::connect(&ep_a).await.unwrap();
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let opts = CallOptions::default().header("traceparent", trace);
        let seen = client
            .call_dynamic_with("relay", vec![], opts)
            .await
            .unwrap();
        // B got a traceparent of the same trace, from a new span (A's call).
        let tp = get(get(&seen, "headers"), "traceparent").as_str().unwrap();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "{tp}");
        let e = client.call::<_, Value>("nosuch", ()).await.unwrap_err();
        assert!(e.remote().is_some());
    });
    let spans = spans.lock().unwrap();
    let find = |name: &str, method: &str| {
        spans
            .iter()
            .filter(|(n, f)| n == name && f.iter().any(|(k, v)| k == "method" && v == method))
            .map(|(_, f)| {
                f.iter()
                    .cloned()
                    .collect::<std::collections::HashMap<_, _>>()
            })
            .collect::<Vec<_>>()
    };
    let relay = find("zrpc.request", "relay");
    assert_eq!(relay.len(), 1, "{spans:?}");
    assert_eq!(relay[0]["outcome"], "ok");
    assert_eq!(relay[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(relay[0]["duration_ms"].parse::<f64>().unwrap() >= 0.0);
    let whoami = find("zrpc.request", "whoami");
    assert_eq!(whoami.len(), 1, "{spans:?}");
    assert_eq!(whoami[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let calls = find("zrpc.call", "whoami");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(calls[0]["outcome"], "ok");
    let failed = find("zrpc.request", "nosuch");
    assert_eq!(failed[0]["outcome"], "error");
    assert_eq!(find("zrpc.call", "nosuch")[0]["outcome"], "error");
}

/// A closed span: its name and fields.
type Closed = (String, Vec<(String, String)>);

/// Records every span's name and fields when it closes.
struct Capture(Arc<Mutex<Vec<Closed>>>);

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        let v = v.trim_matches('"').to_string();
        self.0.retain(|(k, _)| k != field.name());
        self.0.push((field.name().to_string(), v));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.retain(|(k, _)| k != field.name());
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span.extensions_mut().remove::<Fields>().unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .push((span.name().to_string(), fields.0));
        }
    }
}
