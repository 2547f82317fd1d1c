//! Prometheus metrics: HTTP traffic by route and status, security outcomes, and the
//! saturation of the password-hashing pool and the database pool.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Outcomes of `POST /v1/auth/refresh`.
#[derive(Debug, Clone, Copy)]
pub enum RefreshOutcome {
    Rotated,
    /// A spent token inside the grace window: the same successor again.
    SpentInGrace,
    /// A spent token outside the grace window: the session was revoked.
    ReuseDetected,
    /// Unknown, expired or of an ended session.
    Rejected,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    logins: IntCounterVec,
    refreshes: IntCounterVec,
    revocations: IntCounterVec,
    messages: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    outbox_pending: IntGauge,
    gauges: IntGaugeVec,
}

impl Metrics {
    #[allow(clippy::expect_used)] // metric definitions are static; a failure is a bug at start-up
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("authgate".into()), None).expect("registry");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .expect("metric");
        let logins =
            IntCounterVec::new(Opts::new("logins_total", "Logins by outcome"), &["outcome"])
                .expect("metric");
        let refreshes = IntCounterVec::new(
            Opts::new("refreshes_total", "Refresh-token presentations by outcome"),
            &["outcome"],
        )
        .expect("metric");
        let revocations = IntCounterVec::new(
            Opts::new("session_revocations_total", "Sessions ended, by cause"),
            &["cause"],
        )
        .expect("metric");
        let messages = IntCounterVec::new(
            Opts::new(
                "messages_total",
                "Password-reset and verification messages by kind and outcome",
            ),
            &["kind", "outcome"],
        )
        .expect("metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Event webhook delivery attempts by outcome",
            ),
            &["outcome"],
        )
        .expect("metric");
        let outbox_pending = IntGauge::new(
            "outbox_pending",
            "Event deliveries and messages waiting to be delivered",
        )
        .expect("metric");
        let gauges = IntGaugeVec::new(
            Opts::new(
                "pool",
                "Saturation of the password-hashing and database pools",
            ),
            &["pool", "state"],
        )
        .expect("metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(logins.clone()),
            Box::new(refreshes.clone()),
            Box::new(revocations.clone()),
            Box::new(messages.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(outbox_pending.clone()),
            Box::new(gauges.clone()),
        ] {
            registry.register(collector).expect("unique metric");
        }
        Self {
            registry,
            requests,
            latency,
            logins,
            refreshes,
            revocations,
            messages,
            webhook_deliveries,
            outbox_pending,
            gauges,
        }
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, status.to_string().as_str()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// `outcome`: `ok`, `invalid_credentials`, `throttled` or `overloaded`.
    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        let label = match outcome {
            RefreshOutcome::Rotated => "rotated",
            RefreshOutcome::SpentInGrace => "spent_in_grace",
            RefreshOutcome::ReuseDetected => "reuse_detected",
            RefreshOutcome::Rejected => "rejected",
        };
        self.refreshes.with_label_values(&[label]).inc();
    }

    /// `cause`: `revoke`, `logout_all` or `reuse_detected`.
    pub fn revoked(&self, cause: &str, sessions: u64) {
        self.revocations
            .with_label_values(&[cause])
            .inc_by(sessions);
    }

    /// `kind`: `password_reset` or `email_verification`; `outcome`: `queued`,
    /// `delivered`, `failed` (an attempt; it is retried) or `expired` (given up).
    pub fn message(&self, kind: &str, outcome: &str) {
        self.messages.with_label_values(&[kind, outcome]).inc();
    }

    /// `outcome`: `delivered`, `retrying` (an attempt failed; it is retried) or
    /// `failed` (given up).
    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries.with_label_values(&[outcome]).inc();
    }

    pub fn set_outbox_pending(&self, pending: u64) {
        self.outbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn set_pool(&self, pool: &str, state: &str, value: usize) {
        self.gauges
            .with_label_values(&[pool, state])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
