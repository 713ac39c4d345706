//! The PIN flow end to end: happy paths, wrong PINs, relays, tampering and
//! recorded transcripts.

mod common;

use common::{Outcome, PinRun, Stage, binding, candidates, device_key, info, rng};
use keygate_proto::{
    Binding, DevicePin, GatewayPin, MAX_PIN_CANDIDATES, Message, PairingError, PinAccepted,
    PinConfirm, RefusalCode, Refused,
};

/// A tamper hook that decodes the message at `at`, edits it, re-encodes it.
fn edit(at: Stage, f: impl Fn(&mut Message)) -> impl FnMut(Stage, Vec<u8>) -> Vec<u8> {
    move |stage, bytes| {
        if stage != at {
            return bytes;
        }
        let mut m = Message::decode(&bytes).unwrap();
        f(&mut m);
        m.encode()
    }
}

fn tampered(run: &PinRun, at: Stage, f: impl Fn(&mut Message)) -> Outcome {
    run.run_with(&mut edit(at, f)).0
}

#[test]
fn pin_pairs_with_one_candidate_and_both_sides_show_the_same_check_code() {
    let (device, gateway) = PinRun::new("48151623", &["48151623"]).run().paired();
    assert_eq!(device.check_code, gateway.check_code);
    assert_eq!(device.check_code.len(), 6);
    assert_eq!(gateway.session_id, "code-0");
    assert!(gateway.failed_candidates.is_empty());
    assert_eq!(
        gateway.device_public_key,
        device_key().verifying_key().to_bytes()
    );
    assert_eq!(gateway.device_id, info().device_id);
    assert_eq!(gateway.name, info().name);
    assert_eq!(gateway.capabilities, info().capabilities);
    assert!(matches!(gateway.reply, Message::PinAccepted(_)));
}

#[test]
fn pin_with_three_candidates_verifies_the_right_one_and_reports_the_others_failed() {
    let run = PinRun::new("48151623", &["11335577", "48151623", "90817263"]);
    let (out, rec) = run.run_with(&mut |_, b| b);
    let (device, gateway) = out.paired();
    assert_eq!(gateway.session_id, "code-1");
    assert_eq!(gateway.failed_candidates, vec!["code-0", "code-2"]);
    assert_eq!(device.check_code, gateway.check_code);
    let Message::PinChallenge(challenge) = Message::decode(&rec.challenge).unwrap() else {
        panic!("not a challenge");
    };
    assert_eq!(challenge.candidates.len(), 3);
    assert_eq!(device.tag, Some(challenge.candidates[1].tag));
}

#[test]
fn check_codes_differ_between_runs() {
    let (a, _) = PinRun::new("48151623", &["48151623"]).run().paired();
    let mut other = PinRun::new("48151623", &["48151623"]);
    other.device_binding.channel_binding = [1; 32];
    other.gateway_binding.channel_binding = [1; 32];
    let (b, _) = other.run().paired();
    assert_ne!(a.check_code, b.check_code);
}

#[test]
fn wrong_pin_fails_confirmation_and_reports_every_candidate_failed() {
    let failure = PinRun::new("55556666", &["11112222", "33334444"])
        .run()
        .confirm_failure();
    assert_eq!(failure.error, PairingError::ConfirmationFailed);
    assert_eq!(failure.failed_candidates, vec!["code-0", "code-1"]);
    assert_eq!(failure.matched, None);
    let Message::Refused(refused) = failure.reply() else {
        panic!("reply is not a refusal");
    };
    assert_eq!(refused.code, RefusalCode::ConfirmationFailed);
    // The reply is a valid message.
    assert_eq!(
        Message::decode(&failure.reply().encode()).unwrap(),
        failure.reply()
    );
}

#[test]
fn a_pin_that_differs_in_one_digit_fails() {
    let failure = PinRun::new("48151624", &["48151623"])
        .run()
        .confirm_failure();
    assert_eq!(failure.error, PairingError::ConfirmationFailed);
    assert_eq!(failure.failed_candidates, vec!["code-0"]);
}

#[test]
fn relay_between_two_connections_fails_confirmation() {
    let mut run = PinRun::new("48151623", &["48151623"]);
    run.gateway_binding = Binding {
        channel_binding: [0x11; 32],
        ..binding()
    };
    let failure = run.run().confirm_failure();
    assert_eq!(failure.error, PairingError::ConfirmationFailed);
    assert_eq!(failure.failed_candidates, vec!["code-0"]);
}

#[test]
fn gateway_with_another_ca_fails_confirmation() {
    let mut run = PinRun::new("48151623", &["48151623"]);
    run.device_binding = Binding {
        ca_fingerprint: [0x66; 32],
        ..binding()
    };
    let failure = run.run().confirm_failure();
    assert_eq!(failure.error, PairingError::ConfirmationFailed);
}

/// An eavesdropper (or a man in the middle) records every message of a
/// failed and of a successful run, then tries each PIN of a set that holds
/// the right one, with everything the public API offers. None of it
/// reproduces a recorded MAC: each side's SPAKE2 scalar is drawn from its
/// own RNG and never leaves its state, so testing a guess needs a live run
/// with the gateway (one counted attempt), not the recording.
#[test]
fn recorded_runs_give_no_offline_test_of_any_pin() {
    const RIGHT: &str = "48151623";
    let (ok, ok_rec) = PinRun::new(RIGHT, &[RIGHT]).run_with(&mut |_, b| b);
    ok.paired();
    let (bad, bad_rec) = PinRun::new("99990000", &[RIGHT]).run_with(&mut |_, b| b);
    assert_eq!(
        bad.confirm_failure().error,
        PairingError::ConfirmationFailed
    );

    let guesses = ["00000000", "99990000", "48151622", RIGHT, "12345678"];
    for rec in [&ok_rec, &bad_rec] {
        let recorded_confirm = Message::decode(&rec.confirm).unwrap();
        let Message::PinConfirm(PinConfirm { macs, .. }) = &recorded_confirm else {
            panic!("not a confirm");
        };
        let recorded_dev_mac = macs[0].mac;
        let recorded_accepted = (!rec.accepted.is_empty()).then(|| {
            let Message::PinAccepted(a) = Message::decode(&rec.accepted).unwrap() else {
                panic!("not accepted");
            };
            a
        });
        let Message::PinHello(recorded_hello) = Message::decode(&rec.hello).unwrap() else {
            panic!("not a hello");
        };
        let Message::PinChallenge(recorded_challenge) = Message::decode(&rec.challenge).unwrap()
        else {
            panic!("not a challenge");
        };
        for (i, guess) in guesses.iter().enumerate() {
            let seed = 100 + i as u64;
            // Neither side's SPAKE2 message is reproducible from a guess:
            // each hides its PIN behind a fresh secret scalar.
            let (_, my_hello) =
                DevicePin::start(&mut rng(seed), &device_key(), info(), guess, binding()).unwrap();
            let Message::PinHello(my_hello) = my_hello else {
                panic!("not a hello");
            };
            assert_ne!(my_hello.spake_a, recorded_hello.spake_a, "guess {guess}");
            // As a device: a fresh hello for the guess, answered by the
            // recorded challenge.
            let (dev, _) =
                DevicePin::start(&mut rng(seed), &device_key(), info(), guess, binding()).unwrap();
            let challenge = Message::decode(&rec.challenge).unwrap();
            let (dev, my_confirm) = dev.on_challenge(challenge).unwrap();
            let Message::PinConfirm(mine) = my_confirm else {
                panic!("not a confirm");
            };
            assert_ne!(mine.macs[0].mac, recorded_dev_mac, "guess {guess}");
            // ...and the recorded gateway MAC does not verify either.
            if let Some(a) = &recorded_accepted {
                assert_eq!(
                    dev.on_accepted(Message::PinAccepted(a.clone())),
                    Err(PairingError::ConfirmationFailed),
                    "guess {guess}"
                );
            }
            // As a gateway holding the guess: answer the recorded hello and
            // feed it the recorded confirm.
            let hello = Message::decode(&rec.hello).unwrap();
            let (gw, my_challenge) =
                GatewayPin::on_hello(&mut rng(seed + 50), hello, &candidates(&[guess]), binding())
                    .unwrap();
            let Message::PinChallenge(my_challenge) = my_challenge else {
                panic!("not a challenge");
            };
            assert_ne!(
                my_challenge.candidates[0].spake_b, recorded_challenge.candidates[0].spake_b,
                "guess {guess}"
            );
            let mut forged = recorded_confirm.clone();
            if let Message::PinConfirm(c) = &mut forged {
                // Present the recorded MAC under this run's tag.
                c.macs[0].tag = my_challenge.candidates[0].tag;
            }
            let failure = gw.on_confirm(forged).unwrap_err();
            assert_eq!(
                failure.error,
                PairingError::ConfirmationFailed,
                "guess {guess}"
            );
        }
    }
}

#[test]
fn each_changed_hello_field_fails_with_a_named_error() {
    let run = PinRun::new("48151623", &["48151623"]);
    let hello = |f: fn(&mut keygate_proto::PinHello)| {
        tampered(&run, Stage::Hello, move |m| {
            if let Message::PinHello(h) = m {
                f(h)
            }
        })
    };
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32])
        .verifying_key()
        .to_bytes();
    let cases: Vec<(&str, Outcome)> = vec![
        ("device_id", hello(|h| h.device_id.push('x'))),
        ("name", hello(|h| h.name = "Evil display".into())),
        (
            "capabilities",
            hello(|h| h.capabilities.push("admin".into())),
        ),
        (
            "device_public_key",
            tampered(&run, Stage::Hello, move |m| {
                if let Message::PinHello(h) = m {
                    h.device_public_key = other_key
                }
            }),
        ),
        ("spake_a", hello(|h| h.spake_a[5] ^= 1)),
    ];
    for (field, out) in cases {
        match out {
            Outcome::GatewayConfirm(f) => {
                assert_eq!(f.error, PairingError::ConfirmationFailed, "{field}")
            }
            Outcome::GatewayStart(PairingError::BadSpakeMessage { field: f }) => {
                assert_eq!((field, f), ("spake_a", "PinHello.spake_a"))
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    // A key that is no Ed25519 point is refused at the hello.
    let mut bad_point = [0u8; 32];
    bad_point[0] = 2; // y = 2 is not on the curve
    let out = tampered(&run, Stage::Hello, move |m| {
        if let Message::PinHello(h) = m {
            h.device_public_key = bad_point
        }
    });
    assert!(
        matches!(out, Outcome::GatewayStart(PairingError::BadPublicKey)),
        "{out:?}"
    );
    // A SPAKE2 message for the wrong side is refused at the hello.
    let out = hello(|h| h.spake_a[0] = b'B');
    assert!(
        matches!(
            out,
            Outcome::GatewayStart(PairingError::BadSpakeMessage {
                field: "PinHello.spake_a"
            })
        ),
        "{out:?}"
    );
}

#[test]
fn each_changed_challenge_field_fails_with_a_named_error() {
    let run = PinRun::new("48151623", &["48151623", "11335577"]);
    let out = tampered(&run, Stage::Challenge, |m| {
        if let Message::PinChallenge(c) = m {
            c.candidates[0].tag[0] ^= 1
        }
    });
    assert!(
        matches!(&out, Outcome::GatewayConfirm(f) if f.error == PairingError::TagMismatch && f.failed_candidates.is_empty()),
        "{out:?}"
    );
    let out = tampered(&run, Stage::Challenge, |m| {
        if let Message::PinChallenge(c) = m {
            c.candidates[0].spake_b[9] ^= 1
        }
    });
    match out {
        Outcome::GatewayConfirm(f) => {
            assert_eq!(f.error, PairingError::ConfirmationFailed);
            assert_eq!(f.failed_candidates, vec!["code-0", "code-1"]);
        }
        Outcome::Device(Stage::Challenge, PairingError::BadSpakeMessage { field }) => {
            assert_eq!(field, "PinChallenge.candidates.spake_b")
        }
        other => panic!("{other:?}"),
    }
    // Dropping a candidate changes the transcript and the tag list.
    let out = tampered(&run, Stage::Challenge, |m| {
        if let Message::PinChallenge(c) = m {
            c.candidates.pop();
        }
    });
    assert!(
        matches!(&out, Outcome::GatewayConfirm(f) if f.error == PairingError::TagMismatch),
        "{out:?}"
    );
}

#[test]
fn each_changed_confirm_field_fails_with_a_named_error() {
    let run = PinRun::new("48151623", &["48151623"]);
    let f = tampered(&run, Stage::Confirm, |m| {
        if let Message::PinConfirm(c) = m {
            c.macs[0].mac[0] ^= 1
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::ConfirmationFailed);
    assert_eq!(f.failed_candidates, vec!["code-0"]);

    let f = tampered(&run, Stage::Confirm, |m| {
        if let Message::PinConfirm(c) = m {
            c.macs[0].tag[7] ^= 1
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::TagMismatch);
    assert!(f.failed_candidates.is_empty());

    let f = tampered(&run, Stage::Confirm, |m| {
        if let Message::PinConfirm(c) = m {
            c.signature[10] ^= 1
        }
    })
    .confirm_failure();
    assert_eq!(f.error, PairingError::BadSignature);
    assert_eq!(f.matched.as_deref(), Some("code-0"));
    assert!(f.failed_candidates.is_empty());
    let Message::Refused(r) = f.reply() else {
        panic!("not a refusal")
    };
    assert_eq!(r.code, RefusalCode::BadSignature);
}

#[test]
fn each_changed_accepted_field_fails_on_the_device() {
    let run = PinRun::new("48151623", &["48151623"]);
    let out = tampered(&run, Stage::Accepted, |m| {
        if let Message::PinAccepted(a) = m {
            a.mac[31] ^= 1
        }
    });
    assert!(
        matches!(
            out,
            Outcome::Device(Stage::Accepted, PairingError::ConfirmationFailed)
        ),
        "{out:?}"
    );
    let out = tampered(&run, Stage::Accepted, |m| {
        if let Message::PinAccepted(a) = m {
            a.tag[0] ^= 1
        }
    });
    assert!(
        matches!(
            out,
            Outcome::Device(Stage::Accepted, PairingError::UnknownTag)
        ),
        "{out:?}"
    );
}

#[test]
fn a_gateway_that_answers_with_another_candidates_mac_is_refused() {
    // Two candidates; the gateway's reply names candidate 0's tag with the
    // MAC it computed for candidate 1 (the right one).
    let run = PinRun::new("48151623", &["11335577", "48151623"]);
    let (_, rec) = run.run_with(&mut |_, b| b);
    let Message::PinChallenge(c) = Message::decode(&rec.challenge).unwrap() else {
        panic!()
    };
    let tag0 = c.candidates[0].tag;
    let out = tampered(&run, Stage::Accepted, move |m| {
        if let Message::PinAccepted(a) = m {
            a.tag = tag0
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

/// Every bit of every message matters, except the MACs of candidates that
/// did not match: those are failed guesses whatever their value, so a
/// change to one still pairs, with the same result.
#[test]
fn flipping_any_bit_of_any_message_never_pairs_except_a_failed_candidates_mac() {
    let run = PinRun::new("48151623", &["48151623", "11335577"]);
    let (clean, rec) = run.run_with(&mut |_, b| b);
    let (clean_device, clean_gateway) = clean.paired();
    // PinConfirm: version, type, count, then (tag 8, mac 32) per candidate.
    let other_mac = 3 + 40 + 8..3 + 40 + 40;
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
            if stage == Stage::Confirm && other_mac.contains(&i) {
                let (device, gateway) = out.paired();
                assert_eq!(device, clean_device);
                assert_eq!(gateway, clean_gateway);
            } else {
                assert!(
                    !matches!(out, Outcome::Paired { .. }),
                    "{stage:?} byte {i}: still paired"
                );
            }
        }
    }
}

#[test]
fn a_refusal_reaches_the_device_with_its_code_and_reason() {
    let (dev, _) =
        DevicePin::start(&mut rng(1), &device_key(), info(), "48151623", binding()).unwrap();
    let refusal = Message::Refused(Refused::new(
        RefusalCode::RateLimited {
            retry_after_secs: 30,
        },
        "slow down",
    ));
    assert_eq!(
        dev.on_challenge(refusal).unwrap_err(),
        PairingError::Refused {
            code: RefusalCode::RateLimited {
                retry_after_secs: 30
            },
            reason: "slow down".into()
        }
    );
}

#[test]
fn bad_inputs_are_refused_before_anything_is_sent() {
    for (pin, problem) in [
        ("", "empty"),
        ("1234-5678", "not only ASCII digits"),
        ("123456789012345678901234567890123", "longer than 32 digits"),
    ] {
        let err = DevicePin::start(&mut rng(1), &device_key(), info(), pin, binding()).unwrap_err();
        assert_eq!(
            err,
            PairingError::InvalidInput {
                field: "pin",
                problem
            }
        );
    }
    // 32 digits is the longest PIN.
    assert!(
        DevicePin::start(
            &mut rng(1),
            &device_key(),
            info(),
            &"7".repeat(32),
            binding()
        )
        .is_ok()
    );
    let mut bad = info();
    bad.name = "line\nbreak".into();
    assert!(matches!(
        DevicePin::start(&mut rng(1), &device_key(), bad, "1234", binding()),
        Err(PairingError::InvalidInput { field: "name", .. })
    ));
    let mut bad = info();
    bad.capabilities = vec!["Shell".into()];
    assert!(matches!(
        DevicePin::start(&mut rng(1), &device_key(), bad, "1234", binding()),
        Err(PairingError::InvalidInput {
            field: "capabilities",
            ..
        })
    ));
}

#[test]
fn the_gateway_needs_one_to_thirty_two_candidates() {
    let hello = || {
        DevicePin::start(&mut rng(1), &device_key(), info(), "48151623", binding())
            .unwrap()
            .1
    };
    assert_eq!(
        GatewayPin::on_hello(&mut rng(2), hello(), &[], binding()).unwrap_err(),
        PairingError::NoCandidates
    );
    let pins: Vec<String> = (0..=MAX_PIN_CANDIDATES)
        .map(|i| format!("{i:08}"))
        .collect();
    let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
    assert_eq!(
        GatewayPin::on_hello(&mut rng(2), hello(), &candidates(&refs), binding()).unwrap_err(),
        PairingError::TooManyCandidates {
            count: 33,
            limit: 32
        }
    );
    // 32 is fine, and every tag is distinct.
    let (gw, challenge) =
        GatewayPin::on_hello(&mut rng(2), hello(), &candidates(&refs[..32]), binding()).unwrap();
    assert_eq!(gw.candidate_ids().len(), 32);
    assert_eq!(Message::decode(&challenge.encode()).unwrap(), challenge);
}

#[test]
fn a_confirm_of_the_wrong_kind_counts_no_guess() {
    let (_, hello) =
        DevicePin::start(&mut rng(1), &device_key(), info(), "48151623", binding()).unwrap();
    let (gw, _) = GatewayPin::on_hello(
        &mut rng(2),
        hello.clone(),
        &candidates(&["48151623"]),
        binding(),
    )
    .unwrap();
    let f = gw
        .on_confirm(Message::PinAccepted(PinAccepted {
            tag: [0; 8],
            mac: [0; 32],
        }))
        .unwrap_err();
    assert_eq!(
        f.error,
        PairingError::UnexpectedMessage {
            expected: "PinConfirm",
            got: "PinAccepted"
        }
    );
    assert!(f.failed_candidates.is_empty());
}

#[test]
fn a_signature_from_another_run_is_refused() {
    // The same device, PIN and code, on another connection: the device's
    // signature there is valid, but over another transcript.
    let mut other = PinRun::new("48151623", &["48151623"]);
    other.device_binding.channel_binding = [0x22; 32];
    other.gateway_binding.channel_binding = [0x22; 32];
    let (_, other_rec) = other.run_with(&mut |_, b| b);
    let Message::PinConfirm(other_confirm) = Message::decode(&other_rec.confirm).unwrap() else {
        panic!("not a confirm");
    };
    let f = tampered(
        &PinRun::new("48151623", &["48151623"]),
        Stage::Confirm,
        move |m| {
            if let Message::PinConfirm(c) = m {
                c.signature = other_confirm.signature
            }
        },
    )
    .confirm_failure();
    assert_eq!(f.error, PairingError::BadSignature);
}

#[test]
fn debug_output_names_each_state_and_shows_no_pin() {
    let pin = "48151623";
    let (dev, hello) =
        DevicePin::start(&mut rng(1), &device_key(), info(), pin, binding()).unwrap();
    let cands = candidates(&[pin]);
    assert!(format!("{:?}", cands[0]).starts_with("PinCandidate"));
    assert!(!format!("{:?}", cands[0]).contains(pin));
    let (gw, challenge) = GatewayPin::on_hello(&mut rng(2), hello, &cands, binding()).unwrap();
    let shown = [format!("{dev:?}"), format!("{gw:?}")];
    let (dev, confirm) = dev.on_challenge(challenge).unwrap();
    let shown2 = format!("{dev:?}");
    // The device knows the check code before the gateway answers (to show
    // it while waiting); it is the gateway's.
    assert_eq!(dev.check_code(), gw.on_confirm(confirm).unwrap().check_code);
    for (text, name) in [
        (&shown[0], "DevicePinSent"),
        (&shown[1], "GatewayPinChallenged"),
        (&shown2, "DevicePinConfirmed"),
    ] {
        assert!(text.starts_with(name), "{text}");
        assert!(!text.contains(pin), "{text}");
    }
    assert!(shown[1].contains("code-0"));
}

#[test]
fn the_device_answers_one_to_thirty_two_distinct_candidates() {
    let pins: Vec<String> = (0..32).map(|i| format!("{i:08}")).collect();
    let refs: Vec<&str> = pins.iter().map(String::as_str).collect();
    let start =
        || DevicePin::start(&mut rng(1), &device_key(), info(), "00000005", binding()).unwrap();
    let (_, hello) = start();
    let (_, challenge) =
        GatewayPin::on_hello(&mut rng(2), hello, &candidates(&refs), binding()).unwrap();
    let Message::PinChallenge(full) = challenge else {
        panic!()
    };
    let (dev, _) = start();
    assert!(
        dev.on_challenge(Message::PinChallenge(full.clone()))
            .is_ok()
    );

    let mut over = full.clone();
    let mut extra = over.candidates[0].clone();
    extra.tag = [0xee; 8];
    over.candidates.push(extra);
    let mut dup = full.clone();
    dup.candidates[1].tag = dup.candidates[0].tag;
    let mut empty = full;
    empty.candidates.clear();
    for (case, challenge, field) in [
        ("33", over, "PinChallenge.candidates"),
        ("none", empty, "PinChallenge.candidates"),
        ("duplicate", dup, "PinChallenge.candidates.tag"),
    ] {
        let (dev, _) = start();
        let err = dev
            .on_challenge(Message::PinChallenge(challenge))
            .unwrap_err();
        assert!(
            matches!(err, PairingError::InvalidInput { field: f, .. } if f == field),
            "{case}: {err:?}"
        );
    }
}
