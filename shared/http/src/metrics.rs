//! Per-request metrics in CloudWatch Embedded Metric Format (`docs/architecture.md`,
//! "Metrics"): one JSON line on stdout per request, which CloudWatch Logs turns into metrics of
//! namespace `METRICS_NAMESPACE` (the stack name in the template; `TenantPlatform` if unset)
//! with the dimension sets `[Function]` and, unless `METRICS_BY_SITE=false`, `[Site]`. The same
//! line is a log event that Logs Insights can query by site, function, request id, status and
//! path whatever the dimensions.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use storage::Usage;

/// The metrics, with their units, each request reports.
const METRICS: [(&str, &str); 8] = [
    ("Requests", "Count"),
    ("Errors4xx", "Count"),
    ("Errors5xx", "Count"),
    ("Latency", "Milliseconds"),
    ("StorageCalls", "Count"),
    ("ItemsRead", "Count"),
    ("ReadCapacityUnits", "Count"),
    ("WriteCapacityUnits", "Count"),
];

/// Whether lines are written: off until [`enable`] (`init_telemetry`).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the metrics lines on for this process.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Where the metrics go: the namespace, and whether each site gets its own metrics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub namespace: String,
    /// `[Site]` as a second dimension set: each site with requests in an hour is eight custom
    /// metrics for that hour (`METRICS_BY_SITE`, default true).
    pub by_site: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            namespace: var("METRICS_NAMESPACE").unwrap_or_else(|| "TenantPlatform".into()),
            by_site: var("METRICS_BY_SITE").is_none_or(|v| !v.eq_ignore_ascii_case("false")),
        }
    }

    /// The process's settings, read from the environment once.
    fn get() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(Settings::from_env)
    }
}

/// One served request, as its metrics line reports it.
pub(crate) struct Served<'a> {
    pub function: &'a str,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The site the request was authorized for; none when it was refused before, or needs none
    /// (administration, public routes).
    pub site: Option<&'a str>,
    pub status: u16,
    pub latency_ms: f64,
    pub usage: Usage,
}

impl Served<'_> {
    /// The EMF line: the `_aws` metadata, dimensions, metric values and properties.
    pub(crate) fn emf(&self, settings: &Settings, timestamp_ms: u64) -> Value {
        let dimensions = match self.site {
            Some(_) if settings.by_site => json!([["Function"], ["Site"]]),
            _ => json!([["Function"]]),
        };
        let metrics: Vec<Value> = METRICS
            .iter()
            .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        let class = |c: u16| u8::from(self.status / 100 == c);
        let mut line = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": settings.namespace,
                    "Dimensions": dimensions,
                    "Metrics": metrics,
                }],
            },
            "Function": self.function,
            "Requests": 1,
            "Errors4xx": class(4),
            "Errors5xx": class(5),
            "Latency": (self.latency_ms * 1000.0).round() / 1000.0,
            "StorageCalls": self.usage.calls,
            "ItemsRead": self.usage.items_read,
            "ReadCapacityUnits": self.usage.read_units,
            "WriteCapacityUnits": self.usage.write_units,
            "requestId": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
        });
        if let Some(site) = self.site {
            line["Site"] = site.into();
        }
        line
    }

    /// Writes the EMF line to stdout (CloudWatch Logs in Lambda), once metrics are enabled. A
    /// closed stdout loses the line, never the request.
    pub(crate) fn emit(&self) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = self.emf(Settings::get(), now);
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(site: Option<&str>, status: u16) -> Served<'_> {
        Served {
            function: "documents",
            request_id: "r-1",
            method: "GET",
            path: "/documents",
            site,
            status,
            latency_ms: 1.23456,
            usage: Usage {
                read_units: 1.5,
                write_units: 0.0,
                items_read: 3,
                calls: 2,
            },
        }
    }

    /// Every metric the metadata declares has a value, and every dimension of every set is a
    /// member of the line (CloudWatch drops a line that breaks either rule).
    fn assert_valid_emf(line: &Value) {
        let meta = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], "TenantPlatform");
        for m in meta["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has no value");
        }
        for set in meta["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(line[d.as_str().unwrap()].is_string(), "{d} missing");
            }
        }
        assert!(line["_aws"]["Timestamp"].is_u64());
    }

    fn settings(by_site: bool) -> Settings {
        Settings {
            namespace: "TenantPlatform".into(),
            by_site,
        }
    }

    #[test]
    fn a_sited_request_is_counted_per_function_and_per_site() {
        let line = served(Some("acme"), 200).emf(&settings(true), 1_700_000_000_000);
        assert_valid_emf(&line);
        assert_eq!(line["Site"], "acme");
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Site"]])
        );
        assert_eq!(line["Requests"], 1);
        assert_eq!(line["Errors4xx"], 0);
        assert_eq!(line["Errors5xx"], 0);
        assert_eq!(line["Latency"], 1.235);
        assert_eq!(line["StorageCalls"], 2);
        assert_eq!(line["ItemsRead"], 3);
        assert_eq!(line["ReadCapacityUnits"], 1.5);
        assert_eq!(line["requestId"], "r-1");
        assert_eq!(line["status"], 200);
    }

    #[test]
    fn errors_are_counted_by_class_and_a_request_without_site_has_no_site_dimension() {
        let line = served(None, 403).emf(&settings(true), 0);
        assert_valid_emf(&line);
        assert!(line.get("Site").is_none());
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(
            (line["Errors4xx"].clone(), line["Errors5xx"].clone()),
            (json!(1), json!(0))
        );
        let line = served(Some("acme"), 503).emf(&settings(true), 0);
        assert_eq!(
            (line["Errors4xx"].clone(), line["Errors5xx"].clone()),
            (json!(0), json!(1))
        );
    }

    #[test]
    fn without_metrics_by_site_the_site_is_a_property_only() {
        let line = served(Some("acme"), 200).emf(&settings(false), 0);
        assert_valid_emf(&line);
        assert_eq!(line["Site"], "acme");
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
    }
}
