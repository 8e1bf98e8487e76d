//! Section 11: MySQL rules (issue 19). `examples/kanary/mysql/kanary.yaml` on a throwaway MariaDB
//! holding Kanary-shaped rows: the exporter's whole evaluation (render, bind the targets as JSON,
//! stream and decode the rows, judge 24 targets) against the same statement run bare by the driver
//! with the same parameter and its rows drained (the floor: the server's work and the transfer),
//! and the statements the server counted per evaluation (`Com_stmt_execute`, `Com_stmt_prepare`).
//! Only MariaDB (Debian's) is measured.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use mysql_async::prelude::Queryable;
use sql_signal_exporter::rules::{self, LoadOptions};
use sql_signal_exporter::run::evaluate::evaluate;
use sql_signal_exporter::source::{as_source, Sources};
use tempdb::TempMariaDb;

use crate::step;

/// What section 9 measured.
pub struct MySqlBench {
    pub rows: usize,
    pub evaluations: usize,
    /// Median wall time of one whole evaluation, and of the bare statement.
    pub evaluation: Duration,
    pub bare: Duration,
    pub executes_per_evaluation: f64,
    pub prepares: f64,
    pub version: String,
}

impl MySqlBench {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "\n## 11. MySQL rules (MariaDB {})\n", self.version);
        let _ = writeln!(
            o,
            "`examples/kanary/mysql/kanary.yaml` (24 targets) over {} Kanary-shaped rows (test 372, ten clusters, three kinds), {} evaluations each:\n",
            self.rows, self.evaluations
        );
        let _ = writeln!(o, "| what | median |");
        let _ = writeln!(o, "|---|---|");
        let _ = writeln!(
            o,
            "| the exporter's evaluation (render, bind, stream, decode, judge) | {:.1} ms |",
            ms(self.evaluation)
        );
        let _ = writeln!(o, "| the same statement run bare by the driver, rows drained | {:.1} ms |", ms(self.bare));
        let _ = writeln!(
            o,
            "| overhead of the evaluation over the bare statement | {:.2}× |",
            ms(self.evaluation) / ms(self.bare).max(0.001)
        );
        let _ = writeln!(
            o,
            "| statements executed per evaluation (`Com_stmt_execute`) | {:.2} |",
            self.executes_per_evaluation
        );
        let _ =
            writeln!(o, "| statements prepared in all (`Com_stmt_prepare`, once per session) | {:.0} |", self.prepares);
        o
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Kanary-shaped rows through MariaDB's sequence engine: ten clusters, three kinds, a run a minute.
fn load_rows(db: &TempMariaDb, rows: usize) -> Result<()> {
    let schema = std::fs::read_to_string("examples/kanary/mysql/schema.sql").context("the MySQL Kanary schema")?;
    db.mariadb(db.demo_database(), &schema)?;
    let sql = format!(
        "INSERT INTO data (horreum_testid, start, stop, label_values)
         SELECT 372, UTC_TIMESTAMP(6) - INTERVAL seq MINUTE, UTC_TIMESTAMP(6) - INTERVAL seq MINUTE + INTERVAL 20 MINUTE,
           JSON_OBJECT('.metadata.env.MEMBER_CLUSTER',
                         CONCAT('https://api.', ELT(1 + seq % 10, 'stone-stage-p01', 'stone-prod-p01', 'stone-prod-p02',
                                'kflux-rhel-p01', 'kflux-ocp-p01', 'stone-stg-rh01', 'stone-prd-rh01', 'kflux-prd-rh02',
                                'kflux-prd-rh03', 'kfluxfedorap01'), '.x7k2.p1.openshiftapps.com:6443'),
                       '.parameters.options.ComponentRepoUrl',
                         IF(seq % 3 = 2, 'https://gitlab.com/redhat/rpms/libecpg', 'https://github.com/devfile-samples/nodejs-devfile-sample'),
                       '__parameters_options_PipelineRepoTemplatingSourceDir',
                         ELT(1 + seq % 3, 'nodejs-devfile-sample-SingleArch/', 'nodejs-devfile-sample-MultiArch/', NULL),
                       '.ended', DATE_FORMAT(UTC_TIMESTAMP(3) - INTERVAL seq MINUTE + INTERVAL 20 MINUTE, '%Y-%m-%dT%H:%i:%s,%fZ'),
                       '__results_measurements_KPI_errors', seq % 4)
         FROM seq_1_to_{rows}"
    );
    db.mariadb(db.demo_database(), &sql)?;
    db.mariadb(db.demo_database(), "ANALYZE TABLE data")?;
    Ok(())
}

fn global_status(db: &TempMariaDb, name: &str) -> Result<f64> {
    let out = db.mariadb("mysql", &format!("SHOW GLOBAL STATUS LIKE '{name}'"))?;
    out.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("{name}: {out:?}"))
}

pub fn bench(short: bool) -> Result<MySqlBench> {
    let rows = if short { 10_000 } else { 200_000 };
    let evaluations = if short { 3 } else { 11 };
    step(&format!("MySQL rules: a MariaDB with {rows} Kanary rows …"));
    let db = TempMariaDb::start()?;
    load_rows(&db, rows)?;
    let version = db.mariadb("mysql", "SELECT VERSION()")?.trim().to_string();
    let dsn = db.dsn(db.demo_database());
    let env = dsn.clone();
    let opts = LoadOptions {
        env: Arc::new(move |name| (name == "CONNECTION_STRING").then(|| env.clone())),
        unset_env_is_error: true,
    };
    let loaded = rules::load_files(&[PathBuf::from("examples/kanary/mysql/kanary.yaml")], &opts)
        .map_err(|d| anyhow!("the MySQL Kanary rules do not load: {d}"))?;
    let set = loaded.rules;
    let rule = set.rules.first().ok_or_else(|| anyhow!("no rule"))?.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut sources = Sources::build(&set, Sources::default());
        let slot = sources.slot("horreum");
        // One evaluation first, so the session exists on both sides before anything is timed.
        let first = evaluate(&rule, &[as_source(&slot)]).await;
        let sql = first.sql.clone().ok_or_else(|| anyhow!("the evaluation rendered no SQL: {:?}", first.status))?;
        let executes_before = global_status(&db, "Com_stmt_execute")?;
        let mut timed = Vec::new();
        for _ in 0..evaluations {
            let started = Instant::now();
            let outcome = evaluate(&rule, &[as_source(&slot)]).await;
            timed.push(started.elapsed());
            anyhow::ensure!(outcome.rows > 0, "the evaluation read no rows: {:?}", outcome.status);
        }
        let executes = global_status(&db, "Com_stmt_execute")? - executes_before;
        sources.close();

        let bindings = rule.bindings();
        let targets: Vec<serde_json::Value> = bindings
            .targets
            .iter()
            .map(|t| bindings.labels.iter().cloned().zip(t.iter().cloned().map(serde_json::Value::String)).collect())
            .collect();
        let param = serde_json::Value::Array(targets).to_string();
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&dsn)?).await?;
        let stmt = conn.prep(sql.as_str()).await?;
        let mut bare = Vec::new();
        for _ in 0..=evaluations {
            let started = Instant::now();
            let rows: Vec<mysql_async::Row> = conn.exec(&stmt, (param.clone(),)).await?;
            bare.push(started.elapsed());
            anyhow::ensure!(!rows.is_empty(), "the bare statement read no rows");
        }
        bare.remove(0);
        let _ = conn.disconnect().await;
        Ok(MySqlBench {
            rows,
            evaluations,
            evaluation: median(timed),
            bare: median(bare),
            executes_per_evaluation: executes / evaluations as f64,
            prepares: global_status(&db, "Com_stmt_prepare")? - 1.0,
            version,
        })
    })
}
