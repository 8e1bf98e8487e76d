//! The one way to run the exporter binary: [`command`] (what every run starts from), [`once`] for
//! `--once`, and [`Exporter`] for a server on a free loopback port with its stderr captured.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempdb::free_loopback_port;

use super::{repo_root, wait, Exposition};

/// The binary, run from the repository root, stdin closed, with no `SSE_*` variables inherited.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sql-signal-exporter"));
    cmd.current_dir(repo_root()).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("SSE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `--once --rules RULES` with `env`: exit code, stdout, stderr.
pub fn once(rules: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = command().args(["--once", "--rules"]).arg(rules).envs(env.iter().copied()).output().expect("run --once");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exporter binary running as a child process, its stderr captured.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// The thread copying stderr into `log`; it ends when the process's stderr closes.
    log_reader: Option<std::thread::JoinHandle<()>>,
    agent: ureq::Agent,
}

impl Exporter {
    /// Starts the exporter on a free loopback port with `args` and `env` added, and waits until its
    /// HTTP server answers.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let ex = Exporter::start(args, env);
        ex.wait_until(Duration::from_secs(20), "the HTTP server to answer", |e| e.try_get("/-/healthy").is_some());
        ex
    }

    /// Starts the exporter like [`Exporter::spawn`] without waiting for it (a test that speaks TLS, or
    /// expects it to exit, waits its own way).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let port = free_loopback_port().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = command();
        cmd.args(args)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn exporter");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Exporter { child, addr, log, log_reader: Some(log_reader), agent }
    }

    /// Waits until the port accepts TCP connections (the process must not exit meanwhile).
    pub fn wait_listening(&mut self) {
        let (addr, child, log) = (self.addr, &mut self.child, &self.log);
        wait::until(
            Duration::from_secs(20),
            "the exporter to accept TCP connections",
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("exporter exited with {status}; log:\n{}", log_text(log));
                }
                std::net::TcpStream::connect(addr).is_ok()
            },
            || format!("exporter log:\n{}", log_text(log)),
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut resp = self.agent.get(&self.url(path)).call().ok()?;
        let status = resp.status().as_u16();
        // No size limit (ureq's default is 10 MiB): some tests serve a large exposition on purpose.
        let body = resp.body_mut().with_config().limit(u64::MAX).read_to_string().ok()?;
        Some((status, body))
    }

    /// GET over a real socket: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed; exporter log:\n{}", self.logs()))
    }

    /// GET with an `Accept` header: status, `Content-Type` and body.
    pub fn get_accepting(&self, path: &str, accept: &str) -> (u16, String, String) {
        let mut resp = self.agent.get(&self.url(path)).header("Accept", accept).call().expect("GET");
        let status = resp.status().as_u16();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.body_mut().with_config().limit(u64::MAX).read_to_string().expect("a UTF-8 body");
        (status, content_type, body)
    }

    /// The process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn post(&self, path: &str) -> (u16, String) {
        let mut resp = self.agent.post(&self.url(path)).send_empty().expect("POST");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    }

    pub fn metrics(&self) -> Exposition {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }

    pub fn logs(&self) -> String {
        log_text(&self.log)
    }

    /// Polls `cond` until it holds, panicking with the log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut(&Exporter) -> bool) {
        wait::until(timeout, what, || cond(self), || format!("exporter log:\n{}", self.logs()));
    }

    pub fn wait_ready(&self) {
        self.wait_until(Duration::from_secs(30), "/-/ready", |e| e.get("/-/ready").0 == 200);
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, returning its exit code (None if killed by a signal). Its
    /// log is complete afterwards: every line it wrote has been read.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let (child, log) = (&mut self.child, &self.log);
        let status = wait::until_some(
            timeout,
            "the exporter to exit",
            || child.try_wait().expect("the exporter's exit status"),
            || format!("exporter log:\n{}", log_text(log)),
        );
        if let Some(reader) = self.log_reader.take() {
            reader.join().expect("the log reader");
        }
        status.code()
    }
}

/// The exporter's stderr so far.
fn log_text(log: &Mutex<String>) -> String {
    log.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
