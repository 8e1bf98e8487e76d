//! Runs `wrk` and reads its summary.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// One wrk run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Non-2xx/3xx responses plus socket errors: must be 0 for a run to count.
    pub failures: u64,
}

/// How wrk loads a server: the same for the exporter and nginx.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u32,
}

pub fn run(url: &str, load: Load, gzip: bool) -> Result<WrkResult> {
    run_with_headers(url, load, if gzip { &["Accept-Encoding: gzip"] } else { &[] })
}

/// [`run`] with each of `headers` (`Name: value`) sent.
pub fn run_with_headers(url: &str, load: Load, headers: &[&str]) -> Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &load.threads.to_string(),
        "-c",
        &load.connections.to_string(),
        "-d",
        &format!("{}s", load.seconds),
        "--timeout",
        "30s",
        "--latency",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    parse(&text).with_context(|| format!("reading wrk's output:\n{text}"))
}

fn parse(text: &str) -> Result<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen = (false, false, false);
    let mut in_dist = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist {
            let mut parts = t.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("50%"), Some(v)) => {
                    r.p50_ms = duration_ms(v)?;
                    seen.0 = true;
                }
                (Some("99%"), Some(v)) => {
                    r.p99_ms = duration_ms(v)?;
                    seen.1 = true;
                    in_dist = false;
                }
                _ => {}
            }
            continue;
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse()?;
            seen.2 = true;
        } else if t.contains(" requests in ") {
            r.requests = t.split_whitespace().next().unwrap_or("0").parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.failures += v.trim().parse::<u64>().unwrap_or(1);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.failures += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if !(seen.0 && seen.1 && seen.2) {
        bail!("no latency distribution or Requests/sec");
    }
    Ok(r)
}

/// wrk prints durations as `635.91us`, `1.20ms`, `2.00s`, `1.00m`.
fn duration_ms(v: &str) -> Result<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).context("duration without unit")?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        other => bail!("unknown unit {other}"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_output() {
        let text = "Running 4s test @ http://127.0.0.1:1/metrics\n  2 threads and 16 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   635.91us  100.00us   1.20ms   90.00%\n  Latency Distribution\n     50%  635.91us\n     75%  712.00us\n     90%  789.00us\n     99%    1.20ms\n  123456 requests in 4.00s, 1.23GB read\n  Socket errors: connect 0, read 2, write 0, timeout 0\nRequests/sec:  30864.00\nTransfer/sec:    314.00MB\n";
        let r = super::parse(text).unwrap();
        assert_eq!(r.requests, 123456);
        assert_eq!(r.failures, 2);
        assert!((r.p50_ms - 0.63591).abs() < 1e-9 && (r.p99_ms - 1.2).abs() < 1e-9 && r.rps == 30864.0);
    }
}
