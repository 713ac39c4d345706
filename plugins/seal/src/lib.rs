//! Sealing shared by Keygate's built-in stores (the `filesystem` store and
//! the `postgres` store): values are encrypted before they leave the
//! gateway, with the same format and the same key settings whatever holds
//! them.
//!
//! - [`sealer`]: AES-256-GCM sealed records, whose associated data binds
//!   the record version and the key name, so a blob cannot be moved to
//!   another key or given another version; and the key check, a sealed
//!   constant a store keeps to refuse a wrong key when it opens.
//! - [`keyfile`]: reading and creating the 32-byte key file.
//! - [`kdf`]: the key from a passphrase (Argon2id), and the encoding of its
//!   salt and parameters.
//! - [`source`]: the `key_file` / `passphrase_env` config fields.
//!
//! Where the sealed blobs, the key check and the passphrase parameters are
//! kept, and when a new key may be made, is each store's business: this
//! crate knows no file layout and no database. Key material is wiped from
//! memory when dropped.
#![forbid(unsafe_code)]

pub mod kdf;
pub mod keyfile;
pub mod sealer;
pub mod source;

pub use kdf::{KdfError, KdfParams};
pub use keyfile::{create_key_file, read_key_file};
pub use sealer::{
    KEY_LEN, MIN_RECORD_LEN, NONCE_LEN, OpenError, RandomError, SealError, Sealer, StoreKey,
    TAG_LEN, fill_random, random_u64,
};
pub use source::KeySource;
