-- The index rules/kanary.yaml can use: the Kanary test's runs ordered by run group (cluster URL,
-- repository, directory), newest first within each group.
--
-- Without it the rule reads the test's rows in one sequential scan per cycle (about a second on
-- 1,000,000 rows, whatever the data). With it, and `use_run_group_index: true` in the rule's `vars`,
-- the rule walks the index one group at a time and reads the newest 3 runs of each target's groups:
-- a few milliseconds, however many runs, clusters and other tests the table holds. Set the var only
-- once the index exists: without the index each step of that walk would scan the table.
--
-- The expression must stay exactly the query's `run_group`. `start DESC` is `DESC NULLS FIRST`, the
-- order the query (and the Go exporter) uses.
--
-- CONCURRENTLY: building it does not block Horreum's writes (run it outside a transaction).
CREATE INDEX CONCURRENTLY IF NOT EXISTS data_kanary_run_groups ON data (
    horreum_testid,
    (ARRAY[label_values ->> '.metadata.env.MEMBER_CLUSTER',
           label_values ->> '.parameters.options.ComponentRepoUrl',
           label_values ->> '__parameters_options_PipelineRepoTemplatingSourceDir']),
    start DESC
);
