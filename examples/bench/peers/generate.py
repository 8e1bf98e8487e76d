"""Writes the peers' configurations (postgres_exporter.yaml, sql_exporter.yaml, query_exporter.yaml)
next to this file from kanary_signal.sql and the SQL of rules/postgres.yaml's families below, so the
three peers run the same statements. Run it after changing either: python3 examples/bench/peers/generate.py
"""
import json, os
root = os.path.dirname(os.path.abspath(__file__)) + '/'
kanary=open(root+'kanary_signal.sql').read()
kanary_sql='\n'.join(l for l in kanary.split('\n') if not l.startswith('--')).strip()
# (name, help, labels, value column, sql) -- rules/postgres.yaml's families, unpivoted in SQL where it
# uses value_label, so every peer can carry them.
PG=[
 ('postgresql_up','1 when the server answers.',[],'up',"SELECT 1 AS up"),
 ('postgresql_uptime','Gauge metric with uptime in days of the Instance.',[],'uptime',
  "SELECT floor(extract(epoch FROM now() - pg_postmaster_start_time()) / 86400) AS uptime"),
 ('postgresql_start_time_seconds','Unix time the server started at.',[],'start_time',
  "SELECT extract(epoch FROM pg_postmaster_start_time()) AS start_time"),
 ('postgresql_in_recovery','1 on a standby (in recovery), 0 on a primary.',[],'in_recovery',
  "SELECT pg_is_in_recovery()::int AS in_recovery"),
 ('postgresql_version_info',"The server's version, as labels; always 1.",['version','server_version_num'],'info',
  "SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS server_version_num, 1 AS info"),
 ('postgresql_connections','Client connections open now (every database).',[],'connections',
  "SELECT count(*) AS connections FROM pg_stat_activity WHERE backend_type = 'client backend'"),
 ('postgresql_max_connections','max_connections.',[],'max_connections',
  "SELECT current_setting('max_connections')::int AS max_connections"),
 ('postgresql_superuser_reserved_connections','superuser_reserved_connections.',[],'superuser_reserved_connections',
  "SELECT current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections"),
 ('postgresql_lock','Locks held or awaited, by database and lock mode (every mode, 0 when none).',['database','mode'],'locks',
  """SELECT d.datname AS database, lower(m.mode) AS mode, count(l.locktype) AS locks
FROM pg_database d
CROSS JOIN (VALUES ('AccessShareLock'), ('RowShareLock'), ('RowExclusiveLock'),
                   ('ShareUpdateExclusiveLock'), ('ShareLock'), ('ShareRowExclusiveLock'),
                   ('ExclusiveLock'), ('AccessExclusiveLock')) AS m(mode)
LEFT JOIN pg_locks l ON l.database = d.oid AND l.mode = m.mode
GROUP BY d.datname, m.mode"""),
 ('postgresql_stat_activity','Backends by database and state (every state, 0 when none).',['database','state'],'backends',
  """SELECT d.datname AS database, s.state, count(a.pid) AS backends
FROM pg_database d
CROSS JOIN (VALUES ('active'), ('idle'), ('idle in transaction'),
                   ('idle in transaction (aborted)'), ('fastpath function call'),
                   ('disabled')) AS s(state)
LEFT JOIN pg_stat_activity a ON a.datid = d.oid AND a.state = s.state
GROUP BY d.datname, s.state"""),
 ('postgresql_longest_transaction_seconds','Age of the oldest open transaction in the database (0 when none).',['database'],'seconds',
  """SELECT d.datname AS database,
       coalesce(max(extract(epoch FROM now() - a.xact_start)), 0) AS seconds
FROM pg_database d
LEFT JOIN pg_stat_activity a
  ON a.datid = d.oid AND a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()
GROUP BY d.datname"""),
 ('postgresql_stat_database','Database-wide statistics',['database','type'],'value',
  """SELECT s.datname AS database, v.type, v.value
FROM pg_stat_database s
CROSS JOIN LATERAL (VALUES
  ('numbackends', s.numbackends::float8), ('xact_commit', s.xact_commit), ('blks_read', s.blks_read),
  ('blks_hit', s.blks_hit), ('tup_returned', s.tup_returned), ('tup_fetched', s.tup_fetched),
  ('tup_inserted', s.tup_inserted), ('tup_updated', s.tup_updated), ('tup_deleted', s.tup_deleted),
  ('conflicts', s.conflicts), ('temp_files', s.temp_files), ('temp_bytes', s.temp_bytes),
  ('deadlocks', s.deadlocks), ('blk_read_time', s.blk_read_time), ('blk_write_time', s.blk_write_time),
  ('last_stats_reset_min', floor(extract(epoch FROM now() - s.stats_reset) / 60))
) AS v(type, value)
WHERE s.datname IS NOT NULL AND v.value IS NOT NULL"""),
 ('postgresql_database_size_bytes','Disk space used by the database.',['database'],'bytes',
  "SELECT datname AS database, pg_database_size(oid) AS bytes FROM pg_database WHERE datallowconn"),
 ('postgresql_transactions_total','Transactions committed and rolled back in the database, by result.',['database','result'],'value',
  """SELECT s.datname AS database, v.result, v.value
FROM pg_stat_database s
CROSS JOIN LATERAL (VALUES ('commit', s.xact_commit), ('rollback', s.xact_rollback)) AS v(result, value)
WHERE s.datname IS NOT NULL"""),
 ('postgresql_deadlocks_total','Deadlocks detected in the database.',['database'],'deadlocks',
  "SELECT datname AS database, deadlocks FROM pg_stat_database WHERE datname IS NOT NULL"),
 ('postgresql_stat_database_conflicts','Database-wide statistics about query cancels occurring due to conflicts with recovery on standby servers.',['database','type'],'value',
  """SELECT s.datname AS database, v.type, v.value
FROM pg_stat_database_conflicts s
CROSS JOIN LATERAL (VALUES ('confl_tablespace', s.confl_tablespace), ('confl_lock', s.confl_lock),
  ('confl_snapshot', s.confl_snapshot), ('confl_bufferpin', s.confl_bufferpin), ('confl_deadlock', s.confl_deadlock)
) AS v(type, value)
WHERE s.datname IS NOT NULL"""),
 # PostgreSQL 16 and older (pg_stat_checkpointer on 17+; the peers cannot pick SQL by version).
 ('postgresql_stat_bgwriter','Statistics about the background writer processes activity',['type'],'value',
  """SELECT v.type, v.value
FROM pg_stat_bgwriter b
CROSS JOIN LATERAL (VALUES
  ('checkpoints_timed', b.checkpoints_timed::float8), ('checkpoints_req', b.checkpoints_req),
  ('checkpoint_write_time', b.checkpoint_write_time), ('checkpoint_sync_time', b.checkpoint_sync_time),
  ('buffers_checkpoint', b.buffers_checkpoint), ('buffers_clean', b.buffers_clean),
  ('maxwritten_clean', b.maxwritten_clean), ('buffers_backend', b.buffers_backend),
  ('buffers_backend_fsync', b.buffers_backend_fsync), ('buffers_alloc', b.buffers_alloc),
  ('last_stats_reset_min', floor(extract(epoch FROM now() - b.stats_reset) / 60))
) AS v(type, value)
WHERE v.value IS NOT NULL"""),
]
KHELP='The Kanary signal (examples/bench/peers/kanary_signal.sql): metric is kanary_up or kanary_error.'
KLABELS=['metric','tested_cluster','type','reason']
def ind(s,n): return '\n'.join((' '*n+l) if l else '' for l in s.split('\n'))
hdr='# Generated by examples/bench/peers/generate.py (kanary_signal.sql and rules/postgres.yaml\'s SQL); do not edit.\n'
# ---- postgres_exporter: --extend.query-path; a family is <key>_<column>
out=[hdr+'# prometheus-postgres-exporter --disable-default-metrics --disable-settings-metrics --extend.query-path=THIS\n'
     '# Series are named <key>_<value column>: kanary_value{metric=...}, postgresql_lock_locks{...}.\n']
def pe(key,help_,labels,value,sql):
    m=''.join(f'    - {l}:\n        usage: "LABEL"\n        description: "{l}"\n' for l in labels)
    usage='COUNTER' if key.endswith('_total') else 'GAUGE'
    m+=f'    - {value}:\n        usage: "{usage}"\n        description: {json.dumps(help_)}\n'
    return f'{key}:\n  query: |\n{ind(sql,4)}\n  master: true\n  metrics:\n{m}'
out.append(pe('kanary',KHELP,KLABELS,'value',kanary_sql))
# Label-less families share one query under the key `postgresql`, so they keep their names
# (postgresql_up, ...); a family with labels becomes <family>_<value column>.
scalars=[(n,h,v,s) for (n,h,l,v,s) in PG if not l]
sql='SELECT ' + ',\n       '.join(f'({s}) AS {n[len("postgresql_"):]}' for (n,h,v,s) in scalars)
m=''.join(f'    - {n[len("postgresql_"):]}:\n        usage: "GAUGE"\n        description: {json.dumps(h)}\n' for (n,h,v,s) in scalars)
out.append(f'postgresql:\n  query: |\n{ind(sql,4)}\n  master: true\n  metrics:\n{m}')
for (n,h,l,v,s) in PG:
    if l: out.append(pe(n,h,l,v,s))
open(root+'postgres_exporter.yaml','w').write('\n'.join(out))
# ---- sql_exporter (credativ/justwatchcom): sql_<name>{col=<value column>, driver, host, database, user, sql_job}
out=[hdr+'# prometheus-sql-exporter -config.file=THIS (after ${DSN} is replaced). Series: sql_<name>{col="<value column>",...}.\n'
     'jobs:\n  - name: kanary\n    interval: 1m\n    connections:\n      - "${DSN}"\n    queries:\n']
def sq(name,help_,labels,value,sql):
    # Its own `database` label is taken: the PostgreSQL database goes in `datname`.
    if 'database' in labels:
        sql=f'SELECT {", ".join(x if x!="database" else "database AS datname" for x in labels)}, {value}\nFROM (\n{sql}\n) AS q'
        labels=[x if x!='database' else 'datname' for x in labels]
    return (f'      - name: {name}\n        help: {json.dumps(help_)}\n        labels: {json.dumps(labels)}\n'
            f'        values: ["{value}"]\n        query: |\n{ind(sql,10)}\n')
out.append(sq('kanary',KHELP,KLABELS,'value',kanary_sql))
out.append('  - name: postgresql\n    interval: 1m\n    connections:\n      - "${DSN}"\n    queries:\n')
for (n,h,l,v,s) in PG: out.append(sq(n,h,l,v,s))
open(root+'sql_exporter.yaml','w').write(''.join(out))
# ---- query-exporter: exact family names; every series also gets database="horreum"
out=[hdr+'# query-exporter --config THIS (after ${DSN} is replaced). Every series also carries database="horreum" (its database label).\n'
     'databases:\n  horreum:\n    dsn: "${DSN}"\nmetrics:\n']
out.append(f'  kanary:\n    type: gauge\n    description: {json.dumps(KHELP)}\n    labels: {json.dumps(KLABELS)}\n')
for (n,h,l,v,s) in PG:
    lab=[x if x!='database' else 'datname' for x in l]
    out.append(f'  {n}:\n    type: gauge\n    description: {json.dumps(h)}\n' + (f'    labels: {json.dumps(lab)}\n' if lab else ''))
out.append('queries:\n')
out.append('  kanary:\n    interval: 60\n    databases: [horreum]\n    metrics: [kanary]\n    sql: |\n'
           + ind(f'SELECT metric, tested_cluster, type, reason, value AS kanary\nFROM (\n{kanary_sql}\n) AS signal',6)+'\n')
for (n,h,l,v,s) in PG:
    # query-exporter names the value column after the metric; its own `database` label is taken, so
    # the PostgreSQL database goes in `datname`.
    sql=f'SELECT {", ".join(x if x!="database" else "database AS datname" for x in l)}{", " if l else ""}{v} AS {n}\nFROM (\n{s}\n) AS q'
    out.append(f'  {n}:\n    interval: 60\n    databases: [horreum]\n    metrics: [{n}]\n    sql: |\n{ind(sql,6)}\n')
open(root+'query_exporter.yaml','w').write(''.join(out))
