//! The `quic` transport plugin against bare quinn + rustls with the same
//! certificates, in one process run, as ratios (issue 8):
//! 1. full mTLS handshakes per second (Ed25519 CA and leaves, client
//!    certificate required and verified on both paths, no session
//!    resumption on either path), many in flight: both ends through the
//!    plugin against both ends bare, then the server side alone (the
//!    plugin's server against bare quinn's, bare quinn clients for both);
//! 2. one stream moving 1 GiB (1 MiB frames through `send_frame`, received
//!    as `Frame` events; bare: `write_all` / `read` of 1 MiB buffers).
//!
//! Rounds alternate between the two paths (which goes first alternates
//! too), so load from elsewhere on the machine hits both alike; it prints
//! each round, the medians and their ratio.
//!
//! Run: `cargo bench -p keygate-transport-quic --bench vs_quinn`
//! (`-- handshakes`, `-- server-side` or `-- stream` runs one part; `-- --direct` measures a
//! plain `QuicTransport` instead of the built-in through the plugin ABI;
//! `-- --in-flight N` and `-- --rounds N` change the handshake part;
//! `-- --only plugin` (or `bare`) runs one path alone, for `perf`;
//! `-- quick` is a few seconds' check that both paths work, and is what
//! `cargo test` runs.)

mod bare;
mod certs;
mod plugin;

use std::sync::Arc;
use std::time::Duration;

use certs::Certs;
// Linked for its built-in registration (the plugin ABI path).
use keygate_transport_quic as _;

/// Sizes of one run.
struct Plan {
    quick: bool,
    direct: bool,
    /// Both ends through the plugin vs both bare.
    handshakes: bool,
    /// The plugin's server vs bare quinn's, bare clients.
    server_side: bool,
    stream: bool,
    /// Handshake rounds per path, handshakes per round, in flight.
    hs_rounds: usize,
    hs_per_round: usize,
    in_flight: usize,
    /// Stream rounds per path, frame size, frames per round.
    st_rounds: usize,
    frame: usize,
    frames: usize,
}

impl Plan {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |a: &str| args.iter().any(|x| x == a);
        let value = |a: &str| {
            args.iter()
                .position(|x| x == a)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{a} {v}: not a number"))
                })
        };
        // `cargo bench` passes `--bench`; `cargo test` does not.
        let quick = has("quick") || !has("--bench");
        let (handshakes, server_side, stream) =
            match (has("handshakes"), has("server-side"), has("stream")) {
                (false, false, false) => (true, true, true),
                (both, server, stream) => (both, both || server, stream),
            };
        let plan = Self {
            quick,
            direct: has("--direct"),
            handshakes,
            server_side,
            stream,
            hs_rounds: value("--rounds").unwrap_or(21),
            hs_per_round: 500,
            in_flight: value("--in-flight").unwrap_or(32),
            st_rounds: 7,
            frame: 1 << 20,
            frames: 1024,
        };
        if quick {
            Self {
                hs_rounds: 1,
                hs_per_round: 32,
                in_flight: 8,
                st_rounds: 1,
                frames: 16,
                ..plan
            }
        } else {
            plan
        }
    }
}

/// Datagrams the kernel dropped at this process's UDP sockets for want of
/// receive buffer (Linux `/proc/net/udp`, the sockets whose inodes this
/// process holds): servers (bound to 127.0.0.1) and clients (bound to
/// 0.0.0.0). A lost handshake flight costs a retransmission timeout, so
/// rounds with drops are slower.
fn udp_drops() -> Drops {
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut drops = Drops::default();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode), Some(dropped)) =
            (fields.get(1), fields.get(9), fields.last())
        else {
            continue;
        };
        if !ours.contains(*inode) {
            continue;
        }
        let dropped: u64 = dropped.parse().unwrap_or(0);
        if local.starts_with("0100007F:") {
            drops.server += dropped;
        } else {
            drops.client += dropped;
        }
    }
    drops
}

/// Receive-buffer drops at servers' and at clients' sockets.
#[derive(Debug, Default, Clone, Copy)]
struct Drops {
    server: u64,
    client: u64,
}

impl std::ops::Sub for Drops {
    type Output = Drops;
    fn sub(self, before: Drops) -> Drops {
        Drops {
            server: self.server.saturating_sub(before.server),
            client: self.client.saturating_sub(before.client),
        }
    }
}

impl std::fmt::Display for Drops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.server, self.client) {
            (0, 0) => f.write_str("no drops"),
            (s, c) => write!(f, "drops: {s} server, {c} client"),
        }
    }
}

/// CPU time this process has used, all threads (Linux `/proc/self/stat`,
/// user + system, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// One measured round of one path.
struct Sample {
    /// Units per second of wall time.
    rate: f64,
    /// CPU seconds of the whole process per unit (µs for handshakes, ms
    /// per GB for the stream: see the caller's `cpu_unit`).
    cpu: f64,
    drops: Drops,
}

fn sample(amount: f64, cpu_scale: f64, measure: &mut impl FnMut() -> Duration) -> Sample {
    let (drops, cpu) = (udp_drops(), cpu_seconds());
    let took = measure();
    Sample {
        rate: amount / took.as_secs_f64(),
        cpu: (cpu_seconds() - cpu) * cpu_scale / amount,
        drops: udp_drops() - drops,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What one part measures: `amount` units a round, shown as `unit`/s and
/// CPU `cpu_unit` per unit (CPU seconds times `cpu_scale`).
struct Measure {
    what: &'static str,
    unit: &'static str,
    amount: f64,
    cpu_unit: &'static str,
    cpu_scale: f64,
}

/// Runs `rounds` alternating rounds of `plugin` and `bare`, prints them and
/// the medians: throughput, the process's CPU time per unit, and the
/// median over rounds of the ratios plugin / bare for throughput and bare
/// / plugin for CPU (so that both read "the plugin does this share of what
/// bare quinn does").
fn alternate(
    m: &Measure,
    rounds: usize,
    mut plugin: impl FnMut() -> Duration,
    mut bare: impl FnMut() -> Duration,
) {
    if let Some(only) = ONLY.get().copied().flatten() {
        // Profiling: one path alone, so `perf` sees nothing else.
        let run = |f: &mut dyn FnMut() -> Duration| {
            let s = sample(m.amount, m.cpu_scale, &mut || f());
            println!(
                "{} {only}: {:.1} {}/s {:.1} {} ({})",
                m.what, s.rate, m.unit, s.cpu, m.cpu_unit, s.drops
            );
        };
        for _ in 0..rounds {
            match only {
                "plugin" => run(&mut plugin),
                _ => run(&mut bare),
            }
        }
        return;
    }
    let (mut p, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (ps, bs) = if round % 2 == 0 {
            let ps = sample(m.amount, m.cpu_scale, &mut plugin);
            (ps, sample(m.amount, m.cpu_scale, &mut bare))
        } else {
            let bs = sample(m.amount, m.cpu_scale, &mut bare);
            (sample(m.amount, m.cpu_scale, &mut plugin), bs)
        };
        println!(
            "{} round {round:>2}: plugin {:>7.1} {}/s {:>6.1} {} ({}) | bare {:>7.1} {}/s {:>6.1} {} ({}) | ratio {:.1} %",
            m.what,
            ps.rate,
            m.unit,
            ps.cpu,
            m.cpu_unit,
            ps.drops,
            bs.rate,
            m.unit,
            bs.cpu,
            m.cpu_unit,
            bs.drops,
            100.0 * ps.rate / bs.rate
        );
        p.push(ps);
        b.push(bs);
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    // Each round's two samples ran seconds apart, so their ratio is the
    // figure least moved by load elsewhere on the machine: the summary is
    // the median of those.
    let pairs = || p.iter().zip(&b);
    let rate_ratio = median(pairs().map(|(p, b)| p.rate / b.rate).collect());
    let cpu_ratio = median(pairs().map(|(p, b)| b.cpu / p.cpu).collect());
    let (pr, br) = (med(&p, |s| s.rate), med(&b, |s| s.rate));
    let (pc, bc) = (med(&p, |s| s.cpu), med(&b, |s| s.cpu));
    println!(
        "{} medians: plugin {pr:.1} {}/s {pc:.1} {}, bare {br:.1} {}/s {bc:.1} {} | ratio (median of rounds): throughput {:.1} %, CPU {:.1} %",
        m.what,
        m.unit,
        m.cpu_unit,
        m.unit,
        m.cpu_unit,
        100.0 * rate_ratio,
        100.0 * cpu_ratio,
    );
}

fn handshakes(plan: &Plan, certs: &Certs) {
    let plugin = plugin::Handshakes::new(certs, plan.direct);
    let bare = bare::Handshakes::new(certs);
    // Warm-up: sockets, allocator, CPU frequency.
    let warm = plan.hs_per_round / 4 + 1;
    plugin.round(warm, plan.in_flight);
    bare.round(warm, plan.in_flight);
    let (n, k) = (plan.hs_per_round, plan.in_flight);
    println!(
        "handshakes: {} rounds of {n} per path, {k} in flight",
        plan.hs_rounds
    );
    let measure = |what| Measure {
        what,
        unit: "",
        amount: n as f64,
        cpu_unit: "CPU-µs each",
        cpu_scale: 1e6,
    };
    if plan.handshakes {
        alternate(
            &measure("handshakes"),
            plan.hs_rounds,
            || plugin.round(n, k),
            || bare.round(n, k),
        );
    }
    if plan.server_side {
        // The gateway's side alone: the same bare quinn clients against the
        // plugin's server and against bare quinn's.
        println!("server side: bare quinn clients against each server");
        alternate(
            &measure("server side"),
            plan.hs_rounds,
            || plugin.server_round(n, || bare.clients(plugin.addr(), n, k)),
            || bare.round(n, k),
        );
    }
}

fn stream(plan: &Plan, certs: &Certs) {
    let data = Arc::new((0..plan.frame).map(|i| i as u8).collect::<Vec<u8>>());
    let plugin = plugin::Stream::new(certs, plan.direct, plan.frame);
    let bare = bare::Stream::new(certs, plan.frame);
    let warm = plan.frames / 4 + 1;
    plugin.round(&data, warm);
    bare.round(&data, warm);
    let mib = plan.frames * plan.frame / (1 << 20);
    println!(
        "stream: {} rounds of {mib} MiB per path, frames of {} bytes",
        plan.st_rounds, plan.frame
    );
    alternate(
        &Measure {
            what: "stream",
            unit: "MB",
            amount: (plan.frames * plan.frame) as f64 / 1e6,
            cpu_unit: "CPU-ms/MB",
            cpu_scale: 1e3,
        },
        plan.st_rounds,
        || plugin.round(&data, plan.frames),
        || bare.round(&data, plan.frames),
    );
}

/// `--only plugin` or `--only bare`: run one path, for profiling.
static ONLY: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();

fn main() {
    let plan = Plan::from_args();
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|path| match path.as_str() {
            "plugin" => "plugin",
            "bare" => "bare",
            other => panic!("--only {other}: plugin or bare"),
        });
    let _ = ONLY.set(only);
    println!(
        "quic transport vs bare quinn ({}{}; both ends in this process)",
        if plan.quick { "quick" } else { "full" },
        if plan.direct {
            ", plugin called directly"
        } else {
            ", plugin through the ABI"
        }
    );
    let certs = Certs::new();
    if plan.handshakes || plan.server_side {
        handshakes(&plan, &certs);
    }
    if plan.stream {
        stream(&plan, &certs);
    }
}
