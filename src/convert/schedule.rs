//! The peers' schedules as rule intervals: Go durations (`1m30s`, `1.5h`), seconds as numbers, and
//! cron expressions that fire at an even period (`*/5 * * * *`, `@every 10m`, `@hourly`).
//!
//! A rule runs at an interval, at a stable offset of its own; a cron expression that fires at
//! uneven times (`0 3 * * 1-5`) has no interval, and is reported as not converted.

/// A whole number of milliseconds as a rules-file duration (`90s`, `1500ms`, `2h`).
pub(super) fn duration_text(millis: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
    for (size, unit) in UNITS {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// A Go duration (`time.ParseDuration`: `300ms`, `1.5h`, `2h45m`) in milliseconds; `None` when it is
/// not one, or below a millisecond.
pub(super) fn go_duration_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total >= 1.0).then_some(total.round() as u64)
}

/// A number of seconds (query-exporter's `interval: 30`) or a duration with a unit (`5m`, `1d`).
pub(super) fn seconds_or_duration_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds >= 0.001).then_some((seconds * 1000.0).round() as u64);
    }
    if let Some(days) = text.strip_suffix('d').and_then(|d| d.parse::<u64>().ok()) {
        return Some(days * 86_400_000);
    }
    go_duration_millis(text)
}

/// The period of a cron expression that fires evenly, in milliseconds.
pub(super) fn cron_period_millis(expr: &str) -> Option<u64> {
    let expr = expr.trim();
    match expr {
        "@hourly" => return Some(3_600_000),
        "@daily" | "@midnight" => return Some(86_400_000),
        "@weekly" => return Some(7 * 86_400_000),
        _ => {}
    }
    if let Some(every) = expr.strip_prefix("@every ") {
        return go_duration_millis(every);
    }
    // Five fields, as both peers read them (justwatch refuses six; croniter's sixth is not ours).
    let [minute, hour, day, month, weekday]: [&str; 5] = expr.split_whitespace().collect::<Vec<_>>().try_into().ok()?;
    if [day, month, weekday].iter().any(|f| *f != "*" && *f != "?") {
        return None;
    }
    let step = |field: &str, whole: u64| -> Option<u64> {
        match field {
            "*" => Some(1),
            f => {
                f.strip_prefix("*/").and_then(|n| n.parse::<u64>().ok()).filter(|n| *n > 0 && whole.is_multiple_of(*n))
            }
        }
    };
    let fixed = |field: &str| field.parse::<u64>().is_ok();
    match (minute, hour) {
        (m, "*") if !fixed(m) => step(m, 60).map(|n| n * 60_000),
        (m, h) if fixed(m) => step(h, 24).map(|n| n * 3_600_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_cron_periods_become_intervals() {
        assert_eq!(go_duration_millis("1m30s"), Some(90_000));
        assert_eq!(go_duration_millis("1.5h"), Some(5_400_000));
        assert_eq!(go_duration_millis("300ms"), Some(300));
        assert_eq!(go_duration_millis("5 minutes"), None);
        assert_eq!(duration_text(90_000), "90s");
        assert_eq!(duration_text(5_400_000), "90m");
        assert_eq!(duration_text(1500), "1500ms");
        assert_eq!(seconds_or_duration_millis("30"), Some(30_000));
        assert_eq!(seconds_or_duration_millis("1d"), Some(86_400_000));
        assert_eq!(cron_period_millis("*/5 * * * *"), Some(300_000));
        assert_eq!(cron_period_millis("* * * * *"), Some(60_000));
        assert_eq!(cron_period_millis("0 */2 * * *"), Some(7_200_000));
        assert_eq!(cron_period_millis("*/10 * * * * *"), None);
        assert_eq!(cron_period_millis("@every 90s"), Some(90_000));
        assert_eq!(cron_period_millis("0 3 * * 1-5"), None);
        assert_eq!(cron_period_millis("*/7 * * * *"), None);
    }
}
