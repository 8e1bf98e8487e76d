//! The embedded default: a throwaway PostgreSQL with Kanary demo data, and the exporter on it.
//!
//! `cargo run --example demo` starts a private PostgreSQL from the machine's binaries (initdb into a
//! temporary directory, a free loopback port), loads `examples/kanary/*.sql`, and runs the exporter with
//! `rules/kanary.yaml` on `127.0.0.1:8000` (or the address given as the first argument). Ctrl-C stops the
//! exporter and removes the database.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use sql_signal_exporter::app;
use tempdb::{TempPostgres, TempPostgresOptions};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,sql_signal_exporter=info"))
        .with_writer(std::io::stderr)
        .event_format(sql_signal_exporter::logging::Logfmt)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let listen: SocketAddr = match std::env::args().nth(1) {
        Some(a) => sql_signal_exporter::http::parse_listen_address(&a).map_err(anyhow::Error::msg)?,
        None => "127.0.0.1:8000".parse()?,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    eprintln!("starting a throwaway PostgreSQL …");
    let pg = TempPostgres::start_with(TempPostgresOptions { pg_stat_statements: true, ..Default::default() })?;
    for file in ["examples/kanary/schema.sql", "examples/kanary/demo-data.sql"] {
        let sql = std::fs::read_to_string(root.join(file))?;
        pg.psql("demo", &sql).map_err(|e| anyhow::anyhow!("loading {file}: {e}"))?;
    }
    // The rules file takes its DSN from ${CONNECTION_STRING}, exactly as the Go exporter did.
    std::env::set_var("CONNECTION_STRING", pg.dsn("demo"));

    let opts = app::Options {
        rules: vec![root.join("rules/kanary.yaml")],
        listen,
        telemetry_path: "/metrics".into(),
        lifecycle: app::Lifecycle::Enabled,
        auto_reload: app::AutoReload::Off,
        web: None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    eprintln!("PostgreSQL on 127.0.0.1:{} holds the demo data", pg.port());
    eprintln!("serving kanary metrics at http://{listen}/metrics  (Ctrl-C to stop and clean up)");
    runtime.block_on(app::run(opts, app::termination_signal()))?;
    drop(pg);
    eprintln!("stopped; the throwaway database is gone");
    Ok(())
}
