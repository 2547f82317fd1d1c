//! OpenTelemetry traces over OTLP/HTTP: a server span per request (see `api::observe`)
//! and a child span per phase, with the times the phase was measured at. The SDK's batch
//! processor exports from a thread of its own with a bounded queue: a collector that is
//! down or slow costs dropped spans, never a slower or failed request.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};

use super::Phase;

/// The tracer, once an exporter is running.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

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
        // `OTEL_SERVICE_NAME` or `service.name` in `OTEL_RESOURCE_ATTRIBUTES` wins.
        let detected = opentelemetry_sdk::Resource::builder().build();
        let named = detected
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !named {
            resource = resource.with_service_name("authgate");
        }
        // Queue size, batch size and delay follow the standard `OTEL_BSP_*` variables.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Reported::new(exporter))
            .with_resource(resource.build())
            .build();
        let _ = TRACER.set(provider.tracer("authgate"));
        Ok(Self { provider })
    }

    /// Exports what is queued, waiting for the collector at most 5 seconds.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "exporting the last traces failed");
        }
    }
}

/// The OTLP exporter, saying in the logs when exports fail (at most once a minute) and
/// when they succeed again: the spans of a failed export are dropped.
#[derive(Debug)]
struct Reported<E> {
    exporter: E,
    /// When a failure was last logged; `None` while exports succeed.
    failing_since_logged: std::sync::Mutex<Option<Instant>>,
}

impl<E> Reported<E> {
    fn new(exporter: E) -> Self {
        Self {
            exporter,
            failing_since_logged: std::sync::Mutex::new(None),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let outcome = self.exporter.export(batch).await;
        let mut logged = self
            .failing_since_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&outcome, *logged) {
            (Err(err), None) => {
                tracing::warn!(error = %err, spans, "exporting traces failed; dropping spans until the collector answers");
                *logged = Some(Instant::now());
            }
            (Err(err), Some(at)) if at.elapsed() >= Duration::from_secs(60) => {
                tracing::warn!(error = %err, spans, "exporting traces still fails");
                *logged = Some(Instant::now());
            }
            (Ok(()), Some(_)) => {
                tracing::info!("exporting traces works again");
                *logged = None;
            }
            _ => {}
        }
        outcome
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.exporter.set_resource(resource);
    }
}

/// A request's server span, while the request is handled.
#[derive(Clone)]
pub struct ServerSpan(Context);

impl ServerSpan {
    /// Starts the server span of a request to `route` (a template, or `unmatched`), a
    /// child of the caller's span when the request carries a valid W3C `traceparent`;
    /// `None` when no exporter runs.
    pub fn start(
        method: &str,
        route: &str,
        request_id: &str,
        headers: &poem::http::HeaderMap,
    ) -> Option<Self> {
        let tracer = TRACER.get()?;
        let caller = TraceContextPropagator::new().extract(&Headers(headers));
        let name = if route.starts_with('/') {
            format!("{method} {route}")
        } else {
            // No route matched: the method alone, as the HTTP conventions name such spans.
            method.to_owned()
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("request_id", request_id.to_owned()),
            ])
            .start_with_context(tracer, &caller);
        Some(Self(caller.with_span(span)))
    }

    /// Ends the span with the response's status.
    pub fn end(self, status: u16) {
        let span = self.0.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
        span.end();
    }

    /// Exports `started..ended` as a span named `what` beneath this one.
    pub(super) fn child(
        &self,
        phase: Phase,
        what: &str,
        started: Instant,
        ended: Instant,
        attributes: &[(&'static str, &str)],
    ) {
        let Some(tracer) = TRACER.get() else { return };
        let now = (Instant::now(), SystemTime::now());
        let wall = |at: Instant| {
            now.1
                .checked_sub(now.0.saturating_duration_since(at))
                .unwrap_or(now.1)
        };
        let mut fields = Vec::with_capacity(1 + attributes.len());
        fields.push(KeyValue::new("authgate.phase", phase.name()));
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
            .start_with_context(tracer, &self.0);
        span.end_with_timestamp(wall(ended));
    }
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
