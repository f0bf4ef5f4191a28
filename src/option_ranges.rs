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

/// A ring buffer's size in bytes: the kernel takes a power of two, at least a page.
pub fn ring_size(text: &str) -> Result<u32, String> {
    let size: bytesize::ByteSize = text.parse()?;
    let n = size.as_u64();
    if !n.is_power_of_two() || !(4096..=1 << 30).contains(&n) {
        return Err("must be a power of two between 4KiB and 1GiB".into());
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(ring_size("8MiB"), Ok(8 << 20));
        assert_eq!(ring_size("4096"), Ok(4096));
        assert!(ring_size("3MiB").unwrap_err().contains("power of two"));
        assert!(ring_size("2GiB").is_err());
        assert!(ring_size("lots").is_err());
    }

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
