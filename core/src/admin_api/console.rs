//! The web console: one page, one script and one style sheet, embedded in
//! the binary and served at `/` on the admin listener, and the three
//! endpoints that log an operator in and out.
//!
//! - `POST /console/login` `{"token": "kgo_…"}` checks the token as the
//!   API does and starts a [session](super::session): the answer sets the
//!   session cookie and carries the session's CSRF token. The body must be
//!   JSON, which another site's page cannot send without the browser asking
//!   this server first, so a foreign page cannot log a browser in.
//! - `GET /console/session`: who is logged in, and the CSRF token (a
//!   reload of the page gets it here).
//! - `POST /console/logout` ends the session (CSRF token required) and
//!   clears the cookie.
//!
//! The page then calls `/api/v1` itself, with the cookie and, on every
//! change, `X-CSRF-Token` (see [`super::auth`]); it follows
//! `/api/v1/events` to refresh what an event can change.
//!
//! Every answer here carries a strict `Content-Security-Policy` (only this
//! origin's script and style, nothing inline, no framing), `X-Frame-Options:
//! DENY`, `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff`
//! and `Cache-Control: no-store`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::ConsoleSession;
use super::error::{ApiError, Body};
use super::session;
use super::{ApiState, blocking};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The console's `Content-Security-Policy`: this origin only, nothing
/// inline (the page has no inline script or style), no plugins, no
/// framing, no `<base>` games.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// An operator's bearer token (`keygate operators add`).
    pub token: String,
}

/// Who is logged in.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    /// The operator's name.
    pub operator: String,
    /// Send it as `X-CSRF-Token` with every change.
    pub csrf_token: String,
    /// The session ends after this many seconds without a request.
    pub idle_timeout_secs: u64,
}

/// The console's routes, with their security headers.
pub(super) fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/session", get(whoami))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    for (name, value) in set {
        headers.insert(name, value);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn with_cookie(mut response: Response, cookie: &str) -> Result<Response, ApiError> {
    let value = HeaderValue::from_str(cookie)
        .map_err(|_| ApiError::internal("the session cookie is not a header value"))?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}

/// Checks the token and starts a session.
async fn login(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let token = body.token.trim().to_owned();
    let found = blocking(&state, move |s| {
        Ok(s.identity.authenticate_operator(&token)?)
    })
    .await?;
    let Some(record) = found else {
        return Err(ApiError::unauthorized(
            "the token is not a live operator's (unknown, malformed or revoked)",
        ));
    };
    // A browser that was logged in already gets a new session, never the
    // old id again.
    if let Some(old) = session::session_cookie(&headers, state.tls) {
        state.sessions.remove(&old);
    }
    let new = state
        .sessions
        .create(&record.name, &record.token_hash, Instant::now())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(operator = %record.name, "console: logged in");
    let info = SessionInfo {
        operator: record.name,
        csrf_token: new.csrf.to_string(),
        idle_timeout_secs: state.sessions.settings().idle.as_secs(),
    };
    with_cookie(
        Json(info).into_response(),
        &session::set_cookie(&new.id, state.tls),
    )
}

/// Ends the session.
async fn logout(
    State(state): State<Arc<ApiState>>,
    session: ConsoleSession,
) -> Result<Response, ApiError> {
    state.sessions.remove(&session.id);
    tracing::info!(operator = %session.name, "console: logged out");
    with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &session::clear_cookie(state.tls),
    )
}

/// Who is logged in, and the session's CSRF token.
async fn whoami(State(state): State<Arc<ApiState>>, session: ConsoleSession) -> Json<SessionInfo> {
    Json(SessionInfo {
        operator: session.name,
        csrf_token: session.csrf,
        idle_timeout_secs: state.sessions.settings().idle.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use axum::body::Body as HttpBody;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    use super::super::session::{SessionSettings, SessionStore};
    use super::super::{ApiState, router};
    use crate::pairing::{GatewayAddr, PairingSettings};
    use crate::state::Actor;

    /// An admin API on a fresh state with operator `alice`, its token,
    /// and what must outlive it.
    struct Api {
        state: Arc<ApiState>,
        token: String,
        _dirs: (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir),
    }

    fn api(tls: bool, sessions: SessionSettings) -> Api {
        let gateway_dir = tempfile::tempdir().unwrap();
        let (lock_dir, gateway) = crate::gateway::testing::gateway(gateway_dir.path());
        let state_dir = tempfile::tempdir().unwrap();
        let (_, identity) = crate::state::testing::on_memory(state_dir.path());
        let token = identity
            .add_operator("alice", SystemTime::now(), &Actor::cli())
            .unwrap()
            .token
            .to_string();
        let state = Arc::new(ApiState {
            identity: Arc::new(identity),
            gateway,
            pairing: PairingSettings::default(),
            advertise: vec![GatewayAddr::parse_with_default_port("127.0.0.1", Some(1)).unwrap()],
            events: Default::default(),
            tls,
            metrics: None,
            sessions: SessionStore::new(sessions),
        });
        Api {
            state,
            token,
            _dirs: (gateway_dir, lock_dir, state_dir),
        }
    }

    struct Answer {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        json: serde_json::Value,
        text: String,
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    impl Api {
        /// Sends a request with `headers` (name, value) and an optional
        /// JSON body through the whole router.
        fn send(
            &self,
            method: Method,
            path: &str,
            headers: &[(&str, &str)],
            body: Option<serde_json::Value>,
        ) -> Answer {
            let mut request = Request::builder().method(method).uri(path);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = match body {
                Some(json) => request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(HttpBody::from(json.to_string())),
                None => request.body(HttpBody::empty()),
            }
            .unwrap();
            let app = router(self.state.clone());
            run(async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let headers = response.headers().clone();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                Answer {
                    status,
                    headers,
                    json,
                    text,
                }
            })
        }

        /// Logs in with `token`: the answer.
        fn login_with(&self, token: &str) -> Answer {
            self.send(
                Method::POST,
                "/console/login",
                &[],
                Some(serde_json::json!({ "token": token })),
            )
        }

        /// Logs `alice` in: the `Cookie` header value and the CSRF token.
        fn login(&self) -> (String, String) {
            let answer = self.login_with(&self.token);
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
            let cookie = set.split(';').next().unwrap().to_owned();
            let csrf = answer.json["csrf_token"].as_str().unwrap().to_owned();
            (cookie, csrf)
        }

        fn codes(&self) -> usize {
            self.state.identity.pairing_sessions().unwrap().len()
        }

        fn audit_len(&self) -> usize {
            self.state.identity.audit_entries().unwrap().len()
        }
    }

    fn mint_body() -> Option<serde_json::Value> {
        Some(serde_json::json!({ "kind": "pin" }))
    }

    #[test]
    fn logging_in_sets_an_http_only_same_site_strict_cookie_secure_only_over_tls() {
        let plain = api(false, SessionSettings::default());
        let answer = plain.login_with(&plain.token);
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert!(attributes[0].starts_with("keygate_session="), "{cookie}");
        assert_eq!(
            attributes[0].len(),
            "keygate_session=".len() + 64,
            "{cookie}"
        );
        assert_eq!(&attributes[1..], ["HttpOnly", "SameSite=Strict", "Path=/"]);
        assert_eq!(answer.json["operator"], "alice");
        assert_eq!(answer.json["csrf_token"].as_str().unwrap().len(), 64);

        // The answer tells the page how long an idle session lives.
        let short = api(
            false,
            SessionSettings {
                idle: Duration::from_secs(90),
                max_sessions: 4,
            },
        );
        let answer = short.login_with(&short.token);
        assert_eq!(answer.json["idle_timeout_secs"], 90, "{}", answer.text);

        let tls = api(true, SessionSettings::default());
        let answer = tls.login_with(&tls.token);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert!(
            attributes[0].starts_with("__Host-keygate_session="),
            "{cookie}"
        );
        assert_eq!(
            &attributes[1..],
            ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"]
        );
    }

    #[test]
    fn a_wrong_token_is_refused_and_gets_no_session() {
        let api = api(false, SessionSettings::default());
        let mut wrong = api.token.clone();
        wrong.replace_range(10..11, if &wrong[10..11] == "a" { "b" } else { "a" });
        for token in [wrong.as_str(), "", "kgo_x"] {
            let answer = api.login_with(token);
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(answer.json["error"], "unauthorized");
            assert!(answer.headers.get(header::SET_COOKIE).is_none());
        }
        assert!(api.state.sessions.is_empty());
    }

    #[test]
    fn a_change_with_the_cookie_but_without_the_right_csrf_token_is_refused_and_changes_nothing() {
        let api = api(false, SessionSettings::default());
        let (cookie, csrf) = api.login();
        let audit = api.audit_len();
        let mut wrong = csrf.clone();
        wrong.replace_range(0..1, if &wrong[0..1] == "0" { "1" } else { "0" });
        for csrf_header in [
            None,
            Some(""),
            Some(wrong.as_str()),
            Some(&csrf[1..]),
            Some(&csrf[..63]),
        ] {
            let mut headers = vec![("cookie", cookie.as_str())];
            if let Some(value) = csrf_header {
                headers.push(("x-csrf-token", value));
            }
            let answer = api.send(Method::POST, "/api/v1/codes", &headers, mint_body());
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{csrf_header:?}");
            assert_eq!(answer.json["error"], "csrf", "{}", answer.text);
            assert_eq!(answer.json["field"], "X-CSRF-Token");
            assert!(
                answer.json["message"]
                    .as_str()
                    .unwrap()
                    .contains("X-CSRF-Token")
            );
            assert_eq!(api.codes(), 0, "nothing was minted");
            assert_eq!(api.audit_len(), audit, "nothing was recorded");
        }
        // Reading needs no CSRF token.
        let answer = api.send(Method::GET, "/api/v1/codes", &[("cookie", &cookie)], None);
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        // With it, the change is made, attributed to the session's operator.
        let answer = api.send(
            Method::POST,
            "/api/v1/codes",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            mint_body(),
        );
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert_eq!(api.codes(), 1);
        let last = api.state.identity.audit_entries().unwrap().pop().unwrap();
        assert_eq!(last.events[0].actor, Actor::operator("alice"));
    }

    #[test]
    fn a_bearer_token_needs_no_csrf_token_and_decides_alone() {
        let api = api(false, SessionSettings::default());
        let (cookie, _) = api.login();
        let bearer = format!("Bearer {}", api.token);
        let answer = api.send(
            Method::POST,
            "/api/v1/codes",
            &[("authorization", &bearer)],
            mint_body(),
        );
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        // A bad Authorization header is refused even beside a good cookie.
        let answer = api.send(
            Method::GET,
            "/api/v1/codes",
            &[("authorization", "Bearer kgo_nope"), ("cookie", &cookie)],
            None,
        );
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        // Without either, the answer is the one the API always gave.
        let answer = api.send(Method::GET, "/api/v1/codes", &[], None);
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.json["message"], "no Authorization: Bearer token");
    }

    #[test]
    fn a_revoked_operators_session_gets_401_and_ends() {
        let api = api(false, SessionSettings::default());
        let (cookie, _) = api.login();
        let answer = api.send(Method::GET, "/api/v1/devices", &[("cookie", &cookie)], None);
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        api.state
            .identity
            .revoke_operator("alice", "left", SystemTime::now(), &Actor::cli())
            .unwrap();
        let answer = api.send(Method::GET, "/api/v1/devices", &[("cookie", &cookie)], None);
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert!(
            answer.json["message"].as_str().unwrap().contains("revoked"),
            "{}",
            answer.text
        );
        assert!(api.state.sessions.is_empty(), "the session is ended");
        let answer = api.send(
            Method::GET,
            "/console/session",
            &[("cookie", &cookie)],
            None,
        );
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_expired_session_gets_401() {
        let idle = Duration::from_secs(60);
        let api = api(
            false,
            SessionSettings {
                idle,
                max_sessions: 8,
            },
        );
        let hash = api
            .state
            .identity
            .authenticate_operator(&api.token)
            .unwrap()
            .unwrap()
            .token_hash;
        let long_ago = Instant::now()
            .checked_sub(idle + Duration::from_secs(1))
            .expect("the machine has been up a minute");
        let stale = api.state.sessions.create("alice", &hash, long_ago).unwrap();
        let fresh = api
            .state
            .sessions
            .create("alice", &hash, Instant::now())
            .unwrap();
        let cookie = |id: &str| format!("keygate_session={id}");
        let answer = api.send(
            Method::GET,
            "/api/v1/devices",
            &[("cookie", &cookie(&fresh.id))],
            None,
        );
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let answer = api.send(
            Method::GET,
            "/api/v1/devices",
            &[("cookie", &cookie(&stale.id))],
            None,
        );
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
        assert!(answer.json["message"].as_str().unwrap().contains("expired"));
    }

    #[test]
    fn logging_out_ends_the_session_and_clears_the_cookie() {
        let api = api(false, SessionSettings::default());
        let (cookie, csrf) = api.login();
        let answer = api.send(
            Method::GET,
            "/console/session",
            &[("cookie", &cookie)],
            None,
        );
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json["operator"], "alice");
        assert_eq!(answer.json["csrf_token"], csrf.as_str());
        // Logging out is a change: the CSRF token is needed.
        let answer = api.send(
            Method::POST,
            "/console/logout",
            &[("cookie", &cookie)],
            None,
        );
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(api.state.sessions.len(), 1);
        let answer = api.send(
            Method::POST,
            "/console/logout",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            None,
        );
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
        let cleared = answer.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cleared.starts_with("keygate_session=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert!(api.state.sessions.is_empty());
        for path in ["/console/session", "/api/v1/devices"] {
            let answer = api.send(Method::GET, path, &[("cookie", &cookie)], None);
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        }
    }

    #[test]
    fn logging_in_again_replaces_the_browsers_old_session() {
        let api = api(false, SessionSettings::default());
        let (old, _) = api.login();
        let answer = api.send(
            Method::POST,
            "/console/login",
            &[("cookie", &old)],
            Some(serde_json::json!({ "token": api.token })),
        );
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let new = answer.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(!new.starts_with(&format!("{old};")), "a fresh id: {new}");
        assert_eq!(api.state.sessions.len(), 1, "the old session is gone");
        let answer = api.send(Method::GET, "/console/session", &[("cookie", &old)], None);
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_page_and_its_assets_have_their_types_and_a_strict_policy() {
        let api = api(false, SessionSettings::default());
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/console.js", "text/javascript; charset=utf-8"),
            ("/console.css", "text/css; charset=utf-8"),
        ] {
            let answer = api.send(Method::GET, path, &[], None);
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert_eq!(answer.headers[header::CONTENT_TYPE], content_type, "{path}");
            let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.starts_with("default-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(answer.headers[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(answer.headers[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let page = api.send(Method::GET, "/", &[], None).text;
        assert!(page.contains(r#"<script src="/console.js" defer></script>"#));
        assert_eq!(page.matches("<script").count(), 1, "no inline script");
        assert!(!page.contains("style="), "no inline style");
        let handler = page.match_indices(" on").any(|(at, _)| {
            let rest = &page[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(!handler, "no inline event handler");
    }
}
