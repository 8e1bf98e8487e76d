//! The data sets and rules files the benchmark runs on.

/// 1,000 targets × `runs` runs each, kanary-shaped (a start, an end, an error count), with the index
/// an index-friendly signal query needs. Every 10th target is down (errors in all of its newest 3
/// runs); the others are up.
pub fn bench_runs_sql(runs: usize) -> String {
    format!(
        r#"
DROP TABLE IF EXISTS bench_runs;
CREATE TABLE bench_runs (
    target text        NOT NULL,
    start  timestamptz NOT NULL,
    ended  timestamptz,
    errors integer
);
INSERT INTO bench_runs (target, start, ended, errors)
SELECT 't' || lpad(t::text, 4, '0'),
       now() - make_interval(mins => 10 * k + t % 7),
       now() - make_interval(mins => 10 * k + t % 7) + interval '5 minutes',
       CASE WHEN t % 10 = 0 THEN 1 + k % 2 ELSE k % 3 END
FROM generate_series(1, 1000) AS t, generate_series(0, {last}) AS k;
CREATE INDEX bench_runs_target_start ON bench_runs (target, start DESC);
CREATE TABLE IF NOT EXISTS bench_ctl (hang_seconds float8 NOT NULL);
TRUNCATE bench_ctl;
INSERT INTO bench_ctl VALUES (0);
"#,
        last = runs.saturating_sub(1)
    )
}

/// The clusters of `rules/kanary.yaml`'s targets, as a SQL array.
const TARGET_CLUSTERS: &str =
    "ARRAY['stone-stage-p01', 'stone-prod-p01', 'stone-prod-p02', 'kflux-rhel-p01', 'kflux-ocp-p01', \
     'stone-stg-rh01', 'stone-prd-rh01', 'kflux-prd-rh02', 'kflux-prd-rh03', 'kfluxfedorap01']";
/// The three types of run, as a SQL array.
const KINDS: &str = "ARRAY['container-single-arch', 'container-multi-arch', 'rpm']";
/// Clusters of the shapes with many clusters; 10 of them are the targets' (one in every 97).
const MANY_CLUSTERS: usize = 1000;

/// The Kanary tables the benchmark measures `rules/kanary.yaml` on: the one it chose, and three it did
/// not, each in the same number of rows. Row `i` starts `3 i` seconds ago, so row 1 is the newest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KanaryShape {
    /// The 24 targets' runs in turn; 5 % another Horreum test, 5 % another repository.
    Dense,
    /// 1,000 clusters in turn, 10 of them the targets': each target has one run in 3,000.
    Spread,
    /// As `Spread`, but 7 targets have only 2 runs (the oldest rows of the table) and 7 have none.
    Sparse,
    /// The newest half all another test's (every other row) or another repository's; the 24
    /// targets' runs in turn in the older half.
    Buried,
}

impl KanaryShape {
    /// Dense last: the sections after the Kanary one run on it.
    pub const ALL: [KanaryShape; 4] =
        [KanaryShape::Spread, KanaryShape::Sparse, KanaryShape::Buried, KanaryShape::Dense];

    pub fn name(self) -> &'static str {
        match self {
            KanaryShape::Dense => "dense",
            KanaryShape::Spread => "spread",
            KanaryShape::Sparse => "sparse",
            KanaryShape::Buried => "buried",
        }
    }

    /// What the table holds, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            KanaryShape::Dense => "the 24 targets' runs in turn, 5 % another test, 5 % another repository (the table the bench used to measure alone)",
            KanaryShape::Spread => "1,000 clusters in turn, 10 of them the targets': a target's runs are 1 in 3,000 rows",
            KanaryShape::Sparse => "as spread, but 7 targets have 2 runs (the table's oldest rows) and 7 have none",
            KanaryShape::Buried => "the newest half another test's or another repository's runs, the 24 targets' runs in the older half",
        }
    }

    /// (cluster, kind, Horreum test id, another repository) of row `i` of `rows`.
    fn columns(self, rows: usize) -> String {
        let c = MANY_CLUSTERS;
        let target_cluster = |j: &str| format!("({TARGET_CLUSTERS})[1 + {j}]");
        let filler = format!("'cluster-' || lpad((i % {c})::text, 4, '0')");
        let many_kind = format!("({KINDS})[1 + (i / {c}) % 3]");
        let is_target = format!("i % {c} % 97 = 0 AND i % {c} / 97 < 10");
        match self {
            KanaryShape::Dense => format!(
                "{}, ({KINDS})[1 + (i / 10) % 3], CASE WHEN i % 20 = 7 THEN 999 ELSE 372 END, i % 20 = 13",
                target_cluster("i % 10")
            ),
            KanaryShape::Spread => format!(
                "CASE WHEN {is_target} THEN {} ELSE {filler} END, {many_kind}, 372, false",
                target_cluster(&format!("i % {c} / 97"))
            ),
            // Clusters 4–6 keep only their last 6 runs (2 of each type); clusters 7–9 have none.
            KanaryShape::Sparse => format!(
                "CASE WHEN {is_target} AND (i % {c} / 97 < 4 OR (i % {c} / 97 < 7 AND i > {rows} - 6 * {c})) \
                 THEN {} ELSE {filler} END, {many_kind}, 372, false",
                target_cluster(&format!("i % {c} / 97"))
            ),
            KanaryShape::Buried => format!(
                "{}, ({KINDS})[1 + (i / 10) % 3], CASE WHEN i <= {rows} / 2 AND i % 2 = 1 THEN 999 ELSE 372 END, \
                 i <= {rows} / 2 AND i % 2 = 0",
                target_cluster("i % 10")
            ),
        }
    }

    /// Replaces the Kanary `data` table's rows (`examples/kanary/schema.sql` must be loaded first) with
    /// `rows` rows of this shape, written as `kanary_run` writes them.
    pub fn data_sql(self, rows: usize) -> String {
        format!(
            r#"
TRUNCATE data;
INSERT INTO data (horreum_testid, start, stop, label_values)
SELECT r.testid,
       now() - make_interval(secs => i * 3),
       now() - make_interval(secs => i * 3) + interval '20 minutes',
       jsonb_build_object(
         '.metadata.env.MEMBER_CLUSTER', 'https://api.' || r.cluster || '.x7k2.p1.openshiftapps.com:6443',
         '.parameters.options.ComponentRepoUrl',
           CASE WHEN r.other_repo THEN 'https://example.com/other'
                WHEN r.kind = 'rpm' THEN 'https://gitlab.com/redhat/rpms/libecpg'
                ELSE 'https://github.com/devfile-samples/nodejs-devfile-sample' END,
         '__parameters_options_PipelineRepoTemplatingSourceDir',
           CASE r.kind WHEN 'container-single-arch' THEN 'nodejs-devfile-sample-SingleArch/'
                       WHEN 'container-multi-arch' THEN 'nodejs-devfile-sample-MultiArch/'
                       ELSE '' END,
         '.ended', to_char((now() - make_interval(secs => i * 3) + interval '20 minutes') AT TIME ZONE 'UTC',
                           'YYYY-MM-DD"T"HH24:MI:SS,MS"Z"'),
         '__results_measurements_KPI_errors', i % 3)
FROM generate_series(1, {rows}) AS i
CROSS JOIN LATERAL (SELECT {columns}) AS r(cluster, kind, testid, other_repo);
"#,
            columns = self.columns(rows)
        )
    }
}

const HEADER: &str = r#"# Generated by `cargo run --release --example bench`.
version: 1
databases:
  bench:
    dsn: "${BENCH_DSN}"
signals:
"#;

const REASONS: &str = "    reasons: { query_failed: db_error, too_few_rows: db_error, bad_timestamp: db_error, bad_value: db_error, stale: no_test_results }\n";

/// A signal whose `targets` are discovered from rows: `targets` clusters, 3 series each (up and two
/// error reasons), kanary-sized label values. Evaluated once per `interval`.
pub fn serve_rule(name: &str, targets: usize, interval: &str) -> String {
    format!(
        r#"  - name: {name}
    database: bench
    interval: {interval}
    labels: [tested_cluster, type]
    window: 1
    freshness: {{ column: ended, max_age: 3h }}
    values: {{ errors: integer }}
    success: "errors == 0"
    metrics:
      up: {{ name: {name}_up, help: "Signal: 1 if at least one of the last results had no errors, 0 otherwise; 1 whenever the exporter cannot tell." }}
      error: {{ name: {name}_error, help: "1 for the reason the signal could not be judged, 0 for the others." }}
{REASONS}    vars: {{ targets: {targets} }}
    query: |
      SELECT 'cluster-' || lpad(i::text, 6, '0') AS tested_cluster,
             'container-single-arch'::text AS type,
             now() AS ended,
             i % 4 AS errors
      FROM generate_series(1, {{{{ vars.targets }}}}) AS i
"#
    )
}

/// A rule whose query sleeps `bench_ctl.hang_seconds` (0 normally): its timeout (9s) cancels it.
pub fn hang_rule() -> String {
    format!(
        r#"  - name: hang
    database: bench
    interval: 10s
    timeout: 9s
    labels: [target]
    window: 1
    success: "true"
    metrics:
      up: {{ name: hang_up, help: "A rule whose query can be made to hang." }}
      error: {{ name: hang_error, help: "A rule whose query can be made to hang." }}
{REASONS}    query: |
      SELECT 'hang'::text AS target, pg_sleep(hang_seconds)::text AS slept FROM bench_ctl
"#
    )
}

/// The kanary-style signal over the 1,000 declared targets of `bench_runs`. `full`: the query returns
/// all 1,000,000 rows and the exporter picks each target's newest `window` (`order_by`); otherwise an
/// index-friendly LATERAL … LIMIT returns the 3,000 rows the window needs.
pub fn kanary_style_rule(name: &str, full: bool, interval: &str, timeout: &str) -> String {
    let targets: Vec<String> = (1..=1000).map(|t| format!("t{t:04}")).collect();
    let (query, extra) = if full {
        (
            "SELECT target, start, ended, errors FROM bench_runs WHERE target = ANY($1::text[])\n",
            "    order_by: start\n    max_rows: 2000000\n",
        )
    } else {
        (
            "SELECT t.target, d.start, d.ended, d.errors\n      FROM unnest($1::text[]) AS t(target)\n      JOIN LATERAL (\n        SELECT r.start, r.ended, r.errors FROM bench_runs r\n        WHERE r.target = t.target ORDER BY r.start DESC LIMIT {{ window }}\n      ) AS d ON true\n",
            "",
        )
    };
    format!(
        r#"  - name: {name}
    database: bench
    interval: {interval}
    timeout: {timeout}
    labels: [target]
    targets:
      - target: [{targets}]
    window: 3
{extra}    freshness: {{ column: ended, max_age: 3h }}
    values: {{ errors: integer }}
    success: "errors == 0"
    metrics:
      up: {{ name: {name}_up, help: "Kanary-style signal over bench_runs." }}
      error: {{ name: {name}_error, help: "Kanary-style signal over bench_runs: why it could not be judged." }}
{REASONS}    query: |
      {query}"#,
        targets = targets.join(", ")
    )
}

/// A rules file of the given rules.
pub fn rules_file(rules: &[String]) -> String {
    let mut out = HEADER.to_string();
    for r in rules {
        out.push_str(r);
    }
    out
}
