#!/usr/bin/env python3
"""Peak RSS of the exporter: start BINARY with RULES, scrape plain and gzip until it has evaluated N
times, print RSS, peak RSS (VmHWM) and /proc/PID/smaps_rollup's PSS and private memory.

    MEM_DSN=postgresql://... python3 examples/bench/memory/peak_rss.py target/release/sql-signal-exporter \
        examples/bench/memory/series-100k.yaml 10

series-100k.yaml: 100k series (33,333 targets); rows-1m.yaml: a signal whose query returns 1M rows;
idle.yaml: 99 series, evaluated once a minute. The queries use generate_series only, so any database
serves. Compare against idle.yaml's figures for "above idle".
"""
import os, re, socket, subprocess, sys, time, urllib.request

binary, rules, evals = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = dict(os.environ)
port = 0
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
p = subprocess.Popen([binary, "--rules", rules, "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"], env=env)
base = f"http://127.0.0.1:{port}"
def status(k):
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith(k + ":"):
            return int(line.split()[1])
def smaps():
    out = {}
    for line in open(f"/proc/{p.pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1])
    return out
def get(path, gz=False):
    req = urllib.request.Request(base + path, headers={"Accept-Encoding": "gzip"} if gz else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()
t0 = time.time()
while True:
    try:
        if urllib.request.urlopen(base + "/-/ready", timeout=5).status == 200: break
    except Exception: pass
    time.sleep(0.05)
ready = time.time() - t0
idle = status("VmRSS")
key = re.compile(rb'sql_signal_exporter_rule_evaluations_total\{[^}]*\} (\d+)')
n = 0; scrapes = 0
deadline = time.time() + 120
while n < evals and time.time() < deadline:
    get("/metrics", True); body = get("/metrics"); scrapes += 2
    n = sum(int(m) for m in key.findall(body))
    time.sleep(0.2)
sm = smaps()
print(f"ready {ready:.2f}s rss_after_ready {idle} KiB; after {n} evaluations ({scrapes} scrapes): rss {status('VmRSS')} KiB, peak (VmHWM) {status('VmHWM')} KiB; "
      f"Pss {sm.get('Pss')} Pss_Anon {sm.get('Pss_Anon')} Pss_File {sm.get('Pss_File')} Private {sm.get('Private_Clean',0)+sm.get('Private_Dirty',0)} Anonymous {sm.get('Anonymous')} KiB; body {len(body)} B")
p.terminate(); p.wait()
