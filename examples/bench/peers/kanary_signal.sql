-- The Kanary signal as ONE set-based statement, for exporters without a fail-safe of their own
-- (postgres_exporter, sql_exporter, query-exporter in the benchmark). It returns 72 rows
-- (metric, tested_cluster, type, reason, value) with the Kanary exporter's semantics
-- (/work/shared/reference/kanary-exporter-behaviour.md): kanary_up{tested_cluster,type} is 0 only
-- when the newest 3 runs all have non-zero errors, 1 otherwise (every error included);
-- kanary_error{...,reason} is 1 for the reason that occurred (db_error: fewer than 3 runs, an
-- unreadable newest `.ended` or error count; no_test_results: newest run ended over 3h ago).
-- Rows with reason '' are kanary_up (an empty label is an absent label in Prometheus).
-- The newest-3 selection is rules/kanary.yaml's query with the targets inlined (peers take no bind
-- parameters); keep the two in step.
WITH targets AS MATERIALIZED (
  SELECT t.tested_cluster, t.type, '%' || t.tested_cluster || '%' AS pattern
  FROM (VALUES
    ('stone-stage-p01', 'container-single-arch'),
    ('stone-prod-p01', 'container-single-arch'),
    ('stone-prod-p02', 'container-single-arch'),
    ('kflux-rhel-p01', 'container-single-arch'),
    ('kflux-ocp-p01', 'container-single-arch'),
    ('stone-stg-rh01', 'container-single-arch'),
    ('stone-prd-rh01', 'container-single-arch'),
    ('kflux-prd-rh02', 'container-single-arch'),
    ('kflux-prd-rh03', 'container-single-arch'),
    ('kfluxfedorap01', 'container-single-arch'),
    ('stone-stage-p01', 'container-multi-arch'),
    ('stone-prod-p01', 'container-multi-arch'),
    ('stone-prod-p02', 'container-multi-arch'),
    ('kflux-rhel-p01', 'container-multi-arch'),
    ('kflux-ocp-p01', 'container-multi-arch'),
    ('stone-stg-rh01', 'container-multi-arch'),
    ('stone-prd-rh01', 'container-multi-arch'),
    ('kflux-prd-rh02', 'container-multi-arch'),
    ('kflux-prd-rh03', 'container-multi-arch'),
    ('kfluxfedorap01', 'container-multi-arch'),
    ('stone-prod-p02', 'rpm'),
    ('kflux-rhel-p01', 'rpm'),
    ('stone-prd-rh01', 'rpm'),
    ('kfluxfedorap01', 'rpm')
  ) AS t(tested_cluster, type)
),
-- Pass 1: the test's newest rows by start (with the recommended index, a short index range; without
-- it, one scan that reads no jsonb). Only these rows' jsonb is read.
recent AS MATERIALIZED (
  SELECT d.ctid AS id, d.start
  FROM data d
  WHERE d.horreum_testid = 372
  ORDER BY d.start DESC
  LIMIT 5000
),
recent_runs AS (
  SELECT r.id, r.start, x.member_cluster,
         x.repo LIKE '%nodejs-devfile-sample%' AND x.dir = 'nodejs-devfile-sample-SingleArch/' AS single_arch,
         x.repo LIKE '%nodejs-devfile-sample%' AND x.dir = 'nodejs-devfile-sample-MultiArch/' AS multi_arch,
         x.repo LIKE '%libecpg%' AS rpm
  FROM recent r
  CROSS JOIN LATERAL (
    SELECT d.label_values ->> '.metadata.env.MEMBER_CLUSTER' AS member_cluster,
           d.label_values ->> '.parameters.options.ComponentRepoUrl' AS repo,
           d.label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir' AS dir
    FROM data d
    WHERE d.ctid = r.id
    OFFSET 0
  ) AS x
),
-- The targets are matched against the few distinct (cluster, kind) groups, not against every row.
recent_groups AS (
  SELECT r.member_cluster, r.single_arch, r.multi_arch, r.rpm,
         array_agg(r.start) AS starts, array_agg(r.id) AS ids
  FROM recent_runs r
  WHERE r.member_cluster IS NOT NULL AND (r.single_arch OR r.multi_arch OR r.rpm)
  GROUP BY r.member_cluster, r.single_arch, r.multi_arch, r.rpm
),
recent_newest AS MATERIALIZED (
  SELECT m.tested_cluster, m.type, m.start, m.id
  FROM (
    SELECT t.tested_cluster, t.type, x.start, x.id,
           row_number() OVER (PARTITION BY t.tested_cluster, t.type ORDER BY x.start DESC) AS n
    FROM targets t
    JOIN recent_groups g
      ON g.member_cluster LIKE t.pattern
     AND CASE t.type WHEN 'container-single-arch' THEN g.single_arch
                     WHEN 'container-multi-arch' THEN g.multi_arch
                     WHEN 'rpm' THEN g.rpm
                     ELSE false END
    CROSS JOIN LATERAL (
      SELECT u.start, u.id FROM unnest(g.starts, g.ids) AS u(start, id) ORDER BY u.start DESC LIMIT 3
    ) AS x
  ) AS m
  WHERE m.n <= 3
),
-- Targets without a full window among those rows. (BETWEEN rather than <: the planner then expects
-- few, so the second pass, rarely run, does not raise the plan's estimated cost into JIT compilation,
-- which would cost more than the query.)
incomplete AS MATERIALIZED (
  SELECT t.tested_cluster, t.type, t.pattern
  FROM targets t
  WHERE (SELECT count(*) FROM recent_newest n WHERE n.tested_cluster = t.tested_cluster AND n.type = t.type)
        BETWEEN 0 AND 3 - 1
),
-- Pass 2, for incomplete targets only: each one's newest rows from the whole test, as the Go exporter
-- selects them.
full_newest AS (
  SELECT t.tested_cluster, t.type, x.start, x.id
  FROM incomplete t
  CROSS JOIN LATERAL (
    SELECT d.start, d.ctid AS id
    FROM data d
    WHERE d.horreum_testid = 372
      AND d.label_values ->> '.metadata.env.MEMBER_CLUSTER' LIKE t.pattern
      AND CASE t.type
            WHEN 'container-single-arch' THEN
                 d.label_values ->> '.parameters.options.ComponentRepoUrl' LIKE '%nodejs-devfile-sample%'
             AND d.label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir' = 'nodejs-devfile-sample-SingleArch/'
            WHEN 'container-multi-arch' THEN
                 d.label_values ->> '.parameters.options.ComponentRepoUrl' LIKE '%nodejs-devfile-sample%'
             AND d.label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir' = 'nodejs-devfile-sample-MultiArch/'
            WHEN 'rpm' THEN
                 d.label_values ->> '.parameters.options.ComponentRepoUrl' LIKE '%libecpg%'
            ELSE false
          END
    ORDER BY d.start DESC
    LIMIT 3
  ) AS x
),
newest AS (
  SELECT n.tested_cluster, n.type, n.start, n.id
  FROM recent_newest n
  WHERE NOT EXISTS (SELECT 1 FROM incomplete i WHERE i.tested_cluster = n.tested_cluster AND i.type = n.type)
  UNION ALL
  SELECT f.tested_cluster, f.type, f.start, f.id
  FROM full_newest f
),
window_rows AS (
  SELECT n.tested_cluster, n.type, n.start, v.ended, v.errors
  FROM newest n
  CROSS JOIN LATERAL (
    SELECT d.label_values ->> '.ended' AS ended,
           d.label_values ->> '__results_measurements_KPI_errors' AS errors
    FROM data d
    WHERE d.ctid = n.id
    OFFSET 0
  ) AS v
),
-- The Kanary judgement, per target: the window's size, its newest `.ended` (comma decimal), its
-- error counts.
judged AS (
  SELECT t.tested_cluster, t.type,
         count(w.tested_cluster) AS rows_seen,
         (array_agg(w.ended ORDER BY w.start DESC NULLS FIRST))[1] AS newest_ended,
         bool_and(coalesce(trim(w.errors) ~ '^[+-]?[0-9]{1,18}$', false)) AS counts_ok,
         bool_or(CASE WHEN trim(w.errors) ~ '^[+-]?[0-9]{1,18}$' THEN trim(w.errors)::bigint = 0 END) AS any_zero
  FROM targets t
  LEFT JOIN window_rows w ON w.tested_cluster = t.tested_cluster AND w.type = t.type
  GROUP BY t.tested_cluster, t.type
),
ended AS (
  SELECT j.*, replace(trim(j.newest_ended), ',', '.') AS ended_text
  FROM judged j
),
ended_at AS (
  SELECT e.*,
         CASE
           WHEN e.ended_text !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$' THEN NULL
           WHEN e.ended_text ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN e.ended_text::timestamptz
           ELSE e.ended_text::timestamp AT TIME ZONE 'UTC'
         END AS ended_at
  FROM ended e
),
state AS (
  SELECT a.tested_cluster, a.type,
         CASE
           WHEN a.rows_seen < 3 THEN 'db_error'
           WHEN a.ended_at IS NULL THEN 'db_error'
           WHEN now() - a.ended_at > interval '3 hours' THEN 'no_test_results'
           WHEN NOT a.counts_ok THEN 'db_error'
           WHEN a.any_zero THEN 'up'
           ELSE 'down'
         END AS state
  FROM ended_at a
)
SELECT 'kanary_up' AS metric, s.tested_cluster, s.type, '' AS reason,
       CASE WHEN s.state = 'down' THEN 0 ELSE 1 END AS value
FROM state s
UNION ALL
SELECT 'kanary_error', s.tested_cluster, s.type, r.reason, CASE WHEN s.state = r.reason THEN 1 ELSE 0 END
FROM state s
CROSS JOIN (VALUES ('db_error'), ('no_test_results')) AS r(reason)
ORDER BY 1, 2, 3, 4

