//! What watches a gateway while its nodes beat: the web console (its event
//! stream open, the nodes list read every five seconds, as the console's
//! page does) and a Prometheus scrape of `/metrics` every second.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the observers saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Events read from the stream.
    pub events: u64,
    /// Scrapes answered 200, and their mean time.
    pub scrapes: u64,
    pub scrape_mean: Duration,
    /// Nodes lists read, and their mean time.
    pub lists: u64,
    pub list_mean: Duration,
}

/// The running observers.
pub struct Observers {
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    threads: Vec<JoinHandle<(u64, Duration)>>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// GETs `url` every `every` until stopped: how many answered 200, and
/// their total time.
fn poll(
    url: String,
    token: Option<String>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (u64, Duration) {
    let agent = agent();
    let (mut ok, mut total) = (0, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut request = agent.get(&url);
        if let Some(token) = &token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Ok(mut answer) = request.call() {
            let body = answer.body_mut().read_to_string();
            if answer.status().as_u16() == 200 && body.is_ok() {
                ok += 1;
                total += started.elapsed();
            }
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    (ok, total)
}

impl Observers {
    /// Opens the event stream and starts the polls against `base`.
    pub fn start(base: &str, token: &str) -> Observers {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let response = agent()
            .get(format!("{base}/api/v1/events"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .expect("the event stream opens");
        assert_eq!(response.status().as_u16(), 200, "the event stream opens");
        let counted = events.clone();
        // The stream's reader ends with the gateway (or the stream's
        // five minutes): it is not joined.
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            for line in reader.lines().map_while(Result::ok) {
                if line.starts_with("event: ") {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let scrape = {
            let (url, stop) = (format!("{base}/metrics"), stop.clone());
            std::thread::spawn(move || poll(url, None, Duration::from_secs(1), stop))
        };
        let list = {
            let (url, stop, token) = (
                format!("{base}/api/v1/nodes"),
                stop.clone(),
                token.to_owned(),
            );
            std::thread::spawn(move || poll(url, Some(token), Duration::from_secs(5), stop))
        };
        Observers {
            stop,
            events,
            threads: vec![scrape, list],
        }
    }

    /// Stops the polls and says what was seen.
    pub fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut results = self
            .threads
            .into_iter()
            .map(|t| t.join().expect("poll thread"));
        let (scrapes, scrape_total) = results.next().expect("scrape");
        let (lists, list_total) = results.next().expect("list");
        Seen {
            events: self.events.load(Ordering::Relaxed),
            scrapes,
            scrape_mean: scrape_total / scrapes.max(1) as u32,
            lists,
            list_mean: list_total / lists.max(1) as u32,
        }
    }
}
