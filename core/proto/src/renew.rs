//! [`Renew`]: a node asks for a new certificate for its key, proving the
//! key on this very connection.

use ed25519_dalek::{Signer, SigningKey};

use crate::crypto::{LABEL_RENEW, hash, verify, verifying_key};
use crate::error::PairingError;
use crate::wire::{PublicKeyBytes, Renew, check_id};

/// The digest a `Renew` signs: bound to the device id and to this
/// connection's channel binding, so it cannot be replayed on another one.
fn renew_digest(device_id: &str, channel_binding: &[u8; 32]) -> [u8; 32] {
    hash(LABEL_RENEW, &[device_id.as_bytes(), channel_binding])
}

impl Renew {
    /// Node side: signs a renewal for `device_id` on the connection whose
    /// TLS exporter value is `channel_binding`.
    pub fn sign(
        key: &SigningKey,
        device_id: &str,
        channel_binding: &[u8; 32],
    ) -> Result<Renew, PairingError> {
        check_id(device_id).map_err(|problem| PairingError::InvalidInput {
            field: "device_id",
            problem,
        })?;
        Ok(Renew {
            device_id: device_id.to_owned(),
            signature: key
                .sign(&renew_digest(device_id, channel_binding))
                .to_bytes(),
        })
    }

    /// Gateway side: checks the signature (`verify_strict`) with the
    /// device's key, `device_public_key`, as the gateway has it on record
    /// for `device_id`, for this connection's `channel_binding`.
    pub fn verify(
        &self,
        device_public_key: &PublicKeyBytes,
        channel_binding: &[u8; 32],
    ) -> Result<(), PairingError> {
        let key = verifying_key(device_public_key)?;
        verify(
            &key,
            &renew_digest(&self.device_id, channel_binding),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_verifies_only_with_its_key_on_its_connection() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let renew = Renew::sign(&key, "kgd1node", &[7; 32]).unwrap();
        renew.verify(&public, &[7; 32]).unwrap();
        assert!(
            renew.verify(&public, &[8; 32]).is_err(),
            "another connection"
        );
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        assert!(renew.verify(&other, &[7; 32]).is_err(), "another key");
        let mut renamed = renew.clone();
        renamed.device_id = "kgd1other".into();
        assert!(
            renamed.verify(&public, &[7; 32]).is_err(),
            "another device id"
        );
        let mut tampered = renew;
        tampered.signature[0] ^= 1;
        assert!(tampered.verify(&public, &[7; 32]).is_err(), "a flipped bit");
    }

    #[test]
    fn renewal_device_ids_are_checked_before_signing() {
        let key = SigningKey::from_bytes(&[3; 32]);
        assert!(matches!(
            Renew::sign(&key, "has space", &[0; 32]),
            Err(PairingError::InvalidInput {
                field: "device_id",
                ..
            })
        ));
    }
}
