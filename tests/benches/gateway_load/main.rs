//! The gateway under many nodes (issue 8), against bare quinn in the same
//! run:
//! 1. **Baseline**: a bare quinn + rustls server process (configured as
//!    the `quic` plugin configures itself) and N bare clients opening
//!    mTLS connections to it and keeping them idle: the server's memory
//!    per connection and the time for N handshakes.
//! 2. **Gateway**: `keygate gateway run` (a real process, filesystem
//!    store, built-in `quic` transport) with N enrolled nodes connected
//!    from this process over one shared client transport, each
//!    registered and heartbeating every `--interval` (beats spread evenly
//!    over the interval): the gateway's memory per connection while they
//!    beat, and the heartbeat round trips (p50, p99, max) as the nodes
//!    see them.
//!    Then a second steady window as long as the first, with the web
//!    console watching (its event stream open, the nodes list read every
//!    five seconds) and `/metrics` scraped every second: the heartbeat
//!    round trips against the window without them, and a third window
//!    without them after it, for the difference between two unwatched
//!    windows.
//! 3. **Reconnect storm**: the gateway stops (SIGINT: every connection
//!    closes with `SHUTDOWN`) and starts again on the same state; every
//!    node reconnects and registers as soon as the gateway is ready,
//!    `--in-flight` at a time: the time until all are back, against the
//!    bare handshakes of part 1; and the heartbeats after it.
//!
//! Memory is the process's resident set (`VmRSS`), read once a few nodes
//! (`--warm`) are connected and again with all N: per connection is the
//! difference over the nodes in between, so start-up and one-time
//! allocations do not count.
//!
//! Run: `cargo bench -p keygate-tests --bench gateway_load` (`-- --nodes N
//! --interval SECS --steady SECS --in-flight N --threads N --warm N`);
//! raise the open-file limit first (`ulimit -n 20000`) for 10,000 nodes.
//! `cargo test` runs its quick mode (a few dozen nodes), which checks
//! that every part works and every heartbeat is answered.

mod bare;
mod nodes;
mod observers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_core::device::plugins::open_transport;
use keygate_tests::{GatewayProcess, free_port, free_tcp_port, json, write_config};
use nodes::{Fleet, Heartbeats, Sample};
use observers::Observers;

/// Sizes of one run.
struct Plan {
    quick: bool,
    nodes: usize,
    warm: usize,
    interval: Duration,
    steady: Duration,
    in_flight: usize,
    threads: usize,
}

impl Plan {
    fn from_args(args: &[String]) -> Plan {
        let has = |a: &str| args.iter().any(|x| x == a);
        let value = |a: &str| {
            args.iter()
                .position(|x| x == a)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{a} {v}: not a number"))
                })
        };
        // `cargo bench` passes `--bench`; `cargo test` does not.
        let quick = has("quick") || !has("--bench");
        let nodes = value("--nodes").unwrap_or(if quick { 24 } else { 10_000 }) as usize;
        let plan = Plan {
            quick,
            nodes,
            warm: value("--warm").unwrap_or((nodes as u64 / 20).max(1)) as usize,
            interval: Duration::from_secs(value("--interval").unwrap_or(if quick { 1 } else { 5 })),
            steady: Duration::from_secs(value("--steady").unwrap_or(if quick { 3 } else { 30 })),
            in_flight: value("--in-flight").unwrap_or(64) as usize,
            threads: value("--threads").unwrap_or(256) as usize,
        };
        assert!(plan.warm < plan.nodes, "--warm must be below --nodes");
        plan
    }
}

/// A process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// A process's CPU time so far (user and system), from `/proc/PID/stat`.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let after = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_secs_f64(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Lets a process settle (connections finish their handshakes' last
/// packets, allocators return what they free) and reads its memory.
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_secs(2));
    rss_kib(pid)
}

/// KiB per connection between two readings `n` connections apart.
fn per_connection(before: u64, after: u64, n: usize) -> f64 {
    after.saturating_sub(before) as f64 / n as f64
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The heartbeats sent in `[from, to)`.
struct Window {
    count: usize,
    failed: usize,
    /// Round trips of the answered ones: p50, p99, max.
    rtt: [Duration; 3],
    /// p99 of how late they were sent.
    late_p99: Duration,
}

impl Window {
    fn of(samples: &[Sample], from: Instant, to: Instant) -> Window {
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .collect();
        let failed = window.iter().filter(|s| !s.ok).count();
        let mut rtts: Vec<Duration> = window.iter().filter(|s| s.ok).map(|s| s.rtt).collect();
        rtts.sort();
        assert!(!rtts.is_empty(), "no heartbeat answered in the window");
        let mut late: Vec<Duration> = window.iter().map(|s| s.late).collect();
        late.sort();
        Window {
            count: window.len(),
            failed,
            rtt: [
                percentile(&rtts, 0.5),
                percentile(&rtts, 0.99),
                *rtts.last().expect("not empty"),
            ],
            late_p99: percentile(&late, 0.99),
        }
    }

    fn print(&self, what: &str) {
        let [p50, p99, max] = self.rtt;
        println!(
            "heartbeats {what}: {} ({} failed): round trip p50 {}, p99 {}, max {}; sent late by {} at p99",
            self.count,
            self.failed,
            ms(p50),
            ms(p99),
            ms(max),
            ms(self.late_p99)
        );
    }
}

/// How many nodes `nodes list --json` shows.
fn listed(config: &Path) -> usize {
    json(config, &["nodes", "list", "--json"])
        .as_array()
        .expect("an array")
        .len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-server") {
        bare::serve(Path::new(args.get(2).expect("bare-server DIR")));
    }
    let plan = Plan::from_args(&args);
    let n = plan.nodes;
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "gateway load: {n} nodes, heartbeat every {:?}, {} handshakes in flight",
        plan.interval, plan.in_flight
    );

    // 1. Bare quinn: idle connections.
    let certs = dir.path().join("bare");
    std::fs::create_dir(&certs).expect("mkdir");
    bare::write_certs(&certs);
    let server = bare::Server::start(&certs);
    let mut clients = bare::Clients::new(&certs);
    clients.open(server.addr, plan.warm, plan.in_flight);
    let bare_warm = settled_rss(server.pid());
    let bare_cpu = cpu(server.pid());
    let bare_took = clients.open(server.addr, n - plan.warm, plan.in_flight);
    let bare_cpu = cpu(server.pid()) - bare_cpu;
    let bare_full = settled_rss(server.pid());
    // What idle connections cost the server (keep-alives), over a window
    // as long as the gateway's steady one.
    let idle_cpu = cpu(server.pid());
    std::thread::sleep(plan.steady);
    let idle_cpu = (cpu(server.pid()) - idle_cpu).as_secs_f64() / plan.steady.as_secs_f64();
    assert_eq!(clients.open_count(), n, "bare connections still open");
    clients.close_all();
    drop(server);
    let bare_per = per_connection(bare_warm, bare_full, n - plan.warm);
    let bare_rate = (n - plan.warm) as f64 / bare_took.as_secs_f64();
    let bare_cpu_per = bare_cpu / (n - plan.warm) as u32;
    println!("bare quinn: server CPU with {n} idle connections: {idle_cpu:.3} CPUs");
    println!(
        "bare quinn: {} handshakes in {:.2} s ({bare_rate:.0}/s; server CPU {} per handshake); server memory {bare_warm} KiB with {} idle, {bare_full} KiB with {n}: {bare_per:.1} KiB per connection",
        n - plan.warm,
        bare_took.as_secs_f64(),
        ms(bare_cpu_per),
        plan.warm
    );

    // 2. The gateway, its nodes heartbeating.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir = \"state\"\n\
             [plugins.store]\nuse = \"filesystem\"\n\
             [plugins.approval]\nuse = \"pin-qr\"\n\
             [plugins.transport]\nuse = \"quic\"\n\
             [gateway]\nlisten = \"{addr}\"\nadvertise = [\"127.0.0.1\"]\nheartbeat = \"{}s\"\n\
             [identity]\nlock_timeout_secs = 120\n\
             [admin]\nlisten = \"{admin}\"\n",
            plan.interval.as_secs()
        ),
    );
    let token = json(&config, &["operators", "add", "console", "--json"])["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let client_dir = dir.path().join("nodes");
    std::fs::create_dir(&client_dir).expect("mkdir");
    let client = open_transport(&client_dir).expect("the nodes' transport");
    let enrolling = Instant::now();
    let fleet = Arc::new(Fleet::enroll(&config, n, client, &addr));
    println!(
        "enrolled {n} devices in {:.1} s",
        enrolling.elapsed().as_secs_f64()
    );
    let mut gateway = GatewayProcess::start(&config, &[]);
    let patience = Duration::from_secs(300);
    // Beating from the start, as nodes do once registered: the gateway
    // drops a node silent for three intervals, and connecting them all
    // takes longer than that.
    let beats = Heartbeats::start(fleet.clone(), plan.interval, plan.threads);
    fleet.connect_all(0..plan.warm, plan.in_flight, patience);
    let gw_warm = settled_rss(gateway.pid());
    let (took, failed) = fleet.connect_all(plan.warm..n, plan.in_flight, patience);
    assert_eq!(listed(&config), n, "nodes registered with the gateway");
    println!(
        "gateway: {} nodes connected and registered in {:.2} s ({:.0}/s, {failed} attempts failed)",
        n - plan.warm,
        took.as_secs_f64(),
        (n - plan.warm) as f64 / took.as_secs_f64()
    );
    // One interval for every node's first beat, then the steady window.
    std::thread::sleep(plan.interval);
    let (steady_from, steady_cpu) = (Instant::now(), cpu(gateway.pid()));
    std::thread::sleep(plan.steady);
    let (steady_to, steady_cpu) = (Instant::now(), cpu(gateway.pid()) - steady_cpu);
    let gw_full = rss_kib(gateway.pid());
    let gw_per = per_connection(gw_warm, gw_full, n - plan.warm);
    let steady = Window::of(&beats.samples_so_far(), steady_from, steady_to);
    steady.print("while steady");
    println!(
        "gateway CPU while steady: {:.3} CPUs, {} per heartbeat",
        steady_cpu.as_secs_f64() / plan.steady.as_secs_f64(),
        ms(steady_cpu / steady.count.max(1) as u32)
    );
    println!(
        "gateway memory: {gw_warm} KiB with {} nodes, {gw_full} KiB with {n} heartbeating: {gw_per:.1} KiB per connection = {:.2}x bare",
        plan.warm,
        gw_per / bare_per
    );

    // 2b. The same, watched by the console and scraped every second.
    let watching = Observers::start(&format!("http://{admin}"), &token);
    let (watched_from, watched_cpu) = (Instant::now(), cpu(gateway.pid()));
    std::thread::sleep(plan.steady);
    let (watched_to, watched_cpu) = (Instant::now(), cpu(gateway.pid()) - watched_cpu);
    let seen = watching.stop();
    let watched = Window::of(&beats.samples_so_far(), watched_from, watched_to);
    watched.print("while the console watches and /metrics is scraped every second");
    println!(
        "console and scrapes: {} scrapes of /metrics (mean {}), {} nodes lists (mean {}), {} events; gateway CPU {:.3} CPUs; heartbeat p99 {:.2}x, p50 {:.2}x the unwatched window's",
        seen.scrapes,
        ms(seen.scrape_mean),
        seen.lists,
        ms(seen.list_mean),
        seen.events,
        watched_cpu.as_secs_f64() / plan.steady.as_secs_f64(),
        watched.rtt[1].as_secs_f64() / steady.rtt[1].as_secs_f64(),
        watched.rtt[0].as_secs_f64() / steady.rtt[0].as_secs_f64()
    );
    // 2c. Unwatched again: how much two windows without observers differ.
    let again_from = Instant::now();
    std::thread::sleep(plan.steady);
    let again = Window::of(&beats.samples_so_far(), again_from, Instant::now());
    again.print("unwatched again");
    println!(
        "watched heartbeat p99 against the unwatched windows': {:.2}x the first, {:.2}x the second (the second against the first: {:.2}x)",
        watched.rtt[1].as_secs_f64() / steady.rtt[1].as_secs_f64(),
        watched.rtt[1].as_secs_f64() / again.rtt[1].as_secs_f64(),
        again.rtt[1].as_secs_f64() / steady.rtt[1].as_secs_f64()
    );
    assert!(seen.lists > 0, "the console read the nodes list");
    assert!(seen.scrapes > 0, "/metrics answered a scrape");

    // 3. The reconnect storm.
    assert!(gateway.stop(), "the gateway exits 0 on SIGINT");
    let (causes, still_open) = fleet.await_closed(Duration::from_secs(10));
    let skipped_before = beats.skipped();
    let restart = Instant::now();
    gateway = GatewayProcess::start(&config, &[]);
    let ready = restart.elapsed();
    let (storm_cpu, own_cpu) = (cpu(gateway.pid()), cpu(std::process::id()));
    let (back, failed_back) = fleet.connect_all(0..n, plan.in_flight, patience);
    let storm_cpu = (cpu(gateway.pid()) - storm_cpu) / n as u32;
    let own_cpu = (cpu(std::process::id()) - own_cpu) / n as u32;
    let storm_end = Instant::now();
    let skipped = beats.skipped() - skipped_before;
    std::thread::sleep(plan.interval * 2);
    let after_to = Instant::now();
    let relisted = listed(&config);
    let samples = beats.stop();
    drop(gateway);

    let back_rate = n as f64 / back.as_secs_f64();
    println!(
        "reconnect storm: {} closed with SHUTDOWN, {} otherwise, {still_open} not closed; ready again {:.2} s after the restart; all {n} back {:.2} s later ({back_rate:.0}/s, {failed_back} attempts failed) = {:.1} % of bare handshakes/s; {skipped} heartbeat turns skipped while away",
        causes[0],
        causes[1],
        ready.as_secs_f64(),
        back.as_secs_f64(),
        100.0 * back_rate / bare_rate
    );
    println!(
        "reconnect storm CPU per node back: gateway {} ({:.2}x the bare server's per handshake), load generator {} (its nodes' handshakes, registrations and heartbeats)",
        ms(storm_cpu),
        storm_cpu.as_secs_f64() / bare_cpu_per.as_secs_f64(),
        ms(own_cpu)
    );
    let after = Window::of(&samples, storm_end, after_to);
    after.print("after the storm");
    assert_eq!(relisted, n, "nodes registered again after the restart");
    if plan.quick {
        assert_eq!(
            steady.failed + watched.failed + again.failed + after.failed,
            0,
            "every heartbeat answered"
        );
        assert_eq!(causes[0], n, "every node told SHUTDOWN");
    }
}
