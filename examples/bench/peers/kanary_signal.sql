-- The Kanary signal as ONE set-based statement, for exporters without a fail-safe of their own
-- (postgres_exporter, sql_exporter, query-exporter in the benchmark). It returns 72 rows
-- (metric, tested_cluster, type, reason, value) with the Kanary exporter's semantics
-- (/work/shared/reference/kanary-exporter-behaviour.md): kanary_up{tested_cluster,type} is 0 only
-- when the newest 3 runs all have non-zero errors, 1 otherwise (every error included);
-- kanary_error{...,reason} is 1 for the reason that occurred (db_error: fewer than 3 runs, an
-- unreadable newest `.ended` or error count; no_test_results: newest run ended over 3h ago).
-- Rows with reason '' are kanary_up (an empty label is an absent label in Prometheus).
-- The newest-3 selection is rules/kanary.yaml's query (`use_run_group_index: false`, one sequential scan)
-- with the targets inlined (peers take no bind parameters); keep the two in step.
WITH targets AS (
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
-- 1. The run groups, from one sequential scan: each run's start and row id go into its group's arrays.
-- (OFFSET 0 makes the planner expect few groups, so it hashes them instead of sorting every run.)
run_groups AS (
  SELECT r.run_group, array_agg(r.start) AS starts, array_agg(r.id) AS ids
  FROM (
    SELECT ARRAY[d.label_values ->> '.metadata.env.MEMBER_CLUSTER',
            d.label_values ->> '.parameters.options.ComponentRepoUrl',
            d.label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir'] AS run_group, d.start, d.ctid AS id
    FROM data d
    WHERE d.horreum_testid = 372
    OFFSET 0
  ) AS r
  GROUP BY r.run_group
),
-- 2. Each target's groups: [1] is the cluster URL, [2] the repository, [3] the directory.
target_groups AS (
  SELECT t.tested_cluster, t.type, g.*
  FROM targets t
  JOIN run_groups g
    ON g.run_group[1] LIKE t.pattern
   AND CASE t.type
         WHEN 'container-single-arch' THEN
              g.run_group[2] LIKE '%nodejs-devfile-sample%' AND g.run_group[3] = 'nodejs-devfile-sample-SingleArch/'
         WHEN 'container-multi-arch' THEN
              g.run_group[2] LIKE '%nodejs-devfile-sample%' AND g.run_group[3] = 'nodejs-devfile-sample-MultiArch/'
         WHEN 'rpm' THEN g.run_group[2] LIKE '%libecpg%'
         ELSE false
       END
),
-- 3. The newest runs of each of those groups, then of each target.
group_newest AS (
  SELECT tg.tested_cluster, tg.type, x.start, x.id
  FROM target_groups tg
  CROSS JOIN LATERAL (
    SELECT u.start, u.id
    FROM unnest(tg.starts, tg.ids) AS u(start, id)
    ORDER BY u.start DESC
    LIMIT 3
  ) AS x
),
newest AS (
  SELECT g.tested_cluster, g.type, g.start, g.id
  FROM (
    SELECT g.*, row_number() OVER (PARTITION BY g.tested_cluster, g.type ORDER BY g.start DESC) AS n
    FROM group_newest g
  ) AS g
  WHERE g.n <= 3
),
-- 4. Only these runs' end time and error count are read.
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

