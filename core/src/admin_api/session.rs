//! The web console's sessions: an operator logs in once with its token
//! and the browser then holds only a session cookie.
//!
//! - A session id is 256 bits from the operating system's random number
//!   generator, sent as 64 hex digits in the cookie and kept here only as
//!   its SHA-256 (a memory dump shows no usable id, and a lookup compares
//!   hashes, not the secret). Each session has its own CSRF token, also
//!   256 random bits, which the page reads from `GET /console/session` and
//!   sends back in `X-CSRF-Token` on every state-changing request.
//! - Sessions live in this process's memory only: a gateway restart logs
//!   everyone out, and two gateways on one state do not share them.
//! - A session ends after [`SessionSettings::idle`] without a request, at
//!   logout, or as soon as its operator is found revoked. At most
//!   [`SessionSettings::max_sessions`] exist: a new one pushes out the one
//!   used longest ago.
//!
//! Time is a parameter (`now`), so expiry is tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The cookie's name over plain HTTP.
pub const COOKIE: &str = "keygate_session";

/// The cookie's name over TLS: the `__Host-` prefix makes a browser
/// refuse it unless it is `Secure`, has `Path=/` and no `Domain`.
pub const COOKIE_TLS: &str = "__Host-keygate_session";

/// The header a state-changing request made with the cookie carries.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How sessions are kept.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// A session unused this long is gone (default 12 h).
    pub idle: Duration,
    /// The most sessions kept at once (default 1024).
    pub max_sessions: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(12 * 3600),
            max_sessions: 1024,
        }
    }
}

/// A session cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The operating system gave no random bytes.
    #[error("session: the operating system's random number generator failed: {0}")]
    Random(String),
}

/// A session just made: what the browser is given.
pub struct NewSession {
    /// The id, for the cookie (64 hex digits).
    pub id: Zeroizing<String>,
    /// The CSRF token (64 hex digits).
    pub csrf: Zeroizing<String>,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The operator who logged in.
    pub operator: String,
    /// The hash of the token it logged in with, to check it again.
    pub token_hash: String,
    /// Its CSRF token.
    pub csrf: Zeroizing<String>,
}

struct Session {
    view: SessionView,
    last_seen: Instant,
}

/// The sessions of one admin API.
pub struct SessionStore {
    settings: SessionSettings,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::new(SessionSettings::default())
    }
}

impl SessionStore {
    /// An empty store.
    pub fn new(settings: SessionSettings) -> Self {
        Self {
            settings,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// How sessions are kept.
    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the map leaves it whole (no step of ours
        // can half-apply), so a poisoned lock is taken over.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes a session for `operator` (whose token hashes to `token_hash`).
    ///
    /// # Errors
    /// The operating system gave no random bytes.
    pub fn create(
        &self,
        operator: &str,
        token_hash: &str,
        now: Instant,
    ) -> Result<NewSession, SessionError> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut sessions = self.sessions();
        let idle = self.settings.idle;
        sessions.retain(|_, s| !expired(s, now, idle));
        while sessions.len() >= self.settings.max_sessions.max(1) {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => sessions.remove(&k),
                None => break,
            };
        }
        sessions.insert(
            key(&id),
            Session {
                view: SessionView {
                    operator: operator.to_owned(),
                    token_hash: token_hash.to_owned(),
                    csrf: csrf.clone(),
                },
                last_seen: now,
            },
        );
        Ok(NewSession { id, csrf })
    }

    /// The session `id` names if it is live at `now`, marked as used then;
    /// an expired one is removed.
    pub fn touch(&self, id: &str, now: Instant) -> Option<SessionView> {
        if !well_formed(id) {
            return None;
        }
        let k = key(id);
        let mut sessions = self.sessions();
        let session = sessions.get_mut(&k)?;
        if expired(session, now, self.settings.idle) {
            sessions.remove(&k);
            return None;
        }
        session.last_seen = now;
        Some(session.view.clone())
    }

    /// Ends session `id`; whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        well_formed(id) && self.sessions().remove(&key(id)).is_some()
    }

    /// How many sessions are held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expired(session: &Session, now: Instant, idle: Duration) -> bool {
    now.saturating_duration_since(session.last_seen) >= idle
}

fn well_formed(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> Result<Zeroizing<String>, SessionError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut *bytes)
        .map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(Zeroizing::new(hex::encode(*bytes)))
}

/// Whether `given` is the session's CSRF token, compared in constant time.
pub fn csrf_matches(session: &SessionView, given: &str) -> bool {
    let expected = session.csrf.as_bytes();
    expected.len() == given.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(expected, given.as_bytes()))
}

/// The cookie's name: [`COOKIE_TLS`] over TLS, else [`COOKIE`].
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE }
}

/// The session id the request's `Cookie` headers carry, if any.
pub fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    let name = cookie_name(tls);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value that hands the browser session `id`: not
/// readable by scripts, never sent by another site's page, for the whole
/// console, and over TLS only when the listener is TLS.
pub fn set_cookie(id: &str, tls: bool) -> String {
    let name = cookie_name(tls);
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={id}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// The `Set-Cookie` value that makes the browser drop the cookie.
pub fn clear_cookie(tls: bool) -> String {
    let name = cookie_name(tls);
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn store(max_sessions: usize) -> SessionStore {
        SessionStore::new(SessionSettings {
            idle: HOUR,
            max_sessions,
        })
    }

    #[test]
    fn a_session_lives_while_used_and_ends_after_the_idle_time() {
        let s = store(8);
        let t0 = Instant::now();
        assert!(s.is_empty());
        let new = s.create("alice", "h", t0).unwrap();
        assert!(!s.is_empty());
        assert_eq!(new.id.len(), 64);
        assert_ne!(*new.id, *new.csrf);
        let seen = s.touch(&new.id, t0 + HOUR / 2).unwrap();
        assert_eq!(seen.operator, "alice");
        assert_eq!(seen.csrf, new.csrf);
        // Used at half an hour, so alive until an hour and a half.
        assert!(s.touch(&new.id, t0 + HOUR + HOUR / 4).is_some());
        let later = t0 + HOUR + HOUR / 4 + HOUR;
        assert!(s.touch(&new.id, later).is_none());
        assert!(s.is_empty(), "an expired session is removed");
    }

    #[test]
    fn ids_are_fresh_and_only_their_hash_is_kept() {
        let s = store(8);
        let now = Instant::now();
        let a = s.create("alice", "h", now).unwrap();
        let b = s.create("alice", "h", now).unwrap();
        assert_ne!(*a.id, *b.id);
        assert_ne!(*a.csrf, *b.csrf);
        let map = s.sessions();
        assert!(map.contains_key(&key(&a.id)));
        assert!(!map.keys().any(|k| hex::encode(k) == *a.id));
    }

    #[test]
    fn unknown_malformed_and_removed_ids_find_nothing() {
        let s = store(8);
        let now = Instant::now();
        let a = s.create("alice", "h", now).unwrap();
        let mut other = a.id.to_string();
        other.replace_range(0..1, if &other[0..1] == "0" { "1" } else { "0" });
        for bad in [other.as_str(), "", "xyz", &a.id[1..]] {
            assert!(s.touch(bad, now).is_none(), "{bad:?}");
        }
        assert!(s.remove(&a.id));
        assert!(s.touch(&a.id, now).is_none());
        assert!(!s.remove(&a.id));
    }

    #[test]
    fn the_number_of_sessions_is_bounded_and_the_least_recently_used_goes() {
        let s = store(2);
        let t0 = Instant::now();
        let a = s.create("a", "h", t0).unwrap();
        let b = s.create("b", "h", t0 + Duration::from_secs(1)).unwrap();
        // a is used after b was made: b is now the least recently used.
        s.touch(&a.id, t0 + Duration::from_secs(2)).unwrap();
        let c = s.create("c", "h", t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.touch(&b.id, t0 + Duration::from_secs(4)).is_none());
        assert!(s.touch(&a.id, t0 + Duration::from_secs(4)).is_some());
        assert!(s.touch(&c.id, t0 + Duration::from_secs(4)).is_some());
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let s = store(8);
        let now = Instant::now();
        let new = s.create("alice", "h", now).unwrap();
        let view = s.touch(&new.id, now).unwrap();
        assert!(csrf_matches(&view, &new.csrf));
        for bad in ["", &new.csrf[1..], &new.csrf.to_uppercase(), &new.id] {
            assert!(!csrf_matches(&view, bad), "{bad:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_same_site_strict_for_the_whole_path_and_secure_only_over_tls() {
        let plain = set_cookie("abc", false);
        assert_eq!(
            plain,
            "keygate_session=abc; HttpOnly; SameSite=Strict; Path=/"
        );
        let tls = set_cookie("abc", true);
        assert_eq!(
            tls,
            "__Host-keygate_session=abc; HttpOnly; SameSite=Strict; Path=/; Secure"
        );
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert!(!clear_cookie(false).contains("Secure"));
        assert!(clear_cookie(true).ends_with("; Secure"));
    }

    #[test]
    fn the_cookie_is_found_among_others_by_its_name_for_the_listener() {
        let mut headers = HeaderMap::new();
        headers.append(
            axum::http::header::COOKIE,
            "a=1; keygate_session=abc ; __Host-keygate_session=def"
                .parse()
                .unwrap(),
        );
        assert_eq!(session_cookie(&headers, false).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&headers, true).as_deref(), Some("def"));
        assert_eq!(session_cookie(&HeaderMap::new(), false), None);
    }
}
