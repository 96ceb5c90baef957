//! Prometheus metrics: counters the daemon bumps as things happen, rendered as the
//! text exposition format for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::app::App;

/// Upper bounds (seconds) of the build-duration histogram buckets.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The daemon's counters; one instance lives in [`App`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Deliveries by (provider, outcome).
    deliveries: Mutex<BTreeMap<(String, String), u64>>,
    /// Finished builds by status word.
    builds: Mutex<BTreeMap<String, u64>>,
    /// Build durations: per-bucket counts, then sum and count.
    durations: Mutex<([u64; DURATION_BUCKETS.len()], f64, u64)>,
    /// Durable admissions (store write plus group-commit flush) and their summed latency.
    admissions: AtomicU64,
    admission_micros: AtomicU64,
}

impl Metrics {
    /// Counts one delivery and what became of it.
    pub fn delivery(&self, provider: &str, outcome: &str) {
        let mut map = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((provider.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// Counts one finished build.
    pub fn build_finished(&self, status: &str, duration_secs: Option<f64>) {
        *self
            .builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status.to_owned())
            .or_default() += 1;
        if let Some(secs) = duration_secs {
            let mut d = self.durations.lock().unwrap_or_else(|e| e.into_inner());
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    d.0[i] += 1;
                }
            }
            d.1 += secs;
            d.2 += 1;
        }
    }

    /// Records how long admitting a trigger durably took (write + flush).
    pub fn admission(&self, micros: u64) {
        self.admissions.fetch_add(1, Ordering::Relaxed);
        self.admission_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Renders every metric in Prometheus text format.
pub fn render(app: &App) -> String {
    let m = &app.metrics;
    let mut out = String::new();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        - app.started.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "# HELP hookd_build_info hookd version.\n# TYPE hookd_build_info gauge"
    );
    let _ = writeln!(
        out,
        "hookd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP hookd_up Whether hookd is running.\n# TYPE hookd_up gauge\nhookd_up 1"
    );
    let _ = writeln!(out, "# HELP hookd_start_time_seconds Start time, Unix seconds.\n# TYPE hookd_start_time_seconds gauge");
    let _ = writeln!(out, "hookd_start_time_seconds {start:.3}");
    let _ = writeln!(out, "# HELP hookd_deliveries_total Hook deliveries by provider and outcome.\n# TYPE hookd_deliveries_total counter");
    for ((provider, outcome), n) in m
        .deliveries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "hookd_deliveries_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP hookd_builds_total Finished builds by status.\n# TYPE hookd_builds_total counter"
    );
    for (status, n) in m.builds.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "hookd_builds_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP hookd_builds_running Builds running now.\n# TYPE hookd_builds_running gauge"
    );
    let _ = writeln!(
        out,
        "hookd_builds_running {}",
        app.scheduler.running_count()
    );
    let _ = writeln!(out, "# HELP hookd_build_duration_seconds Build run time.\n# TYPE hookd_build_duration_seconds histogram");
    let d = m.durations.lock().unwrap_or_else(|e| e.into_inner());
    for (bound, n) in DURATION_BUCKETS.iter().zip(d.0.iter()) {
        let _ = writeln!(
            out,
            "hookd_build_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "hookd_build_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        d.2
    );
    let _ = writeln!(
        out,
        "hookd_build_duration_seconds_sum {:.3}\nhookd_build_duration_seconds_count {}",
        d.1, d.2
    );
    let _ = writeln!(out, "# HELP hookd_admissions_total Triggers made durable (store write and flush).\n# TYPE hookd_admissions_total counter");
    let _ = writeln!(
        out,
        "hookd_admissions_total {}",
        m.admissions.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP hookd_admission_seconds_total Time spent making triggers durable.\n# TYPE hookd_admission_seconds_total counter");
    let _ = writeln!(
        out,
        "hookd_admission_seconds_total {:.6}",
        m.admission_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    out
}
