//! The wire codec: canonical round trips, and a `DecodeError` that names
//! the problem for every kind of bad input.

use keygate_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn hello() -> Message {
    Message::PinHello(PinHello {
        device_public_key: [1; 32],
        device_id: "kg1abc".into(),
        name: "Büro-Drucker".into(),
        capabilities: vec!["shell".into(), "x.y-z_1".into()],
        spake_a: [2; 33],
    })
}

fn samples() -> Vec<Message> {
    vec![
        hello(),
        Message::PinChallenge(PinChallenge {
            candidates: vec![
                PinCandidateMsg {
                    tag: [1; 8],
                    spake_b: [3; 33],
                },
                PinCandidateMsg {
                    tag: [2; 8],
                    spake_b: [4; 33],
                },
            ],
        }),
        Message::PinConfirm(PinConfirm {
            macs: vec![PinConfirmMac {
                tag: [1; 8],
                mac: [5; 32],
            }],
            signature: [6; 64],
        }),
        Message::PinAccepted(PinAccepted {
            tag: [1; 8],
            mac: [7; 32],
        }),
        Message::QrHello(QrHello {
            session_id: "0123456789abcdef0123456789abcdef".into(),
            device_public_key: [1; 32],
            device_id: "kg1abc".into(),
            name: "n".into(),
            capabilities: vec![],
            device_ephemeral: [8; 32],
        }),
        Message::QrChallenge(QrChallenge {
            gateway_ephemeral: [9; 32],
        }),
        Message::QrConfirm(QrConfirm {
            mac: [10; 32],
            signature: [11; 64],
        }),
        Message::QrAccepted(QrAccepted { mac: [12; 32] }),
        Message::Refused(Refused::new(
            RefusalCode::RateLimited {
                retry_after_secs: 7,
            },
            "later",
        )),
        Message::Resume(Resume {
            request_id: "req-1".into(),
            device_public_key: [1; 32],
            signature: [2; 64],
        }),
        Message::Pending(Pending {
            request_id: "req-1".into(),
            check_code: "7KQ2ZP".into(),
        }),
        Message::Approved(Approved {
            request_id: "req-1".into(),
            certificates: vec![vec![0x30; 300], vec![0x30; 8192]],
        }),
        Message::Rejected(Rejected {
            request_id: "req-1".into(),
            reason: String::new(),
        }),
        Message::Expired(Expired {
            request_id: "req-1".into(),
        }),
        Message::Register(Register {
            device_id: "kgd1node".into(),
            capabilities: vec!["echo".into()],
        }),
        Message::Registered(Registered { heartbeat_secs: 5 }),
        Message::Heartbeat(Heartbeat {
            device_id: "kgd1node".into(),
        }),
        Message::HeartbeatAck,
        Message::Renew(Renew {
            device_id: "kgd1node".into(),
            signature: [3; 64],
        }),
        Message::Renewed(Renewed {
            certificates: vec![vec![0x30; 300], vec![0x30; 400]],
        }),
        Message::Invoke(Invoke {
            invocation_id: "inv-1".into(),
            capability: "echo".into(),
            payload: vec![0; MAX_PAYLOAD_LEN],
        }),
        Message::InvokeResult(InvokeResult {
            invocation_id: "inv-1".into(),
            ok: true,
            payload: b"pong".to_vec(),
        }),
    ]
}

#[test]
fn node_rpc_fields_are_checked() {
    let invalid = |bytes: &[u8], message, field, problem| {
        assert_eq!(
            Message::decode(bytes),
            Err(DecodeError::Invalid {
                message,
                field,
                problem
            }),
            "{bytes:?}"
        );
    };
    invalid(
        &[1, 0x41, 0, 0, 0, 0],
        "Registered",
        "heartbeat_secs",
        "zero",
    );
    let result = Message::InvokeResult(InvokeResult {
        invocation_id: "i".into(),
        ok: false,
        payload: vec![],
    })
    .encode();
    let mut two = result.clone();
    let at = result.len() - 3;
    assert_eq!(two[at], 0, "the ok byte");
    two[at] = 2;
    invalid(&two, "InvokeResult", "ok", "neither 0 nor 1");
    let mut bad_cap = Message::Invoke(Invoke {
        invocation_id: "i".into(),
        capability: "echo".into(),
        payload: vec![],
    })
    .encode();
    let at = bad_cap.len() - 4;
    bad_cap[at] = b'E';
    assert!(matches!(
        Message::decode(&bad_cap),
        Err(DecodeError::Invalid {
            message: "Invoke",
            field: "capability",
            ..
        })
    ));
    let over = Message::Invoke(Invoke {
        invocation_id: "i".into(),
        capability: "echo".into(),
        payload: vec![0; MAX_PAYLOAD_LEN + 1],
    })
    .encode();
    assert!(matches!(
        Message::decode(&over),
        Err(DecodeError::FieldTooLong {
            message: "Invoke",
            field: "payload",
            ..
        })
    ));
    assert!(matches!(
        Message::decode(&[1, 0x45, 0]),
        Err(DecodeError::Invalid {
            message: "Renewed",
            ..
        })
    ));
    assert_eq!(
        Message::decode(&[1, 0x43, 0]),
        Err(DecodeError::TrailingBytes {
            message: "HeartbeatAck",
            extra: 1
        })
    );
}

#[test]
fn every_sample_round_trips_and_starts_with_version_and_type() {
    let mut types = Vec::new();
    for m in samples() {
        let bytes = m.encode();
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert!(!types.contains(&bytes[1]), "{}: type byte reused", m.name());
        types.push(bytes[1]);
        assert_eq!(Message::decode(&bytes), Ok(m));
    }
}

#[test]
fn every_proper_prefix_is_truncated_and_one_more_byte_is_trailing() {
    for m in samples() {
        let bytes = m.encode();
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        for cut in 1..bytes.len() {
            let err = Message::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "{} cut at {cut}: {err:?}",
                m.name()
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Message::decode(&long),
            Err(DecodeError::TrailingBytes {
                message: m.name(),
                extra: 1
            })
        );
    }
}

#[test]
fn a_truncated_field_is_named() {
    let bytes = hello().encode();
    assert_eq!(
        Message::decode(&bytes[..20]),
        Err(DecodeError::Truncated {
            message: "PinHello",
            field: "device_public_key"
        })
    );
    assert_eq!(
        Message::decode(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string(),
        "PinHello.spake_a: message ends inside this field"
    );
}

#[test]
fn a_wrong_version_says_which_it_got_and_which_it_speaks() {
    let mut bytes = hello().encode();
    bytes[0] = 2;
    let err = Message::decode(&bytes).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedVersion { got: 2, speaks: 1 });
    assert_eq!(
        err.to_string(),
        "unsupported protocol version 2; this side speaks version 1"
    );
    assert_eq!(
        PairingError::from(err).refusal_code(),
        RefusalCode::UnsupportedVersion
    );
}

#[test]
fn unknown_types_garbage_and_oversize_are_refused() {
    assert_eq!(
        Message::decode(&[1, 0x7f]),
        Err(DecodeError::UnknownType(0x7f))
    );
    assert_eq!(Message::decode(&[1, 0]), Err(DecodeError::UnknownType(0)));
    assert_eq!(
        Message::decode(&[1]),
        Err(DecodeError::Truncated {
            message: "message",
            field: "type"
        })
    );
    assert!(Message::decode(b"GET / HTTP/1.1\r\n").is_err());
    let mut huge = vec![1, 0x31];
    huge.resize(MAX_MESSAGE_LEN + 1, 0);
    assert_eq!(
        Message::decode(&huge),
        Err(DecodeError::MessageTooLong {
            len: MAX_MESSAGE_LEN + 1,
            limit: MAX_MESSAGE_LEN
        })
    );
}

fn with_hello(f: impl FnOnce(&mut PinHello)) -> Result<Message, DecodeError> {
    let Message::PinHello(mut h) = hello() else {
        unreachable!()
    };
    f(&mut h);
    Message::decode(&Message::PinHello(h).encode())
}

#[test]
fn field_limits_and_rules_are_named() {
    let too_long = |field, len, limit| {
        Err(DecodeError::FieldTooLong {
            message: "PinHello",
            field,
            len,
            limit,
        })
    };
    let invalid = |field, problem| {
        Err(DecodeError::Invalid {
            message: "PinHello",
            field,
            problem,
        })
    };
    assert_eq!(
        with_hello(|h| h.name = "x".repeat(65)),
        too_long("name", 65, 64)
    );
    assert!(with_hello(|h| h.name = "é".repeat(32)).is_ok()); // 64 bytes
    assert_eq!(
        with_hello(|h| h.name = String::new()),
        invalid("name", "empty")
    );
    assert_eq!(
        with_hello(|h| h.name = "a\u{7}b".into()),
        invalid("name", "contains a control character")
    );
    assert_eq!(
        with_hello(|h| h.device_id = "a".repeat(129)),
        too_long("device_id", 129, 128)
    );
    assert_eq!(
        with_hello(|h| h.device_id = "a b".into()),
        invalid("device_id", "not printable ASCII without spaces")
    );
    assert_eq!(
        with_hello(|h| h.capabilities = (0..17).map(|i| format!("c{i}")).collect()),
        Err(DecodeError::TooManyEntries {
            message: "PinHello",
            field: "capabilities",
            count: 17,
            limit: 16
        })
    );
    assert_eq!(
        with_hello(|h| h.capabilities = vec!["a".repeat(33)]),
        too_long("capabilities", 33, 32)
    );
    assert_eq!(
        with_hello(|h| h.capabilities = vec!["Shell".into()]),
        invalid("capabilities", "capability not of [a-z0-9._-]")
    );
    assert_eq!(
        with_hello(|h| h.capabilities = vec!["".into()]),
        invalid("capabilities", "empty capability")
    );
    assert_eq!(
        with_hello(|h| h.capabilities = vec!["a".into(), "a".into()]),
        invalid("capabilities", "duplicate capability")
    );
    // Not UTF-8: patch the name's bytes on the wire.
    let mut bytes = hello().encode();
    let name_at = 2 + 32 + 2 + "kg1abc".len() + 2;
    bytes[name_at] = 0xff;
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::NotUtf8 {
            message: "PinHello",
            field: "name"
        })
    );
}

#[test]
fn list_limits_and_duplicates_are_named() {
    let cand = |i: u8| PinCandidateMsg {
        tag: [i; 8],
        spake_b: [0; 33],
    };
    let challenge = |n: u8| {
        Message::PinChallenge(PinChallenge {
            candidates: (0..n).map(cand).collect(),
        })
        .encode()
    };
    assert!(Message::decode(&challenge(32)).is_ok());
    assert_eq!(
        Message::decode(&challenge(33)),
        Err(DecodeError::TooManyEntries {
            message: "PinChallenge",
            field: "candidates",
            count: 33,
            limit: 32
        })
    );
    assert_eq!(
        Message::decode(&challenge(0)),
        Err(DecodeError::Invalid {
            message: "PinChallenge",
            field: "candidates",
            problem: "empty list"
        })
    );
    let dup = Message::PinChallenge(PinChallenge {
        candidates: vec![cand(1), cand(1)],
    });
    assert_eq!(
        Message::decode(&dup.encode()),
        Err(DecodeError::Invalid {
            message: "PinChallenge",
            field: "candidates.tag",
            problem: "duplicate tag"
        })
    );
    let approved = |certs: Vec<Vec<u8>>| {
        Message::decode(
            &Message::Approved(Approved {
                request_id: "r".into(),
                certificates: certs,
            })
            .encode(),
        )
    };
    assert_eq!(
        approved(vec![vec![0; 8193]]),
        Err(DecodeError::FieldTooLong {
            message: "Approved",
            field: "certificates",
            len: 8193,
            limit: 8192
        })
    );
    assert_eq!(
        approved(vec![vec![0; 10]; 5]),
        Err(DecodeError::TooManyEntries {
            message: "Approved",
            field: "certificates",
            count: 5,
            limit: 4
        })
    );
    assert!(approved(vec![vec![0; 10]; 4]).is_ok());
    // Two 8 KiB certificates exceed the whole-message limit.
    assert!(matches!(
        approved(vec![vec![0; 8192]; 2]),
        Err(DecodeError::MessageTooLong { .. })
    ));
}

#[test]
fn other_fields_are_checked() {
    let reason = "x".repeat(257);
    assert_eq!(
        Message::decode(
            &Message::Rejected(Rejected {
                request_id: "r".into(),
                reason
            })
            .encode()
        ),
        Err(DecodeError::FieldTooLong {
            message: "Rejected",
            field: "reason",
            len: 257,
            limit: 256
        })
    );
    let qr = |session_id: &str| {
        Message::decode(
            &Message::QrHello(QrHello {
                session_id: session_id.into(),
                device_public_key: [0; 32],
                device_id: "d".into(),
                name: "n".into(),
                capabilities: vec![],
                device_ephemeral: [0; 32],
            })
            .encode(),
        )
    };
    assert_eq!(
        qr("0123456789ABCDEF0123456789abcdef"),
        Err(DecodeError::Invalid {
            message: "QrHello",
            field: "session_id",
            problem: "not lower-case hex"
        })
    );
    assert!(matches!(
        qr("0123"),
        Err(DecodeError::Invalid {
            field: "session_id",
            ..
        })
    ));
    let pending = |code: &str| {
        Message::decode(
            &Message::Pending(Pending {
                request_id: "r".into(),
                check_code: code.into(),
            })
            .encode(),
        )
    };
    assert!(pending("0123AB").is_ok());
    assert!(matches!(
        pending("0123AU"), // U is not in Crockford's alphabet
        Err(DecodeError::Invalid {
            field: "check_code",
            ..
        })
    ));
}

#[test]
fn unknown_refusal_codes_decode_to_other_and_known_ones_are_canonical() {
    let bytes = |code: u8, detail: u32| {
        let mut b = vec![1, 0x20, code];
        b.extend_from_slice(&detail.to_be_bytes());
        b.extend_from_slice(&[0, 2]);
        b.extend_from_slice(b"hi");
        b
    };
    let m = Message::decode(&bytes(200, 5)).unwrap();
    assert_eq!(
        m,
        Message::Refused(Refused {
            code: RefusalCode::Other {
                code: 200,
                detail: 5
            },
            reason: "hi".into()
        })
    );
    assert_eq!(m.encode(), bytes(200, 5));
    assert_eq!(
        Message::decode(&bytes(4, 1)),
        Err(DecodeError::Invalid {
            message: "Refused",
            field: "detail",
            problem: "non-zero for a code that takes none"
        })
    );
    for code in 1..=20u8 {
        let detail = if code == 9 { 30 } else { 0 };
        let Message::Refused(r) = Message::decode(&bytes(code, detail)).unwrap() else {
            panic!()
        };
        assert!(!matches!(r.code, RefusalCode::Other { .. }), "{code}");
        assert_eq!(r.code.to_wire(), (code, detail));
    }
}

#[test]
fn refused_new_makes_any_reason_valid() {
    let r = Refused::new(RefusalCode::Internal, &format!("a\nb{}", "é".repeat(200)));
    assert!(r.reason.len() <= MAX_REASON_LEN);
    assert!(r.reason.starts_with("a b"));
    let m = Message::Refused(r);
    assert_eq!(Message::decode(&m.encode()), Ok(m));
}

// ---- property tests ----

fn id() -> impl Strategy<Value = String> {
    "[!-~]{1,128}"
}
fn name() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,16}".prop_filter("≤ 64 bytes", |s| s.len() <= MAX_NAME_LEN)
}
fn reason() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{0,60}".prop_filter("≤ 256 bytes", |s| s.len() <= MAX_REASON_LEN)
}
fn caps() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z0-9._-]{1,32}", 0..=16)
        .prop_map(|s| s.into_iter().collect())
}
fn arr<const N: usize>() -> impl Strategy<Value = [u8; N]> + Clone {
    vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}
fn tags_with<T: std::fmt::Debug + Clone + 'static>(
    other: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Vec<([u8; 8], T)>> {
    proptest::collection::btree_map(arr::<8>(), other, 1..=32).prop_map(|m| m.into_iter().collect())
}
fn refusal_code() -> impl Strategy<Value = RefusalCode> {
    (any::<u8>(), any::<u32>()).prop_map(|(c, d)| {
        RefusalCode::from_wire(c, d).unwrap_or_else(|| RefusalCode::from_wire(c, 0).unwrap())
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (arr::<32>(), id(), name(), caps(), arr::<33>()).prop_map(|(k, i, n, c, a)| {
            Message::PinHello(PinHello {
                device_public_key: k,
                device_id: i,
                name: n,
                capabilities: c,
                spake_a: a,
            })
        }),
        tags_with(arr::<33>()).prop_map(|v| Message::PinChallenge(PinChallenge {
            candidates: v
                .into_iter()
                .map(|(tag, spake_b)| PinCandidateMsg { tag, spake_b })
                .collect()
        })),
        (tags_with(arr::<32>()), arr::<64>()).prop_map(|(v, s)| Message::PinConfirm(PinConfirm {
            macs: v
                .into_iter()
                .map(|(tag, mac)| PinConfirmMac { tag, mac })
                .collect(),
            signature: s
        })),
        (arr::<8>(), arr::<32>())
            .prop_map(|(tag, mac)| Message::PinAccepted(PinAccepted { tag, mac })),
        (
            "[0-9a-f]{32}",
            arr::<32>(),
            id(),
            name(),
            caps(),
            arr::<32>()
        )
            .prop_map(|(s, k, i, n, c, e)| Message::QrHello(QrHello {
                session_id: s,
                device_public_key: k,
                device_id: i,
                name: n,
                capabilities: c,
                device_ephemeral: e
            })),
        arr::<32>().prop_map(|e| Message::QrChallenge(QrChallenge {
            gateway_ephemeral: e
        })),
        (arr::<32>(), arr::<64>())
            .prop_map(|(mac, signature)| Message::QrConfirm(QrConfirm { mac, signature })),
        arr::<32>().prop_map(|mac| Message::QrAccepted(QrAccepted { mac })),
        (refusal_code(), reason())
            .prop_map(|(code, reason)| Message::Refused(Refused { code, reason })),
        (id(), arr::<32>(), arr::<64>()).prop_map(|(r, k, s)| Message::Resume(Resume {
            request_id: r,
            device_public_key: k,
            signature: s
        })),
        (id(), "[0-9A-HJKMNP-TV-Z]{6}").prop_map(|(r, c)| Message::Pending(Pending {
            request_id: r,
            check_code: c
        })),
        (id(), vec(vec(any::<u8>(), 1..=3000), 1..=4)).prop_map(|(r, c)| {
            Message::Approved(Approved {
                request_id: r,
                certificates: c,
            })
        }),
        (id(), reason()).prop_map(|(r, reason)| Message::Rejected(Rejected {
            request_id: r,
            reason
        })),
        id().prop_map(|r| Message::Expired(Expired { request_id: r })),
        (id(), caps()).prop_map(|(d, c)| Message::Register(Register {
            device_id: d,
            capabilities: c
        })),
        (1..=u32::MAX).prop_map(|h| Message::Registered(Registered { heartbeat_secs: h })),
        id().prop_map(|d| Message::Heartbeat(Heartbeat { device_id: d })),
        Just(Message::HeartbeatAck),
        (id(), arr::<64>()).prop_map(|(d, s)| Message::Renew(Renew {
            device_id: d,
            signature: s
        })),
        vec(vec(any::<u8>(), 1..=3000), 1..=4)
            .prop_map(|c| Message::Renewed(Renewed { certificates: c })),
        (
            id(),
            "[a-z0-9._-]{1,32}",
            vec(any::<u8>(), 0..=MAX_PAYLOAD_LEN)
        )
            .prop_map(|(i, c, p)| Message::Invoke(Invoke {
                invocation_id: i,
                capability: c,
                payload: p
            })),
        (id(), any::<bool>(), vec(any::<u8>(), 0..=MAX_PAYLOAD_LEN)).prop_map(|(i, ok, p)| {
            Message::InvokeResult(InvokeResult {
                invocation_id: i,
                ok,
                payload: p,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(m in message()) {
        let bytes = m.encode();
        prop_assume!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(Message::decode(&bytes), Ok(m));
    }

    #[test]
    fn decode_never_panics_and_what_decodes_is_canonical(bytes in vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::decode(&bytes) {
            prop_assert_eq!(m.encode(), bytes);
        }
    }

    #[test]
    fn changed_encodings_never_panic_and_stay_canonical(
        m in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = m.encode();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(m2) = Message::decode(&bytes) {
            prop_assert_eq!(m2.encode(), bytes.clone());
        }
        let cut = cut.index(bytes.len());
        let _ = Message::decode(&bytes[..cut]);
    }
}
