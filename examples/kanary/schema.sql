-- The part of Horreum's schema the Kanary rule reads: one row per test run, its labels in jsonb.
CREATE TABLE IF NOT EXISTS data (
    dataset_id     bigserial PRIMARY KEY,
    horreum_testid integer NOT NULL,
    start          timestamptz,
    stop           timestamptz,
    label_values   jsonb NOT NULL
);

-- Inserts one end-to-end test run of `kind` (container-single-arch, container-multi-arch or rpm) on
-- `cluster`, started `started_ago` before now, with `errors` as the KPI error count. `.ended` defaults to
-- 20 minutes after the start, written with a comma as decimal separator as the test tooling does; pass
-- 'null'::jsonb to leave the key out. A SQL NULL `errors` leaves the error count out.
CREATE OR REPLACE FUNCTION kanary_run(cluster text, kind text, started_ago interval, errors jsonb,
                                      ended jsonb DEFAULT NULL, testid integer DEFAULT 372)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO data (horreum_testid, start, stop, label_values)
  SELECT testid,
         now() - started_ago,
         now() - started_ago + interval '20 minutes',
         jsonb_strip_nulls(jsonb_build_object(
           '.metadata.env.MEMBER_CLUSTER', 'https://api.' || cluster || '.x7k2.p1.openshiftapps.com:6443',
           '.parameters.options.ComponentRepoUrl',
             CASE WHEN kind = 'rpm' THEN 'https://gitlab.com/redhat/rpms/libecpg'
                  ELSE 'https://github.com/devfile-samples/nodejs-devfile-sample' END,
           '__parameters_options_PipelineRepoTemplatingSourceDir',
             CASE kind WHEN 'container-single-arch' THEN 'nodejs-devfile-sample-SingleArch/'
                       WHEN 'container-multi-arch' THEN 'nodejs-devfile-sample-MultiArch/' END,
           '.ended', COALESCE(ended, to_jsonb(to_char((now() - started_ago + interval '20 minutes') AT TIME ZONE 'UTC',
                                                     'YYYY-MM-DD"T"HH24:MI:SS,MS"Z"'))),
           '__results_measurements_KPI_errors', errors))
$$;
