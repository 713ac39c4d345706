//! Minting a pairing code, as the CLI and the admin API hand it out: a PIN
//! to type, or a QR code's `keygate://` URI carrying the gateway's
//! addresses, the CA fingerprint, the session id and a one-time token.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::uri::{GatewayAddr, PairingUri};
use super::{PairingSettings, check_code_ttl, pin};
use crate::state::pairing::{Method, PairingSession};
use crate::state::{Actor, IdentityError, IdentityManager};

/// Why a code was not minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The requested life is out of bounds.
    #[error("ttl: {0}")]
    Ttl(String),
    /// The configured PIN length is out of bounds.
    #[error(transparent)]
    PinLength(#[from] pin::PinLengthError),
    /// The state refused or failed.
    #[error(transparent)]
    State(#[from] IdentityError),
}

/// A code just minted. The secret is in it once: the session keeps it
/// inside the encrypted store and nothing logs it.
pub enum Minted {
    /// A PIN.
    Pin {
        /// The session (its secret is the PIN).
        session: PairingSession,
    },
    /// A QR code's URI.
    Qr {
        /// The session.
        session: PairingSession,
        /// The URI the QR code carries.
        uri: Zeroizing<String>,
    },
}

impl Minted {
    /// The session.
    pub fn session(&self) -> &PairingSession {
        match self {
            Self::Pin { session } | Self::Qr { session, .. } => session,
        }
    }
}

/// Mints a code of `method` that lives `ttl` (the configured life when
/// `None`), made by `actor`. A QR URI names `advertise`.
pub fn mint(
    identity: &IdentityManager,
    settings: &PairingSettings,
    advertise: &[GatewayAddr],
    method: Method,
    ttl: Option<Duration>,
    actor: &Actor,
    now: SystemTime,
) -> Result<Minted, MintError> {
    let ttl = match ttl {
        Some(ttl) => check_code_ttl(ttl).map_err(MintError::Ttl)?,
        None => settings.code_ttl,
    };
    let mut token = Zeroizing::new([0u8; 16]);
    let secret = match method {
        Method::Pin => pin::generate(settings.pin_digits, &mut rand::rng())?,
        Method::Qr => {
            rand::Rng::fill_bytes(&mut rand::rng(), &mut *token);
            Zeroizing::new(hex::encode(*token))
        }
    };
    let session =
        identity.create_pairing_session(method, secret, ttl, settings.max_attempts, now, actor)?;
    Ok(match method {
        Method::Pin => Minted::Pin { session },
        Method::Qr => {
            let mut session_id = [0u8; 16];
            hex::decode_to_slice(&session.id, &mut session_id).map_err(|_| {
                IdentityError::corrupt(&session.id, "a session id is not 32 hex digits")
            })?;
            let uri = PairingUri {
                gateways: advertise.to_vec(),
                ca_fingerprint: *identity.ca().fingerprint().as_bytes(),
                session_id,
                token,
            }
            .to_uri();
            Minted::Qr { session, uri }
        }
    })
}
