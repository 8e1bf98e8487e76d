//! Section 8: capacity — how many Kanary-shaped rules one instance carries at a 1-minute interval.
//!
//! N copies of `rules/kanary.yaml`'s rule (each its own name and metric names, the same statement, with
//! `use_run_group_index: true`), interval 1m, timeout 30s, on the `dense` table with its index and the
//! default pool of 4 connections. The copies are split into files under the 1 MiB cap of a rules file,
//! as an operator would: the first declares the database, the others only rules.
//!
//! Every rule runs at start, so the first cycle is the whole load at once: its makespan (start → the
//! last rule's first evaluation, which is `/-/ready`) must stay under the timeout (a rule waiting for a
//! connection past 30 s times out). After it, each rule runs at its own stable offset within the
//! interval (`run::scheduler::offset`), so in steady state the load is spread over the minute and an
//! instance carries as many rules as its throughput fills in one interval. The bench measures the
//! burst at increasing N and extrapolates the throughput it saw; it does not run minutes of cycles.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::evaluation::series_value;
use crate::kanary::{self, RuleVariant};
use crate::procs::Exporter;
use crate::{client, mark, mib, step, Ctx};
use sql_signal_exporter::rules::input::MAX_FILE_BYTES;

/// Rule counts are tried (`Scale::capacity_steps`) until a cycle takes longer than this.
const STOP_AFTER: Duration = Duration::from_secs(12);
const TIMEOUT_S: f64 = 30.0;
const INTERVAL_S: f64 = 60.0;

pub struct Step {
    pub rules: usize,
    /// Rules files the rules were split into.
    pub files: usize,
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

/// Rules files holding `n` copies of `rules/kanary.yaml`'s signal rule, each file under
/// [`MAX_FILE_BYTES`]: the first declares the database, the others hold only rules.
fn rules_files(ctx: &Ctx, n: usize) -> Result<Vec<PathBuf>> {
    let text = fs::read_to_string(kanary::rules_file(ctx, RuleVariant::Index)?)?;
    let (head, rule) = text.split_once("signals:\n").context("rules/kanary.yaml has no signals")?;
    if !rule.starts_with("  - name: kanary\n") || rule.matches("\n  - name:").count() > 0 {
        bail!("rules/kanary.yaml is not one signal rule named kanary");
    }
    let databases = head.find("databases:").context("rules/kanary.yaml declares no database")?;
    let rules_only = format!("{}signals:\n", &head[..databases]);
    let mut files = vec![format!("{head}signals:\n")];
    for i in 0..n {
        let copy = rule
            .replacen("  - name: kanary\n", &format!("  - name: kanary_{i}\n"), 1)
            .replace("name: kanary_up\n", &format!("name: kanary_{i}_up\n"))
            .replace("name: kanary_error\n", &format!("name: kanary_{i}_error\n"));
        let last = files.len() - 1;
        if files[last].len() + copy.len() > MAX_FILE_BYTES * 9 / 10 {
            files.push(rules_only.clone());
        }
        let last = files.len() - 1;
        files[last].push_str(&copy);
    }
    let mut paths = Vec::new();
    for (k, f) in files.iter().enumerate() {
        let path = ctx.dir.path().join(format!("capacity-{n}-{k}.yaml"));
        fs::write(&path, f)?;
        paths.push(path);
    }
    Ok(paths)
}

fn run_step(ctx: &Ctx, n: usize) -> Result<Step> {
    let paths = rules_files(ctx, n)?;
    let args: Vec<String> = paths.iter().flat_map(|p| ["--rules".to_string(), p.display().to_string()]).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctx.reset_statements()?;
    let log = ctx.dir.path().join(format!("capacity-{n}.log"));
    let mut ex = Exporter::spawn(&ctx.bin, &args, &[("CONNECTION_STRING", ctx.dsn.as_str())], &log)?;
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
        files: paths.len(),
        makespan_s: makespan,
        max_duration_s: durations.last().copied().unwrap_or(f64::NAN),
        median_duration_s: durations.get(durations.len() / 2).copied().unwrap_or(f64::NAN),
        failed,
        server_ms: if calls > 0 { total / calls as f64 } else { f64::NAN },
        rss_kib,
    };
    step(&format!(
        "  {n} rules in {} file(s): cycle {:.2} s (slowest rule {:.2} s, median {:.2} s), {failed} failed, {:.1} ms server each, RSS {rss_kib} KiB",
        s.files, s.makespan_s, s.max_duration_s, s.median_duration_s, s.server_ms
    ));
    Ok(s)
}

pub fn bench(ctx: &Ctx) -> Result<Capacity> {
    let mut steps = Vec::new();
    for &n in ctx.scale.capacity_steps {
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

    /// Rules served within `seconds` at the measured throughput.
    pub fn rules_within(&self, seconds: f64) -> f64 {
        self.throughput() * seconds
    }

    pub fn targets(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "| Kanary-shaped rules per instance within a 1-minute interval (offsets spread; `dense` table with its index; extrapolated from {} rules, {} file(s)) | measure | ~{:.0} (the start-up burst within the 30 s timeout: ~{:.0}) | {} |",
            self.steps.last().map(|s| s.rules).unwrap_or(0),
            self.steps.last().map(|s| s.files).unwrap_or(0),
            self.rules_within(INTERVAL_S),
            self.rules_within(TIMEOUT_S),
            mark(self.steps.iter().all(|s| s.failed == 0.0))
        );
    }

    pub fn render(&self, o: &mut String) {
        let _ = writeln!(o, "\n## 8. Capacity: Kanary-shaped rules per instance\n");
        let _ = writeln!(
            o,
            "N copies of `rules/kanary.yaml`'s rule (24 targets each, the same statement, `use_run_group_index: true`) at \
             interval 1m, timeout 30s, one database with the default pool of 4 connections, on the `dense` table of section 6 \
             with `examples/kanary/indexes.sql`, split into rules files under the 1 MiB cap. All rules run at start, in one \
             burst: the cycle is spawn → `/-/ready` (every rule evaluated once). Later runs fall at each rule's own offset \
             within the minute. Durations are `rule_last_duration_seconds` (waiting for a connection included).\n"
        );
        let _ = writeln!(
            o,
            "| rules | files | cycle s | slowest rule s | median rule s | failed | server ms per statement | RSS MiB |"
        );
        let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for s in &self.steps {
            let _ = writeln!(
                o,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
                s.rules,
                s.files,
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
            "\nThe largest run sustained {:.1} rules/s. Extrapolated linearly (not run): spread over the 1-minute interval \
             by their offsets, one instance carries ~{:.0} rules; the start-up burst ends within the 30 s timeout up to \
             ~{:.0}, past which the rules last in line time out once, at start, waiting for a connection. These are figures \
             of this shared 2-CPU machine, where the database, the exporter and other builds compete for the same cores.",
            self.throughput(),
            self.rules_within(INTERVAL_S),
            self.rules_within(TIMEOUT_S)
        );
    }
}
