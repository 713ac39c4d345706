//! The node agent: a paired device connected to its gateway with its
//! certificate, for as long as it runs.
//!
//! - Connects (mutual TLS: its certificate and the CA's, trusting only
//!   that CA), sends `Register { device_id, capabilities }`, then a
//!   `Heartbeat` every `heartbeat_secs` the gateway asked for; each
//!   request on its own stream, one frame each way.
//! - Answers the gateway's `Invoke`s on the streams they came on
//!   ([`capability::answer`]).
//! - Renews its certificate once two thirds of its validity have passed
//!   ([`schedule::renewal_time`]): a `Renew` signed for this connection,
//!   the `Renewed` certificate checked and kept, then a new connection
//!   made with it and registered **before** the old one is closed.
//! - Reconnects when the connection is lost, after a jittered
//!   exponential backoff ([`Backoff`]; reset once a `Register` succeeds),
//!   or after a short jittered pause when the gateway shuts down. With
//!   several gateway addresses (gateways sharing one store), it tries them
//!   in order starting *after* the one whose connection ended, so a node
//!   whose gateway died moves to the next one at once rather than first
//!   waiting out a handshake with the dead one; the dead one comes last.
//! - Stops for good when the gateway says the device or its certificate
//!   is revoked (close code `REVOKED`, a `certificate_revoked` TLS alert,
//!   or a refusal naming a revocation): [`AgentError::Revoked`].
//!
//! [`AgentControl::stop`] (e.g. from a signal handler) closes the
//! connection and makes [`Agent::run`] return `Ok`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use keygate_proto::{Heartbeat, Message, RefusalCode, Refused, Register, Renew};
use keygate_sdk::{ServerTrust, TlsIdentity, Transport};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::capability::{self, Reply};
use super::identity::{Credentials, DeviceIdentity, DeviceIdentityError};
use super::link::{CloseCause, Closure, Link, LinkError, connect_params};
use super::schedule::{self, Backoff, Ended, Reconnect};
use crate::identity::{DeviceId, DeviceKey, DeviceKeyError};

/// The application code the node closes its connection with.
const CLOSE_CODE: u32 = 0;
/// How often the invocation server looks whether its link is gone.
const SERVER_POLL: Duration = Duration::from_millis(250);

/// How a node runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// `HOST:PORT` of the gateway, tried in order; empty: the addresses
    /// kept with the credentials.
    pub gateways: Vec<String>,
    /// What it registers (see [`capability::node_capabilities`]).
    pub capabilities: Vec<String>,
    /// How long an answer may take.
    pub request_timeout: Duration,
    /// Waits between reconnection attempts.
    pub backoff: Backoff,
    /// The longest pause before reconnecting to a gateway that shut down.
    pub shutdown_pause: Duration,
}

impl AgentSettings {
    /// Defaults: 10 s per request, backoff 0.5 s doubling to 30 s, up to
    /// 2 s after a gateway's shutdown.
    pub fn new(gateways: Vec<String>, capabilities: Vec<String>) -> Self {
        Self {
            gateways,
            capabilities,
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            shutdown_pause: Duration::from_secs(2),
        }
    }
}

/// Why the agent stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The device has no credentials.
    #[error("this device is not paired: run `keygate node pair` first")]
    NotPaired,
    /// The gateway revoked the device or its certificate.
    #[error("device {device_id} is revoked: the gateway refuses it ({reason}); the node stops")]
    Revoked {
        /// The device.
        device_id: DeviceId,
        /// What the gateway said.
        reason: String,
    },
    /// The certificate expired before it could be renewed.
    #[error(
        "the certificate of device {device_id} expired at {not_after}: it can no longer be renewed, pair again"
    )]
    Expired {
        /// The device.
        device_id: DeviceId,
        /// When (RFC 3339).
        not_after: String,
    },
    /// No gateway address is known.
    #[error("no gateway address: give --gateway HOST:PORT")]
    NoGateway,
    /// The kept certificate cannot be read.
    #[error("the kept certificate cannot be read: {0}")]
    Certificate(String),
    /// The device's own state failed.
    #[error(transparent)]
    Identity(#[from] DeviceIdentityError),
    /// The device key cannot be exported for TLS.
    #[error(transparent)]
    Key(#[from] DeviceKeyError),
}

/// Stops an agent from another thread. Cheap to clone.
#[derive(Clone, Default)]
pub struct AgentControl(Arc<Control>);

#[derive(Default)]
struct Control {
    stopped: Mutex<bool>,
    woken: Condvar,
    current: Mutex<Option<Arc<Link>>>,
}

impl std::fmt::Debug for AgentControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentControl")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentControl {
    /// Stops the agent: closes its connection, ends its waits.
    pub fn stop(&self) {
        *lock(&self.0.stopped) = true;
        self.0.woken.notify_all();
        if let Some(link) = lock(&self.0.current).take() {
            link.close(CLOSE_CODE, "the node is stopping");
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.0.stopped)
    }

    /// Sleeps for `delay` unless stopped first: true when stopped.
    fn sleep(&self, delay: Duration) -> bool {
        let stopped = lock(&self.0.stopped);
        let (stopped, _) = self
            .0
            .woken
            .wait_timeout_while(stopped, delay, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *stopped
    }

    /// The link a stop closes; closed at once if already stopped.
    fn set_current(&self, link: Arc<Link>) {
        *lock(&self.0.current) = Some(link.clone());
        if self.is_stopped() {
            link.close(CLOSE_CODE, "the node is stopping");
        }
    }
}

/// How a session (or an attempt at one) ended.
enum End {
    Stopped,
    Revoked(String),
    Shutdown(String),
    Lost(String),
    Fatal(AgentError),
}

impl End {
    fn of_link(e: &LinkError) -> End {
        match e.cause() {
            CloseCause::Revoked => End::Revoked(e.to_string()),
            CloseCause::Shutdown => End::Shutdown(e.to_string()),
            CloseCause::Silent | CloseCause::Other => End::Lost(e.to_string()),
        }
    }

    fn of_closure(c: Closure) -> End {
        Self::of_link(&LinkError::Closed(c))
    }

    fn of_refusal(what: &str, r: &Refused) -> End {
        match r.code {
            RefusalCode::DeviceRevoked | RefusalCode::CertificateRevoked => {
                End::Revoked(format!("{what} refused: {}", r.reason))
            }
            _ => End::Lost(format!("the gateway refused {what}: {}", r.reason)),
        }
    }
}

/// One registered connection.
struct Session {
    link: Arc<Link>,
    credentials: Credentials,
    not_after: SystemTime,
    heartbeat: Duration,
    renew_at: SystemTime,
    server: Option<JoinHandle<()>>,
}

impl Session {
    /// Closes the link (if still open) and waits for its server.
    fn end(mut self, reason: &str) {
        if self.link.closed().is_none() {
            self.link.close(CLOSE_CODE, reason);
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// A node agent. See the [module docs](self).
pub struct Agent {
    transport: Arc<dyn Transport>,
    identity: DeviceIdentity,
    settings: AgentSettings,
    capabilities: Arc<[String]>,
    control: AgentControl,
    /// Index (in the address list) of the gateway to try first.
    first_gateway: std::sync::atomic::AtomicUsize,
    /// Index of the gateway the last connection went to.
    connected_gateway: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for the device `identity`, over `transport`.
    pub fn new(
        transport: Arc<dyn Transport>,
        identity: DeviceIdentity,
        settings: AgentSettings,
    ) -> Self {
        let capabilities = settings.capabilities.clone().into();
        Self {
            transport,
            identity,
            settings,
            capabilities,
            control: AgentControl::default(),
            first_gateway: Default::default(),
            connected_gateway: Default::default(),
        }
    }

    /// After a connection ended: try the gateway after the one it was to
    /// first, next time.
    fn move_past_connected_gateway(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let connected = self.connected_gateway.load(Relaxed);
        self.first_gateway.store(connected.wrapping_add(1), Relaxed);
    }

    /// The handle that stops this agent.
    pub fn control(&self) -> AgentControl {
        self.control.clone()
    }

    /// Runs until stopped (`Ok`) or until the device cannot go on
    /// (revoked, expired, not paired, its state unreadable).
    pub fn run(&self) -> Result<(), AgentError> {
        let key = self.identity.key()?;
        let mut reconnect = Reconnect::new(self.settings.backoff, self.settings.shutdown_pause);
        let mut rng = rand::rng();
        loop {
            if self.control.is_stopped() {
                return Ok(());
            }
            let (end, registered) = match self.open_session(&key, false) {
                Ok(session) => {
                    let end = self.serve(session, &key);
                    self.move_past_connected_gateway();
                    (end, true)
                }
                Err(end) => (end, false),
            };
            if self.control.is_stopped() {
                return Ok(());
            }
            let delay = match end {
                End::Stopped => return Ok(()),
                End::Fatal(e) => return Err(e),
                End::Revoked(reason) => {
                    return Err(AgentError::Revoked {
                        device_id: key.device_id(),
                        reason,
                    });
                }
                End::Shutdown(reason) => {
                    let ended = Ended {
                        registered,
                        shutdown: true,
                    };
                    let delay = reconnect.delay(ended, &mut rng);
                    tracing::info!(
                        "reconnecting in {} ms because the gateway is shutting down ({reason})",
                        delay.as_millis()
                    );
                    delay
                }
                End::Lost(reason) => {
                    let ended = Ended {
                        registered,
                        shutdown: false,
                    };
                    let delay = reconnect.delay(ended, &mut rng);
                    tracing::info!("reconnecting in {} ms because {reason}", delay.as_millis());
                    delay
                }
            };
            if self.control.sleep(delay) {
                return Ok(());
            }
        }
    }

    /// Connects with the kept credentials and registers.
    fn open_session(&self, key: &DeviceKey, renewed: bool) -> Result<Session, End> {
        let fatal = |e: AgentError| End::Fatal(e);
        let credentials = self
            .identity
            .credentials()
            .map_err(|e| fatal(e.into()))?
            .ok_or(End::Fatal(AgentError::NotPaired))?;
        let (not_before, not_after) =
            certificate_window(&credentials.certificate_der).map_err(fatal)?;
        let now = SystemTime::now();
        if now > not_after {
            return Err(fatal(AgentError::Expired {
                device_id: credentials.device_id,
                not_after: crate::time::rfc3339(not_after),
            }));
        }
        let renew_at = if renewed {
            schedule::next_renewal(now, not_before, not_after)
        } else {
            schedule::renewal_time(not_before, not_after)
        };
        let link = self.connect(key, &credentials)?;
        tracing::info!(gateway = %link.remote_addr(), "connected");
        let heartbeat = self.register(&link, key)?;
        tracing::info!(
            gateway = %link.remote_addr(),
            heartbeat_secs = heartbeat.as_secs(),
            capabilities = %self.capabilities.join(","),
            "registered"
        );
        let link = Arc::new(link);
        self.control.set_current(link.clone());
        let server = {
            let link = link.clone();
            let capabilities = self.capabilities.clone();
            std::thread::Builder::new()
                .name("keygate-node-invocations".into())
                .spawn(move || serve_invocations(&link, &capabilities))
                .map_err(|e| End::Lost(format!("cannot start the invocation thread: {e}")))?
        };
        Ok(Session {
            link,
            credentials,
            not_after,
            heartbeat,
            renew_at,
            server: Some(server),
        })
    }

    fn connect(&self, key: &DeviceKey, credentials: &Credentials) -> Result<Link, End> {
        let gateways = if self.settings.gateways.is_empty() {
            &credentials.gateways
        } else {
            &self.settings.gateways
        };
        if gateways.is_empty() {
            return Err(End::Fatal(AgentError::NoGateway));
        }
        let identity = TlsIdentity {
            cert_chain: vec![
                credentials.certificate_der.clone(),
                credentials.ca_der.clone(),
            ],
            private_key_der: key
                .to_pkcs8_der()
                .map_err(|e| End::Fatal(e.into()))?
                .to_vec(),
        };
        let trust = ServerTrust::Roots(vec![credentials.ca_der.clone()]);
        let mut last = End::Fatal(AgentError::NoGateway);
        let first = self
            .first_gateway
            .load(std::sync::atomic::Ordering::Relaxed);
        for index in (0..gateways.len()).map(|i| first.wrapping_add(i) % gateways.len()) {
            let addr = &gateways[index];
            let params = match connect_params(addr, trust.clone(), Some(identity.clone())) {
                Ok(p) => p,
                Err(e) => {
                    last = End::Lost(e.to_string());
                    continue;
                }
            };
            match Link::connect(self.transport.clone(), params) {
                Ok(link) => {
                    self.connected_gateway
                        .store(index, std::sync::atomic::Ordering::Relaxed);
                    return Ok(link);
                }
                Err(e) => {
                    tracing::debug!(gateway = %addr, error = %e, "cannot connect");
                    last = End::of_link(&e);
                    if matches!(last, End::Revoked(_)) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn ask(&self, link: &Link, message: Message) -> Result<Message, End> {
        let what = message.name();
        let answer = link
            .request(&message.encode(), self.settings.request_timeout)
            .map_err(|e| End::of_link(&e))?;
        match Message::decode(&answer) {
            Ok(Message::Refused(r)) => Err(End::of_refusal(what, &r)),
            Ok(m) => Ok(m),
            Err(e) => Err(End::Lost(format!(
                "the answer to {what} does not decode: {e}"
            ))),
        }
    }

    fn register(&self, link: &Link, key: &DeviceKey) -> Result<Duration, End> {
        let register = Message::Register(Register {
            device_id: key.device_id().to_string(),
            capabilities: self.capabilities.to_vec(),
        });
        match self.ask(link, register)? {
            Message::Registered(r) => Ok(Duration::from_secs(r.heartbeat_secs.max(1).into())),
            other => Err(End::Lost(format!(
                "the gateway answered Register with {}",
                other.name()
            ))),
        }
    }

    fn heartbeat(&self, link: &Link, key: &DeviceKey) -> Result<(), End> {
        let heartbeat = Message::Heartbeat(Heartbeat {
            device_id: key.device_id().to_string(),
        });
        match self.ask(link, heartbeat)? {
            Message::HeartbeatAck => {
                tracing::debug!("heartbeat acknowledged");
                Ok(())
            }
            other => Err(End::Lost(format!(
                "the gateway answered Heartbeat with {}",
                other.name()
            ))),
        }
    }

    /// Serves a registered session until it ends, renewing on the way.
    fn serve(&self, mut session: Session, key: &DeviceKey) -> End {
        let mut next_heartbeat = Instant::now() + session.heartbeat;
        loop {
            if self.control.is_stopped() {
                session.end("the node is stopping");
                return End::Stopped;
            }
            let now = SystemTime::now();
            if now >= session.renew_at {
                match self.renew(&session, key) {
                    Ok(next) => {
                        let old = std::mem::replace(&mut session, next);
                        old.end("replaced by a connection with the renewed certificate");
                        next_heartbeat = Instant::now() + session.heartbeat;
                        continue;
                    }
                    Err(Renewal::End(end)) => {
                        session.end("renewal failed");
                        return end;
                    }
                    Err(Renewal::Retry(why)) => {
                        let retry = schedule::renewal_retry(now, session.not_after);
                        tracing::warn!(
                            "renewal failed: {why}; trying again in {} s",
                            retry.as_secs()
                        );
                        session.renew_at = now + retry;
                    }
                }
            }
            if Instant::now() >= next_heartbeat {
                if let Err(end) = self.heartbeat(&session.link, key) {
                    session.end("heartbeat failed");
                    return end;
                }
                next_heartbeat = Instant::now() + session.heartbeat;
            }
            let until_heartbeat = next_heartbeat.saturating_duration_since(Instant::now());
            let until_renewal = session
                .renew_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if let Some(closure) = session.link.wait_closed(until_heartbeat.min(until_renewal)) {
                session.end("closed");
                return End::of_closure(closure);
            }
        }
    }

    /// Renews the certificate on `session` and opens a registered session
    /// with the new one; the old one is left open.
    fn renew(&self, session: &Session, key: &DeviceKey) -> Result<Session, Renewal> {
        let device_id = key.device_id().to_string();
        let renew = Renew::sign(
            key.signing_key(),
            &device_id,
            &session.link.channel_binding(),
        )
        .map_err(|e| Renewal::Retry(e.to_string()))?;
        let answer = match self.ask(&session.link, Message::Renew(renew)) {
            Ok(answer) => answer,
            Err(End::Lost(why)) if session.link.closed().is_none() => {
                return Err(Renewal::Retry(why));
            }
            Err(end) => return Err(Renewal::End(end)),
        };
        let Message::Renewed(renewed) = answer else {
            return Err(Renewal::Retry(format!(
                "the gateway answered Renew with {}",
                answer.name()
            )));
        };
        let mut certificates = renewed.certificates.into_iter();
        let (Some(leaf), Some(ca)) = (certificates.next(), certificates.next_back()) else {
            return Err(Renewal::Retry(
                "the gateway sent no CA certificate with the renewed one".into(),
            ));
        };
        let credentials = Credentials {
            device_id: key.device_id(),
            certificate_der: leaf,
            ca_der: ca,
            gateways: session.credentials.gateways.clone(),
        };
        self.identity
            .replace_credentials(&credentials, &session.credentials.ca_fingerprint())
            .map_err(|e| Renewal::Retry(e.to_string()))?;
        let not_after = certificate_window(&credentials.certificate_der)
            .map(|(_, not_after)| crate::time::rfc3339(not_after))
            .unwrap_or_default();
        tracing::info!(%not_after, "renewed: certificate kept, reconnecting with it");
        match self.open_session(key, true) {
            Ok(next) => Ok(next),
            Err(end @ (End::Revoked(_) | End::Fatal(_))) => Err(Renewal::End(end)),
            Err(End::Stopped) => Err(Renewal::End(End::Stopped)),
            Err(End::Lost(why) | End::Shutdown(why)) => Err(Renewal::Retry(format!(
                "cannot connect with the renewed certificate: {why}"
            ))),
        }
    }
}

enum Renewal {
    /// The session cannot go on.
    End(End),
    /// The session goes on; try again later.
    Retry(String),
}

/// Answers the gateway's invocations on `link` until it closes.
fn serve_invocations(link: &Link, capabilities: &[String]) {
    loop {
        match link.next_incoming(SERVER_POLL) {
            Ok(Some(incoming)) => match capability::reply_to(&incoming.frame, capabilities) {
                Reply::Answer(bytes) => {
                    if let Err(e) = link.reply(incoming.stream, &bytes) {
                        tracing::debug!(error = %e, "an invocation's answer was not delivered");
                    }
                }
                Reply::Ignore(why) => {
                    tracing::warn!("{why}");
                    let _ = link.finish(incoming.stream);
                }
            },
            Ok(None) if link.closed().is_none() => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// `(notBefore, notAfter)` of a DER certificate.
pub fn certificate_window(der: &[u8]) -> Result<(SystemTime, SystemTime), AgentError> {
    let bad = |why: String| AgentError::Certificate(why);
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    let at = |secs: i64| {
        u64::try_from(secs)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| bad(format!("a validity bound before 1970: {secs}")))
    };
    let validity = cert.validity();
    Ok((
        at(validity.not_before.timestamp())?,
        at(validity.not_after.timestamp())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CertificateAuthority;

    #[test]
    fn the_window_of_an_issued_certificate_is_read_back() {
        let now = SystemTime::now();
        let ca = CertificateAuthority::generate("CA", Duration::from_secs(86_400), now).unwrap();
        let key = DeviceKey::from_seed(&[1; 32]);
        let cert = ca
            .issue_client(
                &key.public_key(),
                &key.device_id(),
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        assert_eq!(
            certificate_window(&cert.der).unwrap(),
            (cert.not_before, cert.not_after)
        );
        assert!(certificate_window(b"not a certificate").is_err());
    }

    #[test]
    fn refusals_naming_a_revocation_stop_the_node_and_others_reconnect() {
        let refused = |code| Refused {
            code,
            reason: "r".into(),
        };
        for code in [RefusalCode::DeviceRevoked, RefusalCode::CertificateRevoked] {
            assert!(matches!(
                End::of_refusal("Register", &refused(code)),
                End::Revoked(_)
            ));
        }
        for code in [
            RefusalCode::NotRegistered,
            RefusalCode::CertificateMismatch,
            RefusalCode::Internal,
        ] {
            assert!(matches!(
                End::of_refusal("Heartbeat", &refused(code)),
                End::Lost(_)
            ));
        }
    }

    #[test]
    fn a_stopped_control_ends_sleeps_at_once() {
        let control = AgentControl::default();
        let start = Instant::now();
        assert!(!control.sleep(Duration::from_millis(10)));
        let stopper = control.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stopper.stop();
        });
        assert!(control.sleep(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(control.is_stopped());
    }
}
