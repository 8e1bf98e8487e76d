//! The driver's session configuration, built from the DSN the loader parsed ([`ConnInfo`]).
//!
//! The DSN is never parsed again here: each libpq keyword maps to a setter of the driver. Sessions
//! get the exporter's own options on top: read-only transactions, `statement_timeout` and
//! `lock_timeout` as startup options (per transaction behind a pooler, see `pooler.rs`), and an
//! `application_name` unless the DSN names one.

use std::time::Duration;

use tokio_postgres::config::{ChannelBinding, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use tokio_postgres::Config;

use crate::rules::model::Database;

/// The `application_name` of every session, so a DBA sees who is querying.
pub const APPLICATION_NAME: &str = crate::source::seam::SESSION_NAME;

/// The configuration of every session to `database`. The message never contains a value.
pub(super) fn session_config(database: &Database, statement_timeout: Duration, ssl: SslMode) -> Result<Config, String> {
    let mut config = Config::new();
    config.ssl_mode(ssl);
    // A peer that vanished (a half-open connection) is found in about 30 s, idle or not, rather than
    // after the kernel's 2 h; the DSN's keepalives_* still win.
    config.keepalives_idle(Duration::from_secs(15)).keepalives_interval(Duration::from_secs(5));
    config.keepalives_retries(3).tcp_user_timeout(Duration::from_secs(30));
    let mut options = String::new();
    for (key, value) in database.conninfo.iter() {
        if key == "options" {
            options = value.to_string();
        } else {
            apply_keyword(&mut config, key, value)?;
        }
    }
    // Behind a transaction pooler these go per transaction (SET LOCAL); poolers refuse `options`.
    if database.pooler.is_none() {
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str(&format!(
            "-c default_transaction_read_only=on -c statement_timeout={} -c lock_timeout={}",
            // PostgreSQL takes these in milliseconds as an i32.
            statement_timeout.as_millis().clamp(1, i32::MAX as u128),
            database.lock_timeout.as_millis().clamp(1, i32::MAX as u128)
        ));
    }
    if !options.is_empty() {
        config.options(&options);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    // The rules file's connect_timeout wins over the DSN's: one setting, where operators look.
    config.connect_timeout(database.connect_timeout);
    Ok(config)
}

/// Applies one libpq keyword of the DSN to the driver's configuration.
fn apply_keyword(config: &mut Config, key: &str, value: &str) -> Result<(), String> {
    let bad = || format!("the DSN's {key} is not valid");
    match key {
        "host" => {
            for h in value.split(',') {
                config.host(h);
            }
        }
        "hostaddr" => {
            for h in value.split(',') {
                config.hostaddr(h.trim().parse().map_err(|_| bad())?);
            }
        }
        "port" => {
            for p in value.split(',') {
                config.port(if p.is_empty() { 5432 } else { p.parse().map_err(|_| bad())? });
            }
        }
        "dbname" => {
            config.dbname(value);
        }
        "user" => {
            config.user(value);
        }
        "password" => {
            config.password(value);
        }
        "application_name" => {
            config.application_name(value);
        }
        "connect_timeout" => {}
        "channel_binding" => {
            config.channel_binding(match value {
                "disable" => ChannelBinding::Disable,
                "require" => ChannelBinding::Require,
                _ => ChannelBinding::Prefer,
            });
        }
        "keepalives" => {
            config.keepalives(value != "0");
        }
        "keepalives_idle" => {
            config.keepalives_idle(Duration::from_secs(value.parse().map_err(|_| bad())?));
        }
        "target_session_attrs" => {
            config.target_session_attrs(match value {
                "read-write" => TargetSessionAttrs::ReadWrite,
                "any" => TargetSessionAttrs::Any,
                _ => return Err(format!("{} (any or read-write)", bad())),
            });
        }
        "load_balance_hosts" => {
            config.load_balance_hosts(match value {
                "random" => LoadBalanceHosts::Random,
                _ => LoadBalanceHosts::Disable,
            });
        }
        // sslmode, sslrootcert, sslcert, sslkey: the TLS plan (tls.rs).
        _ => {}
    }
    Ok(())
}
