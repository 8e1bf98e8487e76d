//! Durations as rules files and flags write them (`30s`, `1m`, `1h30m`), with the one wording of a
//! value that is not one. A leaf: the loader, the schema's error wording and the command line use it.

use std::time::Duration;

/// What is wrong with `shown` (a value as the message shows it, e.g. quoted) that is not a duration:
/// the one wording of that mistake, for the loader, the schema's errors and the flags alike.
pub fn not_a_duration(shown: &str) -> String {
    format!("{shown} is not a duration; write e.g. 500ms, 30s, 1m, 3h or 1h30m")
}

/// Parses a duration such as `30s`, `1m` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| not_a_duration(&format!("'{text}'")))
}
