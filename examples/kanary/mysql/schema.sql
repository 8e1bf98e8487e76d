-- The part of Horreum's schema the Kanary rule reads, on MySQL 8 or MariaDB 10.6+: one row per test
-- run, its labels in a JSON column. What differs from ../schema.sql:
--   * `start` and `stop` are DATETIME(6) holding UTC (MySQL's TIMESTAMP ends in 2038, and DATETIME has
--     no zone: the writer stores UTC, and the exporter's sessions run in UTC);
--   * `label_values` is JSON (on MariaDB an alias of LONGTEXT with a JSON_VALID check);
--   * the index on (horreum_testid, start): kanary.yaml here reads the test's newest runs by it in its
--     first pass (rules/kanary.yaml, for PostgreSQL, needs none; ../indexes.sql's optional one is another).
CREATE TABLE IF NOT EXISTS data (
    dataset_id     BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    horreum_testid INT NOT NULL,
    start          DATETIME(6) NULL,
    stop           DATETIME(6) NULL,
    label_values   JSON NOT NULL,
    KEY data_testid_start (horreum_testid, start)
);
