//! The HTTP admin API (`[admin]` in the config): JSON under `/api/v1`
//! for operators holding a bearer token (`keygate operators add`), an
//! OpenAPI document at `/api/v1/openapi.json` built from the same route
//! declarations it describes, and `/healthz` and `/readyz` without a
//! token, and a server-sent event stream of changes at `/api/v1/events`
//! ([`events`]). Every decision goes through identity state under its lock, as
//! the CLI's do, so the two see each other's at once; every change is
//! attributed to `operator:NAME` in the audit log. The same listener
//! serves the web console at `/` (`console.rs`, assets in `console/`):
//! its session cookie is accepted by `/api/v1` too, with a CSRF token on
//! every change ([`session`]).
//!
//! It runs on a tokio runtime of its own (one thread): a handler hands
//! anything that takes the state lock or waits for a node to tokio's
//! blocking pool.

mod audit;
mod auth;
mod codes;
mod console;
mod devices;
mod error;
pub mod events;
mod metrics;
mod nodes;
mod requests;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub use requests::RequestView;

use crate::config::AdminSettings;
use crate::gateway::Gateway;
use crate::pairing::{GatewayAddr, PairingSettings};
use crate::state::IdentityManager;

/// What the handlers work on.
pub struct ApiState {
    /// Identity state.
    pub identity: Arc<IdentityManager>,
    /// The running gateway (nodes).
    pub gateway: Arc<Gateway>,
    /// How codes are minted.
    pub pairing: PairingSettings,
    /// What QR codes carry.
    pub advertise: Vec<GatewayAddr>,
    /// Where the event stream's events come from ([`AdminApi::start`]
    /// feeds it from the audit log and the gateway's nodes).
    pub events: events::EventHub,
    /// Whether the listener speaks TLS (set by [`AdminApi::start`]); the
    /// console's cookie is then `Secure`.
    pub tls: bool,
    /// What `GET /metrics` shows; `None` when `[admin] metrics = false`.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The web console's sessions.
    pub sessions: session::SessionStore,
}

/// Runs `work` on the blocking pool (it takes the state lock or waits).
async fn blocking<T: Send + 'static>(
    state: &Arc<ApiState>,
    work: impl FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|_| ApiError::internal("the request's work stopped"))?
}

/// Unix seconds as RFC 3339.
fn rfc3339(unix_secs: u64) -> String {
    crate::time::rfc3339(crate::time::from_unix_secs(unix_secs))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keygate admin API", description = "Pairing codes, requests, devices, certificates and nodes of a Keygate gateway."),
    modifiers(&BearerAuth),
    tags(
        (name = "codes", description = "Pairing codes"),
        (name = "requests", description = "Pairing requests and decisions"),
        (name = "devices", description = "Devices"),
        (name = "certificates", description = "Client certificates"),
        (name = "nodes", description = "Connected nodes"),
        (name = "events", description = "A live stream of changes"),
        (name = "audit", description = "The audit log"),
        (name = "health", description = "Liveness and readiness, without a token"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Whether the gateway can serve: its state answers.
    pub ready: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: identity state answers a read.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
async fn readyz(State(state): State<Arc<ApiState>>) -> (StatusCode, Json<Ready>) {
    let read = blocking(&state, |s| {
        s.identity
            .store_answers()
            .map_err(|e| ApiError::unavailable(e.to_string()))
    })
    .await;
    match read {
        Ok(true) => (
            StatusCode::OK,
            Json(Ready {
                ready: true,
                reason: None,
            }),
        ),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                ready: false,
                reason: Some("the CA record is missing".into()),
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                ready: false,
                reason: Some(e.message().to_owned()),
            }),
        ),
    }
}

/// The routes and the OpenAPI document that describes exactly them.
fn router(state: Arc<ApiState>) -> axum::Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(codes::mint_code, codes::list_codes))
        .routes(routes!(requests::list_requests))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::reject))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::revoke_device))
        .routes(routes!(devices::list_certificates))
        .routes(routes!(devices::revoke_certificate))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(nodes::invoke))
        .routes(routes!(events::events))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(metrics::scrape))
        .with_state(state.clone())
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(console::router(state))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
}

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    /// The address cannot be bound, or the runtime cannot start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// HTTPS cannot be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
}

/// The admin API, serving until stopped.
pub struct AdminApi {
    addr: SocketAddr,
    tls: bool,
    events: events::EventHub,
    handle: axum_server::Handle<SocketAddr>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminApi {
    /// Binds `settings.listen` and serves on a thread of its own, over
    /// HTTPS when `settings.tls` says so (a CA-issued certificate lives
    /// `cert_validity` and is renewed at two thirds of it).
    ///
    /// # Errors
    /// The address cannot be bound, the runtime cannot start, or the TLS
    /// certificate cannot be issued or read.
    pub fn start(
        settings: &AdminSettings,
        mut state: ApiState,
        cert_validity: std::time::Duration,
    ) -> Result<AdminApi, AdminStartError> {
        let tls = tls::setup(
            &settings.tls,
            settings.listen,
            &state.identity,
            &state.advertise,
            cert_validity,
        )?;
        state.tls = tls.is_some();
        let listener = std::net::TcpListener::bind(settings.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(8)
            .thread_name("keygate-admin-api")
            .enable_io()
            .enable_time()
            .build()?;
        let handle = axum_server::Handle::new();
        let state = Arc::new(state);
        let events = state.events.clone();
        let app = router(state.clone()).into_make_service();
        let served_by = handle.clone();
        let thread = std::thread::Builder::new()
            .name("keygate-admin-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    state.events.feed(state.identity.clone(), &state.gateway);
                    let served = match tls {
                        None => match axum_server::from_tcp(listener) {
                            Ok(server) => server.handle(served_by).serve(app).await,
                            Err(e) => Err(e),
                        },
                        Some(tls) => {
                            if let Some(renewal) = tls.renewal {
                                tokio::spawn(tls::renew(
                                    tls.config.clone(),
                                    renewal,
                                    state.identity.clone(),
                                ));
                            }
                            match axum_server::tls_rustls::from_tcp_rustls(listener, tls.config) {
                                Ok(server) => server.handle(served_by).serve(app).await,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    if let Err(error) = served {
                        tracing::error!(%error, "admin API stopped");
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(AdminApi {
            addr,
            tls: settings.tls.is_on(),
            events,
            handle,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL: `https://` when it speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Event streams end at once; other requests get a few seconds.
        self.events.stop();
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long requests in flight get to finish at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for AdminApi {
    fn drop(&mut self) {
        self.shutdown();
    }
}
