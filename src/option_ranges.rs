//! Range checks for command-line values, applied when the command line is parsed: an
//! out-of-range value is a usage error naming the option's limits, never a hang (a
//! 1000-year poll interval) or a crash later (a host name longer than a file name).

use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

fn within(text: &str, lo: Duration, hi: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < lo || d > hi {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(lo),
            humantime::format_duration(hi)
        ));
    }
    Ok(d)
}

/// How often rings are drained: a longer wait would delay stopping and overflow rings.
pub fn poll_interval(text: &str) -> Result<Duration, String> {
    within(text, MS, Duration::from_secs(1))
}

/// How often buffered events become durable: the most a kill -9 can lose.
pub fn flush_interval(text: &str) -> Result<Duration, String> {
    within(text, 10 * MS, Duration::from_secs(600))
}

pub fn rotate_interval(text: &str) -> Result<Duration, String> {
    within(text, 100 * MS, 7 * DAY)
}

/// A run's length (`--duration`): at most ten years, so that deadlines stay representable.
pub fn run_duration(text: &str) -> Result<Duration, String> {
    within(text, MS, 3_650 * DAY)
}

/// The `host` column's value: a DNS name's length at most, and nothing a terminal obeys.
pub fn host_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 253 {
        return Err("must be 1 to 253 bytes long".into());
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(poll_interval("5ms"), Ok(5 * MS));
        assert!(poll_interval("1000y")
            .unwrap_err()
            .contains("between 1ms and 1s"));
        assert!(poll_interval("0s").is_err());
        assert!(run_duration("1000y").is_err());
        assert!(flush_interval("x").is_err());
        assert!(host_name(&"h".repeat(300)).is_err());
        assert!(host_name("a\nb").is_err());
        assert_eq!(host_name("web-1").unwrap(), "web-1");
    }
}
