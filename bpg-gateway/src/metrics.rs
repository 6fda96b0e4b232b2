//! Prometheus metrics: submissions by cluster, queue and outcome; finished applications by state;
//! request latency histograms by route; applications being watched. Rendered in the text
//! exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Data {
    submissions: BTreeMap<(String, String, &'static str), u64>,
    finished: BTreeMap<(String, String), u64>,
    /// Per route: its latency, and its requests by method and status (a short list).
    routes: BTreeMap<String, RouteStats>,
}

#[derive(Default)]
struct RouteStats {
    latency: Histogram,
    answers: Vec<(String, u16, u64)>,
}

/// The gateway's counters.
#[derive(Default)]
pub struct Metrics {
    data: Mutex<Data>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A submission reached `outcome` (`created`, `rejected`, `denied`, `duplicate`).
    pub fn submission(&self, cluster: &str, queue: Option<&str>, outcome: &'static str) {
        *self
            .data()
            .submissions
            .entry((cluster.to_owned(), queue.unwrap_or("").to_owned(), outcome))
            .or_default() += 1;
    }

    /// An application ended in `state`.
    pub fn finished(&self, cluster: &str, state: &str) {
        *self
            .data()
            .finished
            .entry((cluster.to_owned(), state.to_owned()))
            .or_default() += 1;
    }

    /// A request to `route` (its template, e.g. `/skatev2/spark/{id}/status`) was answered.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut data = self.data();
        // Looked up by reference first: a request to a known route allocates nothing.
        let stats = match data.routes.get_mut(route) {
            Some(stats) => stats,
            None => data.routes.entry(route.to_owned()).or_default(),
        };
        match stats
            .answers
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.answers.push((method.to_owned(), status, 1)),
        }
        let h = &mut stats.latency;
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The exposition text; `watched` and `waiting` are gauges read at scrape time.
    pub fn render(&self, watched: usize, waiting: &[(String, u32, u32)]) -> String {
        let data = self.data();
        let mut out = String::new();
        out.push_str("# HELP bpg_gateway_submissions_total Submissions by cluster, queue and outcome.\n# TYPE bpg_gateway_submissions_total counter\n");
        for ((cluster, queue, outcome), n) in &data.submissions {
            let _ = writeln!(
                out,
                "bpg_gateway_submissions_total{{cluster=\"{}\",queue=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(cluster),
                escape(queue)
            );
        }
        out.push_str("# HELP bpg_gateway_applications_finished_total Applications that ended, by cluster and state.\n# TYPE bpg_gateway_applications_finished_total counter\n");
        for ((cluster, state), n) in &data.finished {
            let _ = writeln!(
                out,
                "bpg_gateway_applications_finished_total{{cluster=\"{}\",state=\"{}\"}} {n}",
                escape(cluster),
                escape(state)
            );
        }
        out.push_str("# HELP bpg_gateway_watched_applications Applications whose state the gateway follows.\n# TYPE bpg_gateway_watched_applications gauge\n");
        let _ = writeln!(out, "bpg_gateway_watched_applications {watched}");
        out.push_str("# HELP bpg_gateway_cluster_in_flight Applications created and not ended, by cluster.\n# TYPE bpg_gateway_cluster_in_flight gauge\n");
        for (cluster, in_flight, _) in waiting {
            let _ = writeln!(
                out,
                "bpg_gateway_cluster_in_flight{{cluster=\"{}\"}} {in_flight}",
                escape(cluster)
            );
        }
        out.push_str("# HELP bpg_gateway_cluster_waiting Submissions waiting in the gateway for a cluster slot.\n# TYPE bpg_gateway_cluster_waiting gauge\n");
        for (cluster, _, w) in waiting {
            let _ = writeln!(
                out,
                "bpg_gateway_cluster_waiting{{cluster=\"{}\"}} {w}",
                escape(cluster)
            );
        }
        out.push_str("# HELP bpg_gateway_requests_total Requests by method, route and status.\n# TYPE bpg_gateway_requests_total counter\n");
        for (route, stats) in &data.routes {
            for (method, status, n) in &stats.answers {
                let _ = writeln!(
                    out,
                    "bpg_gateway_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP bpg_gateway_request_duration_seconds Request latency by route.\n# TYPE bpg_gateway_request_duration_seconds histogram\n");
        for (route, stats) in &data.routes {
            let h = &stats.latency;
            let route = escape(route);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "bpg_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "bpg_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "bpg_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "bpg_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.submission("analytics", Some("dev"), "created");
        m.submission("analytics", Some("dev"), "created");
        m.request(
            "GET",
            "/skatev2/spark/{id}/status",
            200,
            Duration::from_millis(3),
        );
        let text = m.render(4, &[("analytics".into(), 2, 1)]);
        assert!(text.contains("bpg_gateway_submissions_total{cluster=\"analytics\",queue=\"dev\",outcome=\"created\"} 2"), "{text}");
        assert!(text.contains("bpg_gateway_watched_applications 4"));
        assert!(
            text.contains("le=\"0.0025\"} 0") && text.contains("le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("bpg_gateway_cluster_waiting{cluster=\"analytics\"} 1"));
    }
}
