//! OpenTelemetry traces over OTLP/HTTP: each request's `request` span (see
//! `api::observe`) becomes a server span through `tracing-opentelemetry`, and each phase a
//! child span with the times it was measured at. The SDK's batch processor exports from
//! a thread of its own with a bounded queue: a collector that is down or slow costs
//! dropped spans, never a slower or failed request.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::Phase;

/// The tracer child spans are made with, once an exporter is running.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The `tracing` target of the spans exported as server spans.
pub const REQUEST_TARGET: &str = "authgate::http";

/// Whether requests are being traced.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// A running exporter; [`Exporter::shutdown`] sends what is still queued.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `<endpoint>/v1/traces`. Call it outside the async runtime: the
    /// exporter's HTTP client runs one of its own.
    pub fn start(endpoint: &str) -> Result<Self, String> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|err| err.to_string())?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("authgate");
        }
        // Queue size, batch size and delay follow the standard `OTEL_BSP_*` variables.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let _ = TRACER.set(provider.tracer("authgate"));
        Ok(Self { provider })
    }

    /// The layer that turns request spans into OpenTelemetry server spans.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("authgate"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target() == REQUEST_TARGET
            }))
    }

    /// Exports what is queued, waiting for the collector no longer than its timeout.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "exporting the last traces failed");
        }
    }
}

/// Makes `span` (a request's) the server span of a request, and a child of the caller's
/// trace when the request carries a valid W3C `traceparent`.
pub fn serve_request(
    span: &tracing::Span,
    method: &str,
    route: &str,
    headers: &poem::http::HeaderMap,
) {
    if !enabled() {
        return;
    }
    let name = if route.starts_with('/') {
        format!("{method} {route}")
    } else {
        // No route matched: the method alone, as the HTTP conventions name such spans.
        method.to_owned()
    };
    span.record("otel.name", name);
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    let caller = TraceContextPropagator::new().extract(&Headers(headers));
    if caller.span().span_context().is_valid() {
        let _ = span.set_parent(caller);
    }
}

/// Adds the response status to a request's server span.
pub fn served(span: &tracing::Span, status: u16) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(opentelemetry::trace::Status::error(""));
    }
}

/// Exports `started..ended` as a span named `what` under the current request's span; a
/// phase outside any traced request (a background task's) is not exported.
pub(super) fn child_span(
    phase: Phase,
    what: &str,
    started: Instant,
    ended: Instant,
    attributes: &[(&'static str, &str)],
) {
    let Some(tracer) = TRACER.get() else { return };
    let parent: Context = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let now = (Instant::now(), SystemTime::now());
    let wall = |at: Instant| {
        now.1
            .checked_sub(now.0.saturating_duration_since(at))
            .unwrap_or(now.1)
    };
    let mut fields = vec![KeyValue::new("authgate.phase", phase.name())];
    fields.extend(
        attributes
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| KeyValue::new(*key, value.to_string())),
    );
    // A statement is a call to the database server; the rest is work or waiting inside.
    let kind = if attributes.iter().any(|(key, _)| *key == "db.system.name") {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let mut span = tracer
        .span_builder(what.to_owned())
        .with_kind(kind)
        .with_start_time(wall(started))
        .with_attributes(fields)
        .start_with_context(tracer, &parent);
    span.end_with_timestamp(wall(ended));
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a poem::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(poem::http::HeaderName::as_str).collect()
    }
}
