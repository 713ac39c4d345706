//! The load's nodes: devices enrolled straight into the gateway's state,
//! connected over one shared client transport (many nodes behind one load
//! generator, as one device process shares its transport), registered,
//! and heartbeating on a fixed schedule.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use keygate_core::device::link::{CloseCause, Link, connect_params};
use keygate_core::identity::DeviceKey;
use keygate_proto::{Heartbeat, Message, Register};
use keygate_sdk::{ServerTrust, TlsIdentity, Transport};
use sha2::Digest;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One node: what it connects with, its two requests, its live link.
struct Node {
    identity: TlsIdentity,
    register: Vec<u8>,
    heartbeat: Vec<u8>,
    link: RwLock<Option<Arc<Link>>>,
}

impl Node {
    fn link(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_link(&self, link: Option<Arc<Link>>) {
        *self.link.write().unwrap_or_else(|p| p.into_inner()) = link;
    }
}

/// Every node of the load, and where they connect.
pub struct Fleet {
    nodes: Vec<Node>,
    client: Arc<dyn Transport>,
    addr: String,
    ca: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job(i)` for every i in `range` on `threads` threads.
fn spread(range: std::ops::Range<usize>, threads: usize, job: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(range.start);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= range.end {
                        break;
                    }
                    job(i);
                }
            });
        }
    });
}

impl Fleet {
    /// Enrols `n` devices into the state `config` names (as `devices
    /// enroll` does, several at once), for nodes that will connect to
    /// `addr` over `client`.
    pub fn enroll(config: &Path, n: usize, client: Arc<dyn Transport>, addr: &str) -> Fleet {
        let (_host, manager) = keygate_tests::open_identity(config);
        let ca = manager.ca().certificate_der().to_vec();
        let slots: Vec<std::sync::OnceLock<Node>> =
            (0..n).map(|_| std::sync::OnceLock::new()).collect();
        let now = SystemTime::now();
        spread(0..n, 16, |i| {
            let seed: [u8; 32] = sha2::Sha256::digest(format!("load-node-{i}")).into();
            let key = DeviceKey::from_seed(&seed);
            let enrolled = manager
                .enroll(
                    &key.public_key(),
                    &format!("load-{i}"),
                    &[],
                    now,
                    &keygate_core::state::Actor::cli(),
                )
                .unwrap_or_else(|e| panic!("enrolling node {i}: {e}"));
            let device_id = key.device_id().to_string();
            let node = Node {
                identity: TlsIdentity {
                    cert_chain: vec![enrolled.certificate.der.clone(), ca.clone()],
                    private_key_der: key.to_pkcs8_der().expect("pkcs8").to_vec(),
                },
                register: Message::Register(Register {
                    device_id: device_id.clone(),
                    capabilities: vec!["echo".into()],
                })
                .encode(),
                heartbeat: Message::Heartbeat(Heartbeat { device_id }).encode(),
                link: RwLock::new(None),
            };
            let _ = slots[i].set(node);
        });
        Fleet {
            nodes: slots
                .into_iter()
                .map(|s| s.into_inner().expect("every node enrolled"))
                .collect(),
            client,
            addr: addr.to_owned(),
            ca,
        }
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Connects node `i` and registers it.
    fn connect(&self, i: usize) -> Result<Arc<Link>, String> {
        let node = &self.nodes[i];
        let params = connect_params(
            &self.addr,
            ServerTrust::Roots(vec![self.ca.clone()]),
            Some(node.identity.clone()),
        )
        .map_err(|e| e.to_string())?;
        let link = Link::connect(self.client.clone(), params).map_err(|e| e.to_string())?;
        let answer = link
            .request(&node.register, REQUEST_TIMEOUT)
            .map_err(|e| e.to_string())?;
        match Message::decode(&answer) {
            Ok(Message::Registered(_)) => Ok(Arc::new(link)),
            other => Err(format!("Register answered with {other:?}")),
        }
    }

    /// Connects and registers nodes `range`, `in_flight` at a time; a
    /// node that fails is tried again until `patience` has passed since
    /// the call (then it panics, naming the node and the error). Returns
    /// the wall time and how many attempts failed.
    pub fn connect_all(
        &self,
        range: std::ops::Range<usize>,
        in_flight: usize,
        patience: Duration,
    ) -> (Duration, usize) {
        let start = Instant::now();
        let failed = AtomicUsize::new(0);
        spread(range, in_flight, |i| {
            loop {
                match self.connect(i) {
                    Ok(link) => {
                        self.nodes[i].set_link(Some(link));
                        break;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        assert!(start.elapsed() < patience, "node {i} never connected: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        (start.elapsed(), failed.into_inner())
    }

    /// Waits for every node's link to close (the gateway went away) and
    /// forgets it; how many closed with each cause, `[shutdown, other]`,
    /// and how many were still open after `timeout`.
    pub fn await_closed(&self, timeout: Duration) -> ([usize; 2], usize) {
        let deadline = Instant::now() + timeout;
        let (mut causes, mut open) = ([0; 2], 0);
        for node in &self.nodes {
            let Some(link) = node.link() else { continue };
            let left = deadline.saturating_duration_since(Instant::now());
            match link.wait_closed(left) {
                Some(c) if c.cause == CloseCause::Shutdown => causes[0] += 1,
                Some(_) => causes[1] += 1,
                None => open += 1,
            }
            node.set_link(None);
        }
        (causes, open)
    }
}

/// One heartbeat's round trip, and when it was sent.
#[derive(Clone, Copy)]
pub struct Sample {
    /// When it was sent.
    pub at: Instant,
    /// Until its acknowledgement arrived (or the request failed).
    pub rtt: Duration,
    /// How long after its turn it was sent (the load generator falling
    /// behind).
    pub late: Duration,
    /// Acknowledged.
    pub ok: bool,
}

/// Heartbeats on a schedule: node `j % n` sends its heartbeat at `start +
/// j × interval / n`, so each node beats once per interval and the beats
/// are spread evenly over it; a node with no link (not yet reconnected)
/// skips its turn.
pub struct Heartbeats {
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Heartbeats {
    /// Starts `threads` senders for `fleet`.
    pub fn start(fleet: Arc<Fleet>, interval: Duration, threads: usize) -> Heartbeats {
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let n = fleet.len() as u64;
        let threads = (0..threads)
            .map(|_| {
                let (fleet, stop, skipped, next, samples) = (
                    fleet.clone(),
                    stop.clone(),
                    skipped.clone(),
                    next.clone(),
                    samples.clone(),
                );
                std::thread::spawn(move || {
                    loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let due = start + interval.mul_f64(j as f64 / n as f64);
                        // Turns are taken up to `threads` ahead: wake to
                        // see whether the run is over meanwhile.
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let wait = due.saturating_duration_since(Instant::now());
                            if wait.is_zero() {
                                break;
                            }
                            std::thread::sleep(wait.min(Duration::from_millis(50)));
                        }
                        let node = &fleet.nodes[(j % n) as usize];
                        let Some(link) = node.link() else {
                            skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let at = Instant::now();
                        let ok = link
                            .request(&node.heartbeat, REQUEST_TIMEOUT)
                            .is_ok_and(|a| {
                                matches!(Message::decode(&a), Ok(Message::HeartbeatAck))
                            });
                        let sample = Sample {
                            at,
                            rtt: at.elapsed(),
                            late: at.saturating_duration_since(due),
                            ok,
                        };
                        lock(&samples).push(sample);
                    }
                })
            })
            .collect();
        Heartbeats {
            stop,
            skipped,
            samples,
            threads,
        }
    }

    /// How many turns were skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Every sample so far, in the order they were sent.
    pub fn samples_so_far(&self) -> Vec<Sample> {
        let mut all = lock(&self.samples).clone();
        all.sort_by_key(|s| s.at);
        all
    }

    /// Stops the senders; every sample.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("heartbeat thread");
        }
        let mut all = std::mem::take(&mut *lock(&self.samples));
        all.sort_by_key(|s| s.at);
        all
    }
}
