//! The gateway's PIN confirmation step fed arbitrary bytes as the device's
//! `PinConfirm`, after a real `PinHello` answered with two candidates (one
//! of them the device's PIN).
//!
//! A decoded `PinConfirm` gets the challenge's real tags written over its
//! own (as many as it has), so the MAC checks are reached rather than the
//! tag check alone.
//!
//! Properties: no panic; nothing but the device's own confirm verifies;
//! with all tags right the failure is `ConfirmationFailed` and reports both
//! candidates as failed guesses; with a wrong count of entries it is
//! `TagMismatch` and counts no guess; any other message kind counts no
//! guess either; error messages are bounded.

#![no_main]

use ed25519_dalek::SigningKey;
use keygate_fuzz::check_message;
use keygate_proto::{
    Binding, DeviceInfo, DevicePin, GatewayPin, Message, PairingError, PinCandidate,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

const PIN: &str = "48151623";

fn binding() -> Binding {
    Binding {
        ca_fingerprint: [0xca; 32],
        channel_binding: [0xcb; 32],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[7; 32]);
    let info = DeviceInfo {
        device_id: "kg1fuzz".into(),
        name: "fuzz".into(),
        capabilities: vec![],
    };
    let (_, hello) =
        DevicePin::start(&mut StdRng::seed_from_u64(1), &key, info, PIN, binding()).unwrap();
    let candidates = [
        PinCandidate {
            id: "a".into(),
            pin: Zeroizing::new("11335577".into()),
        },
        PinCandidate {
            id: "b".into(),
            pin: Zeroizing::new(PIN.into()),
        },
    ];
    let (gw, challenge) =
        GatewayPin::on_hello(&mut StdRng::seed_from_u64(2), hello, &candidates, binding()).unwrap();
    let Message::PinChallenge(challenge) = challenge else {
        panic!("not a challenge");
    };
    let mut msg = msg;
    let mut all_tags_right = false;
    if let Message::PinConfirm(c) = &mut msg {
        for (m, real) in c.macs.iter_mut().zip(&challenge.candidates) {
            m.tag = real.tag;
        }
        all_tags_right = c.macs.len() == challenge.candidates.len();
    }
    let is_confirm = matches!(msg, Message::PinConfirm(_));
    match gw.on_confirm(msg) {
        Ok(v) => panic!("a fuzzed confirm verified: {v:?}"),
        Err(f) => {
            check_message(&f.error.to_string());
            if all_tags_right {
                assert_eq!(f.error, PairingError::ConfirmationFailed);
                assert_eq!(f.failed_candidates, ["a", "b"]);
                assert_eq!(f.matched, None);
            } else {
                assert!(f.failed_candidates.is_empty(), "{f:?}");
                let expected = if is_confirm {
                    PairingError::TagMismatch
                } else {
                    f.error.clone()
                };
                assert_eq!(f.error, expected);
            }
            let reply = f.reply();
            assert_eq!(Message::decode(&reply.encode()).as_ref(), Ok(&reply));
        }
    }
});
