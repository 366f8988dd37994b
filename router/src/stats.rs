//! Per-service traffic counters: Node's last-hour per-second stats and
//! Prometheus metrics.
//!
//! Node's hydra-router keeps, for every target service, three arrays of 3600
//! per-second counts (`httpStats`, `wsStats`, `errorStats`) and answers them at
//! `/v1/router/stats`, oldest second first, the current second last. [`Stats`]
//! keeps the same window (answered by [`Stats::node_json`]) plus monotonic
//! totals and a latency histogram per service, written in the Prometheus text
//! exposition format 0.0.4 by [`Stats::prometheus`].
//!
//! Differences from Node, on purpose:
//! - an error is a response with status **≥ 400** (Node counted `> 201`, so
//!   202, 204 and redirects were errors), or a WebSocket failure;
//! - seconds are counted on a monotonic clock from the router's start, so a
//!   wall-clock jump neither loses nor invents traffic;
//! - the number of services tracked is capped ([`MAX_TRACKED_SERVICES`]);
//!   traffic to further names is counted under [`OTHER_SERVICES`], so memory
//!   stays bounded whatever names requests bring.
//!
//! Recording takes one short, per-service lock (uncontended unless many
//! workers hit the same service in the same instant) and never allocates once
//! a service's window exists. Stale seconds are cleared lazily, when the
//! window is next written or read, so no timer thread is needed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ws::connections::WsCounts;

/// Length of the per-second window: one hour, like Node's.
pub const WINDOW_SECONDS: usize = 3600;

/// How many distinct service names get counters of their own. Each tracked
/// service costs up to ~45 KB (three 3600-slot windows, allocated only for the
/// kinds of traffic it actually gets), so the worst case stays near 45 MB.
pub const MAX_TRACKED_SERVICES: usize = 1024;

/// The name under which traffic to services beyond [`MAX_TRACKED_SERVICES`]
/// is counted.
pub const OTHER_SERVICES: &str = "_other";

/// Upper bounds (seconds) of the latency histogram's buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Traffic counters of the router, shared by every worker thread
/// (`Send + Sync`; wrap it in an `Arc`).
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    services: RwLock<HashMap<String, Arc<Mutex<ServiceStats>>>>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// Everything counted for one service.
#[derive(Debug, Default)]
struct ServiceStats {
    /// Per-second windows, allocated on first use of each kind.
    http: Option<Window>,
    ws: Option<Window>,
    errors: Option<Window>,
    http_total: u64,
    http_errors_total: u64,
    ws_total: u64,
    ws_errors_total: u64,
    latency: Histogram,
}

/// A ring of per-second counts covering the [`WINDOW_SECONDS`] seconds up to
/// `newest`. Slot `s % WINDOW_SECONDS` holds second `s`.
#[derive(Debug)]
struct Window {
    counts: Box<[u32]>,
    /// The most recent second this ring has been advanced to.
    newest: u64,
}

impl Window {
    fn new(now: u64) -> Window {
        Window {
            counts: vec![0; WINDOW_SECONDS].into_boxed_slice(),
            newest: now,
        }
    }

    /// Adds one to second `now`, first clearing the slots of the seconds
    /// skipped since the last write (they held counts from an hour ago).
    fn add(&mut self, now: u64) {
        if now > self.newest {
            let skipped = (now - self.newest).min(WINDOW_SECONDS as u64);
            for second in now + 1 - skipped..=now {
                self.counts[slot(second)] = 0;
            }
            self.newest = now;
        } else if now + WINDOW_SECONDS as u64 <= self.newest {
            // The clock cannot go back an hour (it is monotonic); never
            // overwrite a newer second's slot anyway.
            return;
        }
        let count = &mut self.counts[slot(now)];
        *count = count.saturating_add(1);
    }

    /// The count of `second`, 0 when that second is outside what the ring holds.
    fn get(&self, second: u64) -> u32 {
        if second > self.newest || second + WINDOW_SECONDS as u64 <= self.newest {
            0
        } else {
            self.counts[slot(second)]
        }
    }

    /// Copies the window ending at `now` into `seconds`, oldest second first,
    /// `now` last (zeros before the clock's start).
    fn copy_into(&self, now: u64, seconds: &mut [u32; WINDOW_SECONDS]) {
        let oldest = (now + 1) as i64 - WINDOW_SECONDS as i64;
        for (index, count) in seconds.iter_mut().enumerate() {
            let second = oldest + index as i64;
            *count = u64::try_from(second).map_or(0, |second| self.get(second));
        }
    }
}

fn slot(second: u64) -> usize {
    (second % WINDOW_SECONDS as u64) as usize
}

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_micros: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        self.count += 1;
    }
}

/// Which kind of traffic a record is.
#[derive(Debug, Clone, Copy)]
enum Event {
    Http { status: u16, latency: Duration },
    Ws,
    WsError,
}

/// Whether a metric only goes up ([`MetricKind::Counter`]) or can go both
/// ways ([`MetricKind::Gauge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; the name should end in `_total`.
    Counter,
    /// A value that can go up and down.
    Gauge,
}

/// A metric the caller adds to [`Stats::prometheus`]'s output (server and
/// process figures the stats module does not own).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraMetric {
    /// Metric name, e.g. `hydra_router_uptime_seconds`.
    pub name: String,
    /// One-line description for `# HELP`.
    pub help: String,
    /// Counter or gauge, for `# TYPE`.
    pub kind: MetricKind,
    /// The value.
    pub value: f64,
    /// The sample's labels (`name="value"`), none for most. Metrics of one
    /// name given one after another share one `# HELP`/`# TYPE`.
    pub labels: Vec<(String, String)>,
}

impl ExtraMetric {
    /// A gauge.
    pub fn gauge(name: &str, help: &str, value: f64) -> ExtraMetric {
        ExtraMetric {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: MetricKind::Gauge,
            value,
            labels: Vec::new(),
        }
    }

    /// A counter.
    pub fn counter(name: &str, help: &str, value: u64) -> ExtraMetric {
        ExtraMetric {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: MetricKind::Counter,
            value: value as f64,
            labels: Vec::new(),
        }
    }

    /// The same metric with one more label.
    pub fn with_label(mut self, name: &str, value: &str) -> ExtraMetric {
        self.labels.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The WebSocket gateway's counters as metrics for [`Stats::prometheus`].
pub fn ws_metrics(counts: &WsCounts) -> Vec<ExtraMetric> {
    let closed_by_router = "WebSocket clients the router closed, by reason: send queue full (a client that does not read), \
         silent past the dead-peer timeout, a frame or message over the size limit, a binary frame.";
    vec![
        ExtraMetric::gauge(
            "hydra_router_ws_clients",
            "WebSocket clients connected to this router now.",
            counts.connected as f64,
        ),
        ExtraMetric::counter(
            "hydra_router_ws_connections_total",
            "WebSocket handshakes accepted.",
            counts.accepted,
        ),
        ExtraMetric::counter(
            "hydra_router_ws_disconnections_total",
            "WebSocket clients gone, whatever the reason (closed by either side, dropped, timed out).",
            counts.closed,
        ),
        ExtraMetric::counter(
            "hydra_router_ws_refused_handshakes_total",
            "WebSocket upgrade requests refused (a bad handshake, or the router shutting down).",
            counts.refused_handshakes,
        ),
        ExtraMetric::counter(
            "hydra_router_ws_closed_by_router_total",
            closed_by_router,
            counts.closed_overflow,
        )
        .with_label("reason", "send_queue_full"),
        ExtraMetric::counter(
            "hydra_router_ws_closed_by_router_total",
            closed_by_router,
            counts.closed_timeout,
        )
        .with_label("reason", "dead_peer"),
        ExtraMetric::counter(
            "hydra_router_ws_closed_by_router_total",
            closed_by_router,
            counts.oversized_frames,
        )
        .with_label("reason", "frame_too_large"),
        ExtraMetric::counter(
            "hydra_router_ws_closed_by_router_total",
            closed_by_router,
            counts.binary_frames,
        )
        .with_label("reason", "binary_frame"),
    ]
}

/// The embedded HTTP server's counters and the router's uptime and memory, as
/// metrics for [`Stats::prometheus`].
pub fn server_metrics(server: &hydra::http::HttpStats, uptime: Duration) -> Vec<ExtraMetric> {
    let mut metrics = vec![
        ExtraMetric::gauge(
            "hydra_router_uptime_seconds",
            "Seconds since the router started.",
            uptime.as_secs_f64(),
        ),
        ExtraMetric::counter(
            "hydra_router_server_connections_total",
            "Connections accepted by the router's HTTP server (those refused over the cap included).",
            server.connections,
        ),
        ExtraMetric::counter(
            "hydra_router_server_requests_total",
            "Requests answered by the router's HTTP server (any status).",
            server.requests,
        ),
        ExtraMetric::counter(
            "hydra_router_server_rejected_total",
            "Requests refused as malformed or over a limit.",
            server.rejected,
        ),
        ExtraMetric::counter(
            "hydra_router_server_rejected_framing_total",
            "Requests refused for ambiguous or malformed framing.",
            server.rejected_framing,
        ),
        ExtraMetric::counter(
            "hydra_router_server_panics_total",
            "Handlers that panicked (answered 500).",
            server.panicked,
        ),
        ExtraMetric::counter(
            "hydra_router_server_overloaded_total",
            "Connections or requests refused with 503 because the server was full.",
            server.overloaded,
        ),
        ExtraMetric::counter(
            "hydra_router_server_timed_out_total",
            "Connections closed because the client was too slow.",
            server.timed_out,
        ),
    ];
    if let Some(bytes) = resident_memory_bytes() {
        metrics.push(ExtraMetric::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            bytes as f64,
        ));
    }
    metrics
}

/// The process's resident set size, from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kilobytes * 1024)
}

impl Stats {
    /// Empty counters; the per-second clock starts now.
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            services: RwLock::new(HashMap::new()),
        }
    }

    /// Counts an HTTP request forwarded to `service`, answered with `status`
    /// after `latency`. Statuses ≥ 400 also count as errors.
    pub fn record_http(&self, service: &str, status: u16, latency: Duration) {
        self.record_at(self.now(), service, Event::Http { status, latency });
    }

    /// Counts a WebSocket message to `service`.
    pub fn record_ws(&self, service: &str) {
        self.record_at(self.now(), service, Event::Ws);
    }

    /// Counts a failed WebSocket call to `service` (no instance, a transport
    /// error, a timeout) as an error.
    pub fn record_ws_error(&self, service: &str) {
        self.record_at(self.now(), service, Event::WsError);
    }

    /// Node's `getRawStats`: `{httpStats:{svc:[3600 counts]}, wsStats:{…},
    /// errorStats:{…}}`, each array oldest second first, the current second
    /// last. A service appears in a set once it has had traffic of that kind.
    pub fn node_json(&self) -> Value {
        self.node_json_at(self.now())
    }

    /// [`Stats::node_json`] as JSON text, without building a `Value` (much
    /// cheaper: the page polls it every second).
    pub fn node_json_text(&self) -> String {
        self.node_json_text_at(self.now())
    }

    /// The whole `/v1/router/stats` answer body: Hydra's 200 envelope with
    /// [`Stats::node_json_text`] as `result`.
    pub fn node_envelope_text(&self) -> String {
        self.node_envelope_text_with(&[])
    }

    /// [`Stats::node_envelope_text`] with more fields in `result`, after
    /// Node's three (the router adds `wsClients`).
    pub fn node_envelope_text_with(&self, fields: &[(&str, Value)]) -> String {
        let mut result = self.node_json_text();
        result.pop(); // the closing brace
        for (name, value) in fields {
            let _ = write!(result, ",{}:{value}", Value::from(*name));
        }
        result.push('}');
        let (message, description) = hydra::http::status_text(200);
        format!(
            "{{\"statusCode\":200,\"statusMessage\":{},\"statusDescription\":{},\"result\":{result}}}",
            Value::from(message),
            Value::from(description),
        )
    }

    /// Every counter in the Prometheus text exposition format 0.0.4, followed
    /// by `extra` (e.g. [`server_metrics`]).
    pub fn prometheus(&self, extra: &[ExtraMetric]) -> String {
        let snapshot = self.snapshot();
        let mut out = String::with_capacity(1024 + snapshot.len() * 1600);
        let counters: [CounterFamily; 4] = [
            (
                "hydra_router_http_requests_total",
                "HTTP requests forwarded to a service, and messages sent or queued for it through /v1/router/send and /queue, by target service.",
                |t| t.http,
            ),
            (
                "hydra_router_http_errors_total",
                "HTTP requests to a service answered with a status of 400 or more, by target service.",
                |t| t.http_errors,
            ),
            (
                "hydra_router_ws_messages_total",
                "WebSocket messages to a service, by target service.",
                |t| t.ws,
            ),
            (
                "hydra_router_ws_errors_total",
                "WebSocket messages to a service that failed, by target service.",
                |t| t.ws_errors,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, help, MetricKind::Counter);
            for (service, totals) in &snapshot {
                let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", escape_label(service), value(totals));
            }
        }

        let name = "hydra_router_http_request_duration_seconds";
        out.push_str("# HELP hydra_router_http_request_duration_seconds Time from forwarding an HTTP request to a service to having its answer, by target service.\n");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (service, totals) in &snapshot {
            let service = escape_label(service);
            let mut cumulative = 0;
            for (index, count) in totals.latency.buckets.iter().enumerate() {
                cumulative += count;
                let le = LATENCY_BUCKETS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                let _ = writeln!(out, "{name}_bucket{{service=\"{service}\",le=\"{le}\"}} {cumulative}");
            }
            let sum = totals.latency.sum_micros as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{service=\"{service}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{service=\"{service}\"}} {}", totals.latency.count);
        }

        header(
            &mut out,
            "hydra_router_tracked_services",
            "Service names with counters of their own (traffic beyond the cap is counted under _other).",
            MetricKind::Gauge,
        );
        let _ = writeln!(out, "hydra_router_tracked_services {}", snapshot.len());

        let mut previous: Option<&str> = None;
        for metric in extra {
            if previous != Some(metric.name.as_str()) {
                header(&mut out, &metric.name, &metric.help, metric.kind);
            }
            previous = Some(&metric.name);
            out.push_str(&metric.name);
            if !metric.labels.is_empty() {
                let labels: Vec<String> = metric
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", format_value(metric.value));
        }
        out
    }

    /// Seconds since this `Stats` was made: the per-second clock.
    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn lock_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Mutex<ServiceStats>>>> {
        self.services.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters of `service`, made on first use; `_other` once the cap is reached.
    fn service(&self, service: &str) -> Arc<Mutex<ServiceStats>> {
        if let Some(found) = self.lock_map().get(service) {
            return Arc::clone(found);
        }
        let mut services = self.services.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = services.get(service) {
            return Arc::clone(found);
        }
        // `_other` itself is one of the tracked names, so the map never
        // holds more than MAX_TRACKED_SERVICES + 1 entries.
        let name = if services.len() < MAX_TRACKED_SERVICES {
            service
        } else {
            OTHER_SERVICES
        };
        Arc::clone(services.entry(name.to_owned()).or_default())
    }

    fn record_at(&self, now: u64, service: &str, event: Event) {
        let service = self.service(service);
        let mut stats = lock(&service);
        match event {
            Event::Http { status, latency } => {
                stats.http.get_or_insert_with(|| Window::new(now)).add(now);
                stats.http_total += 1;
                stats.latency.observe(latency);
                if status >= 400 {
                    stats.errors.get_or_insert_with(|| Window::new(now)).add(now);
                    stats.http_errors_total += 1;
                }
            }
            Event::Ws => {
                stats.ws.get_or_insert_with(|| Window::new(now)).add(now);
                stats.ws_total += 1;
            }
            Event::WsError => {
                stats.errors.get_or_insert_with(|| Window::new(now)).add(now);
                stats.ws_errors_total += 1;
            }
        }
    }

    fn node_json_at(&self, now: u64) -> Value {
        serde_json::from_str(&self.node_json_text_at(now)).unwrap_or(Value::Null)
    }

    /// [`Stats::node_json`] written straight to text: a `Value` holds each
    /// of the 3600 numbers per service as an allocation (arbitrary-precision
    /// numbers), which made `/v1/router/stats` cost ~1 ms per service.
    fn node_json_text_at(&self, now: u64) -> String {
        let mut services: Vec<(String, Arc<Mutex<ServiceStats>>)> = self
            .lock_map()
            .iter()
            .map(|(name, stats)| (name.clone(), Arc::clone(stats)))
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::with_capacity(64 + services.len() * WINDOW_SECONDS * 2);
        let mut seconds = [0u32; WINDOW_SECONDS];
        type Pick = fn(&ServiceStats) -> &Option<Window>;
        let sets: [(&str, Pick); 3] = [
            ("httpStats", |stats| &stats.http),
            ("wsStats", |stats| &stats.ws),
            ("errorStats", |stats| &stats.errors),
        ];
        out.push('{');
        for (set_index, (set, pick)) in sets.into_iter().enumerate() {
            if set_index > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{set}\":{{");
            let mut first = true;
            for (name, stats) in &services {
                // Copy under the lock, format after: recording is never held
                // up by the formatting.
                {
                    let stats = lock(stats);
                    let Some(window) = pick(&stats) else { continue };
                    window.copy_into(now, &mut seconds);
                }
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push_str(":[");
                for (index, count) in seconds.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    // Most seconds of most services are 0.
                    if *count == 0 {
                        out.push('0');
                    } else {
                        let _ = write!(out, "{count}");
                    }
                }
                out.push(']');
            }
            out.push('}');
        }
        out.push('}');
        out
    }

    /// Every service's totals, sorted by name (a stable output order).
    fn snapshot(&self) -> Vec<(String, ServiceTotals)> {
        let services: Vec<(String, Arc<Mutex<ServiceStats>>)> = self
            .lock_map()
            .iter()
            .map(|(name, stats)| (name.clone(), Arc::clone(stats)))
            .collect();
        let mut snapshot: Vec<(String, ServiceTotals)> = services
            .into_iter()
            .map(|(name, stats)| {
                let stats = lock(&stats);
                let totals = ServiceTotals {
                    http: stats.http_total,
                    http_errors: stats.http_errors_total,
                    ws: stats.ws_total,
                    ws_errors: stats.ws_errors_total,
                    latency: Histogram {
                        buckets: stats.latency.buckets,
                        sum_micros: stats.latency.sum_micros,
                        count: stats.latency.count,
                    },
                };
                (name, totals)
            })
            .collect();
        snapshot.sort_by(|a, b| a.0.cmp(&b.0));
        snapshot
    }
}

/// A per-service counter family: name, help, and how to read it from the totals.
type CounterFamily = (&'static str, &'static str, fn(&ServiceTotals) -> u64);

/// One service's totals, copied out of its lock for formatting.
struct ServiceTotals {
    http: u64,
    http_errors: u64,
    ws: u64,
    ws_errors: u64,
    latency: Histogram,
}

/// A poisoned lock only means a panic elsewhere mid-update of plain counters;
/// the counts are still usable.
fn lock(stats: &Mutex<ServiceStats>) -> MutexGuard<'_, ServiceStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header(out: &mut String, name: &str, help: &str, kind: MetricKind) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the exposition format wants it: `\`, `"` and newline escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `# HELP` text: `\` and newline escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window<'a>(json: &'a Value, set: &str, service: &str) -> &'a Vec<Value> {
        json[set][service]
            .as_array()
            .unwrap_or_else(|| panic!("{set}.{service} missing in {json}"))
    }

    fn sum(values: &[Value]) -> u64 {
        values.iter().map(|v| v.as_u64().expect("a count")).sum()
    }

    #[test]
    fn the_last_element_is_the_current_second() {
        let stats = Stats::new();
        let now = 10_000;
        stats.record_at(
            now - 2,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        stats.record_at(
            now,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        stats.record_at(
            now,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        let json = stats.node_json_at(now);
        let http = window(&json, "httpStats", "billing");
        assert_eq!(http.len(), WINDOW_SECONDS);
        assert_eq!(http[WINDOW_SECONDS - 1], 2);
        assert_eq!(http[WINDOW_SECONDS - 2], 0);
        assert_eq!(http[WINDOW_SECONDS - 3], 1);
        assert_eq!(sum(http), 3);
        // One second later, everything has moved one place towards the start.
        let json = stats.node_json_at(now + 1);
        let http = window(&json, "httpStats", "billing");
        assert_eq!(http[WINDOW_SECONDS - 1], 0);
        assert_eq!(http[WINDOW_SECONDS - 2], 2);
        assert_eq!(http[WINDOW_SECONDS - 4], 1);
    }

    #[test]
    fn seconds_older_than_an_hour_are_cleared_by_time() {
        let stats = Stats::new();
        let start = 50_000;
        stats.record_at(
            start,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        // Still in the window 3599 s later, as the oldest element.
        let json = stats.node_json_at(start + 3599);
        assert_eq!(window(&json, "httpStats", "billing")[0], 1);
        // Gone one second after, even without a write.
        let json = stats.node_json_at(start + 3600);
        assert_eq!(sum(window(&json, "httpStats", "billing")), 0);
        // A write exactly one hour later lands in the same slot: the old count
        // must not add to it.
        stats.record_at(
            start + 3600,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        let json = stats.node_json_at(start + 3600);
        let http = window(&json, "httpStats", "billing");
        assert_eq!(http[WINDOW_SECONDS - 1], 1);
        assert_eq!(sum(http), 1);
        // After a long silence (many hours), a write clears every stale slot.
        for second in 0..20 {
            stats.record_at(
                start + 3600 + second,
                "billing",
                Event::Http {
                    status: 200,
                    latency: Duration::ZERO,
                },
            );
        }
        stats.record_at(
            start + 10 * 3600,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        let json = stats.node_json_at(start + 10 * 3600);
        assert_eq!(sum(window(&json, "httpStats", "billing")), 1);
    }

    #[test]
    fn the_first_hour_after_start_is_padded_with_zeros() {
        let stats = Stats::new();
        stats.record_at(
            0,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        stats.record_at(
            5,
            "billing",
            Event::Http {
                status: 200,
                latency: Duration::ZERO,
            },
        );
        let json = stats.node_json_at(5);
        let http = window(&json, "httpStats", "billing");
        assert_eq!(http.len(), WINDOW_SECONDS);
        assert_eq!(http[WINDOW_SECONDS - 1], 1);
        assert_eq!(http[WINDOW_SECONDS - 6], 1);
        assert_eq!(sum(http), 2);
    }

    #[test]
    fn errors_are_statuses_of_400_and_more_and_websocket_failures() {
        let stats = Stats::new();
        let now = 7_000;
        for status in [200, 201, 202, 204, 301, 302, 304, 399, 400, 404, 500, 503] {
            stats.record_at(
                now,
                "billing",
                Event::Http {
                    status,
                    latency: Duration::ZERO,
                },
            );
        }
        stats.record_at(now, "chat", Event::Ws);
        stats.record_at(now, "chat", Event::WsError);
        let json = stats.node_json_at(now);
        assert_eq!(window(&json, "httpStats", "billing")[WINDOW_SECONDS - 1], 12);
        assert_eq!(window(&json, "errorStats", "billing")[WINDOW_SECONDS - 1], 4);
        assert_eq!(window(&json, "wsStats", "chat")[WINDOW_SECONDS - 1], 1);
        assert_eq!(window(&json, "errorStats", "chat")[WINDOW_SECONDS - 1], 1);
        // A set lists a service only once it had traffic of that kind.
        assert!(json["wsStats"].get("billing").is_none(), "{}", json["wsStats"]);
        assert!(json["httpStats"].get("chat").is_none(), "{}", json["httpStats"]);

        let text = stats.prometheus(&[]);
        assert!(
            text.contains("hydra_router_http_requests_total{service=\"billing\"} 12\n"),
            "{text}"
        );
        assert!(
            text.contains("hydra_router_http_errors_total{service=\"billing\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("hydra_router_ws_messages_total{service=\"chat\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hydra_router_ws_errors_total{service=\"chat\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_json_has_nodes_three_sets_even_when_empty() {
        let json = Stats::new().node_json();
        assert_eq!(
            json,
            serde_json::json!({"httpStats": {}, "wsStats": {}, "errorStats": {}})
        );
    }

    #[test]
    fn the_envelope_text_is_hydras_envelope_around_the_json() {
        let stats = Stats::new();
        stats.record_http("bill\"ing", 500, Duration::from_millis(1));
        stats.record_ws("chat");
        let text = stats.node_envelope_text();
        let parsed: Value = serde_json::from_str(&text).expect("the envelope is JSON");
        assert_eq!(parsed, hydra::http::envelope(200, stats.node_json()));
        assert_eq!(
            parsed["result"]["errorStats"]["bill\"ing"].as_array().map(Vec::len),
            Some(WINDOW_SECONDS)
        );
    }

    #[test]
    fn service_names_beyond_the_cap_are_counted_as_other() {
        let stats = Stats::new();
        for index in 0..MAX_TRACKED_SERVICES + 50 {
            stats.record_at(1, &format!("svc-{index}"), Event::Ws);
        }
        // (Checked through the Prometheus text: 1,075 windows of JSON are slow in debug builds.)
        let text = stats.prometheus(&[]);
        let samples = parse_exposition(&text);
        let ws: Vec<_> = samples
            .iter()
            .filter(|(name, _, _)| name == "hydra_router_ws_messages_total")
            .collect();
        assert_eq!(ws.len(), MAX_TRACKED_SERVICES + 1);
        let other = ws
            .iter()
            .find(|(_, labels, _)| labels[0].1 == OTHER_SERVICES)
            .expect("an _other series");
        assert_eq!(other.2, 50.0);
        // A name tracked before the cap was reached keeps its own counters.
        stats.record_at(1, "svc-3", Event::Ws);
        assert!(
            stats
                .prometheus(&[])
                .contains("hydra_router_ws_messages_total{service=\"svc-3\"} 2\n")
        );
    }

    /// One parsed sample: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A minimal reader of the text exposition format: every line is a
    /// comment (`# HELP name text` / `# TYPE name kind`) or
    /// `name{label="value",...} number`, names and label names are valid, and
    /// every sample's family was declared by a `# TYPE` line before it.
    fn parse_exposition(text: &str) -> Vec<Sample> {
        fn valid_name(name: &str) -> bool {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        assert!(text.ends_with('\n'), "the exposition must end with a newline");
        let mut declared: HashMap<String, String> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                let keyword = parts.next().unwrap_or_default();
                let name = parts.next().unwrap_or_default();
                let rest = parts.next().unwrap_or_default();
                assert!(valid_name(name), "bad metric name in {line:?}");
                match keyword {
                    "HELP" => assert!(!rest.contains('\n')),
                    "TYPE" => {
                        assert!(
                            ["counter", "gauge", "histogram"].contains(&rest),
                            "bad type in {line:?}"
                        );
                        let previous = declared.insert(name.to_owned(), rest.to_owned());
                        assert!(previous.is_none(), "{name} declared twice");
                    }
                    _ => panic!("unknown comment {line:?}"),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                value => value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    (name, parse_labels(body, line))
                }
            };
            assert!(valid_name(name), "bad metric name in {line:?}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| declared.get(*base).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(declared.contains_key(family), "{name} has no # TYPE before it");
            samples.push((name.to_owned(), labels, value));
        }
        samples
    }

    fn parse_labels(mut body: &str, line: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        while !body.is_empty() {
            let (name, rest) = body
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label in {line:?}"));
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name in {line:?}"
            );
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((index, '"')) => break index,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            labels.push((name.to_owned(), value));
            body = &rest[end + 1..];
            body = body.strip_prefix(',').unwrap_or(body);
        }
        labels
    }

    #[test]
    fn websocket_counters_are_one_family_per_name_with_reason_labels() {
        let counts = WsCounts {
            connected: 3,
            accepted: 5,
            closed: 2,
            refused_handshakes: 1,
            closed_overflow: 4,
            closed_timeout: 6,
            oversized_frames: 7,
            binary_frames: 8,
        };
        let text = Stats::new().prometheus(&ws_metrics(&counts));
        let samples = parse_exposition(&text);
        let find = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == name
                        && l.len() == labels.len()
                        && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                })
                .map(|(_, _, value)| *value)
        };
        assert_eq!(find("hydra_router_ws_clients", &[]), Some(3.0), "{text}");
        assert_eq!(find("hydra_router_ws_connections_total", &[]), Some(5.0));
        assert_eq!(find("hydra_router_ws_disconnections_total", &[]), Some(2.0));
        assert_eq!(find("hydra_router_ws_refused_handshakes_total", &[]), Some(1.0));
        let closed = "hydra_router_ws_closed_by_router_total";
        assert_eq!(find(closed, &[("reason", "send_queue_full")]), Some(4.0));
        assert_eq!(find(closed, &[("reason", "dead_peer")]), Some(6.0));
        assert_eq!(find(closed, &[("reason", "frame_too_large")]), Some(7.0));
        assert_eq!(find(closed, &[("reason", "binary_frame")]), Some(8.0));
        assert!(text.contains("# TYPE hydra_router_ws_clients gauge\n"), "{text}");
    }

    #[test]
    fn extra_fields_follow_nodes_three_sets_in_the_stats_answer() {
        let stats = Stats::new();
        stats.record_ws("chat");
        let text = stats.node_envelope_text_with(&[("wsClients", serde_json::json!({"connected": 2}))]);
        let envelope: Value = serde_json::from_str(&text).expect("JSON");
        let keys: Vec<&str> = envelope["result"]
            .as_object()
            .expect("result")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["httpStats", "wsStats", "errorStats", "wsClients"]);
        assert_eq!(envelope["result"]["wsClients"]["connected"], 2);
        assert_eq!(window(&envelope["result"], "wsStats", "chat")[WINDOW_SECONDS - 1], 1);
    }

    #[test]
    fn prometheus_output_parses_and_escapes_label_values() {
        let stats = Stats::new();
        let awkward = "we\"ird\\name\nwith newline";
        stats.record_http("billing", 200, Duration::from_micros(800));
        stats.record_http("billing", 200, Duration::from_millis(30));
        stats.record_http("billing", 503, Duration::from_secs(60));
        stats.record_http(awkward, 200, Duration::from_millis(2));
        stats.record_ws("chat");
        let server = hydra::http::HttpStats::default();
        let text = stats.prometheus(&server_metrics(&server, Duration::from_secs(42)));
        let samples = parse_exposition(&text);

        let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == name
                        && l.len() == labels.len()
                        && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                })
                .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
                .2
        };
        assert_eq!(find("hydra_router_http_requests_total", &[("service", "billing")]), 3.0);
        assert_eq!(find("hydra_router_http_errors_total", &[("service", "billing")]), 1.0);
        assert_eq!(find("hydra_router_http_requests_total", &[("service", awkward)]), 1.0);
        let bucket = "hydra_router_http_request_duration_seconds_bucket";
        assert_eq!(find(bucket, &[("service", "billing"), ("le", "0.001")]), 1.0);
        assert_eq!(find(bucket, &[("service", "billing"), ("le", "0.05")]), 2.0);
        assert_eq!(find(bucket, &[("service", "billing"), ("le", "30")]), 2.0);
        assert_eq!(find(bucket, &[("service", "billing"), ("le", "+Inf")]), 3.0);
        assert_eq!(
            find(
                "hydra_router_http_request_duration_seconds_count",
                &[("service", "billing")]
            ),
            3.0
        );
        let sum = find(
            "hydra_router_http_request_duration_seconds_sum",
            &[("service", "billing")],
        );
        assert!((sum - 60.0308).abs() < 1e-9, "sum {sum}");
        assert_eq!(find("hydra_router_ws_messages_total", &[("service", "chat")]), 1.0);
        assert_eq!(find("hydra_router_uptime_seconds", &[]), 42.0);
        assert_eq!(find("hydra_router_server_connections_total", &[]), 0.0);
        assert_eq!(find("hydra_router_tracked_services", &[]), 3.0);
        // Buckets are cumulative: never decreasing.
        let billing: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| n == bucket && l.iter().any(|(k, v)| k == "service" && v == "billing"))
            .map(|s| s.2)
            .collect();
        assert_eq!(billing.len(), LATENCY_BUCKETS.len() + 1);
        assert!(billing.windows(2).all(|pair| pair[0] <= pair[1]), "{billing:?}");
    }

    #[test]
    fn the_parser_check_rejects_broken_output() {
        for broken in [
            "metric 1\n",
            "# TYPE m counter\nm{service=\"a} 1\n",
            "# TYPE m counter\nm{service=\"a\"}\n",
        ] {
            let outcome = std::panic::catch_unwind(|| parse_exposition(broken));
            assert!(outcome.is_err(), "accepted {broken:?}");
        }
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let stats = Arc::new(Stats::new());
        let threads = 8;
        let per_thread = 5_000;
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for index in 0..per_thread {
                        let service = if index % 2 == 0 {
                            "shared"
                        } else if thread % 2 == 0 {
                            "even"
                        } else {
                            "odd"
                        };
                        let status = if index % 10 == 0 { 500 } else { 200 };
                        stats.record_http(service, status, Duration::from_micros(index as u64));
                        stats.record_ws(service);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a recording thread panicked");
        }
        let text = stats.prometheus(&[]);
        let samples = parse_exposition(&text);
        let total = |name: &str| -> f64 { samples.iter().filter(|(n, _, _)| n == name).map(|s| s.2).sum() };
        let expected = (threads * per_thread) as f64;
        assert_eq!(total("hydra_router_http_requests_total"), expected);
        assert_eq!(total("hydra_router_ws_messages_total"), expected);
        assert_eq!(total("hydra_router_http_errors_total"), expected / 10.0);
        assert_eq!(total("hydra_router_http_request_duration_seconds_count"), expected);
        // The per-second windows hold every count (this run lasts well under an hour).
        let json = stats.node_json();
        let window_total: u64 = json["httpStats"]
            .as_object()
            .expect("httpStats")
            .values()
            .map(|w| sum(w.as_array().expect("array")))
            .sum();
        assert_eq!(window_total as f64, expected);
    }
}
