//! Child processes the benchmark starts and stops: the release exporter and nginx.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client;

/// Stops a child we started: SIGTERM to its pid, then SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).stderr(Stdio::null()).status();
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A `VmRSS`-style field of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The release binary, run on a rules file, listening on a free loopback port.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    pub spawned: Instant,
    log: PathBuf,
}

impl Exporter {
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> Result<Exporter> {
        let port = tempdb::free_loopback_port()?;
        let addr = loopback(port);
        let log_file = fs::File::create(log)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .args(["--web.listen-address", &addr.to_string(), "--log.level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        Ok(Exporter { child, addr, spawned, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/-/ready` every millisecond; returns the time from spawn to the first 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        let until = Instant::now() + timeout;
        loop {
            if client::status(self.addr, "/-/ready") == Some(200) {
                return Ok(self.spawned.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("the exporter exited ({status}) before it was ready; its log:\n{}", self.log_tail());
            }
            if Instant::now() > until {
                bail!("the exporter was not ready after {timeout:?}; its log:\n{}", self.log_tail());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS").unwrap_or(0)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM").unwrap_or(0)
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(6));
    }
}

/// A private nginx serving `/metrics` as a static file (and `/metrics.gz` through `gzip_static`).
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    www: PathBuf,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `workers` worker processes, its files under `dir` (created).
    pub fn start(dir: &Path, workers: usize) -> Result<Nginx> {
        let www = dir.join("www");
        fs::create_dir_all(&www)?;
        fs::create_dir_all(dir.join("tmp"))?;
        // Workers run as `nobody` when started by root: they must be able to read the files.
        for d in [dir, www.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        }
        if let Some(parent) = dir.parent() {
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        }
        let port = tempdb::free_loopback_port()?;
        let d = dir.display();
        let conf = format!(
            r#"# The fastest honest static-file setup: sendfile, no access log, long keep-alive.
worker_processes {workers};
daemon off;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ }}
    default_type "text/plain; version=0.0.4; charset=utf-8";
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {www};
        location = /metrics {{
            # Serves metrics.gz as is to clients that accept gzip: compressed once, like our cache.
            gzip_static on;
        }}
    }}
}}
"#,
            www = www.display()
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        let mut child = Command::new("nginx")
            .args([
                "-p",
                &dir.display().to_string(),
                "-c",
                &conf_path.display().to_string(),
                "-e",
                &format!("{d}/error.log"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let addr = loopback(port);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if client::status(addr, "/").is_some() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {err}");
            }
            if Instant::now() > until {
                terminate(&mut child, Duration::from_secs(3));
                bail!("nginx did not answer on {addr}");
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(Nginx { child, addr, www, dir: dir.to_path_buf() })
    }

    /// Makes `/metrics` serve `plain`, and `gz` (when given) to clients that accept gzip.
    pub fn set_body(&self, plain: &[u8], gz: Option<&[u8]>) -> Result<()> {
        write_atomically(&self.www.join("metrics"), plain)?;
        let gz_path = self.www.join("metrics.gz");
        match gz {
            Some(gz) => write_atomically(&gz_path, gz)?,
            None => {
                let _ = fs::remove_file(&gz_path);
            }
        }
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        let master = self.child.id().to_string();
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit(')').next().map(|r| r.split_whitespace().nth(1) == Some(master.as_str())))
                    .unwrap_or(false)
            })
            .collect()
    }

    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, data)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&tmp, path)?;
    Ok(())
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too (SIGKILL would orphan them).
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// How many processes named `comm` run now.
pub fn count_processes(comm: &str) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == comm))
        .count()
}

/// Samples, in the background, how many compilers run beside the benchmark, so a report says which
/// of its sections shared the machine with other builds.
pub struct Watch {
    max: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Watch {
    pub fn start() -> Watch {
        let max = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let m = std::sync::Arc::downgrade(&max);
        thread::spawn(move || {
            while let Some(max) = m.upgrade() {
                max.fetch_max(count_processes("rustc"), std::sync::atomic::Ordering::Relaxed);
                drop(max);
                thread::sleep(Duration::from_millis(250));
            }
        });
        Watch { max }
    }

    /// The most compilers seen since the last call.
    pub fn take(&self) -> usize {
        self.max.swap(count_processes("rustc"), std::sync::atomic::Ordering::Relaxed)
    }
}
