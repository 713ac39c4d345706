//! What code a gateway runs, for the audit log: each loaded plugin with the
//! SHA-256 of the file its code came from.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use keygate_sdk_host::Origin;

use super::{LoadedPlugin, sha256_of};
use crate::state::{Actor, AuditAction, AuditEvent};

/// One `plugin_loaded` audit event per plugin, by `actor`. A library's
/// digest is of its file now (the loader already checked it against a
/// configured `sha256` pin when there is one); a built-in's is of the
/// executable it is linked into. A file that cannot be read is recorded
/// as such instead of a digest. Reads whole files: run it off the path
/// that serves devices.
pub fn loaded_events(loaded: &[LoadedPlugin], actor: &Actor) -> Vec<AuditEvent> {
    let mut digests: HashMap<PathBuf, String> = HashMap::new();
    let mut digest_of = |path: &Path| {
        digests
            .entry(path.to_path_buf())
            .or_insert_with(
                || match File::open(path).and_then(|mut f| sha256_of(&mut f)) {
                    Ok(digest) => hex::encode(digest),
                    Err(e) => format!("unreadable: {e}"),
                },
            )
            .clone()
    };
    loaded
        .iter()
        .map(|p| {
            let file = match &p.origin {
                Origin::File(path) => Ok(path.clone()),
                Origin::Builtin(_) => std::env::current_exe(),
            };
            let sha256 = match file {
                Ok(path) => digest_of(&path),
                Err(e) => format!("unreadable: {e}"),
            };
            AuditEvent::new(actor, AuditAction::PluginLoaded, p.label.clone())
                .with("source", p.origin.to_string())
                .with("sdk_version", p.sdk_version.clone())
                .with("sha256", sha256)
        })
        .collect()
}
