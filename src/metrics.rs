//! Prometheus metrics: counters the daemon bumps as things happen, rendered as the
//! text exposition format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the build-duration histogram buckets.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The daemon's counters; one instance is shared by intake and scheduler.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Deliveries by (provider, outcome).
    deliveries: Mutex<BTreeMap<(String, String), u64>>,
    /// Finished builds by status word.
    builds: Mutex<BTreeMap<String, u64>>,
    /// Build durations: per-bucket counts, then sum and count.
    durations: Mutex<([u64; DURATION_BUCKETS.len()], f64, u64)>,
    /// Source fetches (fetch + checkout) and their summed duration in microseconds.
    fetches: AtomicU64,
    fetch_micros: AtomicU64,
    /// Durable admissions (store write plus group-commit flush) and their summed latency.
    admissions: AtomicU64,
    admission_micros: AtomicU64,
    /// Outbox attempts by (kind, outcome).
    outbox: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// Counts one delivery and what became of it.
    pub(crate) fn delivery(&self, provider: &str, outcome: &str) {
        bump(&self.deliveries, provider, outcome);
    }

    /// Counts one finished build.
    pub(crate) fn build_finished(&self, status: &str, duration_secs: Option<f64>) {
        *lock(&self.builds).entry(status.to_owned()).or_default() += 1;
        if let Some(secs) = duration_secs {
            let mut d = lock(&self.durations);
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    d.0[i] += 1;
                }
            }
            d.1 += secs;
            d.2 += 1;
        }
    }

    /// Records how long fetching and checking out a build's source took.
    pub(crate) fn fetch(&self, micros: u64) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetch_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one outbox attempt (`sent`, `retry`, `failed`) or a superseded item.
    pub(crate) fn outbox_attempt(&self, kind: &str, outcome: &str) {
        bump(&self.outbox, kind, outcome);
    }

    /// Records how long admitting a trigger durably took (write + flush).
    pub(crate) fn admission(&self, micros: u64) {
        self.admissions.fetch_add(1, Ordering::Relaxed);
        self.admission_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The gauges read at render time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gauges {
    /// When the daemon started.
    pub(crate) started: std::time::Instant,
    /// Builds running now.
    pub(crate) running: usize,
    /// Builds queued: (due, deferred).
    pub(crate) queue: (usize, usize),
    /// Outbox items waiting to be sent.
    pub(crate) outbox_pending: usize,
}

/// Renders every metric in Prometheus text format.
pub(crate) fn render(m: &Metrics, gauges: Gauges) -> String {
    let queue = gauges.queue;
    let mut out = String::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.as_secs_f64() - gauges.started.elapsed().as_secs_f64();
    header(&mut out, "hookd_build_info", "gauge", "hookd version.");
    let _ = writeln!(
        out,
        "hookd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    samples(
        &mut out,
        &[
            ("hookd_up", "gauge", "Whether hookd is running.", 1.0),
            (
                "hookd_start_time_seconds",
                "gauge",
                "Start time, Unix seconds.",
                start,
            ),
        ],
    );
    let deliveries = "Hook deliveries by provider and outcome.";
    let labels = ["provider", "outcome"];
    by_pair(
        &mut out,
        "hookd_deliveries_total",
        deliveries,
        labels,
        &lock(&m.deliveries),
    );
    header(
        &mut out,
        "hookd_builds_total",
        "counter",
        "Finished builds by status.",
    );
    for (status, n) in lock(&m.builds).iter() {
        let _ = writeln!(out, "hookd_builds_total{{status=\"{status}\"}} {n}");
    }
    samples(
        &mut out,
        &[
            (
                "hookd_queue_depth",
                "gauge",
                "Builds waiting for a worker.",
                queue.0 as f64,
            ),
            (
                "hookd_queue_deferred",
                "gauge",
                "Builds held back by a cooldown.",
                queue.1 as f64,
            ),
            (
                "hookd_builds_running",
                "gauge",
                "Builds running now.",
                gauges.running as f64,
            ),
        ],
    );
    durations(&mut out, &lock(&m.durations));
    let count = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
    let secs = |micros: &AtomicU64| count(micros) / 1e6;
    samples(
        &mut out,
        &[
            (
                "hookd_fetches_total",
                "counter",
                "Source fetches and checkouts.",
                count(&m.fetches),
            ),
            (
                "hookd_fetch_seconds_total",
                "counter",
                "Time spent fetching and checking out source.",
                secs(&m.fetch_micros),
            ),
            (
                "hookd_admissions_total",
                "counter",
                "Triggers made durable (store write and fsync).",
                count(&m.admissions),
            ),
            (
                "hookd_admission_seconds_total",
                "counter",
                "Time spent making triggers durable.",
                secs(&m.admission_micros),
            ),
            (
                "hookd_outbox_pending",
                "gauge",
                "Outbox items (status posts, notifications) waiting to be sent.",
                gauges.outbox_pending as f64,
            ),
        ],
    );
    let outbox = "Outbox attempts by kind and outcome (sent, retry, failed, superseded).";
    let labels = ["kind", "outcome"];
    by_pair(
        &mut out,
        "hookd_outbox_sent_total",
        outbox,
        labels,
        &lock(&m.outbox),
    );
    out
}

/// The build-duration histogram: buckets, then sum and count.
fn durations(out: &mut String, &(buckets, sum, count): &([u64; DURATION_BUCKETS.len()], f64, u64)) {
    header(
        out,
        "hookd_build_duration_seconds",
        "histogram",
        "Build run time.",
    );
    for (bound, n) in DURATION_BUCKETS.iter().zip(buckets.iter()) {
        let _ = writeln!(
            out,
            "hookd_build_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "hookd_build_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "hookd_build_duration_seconds_sum {sum:.3}\nhookd_build_duration_seconds_count {count}"
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Metrics without labels: name, type, help and value each.
fn samples(out: &mut String, plain: &[(&str, &str, &str, f64)]) {
    for &(name, kind, help, value) in plain {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// A counter by two labels (provider and outcome, kind and outcome).
fn by_pair(
    out: &mut String,
    name: &str,
    help: &str,
    [first, second]: [&str; 2],
    counts: &BTreeMap<(String, String), u64>,
) {
    header(out, name, "counter", help);
    for ((a, b), n) in counts {
        let _ = writeln!(out, "{name}{{{first}=\"{a}\",{second}=\"{b}\"}} {n}");
    }
}

/// Counts one more of the pair `(a, b)`.
fn bump(counts: &Mutex<BTreeMap<(String, String), u64>>, a: &str, b: &str) {
    *lock(counts)
        .entry((a.to_owned(), b.to_owned()))
        .or_default() += 1;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
