//! The dataset's schema: a public interface, versioned in each file's key-value metadata.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Bumped on any change a reader could notice; readers refuse newer versions.
/// 2: the `note` column, rows marking when recording started and stopped, DNS answer
/// rows (`dns_*` columns) and the name a connect's address was resolved from
/// (`dst_name`); types every engine reads as what they are (Spark included): `ts` in
/// microseconds with the exact nanoseconds in `ts_ns`, 64-bit ids as signed integers.
/// Readers take version 1 files (nanosecond `ts`, unsigned ids, fewer columns)
/// alongside.
/// 3: the `cgroup` column (the task's cgroup path, what rule scopes name).
pub const SCHEMA_VERSION: u32 = 3;

/// Key-value metadata keys written into every Parquet file's footer.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "pinhole.schema_version";
    /// Events the kernel could not hand over (ring buffer full) during this file's span.
    pub const LOST_EVENTS: &str = "pinhole.lost_events";
    pub const HOST: &str = "pinhole.host";
    pub const WRITER: &str = "pinhole.writer";
    /// First and last event time in the file, RFC 3339 UTC.
    pub const FIRST_TS: &str = "pinhole.first_ts";
    pub const LAST_TS: &str = "pinhole.last_ts";
    /// "true" when the file was rebuilt from staging after an unclean stop.
    pub const RECOVERED: &str = "pinhole.recovered";
    /// Set by `compact`: one line per file the merged file replaced,
    /// `<name> bytes=<n> sha256=<hex> rows=<n> lost_events=<n>`.
    pub const COMPACTED_FROM: &str = "pinhole.compacted_from";
}

/// Column names, in schema order.
pub mod col {
    pub const TS: &str = "ts";
    pub const HOST: &str = "host";
    pub const PID: &str = "pid";
    pub const TID: &str = "tid";
    pub const PPID: &str = "ppid";
    pub const UID: &str = "uid";
    pub const GID: &str = "gid";
    pub const COMM: &str = "comm";
    pub const EXE_PATH: &str = "exe_path";
    pub const EXE_SHA256: &str = "exe_sha256";
    pub const EXE_STATUS: &str = "exe_status";
    pub const EXE_DEV: &str = "exe_dev";
    pub const EXE_INO: &str = "exe_ino";
    pub const CGROUP_ID: &str = "cgroup_id";
    pub const CGROUP: &str = "cgroup";
    pub const NETNS: &str = "netns";
    pub const IP_VERSION: &str = "ip_version";
    pub const PROTOCOL: &str = "protocol";
    pub const DST_ADDR: &str = "dst_addr";
    pub const DST_PORT: &str = "dst_port";
    pub const HOOK: &str = "hook";
    pub const VERDICT: &str = "verdict";
    pub const SOCK_COOKIE: &str = "sock_cookie";
    pub const RULE_ID: &str = "rule_id";
    pub const APP: &str = "app";
    pub const NOTE: &str = "note";
    pub const DST_NAME: &str = "dst_name";
    pub const DNS_QNAME: &str = "dns_qname";
    pub const DNS_QTYPE: &str = "dns_qtype";
    pub const DNS_RCODE: &str = "dns_rcode";
    pub const DNS_CNAMES: &str = "dns_cnames";
    pub const DNS_ADDRS: &str = "dns_addrs";
    pub const DNS_TTL: &str = "dns_ttl";
    pub const DNS_SCOPE: &str = "dns_scope";
    pub const TS_NS: &str = "ts_ns";
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// A list of strings (names, addresses of one DNS answer).
pub fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The Arrow schema of every file pinhole writes.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    col::TS,
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Field::new(col::HOST, dict(), false),
                Field::new(col::PID, DataType::UInt32, false),
                Field::new(col::TID, DataType::UInt32, false),
                Field::new(col::PPID, DataType::UInt32, false),
                Field::new(col::UID, DataType::UInt32, false),
                Field::new(col::GID, DataType::UInt32, false),
                Field::new(col::COMM, dict(), false),
                Field::new(col::EXE_PATH, dict(), true),
                Field::new(col::EXE_SHA256, DataType::FixedSizeBinary(32), true),
                Field::new(col::EXE_STATUS, dict(), false),
                Field::new(col::EXE_DEV, DataType::Int64, false),
                Field::new(col::EXE_INO, DataType::Int64, false),
                Field::new(col::CGROUP_ID, DataType::Int64, false),
                Field::new(col::CGROUP, dict(), true),
                Field::new(col::NETNS, DataType::UInt32, false),
                Field::new(col::IP_VERSION, DataType::UInt8, false),
                Field::new(col::PROTOCOL, dict(), false),
                Field::new(col::DST_ADDR, dict(), false),
                Field::new(col::DST_PORT, DataType::UInt16, false),
                Field::new(col::HOOK, dict(), false),
                Field::new(col::VERDICT, dict(), false),
                Field::new(col::SOCK_COOKIE, DataType::Int64, false),
                Field::new(col::RULE_ID, dict(), true),
                Field::new(col::APP, dict(), true),
                Field::new(col::NOTE, dict(), true),
                Field::new(col::DST_NAME, dict(), true),
                Field::new(col::DNS_QNAME, dict(), true),
                Field::new(col::DNS_QTYPE, dict(), true),
                Field::new(col::DNS_RCODE, dict(), true),
                Field::new(col::DNS_CNAMES, string_list(), true),
                Field::new(col::DNS_ADDRS, string_list(), true),
                Field::new(col::DNS_TTL, DataType::UInt32, true),
                Field::new(col::DNS_SCOPE, dict(), true),
                Field::new(col::TS_NS, DataType::Int64, false),
            ]))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique_and_in_order() {
        let s = schema();
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names[0], col::TS);
        assert_eq!(names.last(), Some(&col::TS_NS));
    }
}
