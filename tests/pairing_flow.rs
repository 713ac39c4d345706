//! Pairing end to end as the two state machines run it: the gateway's
//! `PairingService` on a real filesystem store (loaded through the plugin
//! host from a config file, as the gateway does), and the device's
//! `DevicePairing` on its own store, exchanging encoded messages. The
//! transport (QUIC, TLS exporter) comes with the gateway issue; here each
//! "connection" is a fresh channel-binding value and a peer address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keygate_core::device::DeviceIdentity;
use keygate_core::device::pairing::{DevicePairing, DevicePairingError, PairingCode, Progress};
use keygate_core::identity::{CertFingerprint, DeviceKey};
use keygate_core::pairing::gateway::{PairingService, PolicySlot, ServiceSettings};
use keygate_core::pairing::{GatewayAddr, PairingUri};
use keygate_core::plugin_host::PluginHost;
use keygate_core::state::pairing::{MAX_LIVE_PIN_CODES, Method, RequestStatus};
use keygate_core::state::ratelimit::RateLimitSettings;
use keygate_core::state::{IdentityManager, StateStore};
use keygate_proto::{
    Binding, DeviceInfo, DevicePin, GatewayPin, Message, PinCandidate, RefusalCode,
};
use keygate_tests::{cdylib, open_identity, toml_path, write_config};
use zeroize::Zeroizing;

use keygate_approval_pin_qr as _;

const MINUTE: Duration = Duration::from_secs(60);

/// A gateway: its config, plugins and state on a real filesystem store.
struct Gateway {
    _dir: tempfile::TempDir,
    host: PluginHost,
    manager: Arc<IdentityManager>,
    service: PairingService,
}

impl Gateway {
    /// `approval` is the `[plugins.approval]` table body, if any.
    fn new(approval: Option<&str>) -> Gateway {
        Self::with(approval, RateLimitSettings::default())
    }

    fn with(approval: Option<&str>, rate_limit: RateLimitSettings) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from(
            "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n[identity]\nlock_timeout_secs = 30\n",
        );
        if let Some(a) = approval {
            text.push_str("[plugins.approval]\n");
            text.push_str(a);
        }
        let config = write_config(dir.path(), &text);
        let (host, manager) = open_identity(&config);
        let policy = host.approval.clone().map(|policy| PolicySlot {
            name: host.loaded[1].info.name.clone(),
            policy,
        });
        let service = PairingService::new(
            manager.clone(),
            policy,
            ServiceSettings {
                rate_limit,
                ..ServiceSettings::default()
            },
        );
        Gateway {
            _dir: dir,
            host,
            manager,
            service,
        }
    }

    fn ca(&self) -> [u8; 32] {
        *self.manager.ca().fingerprint().as_bytes()
    }

    fn mint_pin(&self, attempts: u32) -> Zeroizing<String> {
        let pin = keygate_core::pairing::pin::generate(8, &mut rand::rng()).unwrap();
        self.manager
            .create_pairing_session(
                Method::Pin,
                pin.clone(),
                10 * MINUTE,
                attempts,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        pin
    }

    fn mint_qr(&self) -> PairingUri {
        let mut token = Zeroizing::new([0u8; 16]);
        rand::Rng::fill_bytes(&mut rand::rng(), &mut *token);
        let session = self
            .manager
            .create_pairing_session(
                Method::Qr,
                Zeroizing::new(hex::encode(*token)),
                10 * MINUTE,
                5,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        let mut session_id = [0u8; 16];
        hex::decode_to_slice(&session.id, &mut session_id).unwrap();
        PairingUri {
            gateways: vec![GatewayAddr::parse("127.0.0.1:7443").unwrap()],
            ca_fingerprint: self.ca(),
            session_id,
            token,
        }
    }
}

/// A device with its own store.
fn device() -> DeviceIdentity {
    DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()))
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 40_000))
}

fn binding(ca: [u8; 32], n: u8) -> Binding {
    Binding {
        ca_fingerprint: ca,
        channel_binding: [n; 32],
    }
}

/// What a pairing run ended with on the device.
#[derive(Debug)]
enum End {
    Waiting {
        request_id: String,
        check_code: String,
    },
    Paired,
    Refused(RefusalCode, String),
}

/// Runs one connection: the device's first message, then messages both
/// ways until the device waits, is paired, or is refused.
fn converse(
    gw: &Gateway,
    from: SocketAddr,
    gateway_binding: [u8; 32],
    pairing: &mut DevicePairing<'_>,
    first: Vec<u8>,
) -> End {
    let mut conv = gw.service.conversation(from, gateway_binding);
    let mut to_gateway = Some(first);
    let mut accepted = None;
    while let Some(bytes) = to_gateway.take() {
        for reply in conv.on_message(&mut rand::rng(), &bytes, SystemTime::now()) {
            match pairing.on_message(&reply) {
                Ok(Progress::Send(next)) => to_gateway = Some(next),
                Ok(Progress::Accepted { check_code }) => accepted = Some(check_code),
                Ok(Progress::Waiting {
                    request_id,
                    check_code,
                }) => {
                    if let Some(a) = &accepted {
                        assert_eq!(a, &check_code, "the check code the gateway confirmed");
                    }
                    return End::Waiting {
                        request_id,
                        check_code,
                    };
                }
                Ok(Progress::Paired(_)) => return End::Paired,
                Err(DevicePairingError::Refused { code, reason }) => {
                    return End::Refused(code, reason);
                }
                Err(e) => panic!("the device failed: {e}"),
            }
        }
    }
    panic!("the conversation ended without an answer")
}

/// Starts a pairing with `code` (a device named `d`, no capabilities) on
/// a connection that showed it CA `ca` and exporter value `[cb; 32]`.
fn start<'a>(
    dev: &'a DeviceIdentity,
    code: &str,
    ca: [u8; 32],
    cb: u8,
) -> (DevicePairing<'a>, Vec<u8>) {
    let code = PairingCode::parse(code).unwrap();
    DevicePairing::start(
        &mut rand::rng(),
        dev,
        &code,
        "d",
        &[],
        vec![],
        binding(ca, cb),
    )
    .unwrap()
}

/// Starts and runs a pairing with `code` from `from`.
fn pair(gw: &Gateway, dev: &DeviceIdentity, code: &str, from: SocketAddr, cb: u8) -> End {
    let code = PairingCode::parse(code).unwrap();
    let (mut pairing, hello) = DevicePairing::start(
        &mut rand::rng(),
        dev,
        &code,
        "kitchen-pi",
        &["echo".to_owned()],
        vec!["127.0.0.1:7443".into()],
        binding(gw.ca(), cb),
    )
    .unwrap();
    converse(gw, from, [cb; 32], &mut pairing, hello)
}

/// Asks again on a new connection for the answer to the pending request.
fn resume(gw: &Gateway, dev: &DeviceIdentity, cb: u8) -> End {
    let (mut pairing, msg) = DevicePairing::resume(dev, &[cb; 32]).unwrap();
    converse(gw, peer(99), [cb; 32], &mut pairing, msg)
}

fn pin_sessions_left(gw: &Gateway) -> usize {
    gw.manager
        .begin_pin_attempts(SystemTime::now())
        .map(|a| {
            gw.manager.release_attempts(&a).unwrap();
            a.len()
        })
        .unwrap()
}

#[test]
fn pin_pairing_waits_for_the_operator_and_a_resumed_device_gets_its_certificate() {
    let gw = Gateway::new(None);
    let dev = device();
    let pin = gw.mint_pin(5);
    let End::Waiting {
        request_id,
        check_code,
    } = pair(&gw, &dev, &pin, peer(1), 1)
    else {
        panic!("not waiting");
    };
    let record = gw.manager.approval(&request_id).unwrap().unwrap();
    assert_eq!(
        record.check_code, check_code,
        "both sides show the same code"
    );
    assert_eq!(record.status(SystemTime::now()), RequestStatus::Pending);
    assert_eq!(record.device_id, dev.key().unwrap().device_id());
    assert_eq!(record.method, Method::Pin);
    assert_eq!(record.remote_addr, "192.0.2.1:40000");
    assert_eq!(pin_sessions_left(&gw), 0, "the code is used");
    assert_eq!(dev.pending().unwrap().unwrap().request_id, request_id);

    // Still pending when asked again.
    assert!(matches!(resume(&gw, &dev, 2), End::Waiting { .. }));

    gw.manager
        .approve_request(
            &request_id,
            &keygate_core::state::Actor::operator("test"),
            SystemTime::now(),
        )
        .unwrap()
        .unwrap();
    // The answer is lost on the way (the connection drops): the device
    // still waits, asks again, and gets the certificate issued at approval.
    let (_, lost) = DevicePairing::resume(&dev, &[3; 32]).unwrap();
    let answers = gw.service.conversation(peer(1), [3; 32]).on_message(
        &mut rand::rng(),
        &lost,
        SystemTime::now(),
    );
    assert!(matches!(
        Message::decode(&answers[0]),
        Ok(Message::Approved(_))
    ));
    assert!(dev.pending().unwrap().is_some());

    assert!(matches!(resume(&gw, &dev, 4), End::Paired));
    let creds = dev.credentials().unwrap().expect("credentials kept");
    let key = dev.key().unwrap();
    creds
        .verify(&key, &CertFingerprint::from_bytes(gw.ca()))
        .unwrap();
    let fp = CertFingerprint::of_der(&creds.certificate_der);
    assert_eq!(
        gw.manager.certificate(&fp).unwrap().unwrap().device_id,
        key.device_id()
    );
    assert!(dev.pending().unwrap().is_none());
    let issued = gw.manager.certificates().unwrap().records;
    assert_eq!(
        issued
            .iter()
            .filter(|c| c.device_id == key.device_id())
            .count(),
        1,
        "nothing issued twice for one request"
    );
}

#[test]
fn qr_pairing_with_auto_approve_gets_the_certificate_at_once() {
    let gw = Gateway::new(Some(
        "use = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = true\n",
    ));
    let dev = device();
    let uri = gw.mint_qr();
    assert!(matches!(
        pair(&gw, &dev, &uri.to_uri(), peer(1), 1),
        End::Paired
    ));
    let creds = dev.credentials().unwrap().unwrap();
    assert_eq!(creds.gateways, vec!["127.0.0.1:7443".to_owned()]);
    let requests = gw.manager.approvals().unwrap().records;
    assert_eq!(requests.len(), 1);
    assert!(matches!(
        &requests[0].decision,
        keygate_core::state::pairing::ApprovalState::Approved { by, .. } if by == "policy(pin-qr)"
    ));
    // The token is single use: a second device gets nothing.
    let other = device();
    assert!(matches!(
        pair(&gw, &other, &uri.to_uri(), peer(2), 2),
        End::Refused(RefusalCode::UnknownCode, _)
    ));
    assert!(other.credentials().unwrap().is_none());
}

#[test]
fn a_wrong_pin_is_refused_and_the_fifth_failure_burns_the_code() {
    let gw = Gateway::new(None);
    let pin = gw.mint_pin(5);
    let wrong = if pin.starts_with('1') {
        "29384756"
    } else {
        "19384756"
    };
    for n in 1..=5u8 {
        // Each from its own address, so the per-source limit stays out of it.
        match pair(&gw, &device(), wrong, peer(n), n) {
            End::Refused(RefusalCode::ConfirmationFailed, _) => {}
            other => panic!("attempt {n}: {other:?}"),
        }
    }
    match pair(&gw, &device(), &pin, peer(9), 9) {
        End::Refused(RefusalCode::UnknownCode, reason) => {
            assert!(reason.contains("no PIN code is live"), "{reason}")
        }
        other => panic!("the right PIN after five failures: {other:?}"),
    }
    assert!(
        gw.host.store.list("identity/pairing/").unwrap().is_empty(),
        "the burned code is deleted"
    );
    assert!(gw.manager.approvals().unwrap().records.is_empty());
}

#[test]
fn twenty_concurrent_attempts_on_one_code_test_no_more_guesses_than_it_allows() {
    let gw = Gateway::new(None);
    gw.mint_pin(5);
    let challenged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for n in 0..20u8 {
            let gw = &gw;
            let challenged = &challenged;
            s.spawn(move || {
                let dev = device();
                let (mut pairing, hello) = start(&dev, "19384756", gw.ca(), n);
                let mut conv = gw.service.conversation(peer(n), [n; 32]);
                let replies = conv.on_message(&mut rand::rng(), &hello, SystemTime::now());
                if let Ok(Progress::Send(confirm)) = pairing.on_message(&replies[0]) {
                    challenged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Hold the challenge until every thread has tried.
                    std::thread::sleep(Duration::from_millis(200));
                    conv.on_message(&mut rand::rng(), &confirm, SystemTime::now());
                }
            });
        }
    });
    assert_eq!(
        challenged.into_inner(),
        5,
        "exactly the code's five attempts were granted"
    );
    assert_eq!(pin_sessions_left(&gw), 0, "and the code is burned");
}

#[test]
fn expired_and_used_codes_and_codes_of_the_other_kind_are_refused() {
    let gw = Gateway::new(None);
    let dev = device();
    // Expired: minted an hour ago for ten minutes.
    gw.manager
        .create_pairing_session(
            Method::Pin,
            Zeroizing::new("48203917".into()),
            10 * MINUTE,
            5,
            SystemTime::now() - 60 * MINUTE,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    assert!(matches!(
        pair(&gw, &dev, "48203917", peer(1), 1),
        End::Refused(RefusalCode::UnknownCode, _)
    ));

    // A QR token typed as a PIN: there is no PIN code to check it against.
    let uri = gw.mint_qr();
    let token_digits: String = hex::encode(*uri.token)
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .collect();
    assert!(matches!(
        pair(&gw, &dev, &token_digits, peer(2), 2),
        End::Refused(RefusalCode::UnknownCode, _)
    ));

    // A PIN session's id presented as a QR code: refused, nothing checked.
    let pin = gw.mint_pin(5);
    let pin_session = gw.manager.begin_pin_attempts(SystemTime::now()).unwrap();
    gw.manager.release_attempts(&pin_session).unwrap();
    let mut forged = gw.mint_qr();
    hex::decode_to_slice(&pin_session[0].session.id, &mut forged.session_id).unwrap();
    match pair(&gw, &dev, &forged.to_uri(), peer(3), 3) {
        End::Refused(RefusalCode::UnknownCode, reason) => {
            assert!(reason.contains("not a QR pairing code"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The PIN code kept all its attempts and works; then it is used.
    assert!(matches!(
        pair(&gw, &dev, &pin, peer(4), 4),
        End::Waiting { .. }
    ));
    assert!(matches!(
        pair(&gw, &device(), &pin, peer(5), 5),
        End::Refused(RefusalCode::UnknownCode, _)
    ));
}

#[test]
fn a_relay_between_two_connections_fails_confirmation() {
    let gw = Gateway::new(None);
    let pin = gw.mint_pin(5);
    let dev = device();
    // The device's TLS session has exporter value 1, the gateway's 2: a
    // relay in between forwards the messages but cannot make them equal.
    let (mut pairing, hello) = start(&dev, &pin, gw.ca(), 1);
    match converse(&gw, peer(1), [2; 32], &mut pairing, hello) {
        End::Refused(RefusalCode::ConfirmationFailed, _) => {}
        other => panic!("{other:?}"),
    }
    assert!(gw.manager.approvals().unwrap().records.is_empty());

    // A gateway with another CA (a man in the middle terminating TLS with
    // its own certificate) fails the same way for a PIN...
    let (mut pairing, hello) = start(&dev, &pin, [7; 32], 3);
    assert!(matches!(
        converse(&gw, peer(3), [3; 32], &mut pairing, hello),
        End::Refused(RefusalCode::ConfirmationFailed, _)
    ));
    // ...and a QR code's device refuses before sending anything.
    let uri = gw.mint_qr();
    let err = DevicePairing::start(
        &mut rand::rng(),
        &dev,
        &PairingCode::parse(&uri.to_uri()).unwrap(),
        "d",
        &[],
        vec![],
        binding([7; 32], 4),
    )
    .unwrap_err();
    assert!(err.to_string().contains("CA"), "{err}");
}

#[test]
fn a_device_confirms_no_more_pin_candidates_than_a_gateway_may_have() {
    // A rogue gateway answers with one SPAKE2 message per PIN it wants to
    // test: the device refuses more than a real gateway can have live.
    let dev = device();
    let ca = [9; 32];
    let guesses = |n: usize| -> Vec<PinCandidate> {
        (0..n)
            .map(|i| PinCandidate {
                id: format!("guess-{i}"),
                pin: Zeroizing::new(format!("{:08}", 10_000_000 + i)),
            })
            .collect()
    };
    for (offered, refused) in [(MAX_LIVE_PIN_CODES, false), (MAX_LIVE_PIN_CODES + 1, true)] {
        let (mut pairing, hello) = start(&dev, "48203917", ca, 1);
        let (_, challenge) = GatewayPin::on_hello(
            &mut rand::rng(),
            Message::decode(&hello).unwrap(),
            &guesses(offered),
            binding(ca, 1),
        )
        .unwrap();
        match pairing.on_message(&challenge.encode()) {
            Err(DevicePairingError::TooManyCandidates { offered: o, .. }) if refused => {
                assert_eq!(o, offered)
            }
            Ok(Progress::Send(_)) if !refused => {}
            other => panic!("{offered} candidates: {other:?}"),
        }
    }
}

#[test]
fn a_claimed_device_id_that_is_not_the_keys_is_refused_and_nothing_filed() {
    let gw = Gateway::new(None);
    let pin = gw.mint_pin(5);
    let key = DeviceKey::from_seed(&[1; 32]);
    let someone_else = DeviceKey::from_seed(&[2; 32]).device_id();
    let info = DeviceInfo {
        device_id: someone_else.to_string(),
        name: "d".into(),
        capabilities: vec![],
    };
    let signing = ed25519_dalek::SigningKey::from_bytes(&key.seed());
    let b = binding(gw.ca(), 1);
    let (sent, hello) = DevicePin::start(&mut rand::rng(), &signing, info, &pin, b).unwrap();
    let mut conv = gw.service.conversation(peer(1), [1; 32]);
    let replies = conv.on_message(&mut rand::rng(), &hello.encode(), SystemTime::now());
    let challenge = Message::decode(&replies[0]).unwrap();
    let (_, confirm) = sent.on_challenge(challenge).unwrap();
    let replies = conv.on_message(&mut rand::rng(), &confirm.encode(), SystemTime::now());
    match Message::decode(&replies[0]).unwrap() {
        Message::Refused(r) => {
            assert_eq!(r.code, RefusalCode::DeviceIdMismatch);
            assert!(r.reason.contains(&someone_else.to_string()), "{}", r.reason);
        }
        other => panic!("{other:?}"),
    }
    assert!(gw.manager.approvals().unwrap().records.is_empty());
}

#[test]
fn a_revoked_device_is_refused_and_a_rejected_one_is_told_why() {
    let gw = Gateway::new(None);
    let dev = device();
    let key = dev.key().unwrap();
    gw.manager
        .enroll(
            &key.public_key(),
            "old",
            &[],
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    gw.manager
        .revoke_device(
            &key.device_id(),
            "stolen",
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    let pin = gw.mint_pin(5);
    match pair(&gw, &dev, &pin, peer(1), 1) {
        End::Refused(RefusalCode::DeviceRevoked, reason) => {
            assert!(reason.contains("stolen"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(gw.manager.approvals().unwrap().records.is_empty());

    let other = device();
    let pin = gw.mint_pin(5);
    let End::Waiting { request_id, .. } = pair(&gw, &other, &pin, peer(2), 2) else {
        panic!("not waiting");
    };
    gw.manager
        .reject_request(
            &request_id,
            &keygate_core::state::Actor::operator("test"),
            "not in the inventory",
            SystemTime::now(),
        )
        .unwrap()
        .unwrap();
    match resume(&gw, &other, 3) {
        End::Refused(RefusalCode::Rejected, reason) => assert_eq!(reason, "not in the inventory"),
        other => panic!("{other:?}"),
    }
    assert!(
        other.pending().unwrap().is_none(),
        "the device forgets the request"
    );
    assert!(other.credentials().unwrap().is_none());
}

#[test]
fn another_key_cannot_ask_for_someone_elses_request() {
    let gw = Gateway::new(Some(
        "use = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = true\n",
    ));
    let dev = device();
    let pin = gw.mint_pin(5);
    assert!(matches!(pair(&gw, &dev, &pin, peer(1), 1), End::Paired));
    let request_id = gw.manager.approvals().unwrap().records[0].id.clone();

    // A thief knows the request id and puts it in its own state.
    let thief = device();
    thief
        .set_pending(&keygate_core::device::PendingPairing {
            request_id,
            gateways: vec![],
            ca_fingerprint: CertFingerprint::from_bytes(gw.ca()),
            check_code: "XXXXXX".into(),
        })
        .unwrap();
    match resume(&gw, &thief, 2) {
        End::Refused(RefusalCode::UnknownCode, reason) => {
            assert!(reason.contains("for this key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(thief.credentials().unwrap().is_none());
}

#[test]
fn failed_attempts_from_one_address_make_it_wait() {
    let gw = Gateway::with(
        None,
        RateLimitSettings {
            free_failures: 2,
            ..RateLimitSettings::default()
        },
    );
    gw.mint_pin(20);
    for n in 1..=3u8 {
        assert!(matches!(
            pair(&gw, &device(), "19384756", peer(1), n),
            End::Refused(RefusalCode::ConfirmationFailed, _)
        ));
    }
    match pair(&gw, &device(), "19384756", peer(1), 4) {
        End::Refused(RefusalCode::RateLimited { retry_after_secs }, reason) => {
            assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}");
            assert!(reason.contains("try again in"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Another address is not slowed down.
    assert!(matches!(
        pair(&gw, &device(), "19384756", peer(2), 5),
        End::Refused(RefusalCode::ConfirmationFailed, _)
    ));
}

#[test]
fn a_device_that_goes_away_after_the_challenge_gives_its_attempts_back() {
    let gw = Gateway::new(None);
    gw.mint_pin(1);
    let dev = device();
    let (_pairing, hello) = start(&dev, "19384756", gw.ca(), 1);
    {
        let mut conv = gw.service.conversation(peer(1), [1; 32]);
        let replies = conv.on_message(&mut rand::rng(), &hello, SystemTime::now());
        assert!(matches!(
            Message::decode(&replies[0]),
            Ok(Message::PinChallenge(_))
        ));
        assert_eq!(pin_sessions_left(&gw), 0, "its one attempt is taken");
    }
    assert_eq!(
        pin_sessions_left(&gw),
        1,
        "no guess was checked: the attempt is back"
    );
}

#[test]
fn an_allowlist_policy_loaded_as_a_cdylib_decides() {
    let approved = device();
    let refused = device();
    let lib = cdylib("keygate-example-approval-allowlist");
    let table = format!(
        "library = {}\n[plugins.approval.config]\ndevices = [\"{}\"]\n",
        toml_path(&lib),
        approved.key().unwrap().device_id()
    );
    let gw = Gateway::new(Some(&table));
    assert_eq!(gw.host.loaded[1].info.name, "allowlist");
    let pin = gw.mint_pin(5);
    assert!(matches!(
        pair(&gw, &approved, &pin, peer(1), 1),
        End::Paired
    ));
    let pin = gw.mint_pin(5);
    match pair(&gw, &refused, &pin, peer(2), 2) {
        End::Refused(RefusalCode::Rejected, reason) => {
            assert!(reason.contains("allow"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// Where the crash child keeps its state (set only in the child).
const CRASH_CHILD_DIR: &str = "KEYGATE_TEST_PAIRING_LOOP_DIR";
/// After how many store writes the crash child kills itself.
const CRASH_CHILD_WRITES: &str = "KEYGATE_TEST_PAIRING_LOOP_WRITES";

/// The child's store: after the `left`-th write (put or delete) has
/// returned, the process sends itself SIGKILL, so the kill lands exactly on
/// a boundary between two writes of some mutation.
struct KillAfterWrites {
    inner: Arc<dyn keygate_sdk::SecretStore>,
    left: std::sync::atomic::AtomicUsize,
}

impl KillAfterWrites {
    fn wrote(&self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

impl keygate_sdk::SecretStore for KillAfterWrites {
    fn get(&self, key: &str) -> Result<Option<keygate_sdk::Versioned>, keygate_sdk::PluginError> {
        self.inner.get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<keygate_sdk::Version>,
    ) -> Result<keygate_sdk::Version, keygate_sdk::PluginError> {
        let out = self.inner.put(key, value, expected);
        self.wrote();
        out
    }
    fn delete(
        &self,
        key: &str,
        expected: keygate_sdk::Version,
    ) -> Result<(), keygate_sdk::PluginError> {
        let out = self.inner.delete(key, expected);
        self.wrote();
        out
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, keygate_sdk::PluginError> {
        self.inner.list(prefix)
    }
}

/// Set instead of [`CRASH_CHILD_WRITES`]: the child commits through the
/// filesystem store's batches and dies inside the store's write path, at
/// `POINT:N` (the N-th time it reaches that point; see
/// `keygate_store_fs::CrashPoint`).
const CRASH_CHILD_POINT: &str = "KEYGATE_TEST_PAIRING_LOOP_POINT";

/// Not a test of its own: the child process of the
/// `a_pairing_loop_killed_…_leaves_nothing_half_paired` tests, which pairs
/// devices in a loop until it is killed.
#[test]
fn pairing_loop_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
        return;
    };
    let config_path = std::path::Path::new(&dir).join("config.toml");
    let config = keygate_core::config::Config::load(&config_path).unwrap();
    let host = PluginHost::load(&config).unwrap();
    let store: StateStore = match std::env::var(CRASH_CHILD_POINT) {
        Ok(spec) => {
            use keygate_store_fs::{CrashPoint, FsStore, Tuning};
            let (point, n) = spec.split_once(':').unwrap();
            let point = match point {
                "MidAppend" => CrashPoint::MidAppend,
                "AfterCommit" => CrashPoint::AfterCommit,
                "MidApply" => CrashPoint::MidApply,
                "MidCheckpoint" => CrashPoint::MidCheckpoint,
                other => panic!("no crash point {other}"),
            };
            let tuning = Tuning {
                crash: Some((point, n.parse().unwrap())),
                // Checkpoints every few pairings.
                checkpoint_bytes: Some(16 * 1024),
                ..Tuning::default()
            };
            let ctx = keygate_sdk_testing::test_context("store(filesystem)", &config.state_dir);
            let fs = Arc::new(FsStore::open_tuned("", ctx, &tuning).unwrap());
            assert!(
                host.state_store().has_batch(),
                "the gateway commits in batches too"
            );
            StateStore::batched(fs)
        }
        Err(_) => {
            let writes: usize = std::env::var(CRASH_CHILD_WRITES).unwrap().parse().unwrap();
            StateStore::plain(Arc::new(KillAfterWrites {
                inner: host.store.clone(),
                left: std::sync::atomic::AtomicUsize::new(writes),
            }))
        }
    };
    let manager = Arc::new(
        IdentityManager::open(
            store,
            &config.state_dir,
            config.identity.clone(),
            SystemTime::now(),
        )
        .unwrap(),
    );
    let policy = PolicySlot {
        name: "pin-qr".into(),
        policy: Arc::new(keygate_approval_pin_qr::PinQrPolicy::new(
            keygate_approval_pin_qr::PinQrConfig { auto_approve: true },
        )),
    };
    let gw = Gateway {
        _dir: tempfile::tempdir().unwrap(),
        service: PairingService::new(manager.clone(), Some(policy), ServiceSettings::default()),
        host,
        manager,
    };
    for n in 0u64.. {
        let uri = gw.mint_qr();
        println!("MINTED {}", hex::encode(uri.session_id));
        let cb = (n % 250) as u8;
        match pair(&gw, &device(), &uri.to_uri(), peer(cb), cb) {
            End::Paired => {}
            other => panic!("child: pairing {n}: {other:?}"),
        }
        println!("PAIRED {n}");
    }
}

/// Runs the pairing loop child 30 times, each dying where `env` says;
/// what the children printed.
fn kill_pairing_loops(dir: &std::path::Path, env: impl Fn() -> (&'static str, String)) -> String {
    use std::process::{Command, Stdio};

    let mut printed = String::new();
    for _ in 0..30 {
        let (var, value) = env();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pairing_loop_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CRASH_CHILD_DIR, dir)
            .env(var, &value)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "the child ({var}={value}) was not killed: {:?}",
            out.status
        );
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(
        printed.lines().any(|l| l.starts_with("PAIRED")),
        "the children never paired a device"
    );
    printed
}

#[test]
fn a_pairing_loop_killed_at_random_moments_leaves_nothing_half_paired() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n[identity]\nlock_timeout_secs = 30\n",
    );
    // Writes one by one (a store without batches): a pairing is about ten
    // writes; die after 1 to 40 of them.
    kill_pairing_loops(dir.path(), || {
        let writes: usize = rand::RngExt::random_range(&mut rand::rng(), 1..=40);
        (CRASH_CHILD_WRITES, writes.to_string())
    });
    nothing_half_paired(&config, None);
}

#[test]
fn a_pairing_loop_killed_inside_its_batches_leaves_nothing_half_paired() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n[identity]\nlock_timeout_secs = 30\n",
    );
    // Every commit is one batch (a frame of the store's journal); a pairing
    // is three (code minted, attempt taken, code used + request filed and
    // approved). Die in one of the first dozen, at any point of the path.
    let printed = kill_pairing_loops(dir.path(), || {
        let mut rng = rand::rng();
        let points = ["MidAppend", "AfterCommit", "MidApply", "MidCheckpoint"];
        let point = points[rand::RngExt::random_range(&mut rng, 0..points.len())];
        let most = if point == "MidCheckpoint" { 2 } else { 12 };
        let n: u64 = rand::RngExt::random_range(&mut rng, 1..=most);
        (CRASH_CHILD_POINT, format!("{point}:{n}"))
    });
    // With batches more holds: a code that was minted is either still
    // usable or was used by a request that is filed, never lost between.
    let minted: Vec<String> = printed
        .lines()
        .filter_map(|l| l.strip_prefix("MINTED "))
        .map(str::to_owned)
        .collect();
    assert!(!minted.is_empty());
    nothing_half_paired(&config, Some(&minted));
}

/// No certificate without its device, no approved request without its
/// certificate, no code both used and usable, nothing torn; with `minted`,
/// also no code gone without its request; and the state still pairs.
fn nothing_half_paired(config: &std::path::Path, minted: Option<&[String]>) {
    let (host, m) = open_identity(config);
    let now = SystemTime::now();
    // Nothing torn: every record reads.
    let report = m.check().unwrap();
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    // No certificate without its device.
    let certs = m.certificates().unwrap().records;
    assert!(!certs.is_empty());
    for c in &certs {
        assert!(
            m.device(&c.device_id).unwrap().is_some(),
            "certificate {} has no device record",
            c.fingerprint
        );
    }
    // No approved request without its certificate.
    let requests = m.approvals().unwrap().records;
    for r in &requests {
        if r.status(now) == RequestStatus::Approved {
            let cert = r
                .certificate
                .as_ref()
                .expect("approved without a certificate");
            let record = m.certificate(&cert.fingerprint).unwrap();
            assert_eq!(record.map(|c| c.device_id), Some(r.device_id));
        }
    }
    // No code both used (a request filed from it) and usable.
    let live: Vec<String> = host
        .store
        .list("identity/pairing/")
        .unwrap()
        .into_iter()
        .map(|k| k.trim_start_matches("identity/pairing/").to_owned())
        .collect();
    for r in &requests {
        let session = r.session_id.as_ref().expect("filed from a code");
        assert!(
            !live.contains(session),
            "code {session} was used and is still usable"
        );
    }
    for code in minted.unwrap_or_default() {
        assert!(
            live.contains(code) || requests.iter().any(|r| r.session_id.as_ref() == Some(code)),
            "code {code} was minted and is gone, yet no request used it"
        );
    }
    // And the state still pairs.
    let gw = Gateway {
        _dir: tempfile::tempdir().unwrap(),
        service: PairingService::new(m.clone(), None, ServiceSettings::default()),
        host,
        manager: m,
    };
    let uri = gw.mint_qr();
    assert!(matches!(
        pair(&gw, &device(), &uri.to_uri(), peer(1), 1),
        End::Waiting { .. }
    ));
}
