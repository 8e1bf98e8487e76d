//! A real Prometheus scrapes the every-kind fixture with its default negotiation, which picks
//! OpenMetrics (its target metadata then holds a `stateset`, a type only OpenMetrics carries); the
//! target is healthy, every family arrives, and `histogram_quantile` over the raw-value histogram's
//! buckets gives the quantiles the fixture rows imply.
//!
//! Debian's `prometheus` package provides the binary; under `CI=true` a missing one fails the test.

use std::time::Duration;

use serde_json::Value;

use super::{rules_file, EVERY_KIND, FIXTURE};
use crate::harness::{tool, wait, Db, Exporter};
use crate::prometheus::Prometheus;

/// The one value of an instant query.
fn scalar(prom: &Prometheus, promql: &str) -> Option<f64> {
    let result = prom.query(promql).ok()?;
    let [sample] = result.as_slice() else { return None };
    sample["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_negotiates_openmetrics_and_reads_the_quantiles_the_rows_imply() {
    if !tool::program("/usr/bin/prometheus", "apt-get install prometheus (.ci/run installs it)") {
        return;
    }
    let pg = Db::shared();
    pg.psql(FIXTURE).expect("load the fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("every_kind.yaml");
    std::fs::write(
        &path,
        rules_file(
            &pg.dsn(),
            &EVERY_KIND.replace("database: main", "database: main\n    interval: 1s\n    timeout: 900ms"),
        ),
    )
    .expect("write rules");
    let ex = Exporter::spawn(&["--rules", path.to_str().expect("UTF-8 path")], &[]);
    ex.wait_ready();
    let prom = Prometheus::scraping(dir.path(), &ex.addr.to_string());
    // Observations 1..=100 in buckets 1, 10, 50, 100: the median is 50 and the first quartile 25
    // exactly (linear interpolation inside the bucket (10, 50], which holds 40 of them).
    let median = "histogram_quantile(0.5, fixture_age_seconds_bucket{db=\"a\"})";
    wait::until(
        Duration::from_secs(20),
        "the histogram in Prometheus",
        || scalar(&prom, median).is_some(),
        || format!("{:?}", prom.query(median)),
    );
    assert_eq!(scalar(&prom, median), Some(50.0));
    assert_eq!(scalar(&prom, "histogram_quantile(0.25, fixture_age_seconds_bucket{db=\"a\"})"), Some(25.0));
    assert_eq!(scalar(&prom, "fixture_age_seconds_count{db=\"a\"}"), Some(100.0));
    assert_eq!(scalar(&prom, "fixture_read_bytes_total"), Some(42.0));
    assert_eq!(scalar(&prom, "fixture_version_info"), Some(1.0));
    assert_eq!(scalar(&prom, "fixture_backend_state{pid=\"2\",fixture_backend_state=\"idle\"}"), Some(1.0));
    assert_eq!(scalar(&prom, "fixture_latency_seconds{quantile=\"0.99\"}"), Some(1.5));
    // Only an OpenMetrics scrape can type a family `stateset`.
    let metadata = prom.get("/api/v1/targets/metadata?metric=fixture_backend_state").unwrap_or_default();
    let body: Value = serde_json::from_str(&metadata).unwrap_or_default();
    let types: Vec<&str> = body["data"].as_array().into_iter().flatten().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(types, ["stateset"], "{metadata}");
}
