//! The QR flow end to end: happy path, CA pinning, relays, wrong tokens and
//! tampering.

mod common;

use common::{CA, Outcome, QrRun, SESSION, Stage, binding, device_key, info, rng};
use keygate_proto::{DeviceQr, GatewayQr, Message, PairingError, QrConfirm, QrHello, RefusalCode};

fn tampered(run: &QrRun, at: Stage, f: impl Fn(&mut Message)) -> Outcome {
    run.run_with(&mut move |stage, bytes| {
        if stage != at {
            return bytes;
        }
        let mut m = Message::decode(&bytes).unwrap();
        f(&mut m);
        m.encode()
    })
    .0
}

#[test]
fn qr_pairs_and_both_sides_show_the_same_check_code() {
    let (device, gateway) = QrRun::new().run().paired();
    assert_eq!(device.check_code, gateway.check_code);
    assert_eq!(device.tag, None);
    assert_eq!(gateway.session_id, SESSION);
    assert_eq!(
        gateway.device_public_key,
        device_key().verifying_key().to_bytes()
    );
    assert_eq!(gateway.device_id, info().device_id);
    assert_eq!(gateway.capabilities, info().capabilities);
    assert!(gateway.failed_candidates.is_empty());
    assert!(matches!(gateway.reply, Message::QrAccepted(_)));
}

#[test]
fn a_tls_ca_other_than_the_pinned_one_is_refused_before_sending() {
    let mut run = QrRun::new();
    run.device_binding.ca_fingerprint = [0x66; 32];
    let (out, rec) = run.run_with(&mut |_, b| b);
    match out {
        Outcome::Device(Stage::Hello, PairingError::CaMismatch { pinned, observed }) => {
            assert_eq!(pinned, CA);
            assert_eq!(observed, [0x66; 32]);
        }
        other => panic!("{other:?}"),
    }
    assert!(rec.hello.is_empty(), "nothing may be sent");
}

#[test]
fn a_wrong_token_fails_confirmation_and_counts_one_attempt() {
    let mut run = QrRun::new();
    run.gateway_token = [0x43; 16];
    let f = run.run().confirm_failure();
    assert_eq!(f.error, PairingError::ConfirmationFailed);
    assert_eq!(f.failed_candidates, vec![SESSION]);
    let Message::Refused(r) = f.reply() else {
        panic!()
    };
    assert_eq!(r.code, RefusalCode::ConfirmationFailed);
}

#[test]
fn relay_between_two_connections_fails_confirmation() {
    let mut run = QrRun::new();
    run.gateway_binding.channel_binding = [0x11; 32];
    assert_eq!(
        run.run().confirm_failure().error,
        PairingError::ConfirmationFailed
    );
}

#[test]
fn gateway_with_another_ca_fails_confirmation() {
    // The device's TLS saw (and pinned) CA; the gateway uses another one:
    // only possible if something between them terminated TLS.
    let mut run = QrRun::new();
    run.gateway_binding.ca_fingerprint = [0x66; 32];
    assert_eq!(
        run.run().confirm_failure().error,
        PairingError::ConfirmationFailed
    );
}

#[test]
fn each_changed_field_fails_with_a_named_error() {
    let run = QrRun::new();
    let hello = |f: fn(&mut QrHello)| {
        tampered(&run, Stage::Hello, move |m| {
            if let Message::QrHello(h) = m {
                f(h)
            }
        })
    };
    for (field, out) in [
        ("device_id", hello(|h| h.device_id.push('x'))),
        ("name", hello(|h| h.name.push('x'))),
        ("capabilities", hello(|h| h.capabilities.clear())),
        (
            "device_public_key",
            hello(|h| {
                h.device_public_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32])
                    .verifying_key()
                    .to_bytes()
            }),
        ),
        ("device_ephemeral", hello(|h| h.device_ephemeral[3] ^= 1)),
        // The gateway looks the token up by session id: another session's
        // token (here the same bytes) still fails, the transcript differs.
        ("session_id", hello(|h| h.session_id = "f".repeat(32))),
    ] {
        match out {
            Outcome::GatewayConfirm(f) => {
                assert_eq!(f.error, PairingError::ConfirmationFailed, "{field}")
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    // A low-order ephemeral key gives an all-zero secret: refused at once.
    let out = hello(|h| h.device_ephemeral = [0; 32]);
    assert!(
        matches!(
            out,
            Outcome::GatewayStart(PairingError::NonContributory {
                field: "QrHello.device_ephemeral"
            })
        ),
        "{out:?}"
    );
    let out = tampered(&run, Stage::Challenge, |m| {
        if let Message::QrChallenge(c) = m {
            c.gateway_ephemeral = [0; 32]
        }
    });
    assert!(
        matches!(
            out,
            Outcome::Device(
                Stage::Challenge,
                PairingError::NonContributory {
                    field: "QrChallenge.gateway_ephemeral"
                }
            )
        ),
        "{out:?}"
    );
    let out = tampered(&run, Stage::Challenge, |m| {
        if let Message::QrChallenge(c) = m {
            c.gateway_ephemeral[0] ^= 1
        }
    });
    assert_eq!(
        out.confirm_failure().error,
        PairingError::ConfirmationFailed
    );
    let f = tampered(&run, Stage::Confirm, |m| {
        if let Message::QrConfirm(c) = m {
            c.mac[0] ^= 1
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::ConfirmationFailed);
    let f = tampered(&run, Stage::Confirm, |m| {
        if let Message::QrConfirm(c) = m {
            c.signature[0] ^= 1
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::BadSignature);
    assert_eq!(f.matched.as_deref(), Some(SESSION));
    assert!(f.failed_candidates.is_empty());
    let out = tampered(&run, Stage::Accepted, |m| {
        if let Message::QrAccepted(a) = m {
            a.mac[0] ^= 1
        }
    });
    assert!(
        matches!(
            out,
            Outcome::Device(Stage::Accepted, PairingError::ConfirmationFailed)
        ),
        "{out:?}"
    );
}

#[test]
fn flipping_any_bit_of_any_message_never_pairs() {
    let run = QrRun::new();
    let (_, rec) = run.run_with(&mut |_, b| b);
    for (stage, len) in [
        (Stage::Hello, rec.hello.len()),
        (Stage::Challenge, rec.challenge.len()),
        (Stage::Confirm, rec.confirm.len()),
        (Stage::Accepted, rec.accepted.len()),
    ] {
        for i in 0..len {
            let (out, _) = run.run_with(&mut |s, mut b| {
                if s == stage {
                    b[i] ^= 0x01;
                }
                b
            });
            assert!(
                !matches!(out, Outcome::Paired { .. }),
                "{stage:?} byte {i}: still paired"
            );
        }
    }
}

#[test]
fn recorded_qr_messages_do_not_confirm_a_new_run() {
    // Replaying a recorded QrConfirm against a new challenge (new gateway
    // ephemeral key) fails, even with the right token.
    let (_, rec) = QrRun::new().run_with(&mut |_, b| b);
    let Message::QrHello(hello) = Message::decode(&rec.hello).unwrap() else {
        panic!()
    };
    let (gw, _) = GatewayQr::challenge(&mut rng(99), &hello, &common::TOKEN, binding()).unwrap();
    let recorded = Message::decode(&rec.confirm).unwrap();
    assert!(matches!(recorded, Message::QrConfirm(QrConfirm { .. })));
    assert_eq!(
        gw.on_confirm(recorded).unwrap_err().error,
        PairingError::ConfirmationFailed
    );
}

#[test]
fn bad_session_ids_are_refused_before_sending() {
    for bad in ["ABCDEF0123456789abcdef0123456789", "abc", ""] {
        let err = DeviceQr::start(
            &mut rng(1),
            &device_key(),
            info(),
            bad,
            common::TOKEN,
            CA,
            binding(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                PairingError::InvalidInput {
                    field: "session_id",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn a_signature_from_another_run_is_refused() {
    let mut other = QrRun::new();
    other.device_binding.channel_binding = [0x22; 32];
    other.gateway_binding.channel_binding = [0x22; 32];
    let (_, other_rec) = other.run_with(&mut |_, b| b);
    let Message::QrConfirm(other_confirm) = Message::decode(&other_rec.confirm).unwrap() else {
        panic!("not a confirm");
    };
    let f = tampered(&QrRun::new(), Stage::Confirm, move |m| {
        if let Message::QrConfirm(c) = m {
            c.signature = other_confirm.signature
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::BadSignature);
}

#[test]
fn debug_output_names_each_state() {
    let (dev, hello) = DeviceQr::start(
        &mut rng(1),
        &device_key(),
        info(),
        SESSION,
        common::TOKEN,
        CA,
        binding(),
    )
    .unwrap();
    let Message::QrHello(hello) = hello else {
        panic!()
    };
    let (gw, challenge) =
        GatewayQr::challenge(&mut rng(2), &hello, &common::TOKEN, binding()).unwrap();
    assert!(format!("{dev:?}").starts_with("DeviceQrSent"));
    let gw_shown = format!("{gw:?}");
    assert!(gw_shown.starts_with("GatewayQrChallenged") && gw_shown.contains(SESSION));
    let (dev, confirm) = dev.on_challenge(challenge).unwrap();
    assert!(format!("{dev:?}").starts_with("DeviceQrConfirmed"));
    assert_eq!(dev.check_code(), gw.on_confirm(confirm).unwrap().check_code);
}
