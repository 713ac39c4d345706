//! `Resume`: bound to the device key and to the connection.

mod common;

use common::device_key;
use keygate_proto::{Message, PairingError, Resume};

const CB: [u8; 32] = [0xcb; 32];

#[test]
fn a_resume_signed_for_this_connection_verifies() {
    let r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    assert_eq!(r.device_public_key, device_key().verifying_key().to_bytes());
    let decoded = Message::decode(&Message::Resume(r.clone()).encode()).unwrap();
    assert_eq!(decoded, Message::Resume(r.clone()));
    assert_eq!(r.verify(&CB), Ok(()));
}

#[test]
fn a_resume_replayed_on_another_connection_fails() {
    let r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    assert_eq!(r.verify(&[0xcc; 32]), Err(PairingError::BadSignature));
}

#[test]
fn a_resume_under_another_key_or_request_fails() {
    let mut r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    r.device_public_key = other.verifying_key().to_bytes();
    assert_eq!(r.verify(&CB), Err(PairingError::BadSignature));

    let mut r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    r.request_id = "req-2".into();
    assert_eq!(r.verify(&CB), Err(PairingError::BadSignature));

    let mut r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    r.signature[63] ^= 0x10;
    assert_eq!(r.verify(&CB), Err(PairingError::BadSignature));
}

#[test]
fn a_resume_with_a_key_that_is_no_point_fails() {
    let mut r = Resume::sign(&device_key(), "req-1", &CB).unwrap();
    r.device_public_key = [0; 32];
    r.device_public_key[0] = 2;
    assert_eq!(r.verify(&CB), Err(PairingError::BadPublicKey));
}
