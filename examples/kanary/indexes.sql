-- The index rules/kanary.yaml can use: the Kanary test's runs ordered by cluster URL, then by
-- (repository, directory), newest first within each of these "run groups".
--
-- Without it the rule reads the test's rows in one sequential scan per cycle (about a second on
-- 1,000,000 rows, whatever the data). With it, and `use_run_group_index: true` in the rule's `vars`,
-- the rule walks the index: one step per cluster URL, one per run group of the clusters the targets
-- name, then the newest 3 runs of each target's groups. Tens of milliseconds at most, however many
-- runs, clusters and other tests the table holds. Set the var only once the index exists: without the
-- index each step of that walk would scan the table.
--
-- The expressions must stay exactly the query's `cluster` and `repo_dir`. `start DESC` is
-- `DESC NULLS FIRST`, the order the query (and the Go exporter) uses.
--
-- It replaces the index earlier versions of this file created; drop that one once this one exists:
--   DROP INDEX CONCURRENTLY IF EXISTS data_kanary_run_groups;
--
-- CONCURRENTLY: building it does not block Horreum's writes (run it outside a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS data_kanary_runs_by_cluster ON data (
    horreum_testid,
    (label_values ->> '.metadata.env.MEMBER_CLUSTER'),
    (ARRAY[label_values ->> '.parameters.options.ComponentRepoUrl',
           label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir']),
    start DESC
);
