//! The gateway's Prometheus metrics, served at `GET /metrics` on the admin
//! listener (`[admin] metrics`, on by default).
//!
//! One [`Metrics`] per gateway holds its own registry (no global), so
//! several gateways in one process never mix their numbers. It is built
//! once in `keygate gateway run` and handed, as an `Arc`, to what records
//! into it: the gateway (handshakes, revocation latency), pairing
//! (attempts) and the store wrapper ([`store::MeasuredStore`]: latency and
//! errors of every store call). Whatever is built without it (tests, the
//! CLI's one-shot commands) gets [`Metrics::unregistered`]: the same
//! handles, recorded into and never shown.
//!
//! Some numbers are read when Prometheus scrapes rather than recorded as
//! they change ([`scrape::Snapshot`]): connected nodes, pending requests,
//! certificates about to expire and unreadable records met. They cost a
//! read of in-memory state and of the approval records, never the state
//! lock.
//!
//! The list of metrics, their labels and what each means is in
//! `docs/gateway.md`, "Metrics".

mod histogram;
pub mod scrape;
pub mod store;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use histogram::AtomicHistogram;

/// The `Content-Type` of what [`Metrics::encode`] writes: the Prometheus
/// text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric's name starts with this (and `_`).
pub const PREFIX: &str = "keygate";

/// Bucket bounds of the revocation latency (seconds): 1 ms to 5 s.
pub const REVOCATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Bucket bounds of store call latency (seconds): 50 µs to 5 s.
pub const STORE_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// How a client's TLS handshake ended, as the gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeOutcome {
    /// Completed with a client certificate the gateway accepted.
    Ok,
    /// Completed without a client certificate (the connection may pair).
    NoCertificate,
    /// Refused: the certificate is not signed by this gateway's CA.
    UnknownCa,
    /// Refused: the certificate is outside its validity (expired, or not
    /// yet valid).
    Expired,
    /// Refused: the certificate or its device is revoked, or its record
    /// cannot be read (which fails closed, as a revocation).
    Revoked,
    /// Refused: signed by this CA, but the identity state has no record of
    /// it or of its device.
    UnknownCertificate,
}

impl HandshakeOutcome {
    /// Every outcome.
    pub const ALL: [HandshakeOutcome; 6] = [
        Self::Ok,
        Self::NoCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::Revoked,
        Self::UnknownCertificate,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoCertificate => "no_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::UnknownCertificate => "unknown_certificate",
        }
    }
}

/// How one pairing attempt (a hello, then its proof) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairingOutcome {
    /// The proof held and the request was approved at once (by the policy).
    Approved,
    /// The proof held and the request waits for an operator.
    Pending,
    /// The proof held and the policy rejected the request.
    Rejected,
    /// The code (or the request) had expired.
    Expired,
    /// The proof did not hold: a wrong PIN or token.
    WrongCode,
    /// Refused before any proof: the source address must wait, or the code
    /// is burned by failed attempts.
    LockedOut,
    /// No live code matches.
    UnknownCode,
    /// Refused for another reason: a revoked device, a device id that is
    /// not its key's, a malformed message, an internal error.
    Refused,
    /// The device went away (or sent garbage) after the challenge, before
    /// its proof was checked; its attempt is given back.
    Abandoned,
}

impl PairingOutcome {
    /// Every outcome.
    pub const ALL: [PairingOutcome; 9] = [
        Self::Approved,
        Self::Pending,
        Self::Rejected,
        Self::Expired,
        Self::WrongCode,
        Self::LockedOut,
        Self::UnknownCode,
        Self::Refused,
        Self::Abandoned,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Pending => "pending",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::WrongCode => "wrong_code",
            Self::LockedOut => "locked_out",
            Self::UnknownCode => "unknown_code",
            Self::Refused => "refused",
            Self::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PairingLabels {
    method: &'static str,
    outcome: &'static str,
}

/// The labels of one store operation's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct StoreLabels {
    /// The config slot (`store`).
    pub(crate) slot: String,
    /// The plugin's name.
    pub(crate) plugin: String,
    /// `get`, `put`, `delete`, `list`, `quarantine` or `batch`.
    pub(crate) operation: &'static str,
}

type HistogramMaker = fn() -> AtomicHistogram;

fn store_histogram() -> AtomicHistogram {
    AtomicHistogram::new(STORE_BUCKETS)
}

/// One gateway's metrics: the handles that record, and the registry that
/// shows them (see the [module docs](self)).
pub struct Metrics {
    /// `None` for [`Metrics::unregistered`].
    registry: Option<Registry>,
    handshakes: Family<OutcomeLabels, Counter>,
    pairing: Family<PairingLabels, Counter>,
    revocation_latency: Histogram,
    pub(crate) store_latency: Family<StoreLabels, AtomicHistogram, HistogramMaker>,
    pub(crate) store_errors: Family<StoreLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("registered", &self.registry.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// [`Metrics::unregistered`].
    fn default() -> Self {
        Self::unregistered()
    }
}

impl Metrics {
    fn handles() -> Self {
        Self {
            registry: None,
            handshakes: Family::default(),
            pairing: Family::default(),
            revocation_latency: Histogram::new(REVOCATION_BUCKETS.iter().copied()),
            store_latency: Family::new_with_constructor(store_histogram as HistogramMaker),
            store_errors: Family::default(),
        }
    }

    /// Metrics that [`encode`](Self::encode) shows.
    pub fn new() -> Self {
        let mut metrics = Self::handles();
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "handshakes",
            "Client TLS handshakes by outcome: ok, no_certificate (may pair), and the \
             refusals unknown_ca, expired, revoked, unknown_certificate",
            metrics.handshakes.clone(),
        );
        registry.register(
            "pairing_attempts",
            "Pairing attempts by method (pin, qr) and outcome",
            metrics.pairing.clone(),
        );
        registry.register(
            "revocation_propagation_seconds",
            "Time from a revocation's commit (its change-log entry) to the gateway closing \
             the connections it covers",
            metrics.revocation_latency.clone(),
        );
        registry.register(
            "store_operation_seconds",
            "Latency of secret store calls, by slot, plugin and operation",
            metrics.store_latency.clone(),
        );
        registry.register(
            "store_operation_errors",
            "Secret store calls that returned an error, by slot, plugin and operation",
            metrics.store_errors.clone(),
        );
        // Every series from the start, at 0, so a rate is defined before
        // the first event.
        for outcome in HandshakeOutcome::ALL {
            let _ = metrics.handshakes.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            });
        }
        for method in ["pin", "qr"] {
            for outcome in PairingOutcome::ALL {
                let _ = metrics.pairing.get_or_create(&PairingLabels {
                    method,
                    outcome: outcome.label(),
                });
            }
        }
        metrics.registry = Some(registry);
        metrics
    }

    /// Metrics recorded into and shown nowhere: for what runs without a
    /// `/metrics` endpoint (tests, one-shot CLI commands).
    pub fn unregistered() -> Self {
        Self::handles()
    }

    /// Counts a handshake.
    pub fn handshake(&self, outcome: HandshakeOutcome) {
        self.handshakes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts a pairing attempt; `method` is `pin` or `qr`.
    pub fn pairing_attempt(&self, method: &'static str, outcome: PairingOutcome) {
        self.pairing
            .get_or_create(&PairingLabels {
                method,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Observes a revocation's latency from commit to connections closed.
    pub fn revocation_propagated(&self, latency: Duration) {
        self.revocation_latency.observe(latency.as_secs_f64());
    }

    /// The Prometheus text of every metric: the recorded ones and those of
    /// `snapshot`, read at scrape time.
    ///
    /// # Errors
    /// Only if writing to a `String` failed, which it does not.
    pub fn encode(&self, snapshot: &scrape::Snapshot) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::prometheus_text::encode;
        let mut text = String::new();
        if let Some(registry) = &self.registry {
            encode(&mut text, registry)?;
        }
        let mut now = Registry::with_prefix(PREFIX);
        let gauge = |value: u64| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            g
        };
        now.register(
            "connected_nodes",
            "Nodes registered on the gateway now",
            gauge(snapshot.connected_nodes),
        );
        now.register(
            "pending_requests",
            "Pairing requests waiting for an operator's decision",
            gauge(snapshot.pending_requests),
        );
        now.register(
            "certificates_expiring_soon",
            "Client certificates, neither revoked nor expired, that expire within a day",
            gauge(snapshot.certificates_expiring_soon),
        );
        let unreadable: Counter = Counter::default();
        unreadable.inc_by(snapshot.unreadable_records_met);
        now.register(
            "unreadable_records_met",
            "Times this gateway met a state record it cannot read (tampered, torn, foreign); \
             `keygate state check` lists them",
            unreadable,
        );
        encode(&mut text, &now)?;
        Ok(text)
    }
}
