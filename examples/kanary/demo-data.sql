-- Demo data for rules/kanary.yaml: every kind of target the Kanary signal can see.
-- Times are relative to now(), so the demo is fresh whenever it is loaded.

-- Healthy: the newest runs include an error-free one.
SELECT kanary_run(c, k, make_interval(mins => 30 + 60 * i), to_jsonb(CASE WHEN i = 1 THEN 0 ELSE 2 END))
FROM unnest(ARRAY['stone-stage-p01', 'stone-prod-p01', 'kflux-ocp-p01', 'stone-stg-rh01',
                  'kflux-prd-rh02', 'kflux-prd-rh03']) AS c,
     unnest(ARRAY['container-single-arch', 'container-multi-arch']) AS k,
     generate_series(0, 4) AS i;
SELECT kanary_run(c, 'rpm', make_interval(mins => 25 + 60 * i), to_jsonb(0))
FROM unnest(ARRAY['stone-prd-rh01', 'kfluxfedorap01']) AS c, generate_series(0, 3) AS i;

-- Down: the last three runs all had errors (an older success does not count).
SELECT kanary_run('stone-prod-p02', 'container-single-arch', make_interval(mins => 15 + 60 * i),
                  to_jsonb(CASE WHEN i < 3 THEN 4 + i ELSE 0 END))
FROM generate_series(0, 5) AS i;

-- Stale: the newest run ended more than 3 hours ago -> no_test_results.
SELECT kanary_run('stone-prod-p02', 'container-multi-arch', make_interval(hours => 5 + i), to_jsonb(0))
FROM generate_series(0, 3) AS i;

-- Too few rows: only two runs -> db_error.
SELECT kanary_run('stone-prod-p02', 'rpm', make_interval(mins => 40 + 60 * i), to_jsonb(0))
FROM generate_series(0, 1) AS i;

-- A bad value in the window ('n/a' is not an integer) -> db_error for this target only.
SELECT kanary_run('kflux-rhel-p01', 'container-single-arch', make_interval(mins => 20 + 60 * i),
                  CASE WHEN i = 1 THEN to_jsonb('n/a'::text) ELSE to_jsonb(0) END)
FROM generate_series(0, 3) AS i;

-- A bad value older than the window is ignored (the Go exporter reported db_error here).
SELECT kanary_run('kflux-rhel-p01', 'container-multi-arch', make_interval(mins => 20 + 60 * i),
                  CASE WHEN i = 4 THEN to_jsonb('garbage'::text) ELSE to_jsonb(i) END)
FROM generate_series(0, 4) AS i;

-- Error counts as JSON text, as some pipelines write them.
SELECT kanary_run('kflux-rhel-p01', 'rpm', make_interval(mins => 10 + 60 * i), to_jsonb((i % 2)::text))
FROM generate_series(0, 2) AS i;

-- Fedora: multi-arch is up, single-arch has no runs at all -> db_error.
SELECT kanary_run('kfluxfedorap01', 'container-multi-arch', make_interval(mins => 35 + 60 * i), to_jsonb(0))
FROM generate_series(0, 2) AS i;

-- Noise the rule must ignore: another Horreum test, and an unrelated repository.
SELECT kanary_run('stone-prod-p02', 'rpm', make_interval(mins => 5 + i), to_jsonb(0), NULL, 999)
FROM generate_series(0, 5) AS i;
INSERT INTO data (horreum_testid, start, label_values)
SELECT 372, now() - make_interval(mins => i), jsonb_build_object(
  '.metadata.env.MEMBER_CLUSTER', 'stone-prod-p02', '.parameters.options.ComponentRepoUrl', 'https://example.com/other',
  '.ended', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '__results_measurements_KPI_errors', 0)
FROM generate_series(0, 5) AS i;
