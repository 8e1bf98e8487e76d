//! Command line of sql-signal-exporter. See the README for the rules format and a map of the code.

// Functions stay at or under clippy.toml's 80 lines, split by job; an exception says why in an
// #[allow] beside it.
#![deny(clippy::too_many_lines)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use sql_signal_exporter::http::web::Web;
use sql_signal_exporter::{app, http};
use sql_signal_exporter::{check, rule_tests};

/// A Prometheus exporter whose metrics and fail-safe health signals are SQL rules in YAML.
#[derive(Parser, Debug)]
#[command(name = "sql-signal-exporter", version, about, long_about = None)]
struct Cli {
    /// Rules file to load; repeat for several files.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,

    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", value_name = "ADDRESS", default_value = ":8000")]
    listen_address: String,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics")]
    telemetry_path: String,

    /// Enable POST /-/reload (SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,

    /// Poll the rules files this often (e.g. 30s) and reload when their content changes, as a
    /// ConfigMap update needs; 0s or absent: only SIGHUP and POST /-/reload reload.
    #[arg(long = "rules.auto-reload-interval", value_name = "DURATION", value_parser = parse_interval)]
    auto_reload_interval: Option<std::time::Duration>,
    /// TLS and basic auth for every endpoint, in exporter-toolkit's web config format (see README).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,

    /// Evaluate every rule once, print the exposition to stdout and exit (non-zero if any rule failed).
    #[arg(long)]
    once: bool,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: LogFormat,

    /// Check rules files and exit: 0 when all are valid, 1 when one is not, 2 when one cannot be
    /// read. Reports every problem as FILE:LINE:COL; connects nowhere unless --db.
    #[arg(long = "check-rules", value_name = "FILE", num_args = 1..)]
    check_rules: Option<Vec<PathBuf>>,

    /// With --check-rules (no value): also connect to each database and prepare (never run) every
    /// query, checking its SQL, the columns the rule reads and their types. With --test-rules
    /// (NAME=DSN, repeatable): run the SQL cases of database NAME on DSN.
    #[arg(long, value_name = "NAME=DSN", num_args = 0..=1, action = clap::ArgAction::Append)]
    db: Option<Vec<String>>,

    /// With --check-rules --db: also EXPLAIN (never run) every query and warn about a sequential
    /// scan over a big table or a costly plan.
    #[arg(long, requires = "db")]
    explain: bool,

    /// With --explain: a sequential scan over a table with more rows than this (the server's
    /// estimate) warns.
    #[arg(long = "explain.min-rows", value_name = "ROWS", default_value_t = 100_000.0)]
    explain_min_rows: f64,

    /// With --explain: a plan whose estimated total cost (planner units) is above this warns.
    #[arg(long = "explain.max-cost", value_name = "COST", default_value_t = 100_000.0)]
    explain_max_cost: f64,

    /// With --check-rules: warnings (such as an unset ${VAR}) are errors.
    #[arg(long, requires = "check_rules")]
    strict: bool,

    /// Run the cases of rule test files and exit: 0 when all pass, 1 when a case fails, 2 when a
    /// test file is broken (see README, "Testing rules").
    #[arg(long = "test-rules", value_name = "FILE", num_args = 1.., conflicts_with = "check_rules")]
    test_rules: Option<Vec<PathBuf>>,

    /// With --check-rules or --test-rules: how diagnostics and results are printed.
    #[arg(long, value_enum, default_value = "text")]
    format: check::Format,

    /// Convert a peer's configuration into a rules file and exit: FORMAT is postgres_exporter,
    /// sql_exporter (burningalchemist's: the config, then any collector files), justwatch or
    /// query-exporter, then its FILEs. Writes to stdout or -o; what cannot be represented is a
    /// comment in the output and a warning on stderr, and the exit status is then 1.
    #[arg(long = "convert", value_name = "FORMAT FILE", num_args = 2..)]
    convert: Option<Vec<String>>,

    /// With --convert: write the rules file here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE", requires = "convert")]
    output: Option<PathBuf>,

    /// Print the JSON Schema of rules files and exit.
    #[arg(long = "print-schema")]
    print_schema: bool,
}

/// `--db NAME=DSN` of `--test-rules`, by name; the message says which one is not of that form.
fn test_databases(values: &[String]) -> Result<std::collections::BTreeMap<String, String>, String> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((name, dsn)) if !name.is_empty() && !dsn.is_empty() => Ok((name.to_string(), dsn.to_string())),
            _ => Err(format!(
                "--test-rules --db expects NAME=DSN (the database's name in the rules file, then its DSN), got a value without a name or a DSN{}",
                if v.contains('=') { "" } else { " (no '=')" }
            )),
        })
        .collect()
}

/// A duration flag: `30s`, `1m`.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    sql_signal_exporter::rules::limits::parse_duration(text)
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Our own messages at the chosen level; the libraries' only when they warn.
    // A scraper that hangs up mid-response (Prometheus on a scrape timeout) is not an error of ours;
    // warp logs it as one.
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,warp::server=off,sql_signal_exporter={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    match format {
        LogFormat::Logfmt => builder.event_format(sql_signal_exporter::logging::Logfmt).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// One glibc malloc arena instead of one per thread: each runtime thread that ran an evaluation
/// would otherwise keep its own high-water mark (measured: 126 MiB peak at 100k series over four
/// evaluations, 78 MiB with one arena, no throughput cost). And a fixed mmap threshold: glibc
/// raises it after each large free, so every rendered body (9 MB at 100k series) would then come
/// from the heap and leave it fragmented; mapped, it goes back to the system when freed (measured:
/// 72.6 MiB and growing over ten evaluations, 61.3 MiB peak with the fixed threshold).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_ARENA_MAX: i32 = -8;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets allocator tunables; called before any other thread exists.
    unsafe {
        mallopt(M_ARENA_MAX, 1);
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Where `--convert` writes the rules file.
enum Destination<'a> {
    Stdout,
    File(&'a std::path::Path),
}

/// `--convert FORMAT FILE... [-o FILE]`: 0 when everything converted, 1 when something was left
/// out (said on stderr and in the output), 2 on a usage error or a file that cannot be read.
fn convert(args: &[String], destination: Destination<'_>) -> ExitCode {
    use sql_signal_exporter::convert::{self as peer, Format};
    let (format, files) = match args.split_first() {
        Some((format, files)) => (format, files),
        None => return ExitCode::from(2),
    };
    let format = match Format::from_flag_name(format) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    let conversion = match peer::convert(format, &files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let written = match destination {
        Destination::File(path) => std::fs::write(path, &conversion.rules_yaml).map_err(|e| {
            format!(
                "-o {}: cannot write the rules file: {e}; check the directory exists and is writable",
                path.display()
            )
        }),
        Destination::Stdout => {
            use std::io::Write;
            std::io::stdout().write_all(conversion.rules_yaml.as_bytes()).map_err(|e| format!("stdout: {e}"))
        }
    };
    if let Err(e) = written {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    for warning in &conversion.warnings {
        eprintln!("{warning}");
    }
    for variable in &conversion.variables {
        eprintln!("{variable}");
    }
    if conversion.is_complete() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} thing(s) did not convert; each is a NOT CONVERTED comment at its place in the rules file",
            conversion.not_converted()
        );
        ExitCode::FAILURE
    }
}

/// `--test-rules` or `--check-rules` when asked (their exit code), or a misplaced `--db` (2);
/// `None` when the exporter is to run.
fn check_or_test(cli: &Cli) -> Option<ExitCode> {
    if let Some(files) = &cli.test_rules {
        return Some(match test_databases(cli.db.as_deref().unwrap_or_default()) {
            Ok(databases) => {
                ExitCode::from(rule_tests::run(files, &rule_tests::Options { databases, format: cli.format }))
            }
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        });
    }
    if let Some(files) = &cli.check_rules {
        if cli.db.as_ref().is_some_and(|v| !v.is_empty()) {
            eprintln!("error: --check-rules --db takes no value: it connects with each rules file's own DSN (NAME=DSN is for --test-rules)");
            return Some(ExitCode::from(2));
        }
        let explain = cli.explain.then_some(sql_signal_exporter::source::ExplainLimits {
            min_rows: cli.explain_min_rows,
            max_cost: cli.explain_max_cost,
        });
        let opts = check::Options { db: cli.db.is_some(), explain, strict: cli.strict, format: cli.format };
        return Some(ExitCode::from(check::run(files, &opts)));
    }
    if cli.db.is_some() {
        eprintln!("error: --db goes with --check-rules (or, as --db NAME=DSN, with --test-rules)");
        return Some(ExitCode::from(2));
    }
    None
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if cli.print_schema {
        print!("{}", sql_signal_exporter::rules::schema::SCHEMA_TEXT);
        return ExitCode::SUCCESS;
    }
    if let Some(args) = &cli.convert {
        let destination = match cli.output.as_deref() {
            Some(path) => Destination::File(path),
            None => Destination::Stdout,
        };
        return convert(args, destination);
    }
    if let Some(code) = check_or_test(&cli) {
        return code;
    }
    init_logging(cli.log_level, cli.log_format);

    if cli.rules.is_empty() {
        eprintln!("error: no rules file given; pass --rules FILE (see rules/kanary.yaml for an example)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    if cli.once {
        let rules = match app::load_rules(&cli.rules) {
            Ok(r) => r,
            Err(diags) => {
                eprintln!("{diags}");
                return ExitCode::FAILURE;
            }
        };
        let (text, all_ok) = runtime.block_on(app::run_once(&rules));
        use std::io::Write;
        let _ = std::io::stdout().write_all(&text);
        return if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }

    let listen = match http::parse_listen_address(&cli.listen_address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: --web.listen-address: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the rules: a file that cannot be honoured must stop the start, not weaken it.
    let web = match cli.web_config_file.as_deref().map(Web::load).transpose() {
        Ok(web) => web.map(std::sync::Arc::new),
        Err(e) => {
            eprintln!("error: --web.config.file: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = app::Options {
        rules: cli.rules,
        listen,
        telemetry_path: cli.telemetry_path,
        lifecycle: if cli.enable_lifecycle { app::Lifecycle::Enabled } else { app::Lifecycle::Disabled },
        auto_reload: match cli.auto_reload_interval.filter(|d| !d.is_zero()) {
            Some(every) => app::AutoReload::Every(every),
            None => app::AutoReload::Off,
        },
        web,
    };
    match runtime.block_on(app::run(opts, app::termination_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
