//! Device identity: the device id format and its checksum, device keys,
//! public keys and signatures.

use keygate_core::identity::{
    DEVICE_ID_LEN, DeviceId, DeviceIdError, DeviceKey, DeviceKeyError, DevicePublicKey,
};

const ALPHABET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// RFC 8032, section 7.1, TEST 1.
const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
/// The id documented in `keygate_core::identity` for that key.
const RFC8032_DEVICE_ID: &str = "kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyepru";

fn sample_ids(n: usize) -> Vec<DeviceId> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| DeviceKey::generate(&mut rng).device_id())
        .collect()
}

fn rfc8032_key() -> DeviceKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(RFC8032_SECRET, &mut seed).unwrap();
    DeviceKey::from_seed(&seed)
}

#[test]
fn rfc8032_test_key_has_the_documented_device_id() {
    let key = rfc8032_key();
    assert_eq!(key.public_key().to_string(), RFC8032_PUBLIC);
    assert_eq!(key.device_id().to_string(), RFC8032_DEVICE_ID);
    let public: DevicePublicKey = RFC8032_PUBLIC.parse().unwrap();
    assert_eq!(
        DeviceId::from_public_key(&public).to_string(),
        RFC8032_DEVICE_ID
    );
}

#[test]
fn device_id_is_sha256_of_the_public_key_truncated_to_20_bytes() {
    use sha2::{Digest, Sha256};
    let key = rfc8032_key();
    let digest = Sha256::digest(key.public_key().as_bytes());
    assert_eq!(key.device_id().as_bytes().as_slice(), &digest[..20]);
}

#[test]
fn parse_of_display_round_trips() {
    for id in sample_ids(50) {
        let text = id.to_string();
        assert_eq!(text.len(), DEVICE_ID_LEN);
        assert!(text.starts_with("kgd1"));
        assert_eq!(DeviceId::parse(&text).unwrap(), id);
        assert_eq!(text.parse::<DeviceId>().unwrap(), id);
    }
}

#[test]
fn every_single_substitution_in_the_alphabet_is_refused() {
    for id in sample_ids(10) {
        let text = id.to_string();
        let chars: Vec<char> = text.chars().collect();
        for position in 4..chars.len() {
            for replacement in ALPHABET.chars().filter(|c| *c != chars[position]) {
                let mut typo = chars.clone();
                typo[position] = replacement;
                let typo: String = typo.into_iter().collect();
                match DeviceId::parse(&typo) {
                    Err(DeviceIdError::BadChecksum { input }) => assert_eq!(input, typo),
                    other => panic!("{typo} (from {text}) gave {other:?}"),
                }
            }
        }
    }
}

#[test]
fn substitutions_outside_the_alphabet_are_refused_with_the_character_named() {
    let text = sample_ids(1)[0].to_string();
    let chars: Vec<char> = text.chars().collect();
    for position in 4..chars.len() {
        for replacement in ['1', 'b', 'i', 'o', '-', ' ', '_', 'é'] {
            let mut typo = chars.clone();
            typo[position] = replacement;
            let typo: String = typo.into_iter().collect();
            match DeviceId::parse(&typo) {
                Err(DeviceIdError::InvalidCharacter {
                    character,
                    position: p,
                    ..
                }) => {
                    assert_eq!(character, replacement);
                    assert_eq!(p, position);
                }
                other => panic!("{typo:?} gave {other:?}"),
            }
        }
        // An upper-case letter in a lower-case id is mixed case.
        let mut typo = chars.clone();
        typo[position] = 'A';
        let typo: String = typo.into_iter().collect();
        assert!(
            matches!(DeviceId::parse(&typo), Err(DeviceIdError::MixedCase { .. })),
            "{typo}"
        );
    }
}

#[test]
fn substitutions_in_the_prefix_are_refused() {
    let text = sample_ids(1)[0].to_string();
    let chars: Vec<char> = text.chars().collect();
    for position in 0..4 {
        for replacement in ALPHABET.chars().chain(['1', 'b', 'i', 'o']) {
            if replacement == chars[position] {
                continue;
            }
            let mut typo = chars.clone();
            typo[position] = replacement;
            let typo: String = typo.into_iter().collect();
            assert!(
                matches!(
                    DeviceId::parse(&typo),
                    Err(DeviceIdError::WrongPrefix { .. })
                ),
                "{typo} gave {:?}",
                DeviceId::parse(&typo)
            );
        }
    }
}

#[test]
fn swapping_two_adjacent_distinct_characters_is_refused() {
    for id in sample_ids(20) {
        let text = id.to_string();
        let chars: Vec<char> = text.chars().collect();
        for i in 4..chars.len() - 1 {
            if chars[i] == chars[i + 1] {
                continue;
            }
            let mut swapped = chars.clone();
            swapped.swap(i, i + 1);
            let swapped: String = swapped.into_iter().collect();
            assert!(
                matches!(
                    DeviceId::parse(&swapped),
                    Err(DeviceIdError::BadChecksum { .. })
                ),
                "{swapped} (from {text}) was not refused as a bad checksum"
            );
        }
    }
}

#[test]
fn a_missing_or_extra_character_is_refused_as_wrong_length() {
    let text = sample_ids(1)[0].to_string();
    for position in 4..text.len() {
        let mut shorter = text.clone();
        shorter.remove(position);
        assert!(matches!(
            DeviceId::parse(&shorter),
            Err(DeviceIdError::WrongLength {
                expected: 42,
                found: 41,
                ..
            })
        ));
        let mut longer = text.clone();
        longer.insert(position, 'q');
        assert!(matches!(
            DeviceId::parse(&longer),
            Err(DeviceIdError::WrongLength {
                expected: 42,
                found: 43,
                ..
            })
        ));
    }
}

#[test]
fn a_valid_bech32m_string_with_another_prefix_is_refused() {
    use bech32::{Bech32m, Hrp};
    let id = sample_ids(1)[0];
    for hrp in ["kgx", "bc", "kgdd", "kg"] {
        let other =
            bech32::encode_lower::<Bech32m>(Hrp::parse(hrp).unwrap(), id.as_bytes()).unwrap();
        match DeviceId::parse(&other) {
            Err(DeviceIdError::WrongPrefix { found, .. }) => assert_eq!(found, hrp),
            other_result => panic!("{other} gave {other_result:?}"),
        }
    }
    let err = DeviceId::parse("not-a-device-id").unwrap_err();
    assert!(matches!(err, DeviceIdError::WrongPrefix { .. }), "{err:?}");
}

#[test]
fn a_bech32_rather_than_bech32m_checksum_is_refused() {
    use bech32::{Bech32, Hrp};
    let id = sample_ids(1)[0];
    let old = bech32::encode_lower::<Bech32>(Hrp::parse("kgd").unwrap(), id.as_bytes()).unwrap();
    assert_eq!(old.len(), DEVICE_ID_LEN);
    assert!(matches!(
        DeviceId::parse(&old),
        Err(DeviceIdError::BadChecksum { .. })
    ));
}

#[test]
fn all_upper_case_is_accepted_and_mixed_case_refused() {
    let id = sample_ids(1)[0];
    let upper = id.to_string().to_ascii_uppercase();
    assert_eq!(DeviceId::parse(&upper).unwrap(), id);
    // Displayed in lower case again.
    assert_eq!(DeviceId::parse(&upper).unwrap().to_string(), id.to_string());

    let mut mixed = id.to_string();
    mixed.replace_range(0..3, "KGD");
    assert!(matches!(
        DeviceId::parse(&mixed),
        Err(DeviceIdError::MixedCase { .. })
    ));
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(DeviceId::parse(""), Err(DeviceIdError::Empty));
}

#[test]
fn error_messages_name_the_input_and_the_problem() {
    let text = sample_ids(1)[0].to_string();
    let mut typo: Vec<char> = text.chars().collect();
    typo[10] = if typo[10] == 'q' { 'p' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    let message = DeviceId::parse(&typo).unwrap_err().to_string();
    assert!(message.contains(&typo), "{message}");
    assert!(message.contains("checksum"), "{message}");

    let message = DeviceId::parse(&text[..30]).unwrap_err().to_string();
    assert!(message.contains("30 characters"), "{message}");
    assert!(message.contains("42"), "{message}");

    let message = DeviceId::parse(&format!("{}b{}", &text[..8], &text[9..]))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("'b'") && message.contains("position 8"),
        "{message}"
    );

    // A huge input is not repeated in full.
    let huge = "kgd1".to_string() + &"q".repeat(100_000);
    let message = DeviceId::parse(&huge).unwrap_err().to_string();
    assert!(message.len() < 300, "{} bytes", message.len());
}

#[test]
fn serde_uses_the_string_form_and_refuses_bad_ids() {
    let id = sample_ids(1)[0];
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);

    let mut bad: Vec<char> = id.to_string().chars().collect();
    bad[20] = if bad[20] == 'q' { 'p' } else { 'q' };
    let bad: String = bad.into_iter().collect();
    let err = serde_json::from_str::<DeviceId>(&format!("\"{bad}\"")).unwrap_err();
    assert!(err.to_string().contains("bad checksum"), "{err}");
    assert!(serde_json::from_str::<DeviceId>("42").is_err());
}

#[test]
fn different_keys_have_different_ids_and_the_id_matches_its_key_only() {
    let mut rng = rand::rng();
    let a = DeviceKey::generate(&mut rng);
    let b = DeviceKey::generate(&mut rng);
    assert_ne!(a.device_id(), b.device_id());
    assert!(a.device_id().matches(&a.public_key()));
    assert!(!a.device_id().matches(&b.public_key()));
    assert_eq!(a.public_key().device_id(), a.device_id());
}

#[test]
fn a_signature_verifies_under_its_key_only() {
    let mut rng = rand::rng();
    let key = DeviceKey::generate(&mut rng);
    let other = DeviceKey::generate(&mut rng);
    let signature = key.sign(b"hello gateway");
    key.public_key()
        .verify(b"hello gateway", &signature)
        .unwrap();
    assert!(matches!(
        key.public_key().verify(b"hello gateway!", &signature),
        Err(DeviceKeyError::BadSignature { .. })
    ));
    assert!(matches!(
        other.public_key().verify(b"hello gateway", &signature),
        Err(DeviceKeyError::BadSignature { .. })
    ));
    assert!(matches!(
        key.public_key().verify(b"hello gateway", &signature[..63]),
        Err(DeviceKeyError::WrongSignatureLength { found: 63 })
    ));
}

#[test]
fn rfc8032_signature_of_the_empty_message_matches() {
    let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                    5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    assert_eq!(hex::encode(rfc8032_key().sign(b"")), expected);
}

#[test]
fn public_keys_that_are_not_points_or_are_weak_are_refused() {
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(matches!(
        DevicePublicKey::from_bytes(&not_a_point),
        Err(DeviceKeyError::InvalidPublicKey { .. })
    ));
    // The identity point (y = 1) has small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(
        DevicePublicKey::from_bytes(&identity),
        Err(DeviceKeyError::WeakPublicKey { .. })
    ));
    assert!(matches!(
        DevicePublicKey::from_slice(&[0u8; 31]),
        Err(DeviceKeyError::WrongPublicKeyLength { found: 31 })
    ));
    assert!(matches!(
        "zz".parse::<DevicePublicKey>(),
        Err(DeviceKeyError::InvalidPublicKeyHex { .. })
    ));
}

#[test]
fn public_key_serde_is_hex_and_round_trips() {
    let key = rfc8032_key().public_key();
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{RFC8032_PUBLIC}\""));
    assert_eq!(serde_json::from_str::<DevicePublicKey>(&json).unwrap(), key);
}

#[test]
fn seed_and_pkcs8_round_trips_give_the_same_key() {
    let key = DeviceKey::generate(&mut rand::rng());
    let from_seed = DeviceKey::from_seed(&key.seed());
    assert_eq!(from_seed.public_key(), key.public_key());

    let v2 = key.to_pkcs8_der().unwrap();
    assert_eq!(
        DeviceKey::from_pkcs8_der(&v2).unwrap().public_key(),
        key.public_key()
    );
    let v1 = key.to_pkcs8_v1_der().unwrap();
    assert_eq!(
        DeviceKey::from_pkcs8_der(&v1).unwrap().public_key(),
        key.public_key()
    );
}

#[test]
fn pkcs8_v2_is_loadable_by_ring_as_rustls_would() {
    // rcgen's KeyPair parses PKCS#8 with ring, the provider rustls uses here.
    let key = DeviceKey::generate(&mut rand::rng());
    let der = key.to_pkcs8_der().unwrap();
    let ring_key = rcgen::KeyPair::try_from(der.as_slice()).unwrap();
    assert_eq!(ring_key.public_key_raw(), key.public_key().as_bytes());
}

#[test]
fn pkcs8_whose_public_key_does_not_match_is_refused() {
    let mut rng = rand::rng();
    let key = DeviceKey::generate(&mut rng);
    let other = DeviceKey::generate(&mut rng);
    let mut der = key.to_pkcs8_der().unwrap().to_vec();
    let public = key.public_key().to_bytes();
    let at = der
        .windows(32)
        .position(|w| w == public.as_slice())
        .expect("v2 carries the public key");
    der[at..at + 32].copy_from_slice(other.public_key().as_bytes());
    assert!(matches!(
        DeviceKey::from_pkcs8_der(&der),
        Err(DeviceKeyError::InvalidPkcs8 { .. })
    ));
    assert!(matches!(
        DeviceKey::from_pkcs8_der(b"garbage"),
        Err(DeviceKeyError::InvalidPkcs8 { .. })
    ));
}
