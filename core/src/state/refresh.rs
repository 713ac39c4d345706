//! Keeping the revocation index current: the first full load (from the
//! snapshot, or from every record), following the change log, writing
//! snapshots and compacting the log. See [`super::changelog`] for the
//! protocol.

use keygate_sdk::ErrorKind;
use serde::de::DeserializeOwned;

use super::IdentityError;
use super::changelog::{self, read_entry, read_floor};
use super::index::{CertStatus, IndexSnapshot, RevocationIndex, SNAPSHOT_KEY};
use super::manager::{IdentityManager, Reader, RevocationEvent, encode};
use super::records::{CERTS_PREFIX, DEVICES_PREFIX, Revocation};
use crate::identity::{CertFingerprint, DeviceId};

/// A reader writes a snapshot once this many changes accumulated after the
/// last one.
const SNAPSHOT_INTERVAL: u64 = 1024;
/// Change-log entries kept behind the newest, for readers that poll.
const RETAIN_CHANGES: u64 = 4096;
/// A full load of at least this many certificates writes a snapshot.
const SNAPSHOT_AFTER_SCAN: usize = 1000;

impl IdentityManager {
    /// The status of a presented certificate, from the in-memory index
    /// (call [`refresh`](Self::refresh) or run a watcher to keep it
    /// current). O(1).
    pub fn certificate_status(&self, fp: &CertFingerprint) -> CertStatus {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .status(fp)
    }

    /// Whether a device is revoked, from the in-memory index.
    pub fn is_device_revoked(&self, id: &DeviceId) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_device_revoked(id)
    }

    /// Brings the index up to date with the change log (loading it in full,
    /// from the snapshot if there is one, the first time) and returns the
    /// revocations it had not seen. Takes the shared state lock.
    pub fn refresh(&self) -> Result<Vec<RevocationEvent>, IdentityError> {
        let _guard = self
            .lock
            .acquire_shared("refresh revocation index", self.settings.lock_timeout)?;
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if !reader.loaded {
            self.load_full(&mut reader)?;
        }
        let mut events = Vec::new();
        let mut progressed = false;
        while let Some(entry) = read_entry(&*self.store, reader.cursor + 1)? {
            for key in &entry.keys {
                self.apply_key(key, &mut events)?;
            }
            reader.cursor = entry.seq.max(reader.cursor + 1);
            progressed = true;
        }
        if !progressed {
            let (floor, _) = read_floor(&*self.store)?;
            if floor > reader.cursor {
                tracing::warn!(
                    cursor = reader.cursor,
                    floor,
                    "revocation index fell behind the compacted change log; reloading"
                );
                let before = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
                self.load_full(&mut reader)?;
                events.extend(newly_revoked(
                    &before,
                    &self.index.read().unwrap_or_else(|p| p.into_inner()),
                ));
                return Ok(events);
            }
        }
        if reader.cursor >= reader.snapshot_seq + SNAPSHOT_INTERVAL {
            self.snapshot_and_compact(&mut reader)?;
        }
        Ok(events)
    }

    fn apply_key(&self, key: &str, events: &mut Vec<RevocationEvent>) -> Result<(), IdentityError> {
        if let Some(id) = key.strip_prefix(DEVICES_PREFIX) {
            let id = DeviceId::parse(id).map_err(|e| IdentityError::corrupt(key, e))?;
            let revoked = self
                .get_record::<DeviceIndexView>(key)?
                .is_some_and(|(r, _)| r.revoked.is_some());
            let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
            let was = index.is_device_revoked(&id);
            index.set_device(&id, revoked);
            if !was && revoked {
                events.push(RevocationEvent::Device(id));
            }
        } else if let Some(fp) = key.strip_prefix(CERTS_PREFIX) {
            let fp = CertFingerprint::parse(fp).map_err(|e| IdentityError::corrupt(key, e))?;
            let record: Option<CertIndexView> = self.get_record(key)?.map(|(r, _)| r);
            let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
            let was = matches!(index.status(&fp), CertStatus::CertificateRevoked(_));
            index.set_cert(&fp, record.map(|r| (r.device_id, r.revoked.is_some())));
            if let (false, CertStatus::CertificateRevoked(device_id)) = (was, index.status(&fp)) {
                events.push(RevocationEvent::Certificate {
                    fingerprint: fp,
                    device_id,
                });
            }
        }
        Ok(())
    }

    /// Loads the index from the snapshot, or from every record when there
    /// is none (and then writes one if the state is large).
    fn load_full(&self, reader: &mut Reader) -> Result<(), IdentityError> {
        if let Some((snapshot, _)) = self.get_record::<IndexSnapshot>(SNAPSHOT_KEY)? {
            let (floor, _) = read_floor(&*self.store)?;
            if floor <= snapshot.seq {
                *self.index.write().unwrap_or_else(|p| p.into_inner()) =
                    RevocationIndex::from_snapshot(&snapshot);
                reader.cursor = snapshot.seq;
                reader.snapshot_seq = snapshot.seq;
                reader.loaded = true;
                return Ok(());
            }
        }
        let head = changelog::find_head(&*self.store)?;
        let mut index = RevocationIndex::new();
        for device in self.scan::<DeviceIndexView>(DEVICES_PREFIX)? {
            index.set_device(&device.device_id, device.revoked.is_some());
        }
        let certs = self.scan::<CertIndexView>(CERTS_PREFIX)?;
        index.reserve(certs.len());
        for cert in &certs {
            index.set_cert(
                &cert.fingerprint,
                Some((cert.device_id, cert.revoked.is_some())),
            );
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        reader.cursor = head;
        reader.snapshot_seq = 0;
        reader.loaded = true;
        if certs.len() >= SNAPSHOT_AFTER_SCAN {
            self.snapshot_and_compact(reader)?;
        }
        Ok(())
    }

    /// Reads every record under `prefix` as `T`, on as many threads as the
    /// machine has cores (a full load is bound by record reads).
    fn scan<T: DeserializeOwned + Send>(&self, prefix: &str) -> Result<Vec<T>, IdentityError> {
        let keys = self.store.list(prefix)?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = keys.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<T>, IdentityError>> = std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(part.len());
                        for key in part {
                            if let Some((r, _)) = self.get_record(key)? {
                                out.push(r);
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(IdentityError::corrupt(prefix, "a scan thread panicked"))
                    })
                })
                .collect()
        });
        let mut all = Vec::with_capacity(keys.len());
        for part in parts {
            all.extend(part?);
        }
        Ok(all)
    }

    fn snapshot_and_compact(&self, reader: &mut Reader) -> Result<(), IdentityError> {
        let snapshot = self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .to_snapshot(reader.cursor);
        let bytes = encode(SNAPSHOT_KEY, &snapshot)?;
        let version = self.store.get(SNAPSHOT_KEY)?.map(|v| v.version);
        match self.store.put(SNAPSHOT_KEY, &bytes, version) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        reader.snapshot_seq = reader.cursor;
        let through = reader
            .cursor
            .min(reader.cursor.saturating_sub(RETAIN_CHANGES));
        let deleted = changelog::compact(&*self.store, through, reader.cursor)?;
        tracing::debug!(
            seq = reader.cursor,
            certs = snapshot.certs.len(),
            deleted,
            "wrote index snapshot"
        );
        Ok(())
    }
}

/// The part of a device record the index needs (parsing the public key,
/// a curve point, would dominate a full load).
#[derive(serde::Deserialize)]
struct DeviceIndexView {
    device_id: DeviceId,
    revoked: Option<Revocation>,
}

/// The part of a certificate record the index needs.
#[derive(serde::Deserialize)]
struct CertIndexView {
    fingerprint: CertFingerprint,
    device_id: DeviceId,
    revoked: Option<Revocation>,
}

fn newly_revoked(before: &RevocationIndex, after: &RevocationIndex) -> Vec<RevocationEvent> {
    let snap_before = before.to_snapshot(0);
    let snap_after = after.to_snapshot(0);
    let mut events: Vec<RevocationEvent> = snap_after
        .revoked_devices
        .iter()
        .filter(|d| !before.is_device_revoked(d))
        .map(|d| RevocationEvent::Device(*d))
        .collect();
    let old: std::collections::HashSet<_> = snap_before
        .certs
        .iter()
        .filter(|c| c.2)
        .map(|c| c.0)
        .collect();
    events.extend(
        snap_after
            .certs
            .iter()
            .filter(|c| c.2 && !old.contains(&c.0))
            .map(|c| RevocationEvent::Certificate {
                fingerprint: c.0,
                device_id: c.1,
            }),
    );
    events
}
