//! [`Resume`]: a device that lost its connection after proving its code
//! asks for its answer, proving the same key on the new connection.

use ed25519_dalek::{Signer, SigningKey};

use crate::crypto::{LABEL_RESUME, hash, verify, verifying_key};
use crate::error::PairingError;
use crate::wire::{Resume, check_id};

/// The digest a `Resume` signs: bound to the request and to this
/// connection's channel binding, so it cannot be replayed on another one.
fn resume_digest(request_id: &str, channel_binding: &[u8; 32]) -> [u8; 32] {
    hash(LABEL_RESUME, &[request_id.as_bytes(), channel_binding])
}

impl Resume {
    /// Device side: signs a resume of `request_id` for the connection whose
    /// TLS exporter value is `channel_binding`.
    pub fn sign(
        key: &SigningKey,
        request_id: &str,
        channel_binding: &[u8; 32],
    ) -> Result<Resume, PairingError> {
        check_id(request_id).map_err(|problem| PairingError::InvalidInput {
            field: "request_id",
            problem,
        })?;
        Ok(Resume {
            request_id: request_id.to_owned(),
            device_public_key: key.verifying_key().to_bytes(),
            signature: key
                .sign(&resume_digest(request_id, channel_binding))
                .to_bytes(),
        })
    }

    /// Gateway side: checks the signature (`verify_strict`) for this
    /// connection's `channel_binding`. The host then checks that
    /// `device_public_key` is the key of the request `request_id`.
    pub fn verify(&self, channel_binding: &[u8; 32]) -> Result<(), PairingError> {
        let key = verifying_key(&self.device_public_key)?;
        verify(
            &key,
            &resume_digest(&self.request_id, channel_binding),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_request_ids_are_checked_before_signing() {
        let key = SigningKey::from_bytes(&[3; 32]);
        assert!(matches!(
            Resume::sign(&key, "has space", &[0; 32]),
            Err(PairingError::InvalidInput {
                field: "request_id",
                ..
            })
        ));
    }
}
