//! Section 8: capacity — how many Kanary-shaped rules one instance carries at a 1-minute interval.
//!
//! N copies of `rules/kanary.yaml`'s rule (each its own name and metric names, the same statement),
//! interval 1m, timeout 30s, on the 1M-row table with its index and the default pool of 4
//! connections. Every rule runs at start, so the first cycle is the whole load at once, and, since
//! each rule's next run is one interval after its previous start, every later cycle is the same
//! burst: the cycle's makespan (start → the last rule's first evaluation, which is `/-/ready`) is
//! what must stay under the timeout (a rule waiting for a connection past 30 s times out) and the
//! interval. The bench measures one cycle at increasing N and extrapolates the throughput it saw;
//! it does not run minutes of cycles.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::evaluation::series_value;
use crate::procs::Exporter;
use crate::{client, mark, mib, step, Ctx};

/// Rule counts tried, until a cycle takes longer than [`STOP_AFTER`].
const STEPS: [usize; 4] = [24, 96, 384, 1536];
const STOP_AFTER: Duration = Duration::from_secs(12);
const TIMEOUT_S: f64 = 30.0;
const INTERVAL_S: f64 = 60.0;

pub struct Step {
    pub rules: usize,
    /// Spawn → `/-/ready`: every rule evaluated once.
    pub makespan_s: f64,
    pub max_duration_s: f64,
    pub median_duration_s: f64,
    pub failed: f64,
    /// pg_stat_statements mean execution time of the rules' statement.
    pub server_ms: f64,
    pub rss_kib: u64,
}

pub struct Capacity {
    pub steps: Vec<Step>,
}

/// A rules file of `n` copies of `rules/kanary.yaml`'s signal rule.
fn rules_file(ctx: &Ctx, n: usize) -> Result<String> {
    let text = fs::read_to_string(ctx.root.join("rules/kanary.yaml"))?;
    let (head, rule) = text.split_once("signals:\n").context("rules/kanary.yaml has no signals")?;
    if !rule.starts_with("  - name: kanary\n") || rule.matches("\n  - name:").count() > 0 {
        bail!("rules/kanary.yaml is not one signal rule named kanary");
    }
    let mut out = format!("{head}signals:\n");
    for i in 0..n {
        out.push_str(
            &rule
                .replacen("  - name: kanary\n", &format!("  - name: kanary_{i}\n"), 1)
                .replace("name: kanary_up\n", &format!("name: kanary_{i}_up\n"))
                .replace("name: kanary_error\n", &format!("name: kanary_{i}_error\n")),
        );
    }
    Ok(out)
}

fn run_step(ctx: &Ctx, n: usize) -> Result<Step> {
    let path = ctx.dir.path().join(format!("capacity-{n}.yaml"));
    fs::write(&path, rules_file(ctx, n)?)?;
    ctx.reset_statements()?;
    let log = ctx.dir.path().join(format!("capacity-{n}.log"));
    let mut ex = Exporter::spawn(
        &ctx.bin,
        &["--rules", &path.display().to_string()],
        &[("CONNECTION_STRING", ctx.dsn.as_str())],
        &log,
    )?;
    let makespan = ex.wait_ready(Duration::from_secs(600))?.as_secs_f64();
    let text = String::from_utf8(client::get(ex.addr, "/metrics", &[])?.body)?;
    let mut durations: Vec<f64> = (0..n)
        .filter_map(|i| {
            series_value(&text, &format!("sql_signal_exporter_rule_last_duration_seconds{{rule=\"kanary_{i}\"}}"))
        })
        .collect();
    durations.sort_by(f64::total_cmp);
    let failed: f64 = (0..n)
        .map(|i| {
            ["error", "timeout"]
                .iter()
                .filter_map(|r| {
                    series_value(
                        &text,
                        &format!("sql_signal_exporter_rule_evaluations_total{{result=\"{r}\",rule=\"kanary_{i}\"}}"),
                    )
                })
                .sum::<f64>()
        })
        .sum();
    let rss_kib = ex.rss_kib();
    drop(ex);
    let st = ctx.exporter_statements()?;
    let (calls, total) =
        st.iter().filter(|s| s.0.contains("label_values")).fold((0i64, 0.0), |a, s| (a.0 + s.1, a.1 + s.2));
    let s = Step {
        rules: n,
        makespan_s: makespan,
        max_duration_s: durations.last().copied().unwrap_or(f64::NAN),
        median_duration_s: durations.get(durations.len() / 2).copied().unwrap_or(f64::NAN),
        failed,
        server_ms: if calls > 0 { total / calls as f64 } else { f64::NAN },
        rss_kib,
    };
    step(&format!(
        "  {n} rules: cycle {:.2} s (slowest rule {:.2} s, median {:.2} s), {failed} failed, {:.1} ms server each, RSS {rss_kib} KiB",
        s.makespan_s, s.max_duration_s, s.median_duration_s, s.server_ms
    ));
    Ok(s)
}

pub fn bench(ctx: &Ctx) -> Result<Capacity> {
    let mut steps = Vec::new();
    for n in STEPS {
        step(&format!("capacity: {n} Kanary-shaped rules at 1m, one cycle …"));
        let s = run_step(ctx, n)?;
        let stop = s.makespan_s > STOP_AFTER.as_secs_f64() || s.failed > 0.0;
        steps.push(s);
        if stop {
            break;
        }
    }
    Ok(Capacity { steps })
}

impl Capacity {
    /// Rules per second the largest run sustained (makespan of one burst).
    pub fn throughput(&self) -> f64 {
        self.steps.last().map(|s| s.rules as f64 / s.makespan_s).unwrap_or(f64::NAN)
    }

    /// Rules whose burst ends within `seconds`, at the measured throughput.
    pub fn rules_within(&self, seconds: f64) -> f64 {
        self.throughput() * seconds
    }

    pub fn targets(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "| Kanary-shaped rules per instance at 1m: cycle within the 30 s timeout (extrapolated from {} rules) | measure | ~{:.0} | {} |",
            self.steps.last().map(|s| s.rules).unwrap_or(0),
            self.rules_within(TIMEOUT_S),
            mark(self.steps.iter().all(|s| s.failed == 0.0))
        );
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 8. Capacity: Kanary-shaped rules per instance\n");
        let _ = writeln!(
            o,
            "N copies of `rules/kanary.yaml`'s rule (24 targets each, the same statement) at interval 1m, timeout 30s, \
             one database with the default pool of 4 connections, on the 1M-row table with `examples/kanary/indexes.sql`. \
             All rules run at start, and every later cycle is the same burst, so one cycle shows the load: the cycle is \
             spawn → `/-/ready` (every rule evaluated once). Durations are `rule_last_duration_seconds` (waiting for a \
             connection included).\n"
        );
        let _ = writeln!(
            o,
            "| rules | cycle s | slowest rule s | median rule s | failed | server ms per statement | RSS MiB |"
        );
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.steps {
            let _ = writeln!(
                o,
                "| {} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
                s.rules,
                s.makespan_s,
                s.max_duration_s,
                s.median_duration_s,
                s.failed,
                s.server_ms,
                mib(s.rss_kib)
            );
        }
        let _ = writeln!(
            o,
            "\nThe largest run sustained {:.1} rules/s. Extrapolated linearly (not run): the burst ends within the 30 s \
             timeout up to ~{:.0} rules and within the 1-minute interval up to ~{:.0}; past ~{:.0} the rules last in line \
             time out waiting for a connection. These are figures of this shared 2-CPU machine, where the database, the \
             exporter and other builds compete for the same cores.",
            self.throughput(),
            self.rules_within(TIMEOUT_S),
            self.rules_within(INTERVAL_S),
            self.rules_within(TIMEOUT_S)
        );
    }
}
