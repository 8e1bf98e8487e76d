-- A least-privilege role for sql-signal-exporter serving the shipped rules files:
--   rules/postgres.yaml  reads statistics views and functions only        -> pg_monitor
--   rules/kanary.yaml    reads public.data (horreum_testid, start, label_values, and the system column ctid,
--                        which its two-pass query uses to find a row again) -> SELECT on those columns
-- and nothing else: no write, no DDL, no other table, no other column.
--
-- Run as a superuser (or a role with CREATEROLE and the grant options) in the database the rules read
-- (Horreum's for kanary.yaml); it is idempotent:
--   psql -d horreum -v ON_ERROR_STOP=1 -v exporter_password="$PASSWORD" -f examples/postgres/role.sql
-- Without -v exporter_password the role gets no password (set one, or use certificate auth).
-- tests/deploy_role.rs applies it to a throwaway server and runs both rules files as this role.
--
-- Why the grants matter: the exporter's sessions start with default_transaction_read_only=on, and the
-- role default below says the same, but any session can undo it (SET default_transaction_read_only =
-- off, or BEGIN READ WRITE). Only the privileges are a boundary: what this role is not granted, a
-- session cannot do, whatever it sets.

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sql_signal_exporter') THEN
    CREATE ROLE sql_signal_exporter LOGIN;
  END IF;
END
$$;
-- INHERIT so the pg_monitor grant works without SET ROLE. The pool holds max_connections per
-- database (default 4; rules/postgres.yaml sets 2): 10 leaves room for a rolling restart.
ALTER ROLE sql_signal_exporter LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 10;
\if :{?exporter_password}
ALTER ROLE sql_signal_exporter PASSWORD :'exporter_password';
\endif
-- Belt and braces only (see above); the exporter sets these per session anyway.
ALTER ROLE sql_signal_exporter SET default_transaction_read_only = on;
ALTER ROLE sql_signal_exporter SET statement_timeout = '60s';

-- rules/postgres.yaml: pg_stat_activity of every session (queries and states), pg_stat_database,
-- pg_locks, pg_stat_bgwriter/checkpointer, the WAL replay functions and current_setting(). pg_monitor reads statistics; it cannot cancel or terminate
-- backends (that is pg_signal_backend) nor read any table.
GRANT pg_monitor TO sql_signal_exporter;

-- rules/kanary.yaml: the columns its query reads from Horreum's table, nothing more.
DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO sql_signal_exporter', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO sql_signal_exporter;
GRANT SELECT (ctid, horreum_testid, start, label_values) ON TABLE public.data TO sql_signal_exporter;

-- Not done here because it changes every role's rights, but worth doing on a dedicated server:
--   REVOKE TEMPORARY ON DATABASE horreum FROM PUBLIC;  -- temporary tables are writable even read-only
--   REVOKE CREATE ON SCHEMA public FROM PUBLIC;        -- the default since PostgreSQL 15
