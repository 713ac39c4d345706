//! Operators of the admin API and their bearer tokens.
//!
//! | key | value |
//! |---|---|
//! | `identity/operators/<name>` | [`OperatorRecord`] |
//! | `identity/operator-tokens/<hash>` | [`TokenRecord`]: which operator a token hash belongs to |
//! | `identity/operator-token-key` | the 32-byte key of the token hashes (hex) |
//!
//! A token is shown once, when its operator is added, and never stored:
//! only its keyed hash (HMAC-SHA256 under the state's token key) is, as
//! the key of a record that names the operator. Checking a token is one
//! hash and one read. The key lives in the store like the CA key (sealed
//! by the filesystem store), so a copy of the token records alone does
//! not let anyone test guesses offline. Revoking an operator deletes its
//! token record: the token stops working at once on every gateway that
//! reads this state. Names are never reused, so the audit log's
//! `operator:NAME` always means one operator.

use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::IdentityError;
use super::audit::{Actor, AuditAction, AuditEvent};
use super::manager::{IdentityManager, Listing, RevokeOutcome, Write, encode};
use super::records::Revocation;
use crate::time::unix_secs;

/// Prefix of operator records.
pub const OPERATORS_PREFIX: &str = "identity/operators/";
/// Prefix of token records.
pub const TOKENS_PREFIX: &str = "identity/operator-tokens/";
/// The key of the token hashes' key.
pub const TOKEN_KEY_KEY: &str = "identity/operator-token-key";
/// What every token starts with, so one found in a log or a file says
/// what it is.
pub const TOKEN_PREFIX: &str = "kgo_";
/// The longest operator name.
pub const MAX_NAME_LEN: usize = 64;

/// An operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRecord {
    /// Its name: what the audit log and decisions call it (`operator:NAME`).
    pub name: String,
    /// When it was added (unix seconds).
    pub created_at: u64,
    /// Who added it.
    pub created_by: String,
    /// The keyed hash of its token (hex).
    pub token_hash: String,
    /// Set once revoked: its token no longer works.
    pub revoked: Option<Revocation>,
}

/// Which operator a token hash belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The operator.
    pub operator: String,
}

/// The key of the token hashes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenKey {
    key_hex: Zeroizing<String>,
}

/// An operator just added, with its token (shown once, kept nowhere).
#[derive(Debug)]
pub struct NewOperator {
    /// The operator.
    pub record: OperatorRecord,
    /// Its bearer token.
    pub token: Zeroizing<String>,
}

/// The key of `name`'s record.
pub fn operator_key(name: &str) -> String {
    format!("{OPERATORS_PREFIX}{name}")
}

fn token_key(hash: &str) -> String {
    format!("{TOKENS_PREFIX}{hash}")
}

/// Checks an operator name: 1 to [`MAX_NAME_LEN`] characters of `a-z`,
/// `0-9`, `.`, `_` and `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    let refuse = |reason| {
        Err(IdentityError::OperatorName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return refuse("must start with a lower-case letter or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return refuse("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// HMAC-SHA256 of `token` under `key`, hex.
fn token_hash(key: &[u8], token: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn decode_key(key: &TokenKey) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    hex::decode(key.key_hex.as_bytes())
        .ok()
        .filter(|k| k.len() == 32)
        .map(Zeroizing::new)
        .ok_or_else(|| IdentityError::corrupt(TOKEN_KEY_KEY, "not 32 bytes of hex"))
}

/// Checks the token key's record (for `keygate state check`).
pub(crate) fn check_token_key(bytes: &[u8]) -> Result<(), String> {
    let key: TokenKey = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    decode_key(&key).map(drop).map_err(|e| e.to_string())
}

impl IdentityManager {
    /// Adds operator `name` and makes its token. `actor` is who added it.
    pub fn add_operator(
        &self,
        name: &str,
        now: SystemTime,
        actor: &Actor,
    ) -> Result<NewOperator, IdentityError> {
        check_name(name)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::Rng::fill_bytes(&mut rand::rng(), &mut *secret);
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex::encode(*secret)));
        self.mutate("operators add", |m| {
            let okey = operator_key(name);
            if m.get_record::<OperatorRecord>(&okey)?.is_some() {
                return Err(IdentityError::OperatorExists(name.to_owned()));
            }
            let mut writes = Vec::with_capacity(5);
            let hash_key = match m.get_record::<TokenKey>(TOKEN_KEY_KEY)? {
                Some((key, _)) => decode_key(&key)?,
                None => {
                    let mut fresh = Zeroizing::new(vec![0u8; 32]);
                    rand::Rng::fill_bytes(&mut rand::rng(), &mut fresh[..]);
                    let record = TokenKey {
                        key_hex: Zeroizing::new(hex::encode(&*fresh)),
                    };
                    writes.push(Write::put(
                        TOKEN_KEY_KEY.to_owned(),
                        encode(TOKEN_KEY_KEY, &record)?,
                        None,
                    ));
                    fresh
                }
            };
            let hash = token_hash(&hash_key, &token);
            let record = OperatorRecord {
                name: name.to_owned(),
                created_at: unix_secs(now),
                created_by: actor.to_string(),
                token_hash: hash.clone(),
                revoked: None,
            };
            writes.push(Write::put(okey.clone(), encode(&okey, &record)?, None));
            let tkey = token_key(&hash);
            let index = TokenRecord {
                operator: name.to_owned(),
            };
            writes.push(Write::put(tkey.clone(), encode(&tkey, &index)?, None));
            m.audit(
                vec![AuditEvent::new(actor, AuditAction::OperatorAdded, name)],
                now,
                &mut writes,
            )?;
            Ok((
                writes,
                NewOperator {
                    record,
                    token: token.clone(),
                },
            ))
        })
    }

    /// Revokes operator `name`: its token stops working. Revoking a revoked
    /// operator writes nothing.
    pub fn revoke_operator(
        &self,
        name: &str,
        reason: &str,
        now: SystemTime,
        actor: &Actor,
    ) -> Result<RevokeOutcome, IdentityError> {
        self.mutate("operators revoke", |m| {
            let okey = operator_key(name);
            let Some((mut record, version)) = m.get_record::<OperatorRecord>(&okey)? else {
                return Err(IdentityError::UnknownOperator(name.to_owned()));
            };
            if let Some(r) = record.revoked.clone() {
                return Ok((Vec::new(), RevokeOutcome::AlreadyRevoked(r)));
            }
            let revocation = Revocation {
                reason: reason.to_owned(),
                at: unix_secs(now),
            };
            record.revoked = Some(revocation.clone());
            let mut writes = vec![Write::put(
                okey.clone(),
                encode(&okey, &record)?,
                Some(version),
            )];
            let tkey = token_key(&record.token_hash);
            if let Some((_, version)) = m.get_record::<TokenRecord>(&tkey)? {
                writes.push(Write::delete(tkey, version));
            }
            m.audit(
                vec![
                    AuditEvent::new(actor, AuditAction::OperatorRevoked, name)
                        .with("reason", reason),
                ],
                now,
                &mut writes,
            )?;
            Ok((writes, RevokeOutcome::Revoked(revocation)))
        })
    }

    /// Every operator, revoked ones included, and the records that cannot
    /// be read.
    pub fn operators(&self) -> Result<Listing<OperatorRecord>, IdentityError> {
        self.all(OPERATORS_PREFIX, |name, r: &OperatorRecord| name == r.name)
    }

    /// The operator `token` belongs to, if it is a live one: `None` for a
    /// token that was never made here, is malformed, or whose operator is
    /// revoked.
    pub fn authenticate_operator(
        &self,
        token: &str,
    ) -> Result<Option<OperatorRecord>, IdentityError> {
        let well_formed = token
            .strip_prefix(TOKEN_PREFIX)
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Ok(None);
        }
        let Some((key, _)) = self.get_record::<TokenKey>(TOKEN_KEY_KEY)? else {
            return Ok(None);
        };
        let hash = token_hash(&decode_key(&key)?, token);
        let Some((index, _)) = self.get_record::<TokenRecord>(&token_key(&hash))? else {
            return Ok(None);
        };
        let Some((record, _)) =
            self.get_record::<OperatorRecord>(&operator_key(&index.operator))?
        else {
            return Ok(None);
        };
        // The record's own hash must be this one too: a token record left
        // pointing at an operator whose token changed counts for nothing.
        let same = subtle::ConstantTimeEq::ct_eq(record.token_hash.as_bytes(), hash.as_bytes());
        Ok((bool::from(same) && record.revoked.is_none()).then_some(record))
    }

    /// Operator `name` if it is still live and still holds the token whose
    /// hash is `token_hash`: how a console session, which keeps the hash
    /// it logged in with and never the token, is checked again on every
    /// request.
    pub fn live_operator(
        &self,
        name: &str,
        token_hash: &str,
    ) -> Result<Option<OperatorRecord>, IdentityError> {
        if check_name(name).is_err() {
            return Ok(None);
        }
        let Some((record, _)) = self.get_record::<OperatorRecord>(&operator_key(name))? else {
            return Ok(None);
        };
        let same =
            subtle::ConstantTimeEq::ct_eq(record.token_hash.as_bytes(), token_hash.as_bytes());
        Ok((bool::from(same) && record.revoked.is_none()).then_some(record))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keygate_sdk::SecretStore;

    use super::*;
    use crate::state::audit::AuditVerdict;

    fn manager(dir: &std::path::Path) -> (Arc<dyn SecretStore>, IdentityManager) {
        crate::state::testing::on_memory(dir)
    }

    #[test]
    fn a_token_authenticates_its_operator_until_revoked_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        let now = SystemTime::now();
        let root = Actor::cli();
        let alice = m.add_operator("alice", now, &root).unwrap();
        let bob = m.add_operator("bob", now, &root).unwrap();
        assert!(alice.token.starts_with(TOKEN_PREFIX));
        assert_ne!(alice.token, bob.token);
        let who = |t: &str| m.authenticate_operator(t).unwrap().map(|r| r.name);
        assert_eq!(who(&alice.token).as_deref(), Some("alice"));
        assert_eq!(who(&bob.token).as_deref(), Some("bob"));
        // Nothing in the store holds a token.
        for key in store.list("").unwrap() {
            let value = store.get(&key).unwrap().unwrap().value;
            let text = String::from_utf8_lossy(&value);
            assert!(!text.contains(&alice.token[TOKEN_PREFIX.len()..]), "{key}");
        }
        // Wrong, altered, malformed tokens.
        let mut altered = alice.token.to_string();
        altered.replace_range(10..11, if &altered[10..11] == "a" { "b" } else { "a" });
        for bad in [
            altered.as_str(),
            "",
            "kgo_",
            "kgo_xyz",
            &alice.token[1..],
            "Bearer x",
        ] {
            assert_eq!(who(bad), None, "{bad:?}");
        }
        assert!(matches!(
            m.revoke_operator("alice", "left", now, &root).unwrap(),
            RevokeOutcome::Revoked(_)
        ));
        assert_eq!(who(&alice.token), None);
        assert_eq!(who(&bob.token).as_deref(), Some("bob"));
        assert!(matches!(
            m.revoke_operator("alice", "again", now, &root).unwrap(),
            RevokeOutcome::AlreadyRevoked(r) if r.reason == "left"
        ));
        let names: Vec<(String, bool)> = m
            .operators()
            .unwrap()
            .records
            .into_iter()
            .map(|r| (r.name, r.revoked.is_some()))
            .collect();
        assert_eq!(names, vec![("alice".into(), true), ("bob".into(), false)]);
        let actions: Vec<AuditAction> = m
            .audit_entries()
            .unwrap()
            .into_iter()
            .flat_map(|e| e.events.into_iter().map(|v| v.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                AuditAction::OperatorAdded,
                AuditAction::OperatorAdded,
                AuditAction::OperatorRevoked
            ]
        );
        assert!(matches!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact { entries: 3, .. }
        ));
    }

    #[test]
    fn names_are_checked_unique_and_never_reused_and_unknown_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = manager(dir.path());
        let now = SystemTime::now();
        let root = Actor::cli();
        for bad in ["", "Alice", "-x", "a b", "a/b", &"a".repeat(65)] {
            let err = m.add_operator(bad, now, &root).unwrap_err();
            assert!(
                matches!(&err, IdentityError::OperatorName { name, .. } if name == bad),
                "{bad:?}: {err}"
            );
        }
        m.add_operator(&"a".repeat(64), now, &root).unwrap();
        m.add_operator("ops.team_1-x", now, &root).unwrap();
        assert!(matches!(
            m.add_operator("ops.team_1-x", now, &root),
            Err(IdentityError::OperatorExists(n)) if n == "ops.team_1-x"
        ));
        m.revoke_operator("ops.team_1-x", "", now, &root).unwrap();
        assert!(matches!(
            m.add_operator("ops.team_1-x", now, &root),
            Err(IdentityError::OperatorExists(_))
        ));
        assert!(matches!(
            m.revoke_operator("nobody", "", now, &root),
            Err(IdentityError::UnknownOperator(n)) if n == "nobody"
        ));
        // Refusals record nothing.
        assert_eq!(m.audit_entries().unwrap().len(), 3);
    }

    #[test]
    fn a_token_record_pointing_at_another_operator_authenticates_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        let now = SystemTime::now();
        let alice = m.add_operator("alice", now, &Actor::cli()).unwrap();
        m.add_operator("bob", now, &Actor::cli()).unwrap();
        // Someone with write access to the store points alice's token at bob.
        let tkey = token_key(&alice.record.token_hash);
        let v = store.get(&tkey).unwrap().unwrap();
        let forged = serde_json::to_vec(&TokenRecord {
            operator: "bob".into(),
        })
        .unwrap();
        store.put(&tkey, &forged, Some(v.version)).unwrap();
        assert_eq!(m.authenticate_operator(&alice.token).unwrap(), None);
    }
}
