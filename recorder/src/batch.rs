//! Accumulates events column by column and turns them into Arrow record batches.

use std::sync::Arc;

use arrow_array::builder::ArrayBuilder;
use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int64Builder, ListBuilder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt8Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;

use crate::event::{canonical_addr, Event};
use crate::schema::schema;

type Dict = StringDictionaryBuilder<Int32Type>;

/// Column builders for one batch. `host` is fixed per builder: one recorder, one host.
pub struct BatchBuilder {
    host: String,
    ts: TimestampMicrosecondBuilder,
    ts_ns: Int64Builder,
    host_col: Dict,
    pid: UInt32Builder,
    tid: UInt32Builder,
    ppid: UInt32Builder,
    uid: UInt32Builder,
    gid: UInt32Builder,
    comm: Dict,
    exe_path: Dict,
    exe_sha256: FixedSizeBinaryBuilder,
    exe_status: Dict,
    exe_dev: Int64Builder,
    exe_ino: Int64Builder,
    cgroup_id: Int64Builder,
    cgroup: Dict,
    netns: UInt32Builder,
    ip_version: UInt8Builder,
    protocol: Dict,
    dst_addr: Dict,
    dst_port: UInt16Builder,
    hook: Dict,
    verdict: Dict,
    sock_cookie: Int64Builder,
    rule_id: Dict,
    app: Dict,
    note: Dict,
    dst_name: Dict,
    dns_qname: Dict,
    dns_qtype: Dict,
    dns_rcode: Dict,
    dns_cnames: ListBuilder<StringBuilder>,
    dns_addrs: ListBuilder<StringBuilder>,
    dns_ttl: UInt32Builder,
    dns_scope: Dict,
    /// Scratch buffer for formatting addresses without allocating per event.
    addr_buf: String,
    min_ts: i64,
    max_ts: i64,
}

impl BatchBuilder {
    pub fn new(host: &str) -> Self {
        BatchBuilder {
            host: host.to_owned(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            ts_ns: Int64Builder::new(),
            host_col: Dict::new(),
            pid: UInt32Builder::new(),
            tid: UInt32Builder::new(),
            ppid: UInt32Builder::new(),
            uid: UInt32Builder::new(),
            gid: UInt32Builder::new(),
            comm: Dict::new(),
            exe_path: Dict::new(),
            exe_sha256: FixedSizeBinaryBuilder::new(32),
            exe_status: Dict::new(),
            exe_dev: Int64Builder::new(),
            exe_ino: Int64Builder::new(),
            cgroup_id: Int64Builder::new(),
            cgroup: Dict::new(),
            netns: UInt32Builder::new(),
            ip_version: UInt8Builder::new(),
            protocol: Dict::new(),
            dst_addr: Dict::new(),
            dst_port: UInt16Builder::new(),
            hook: Dict::new(),
            verdict: Dict::new(),
            sock_cookie: Int64Builder::new(),
            rule_id: Dict::new(),
            app: Dict::new(),
            note: Dict::new(),
            dst_name: Dict::new(),
            dns_qname: Dict::new(),
            dns_qtype: Dict::new(),
            dns_rcode: Dict::new(),
            dns_cnames: ListBuilder::new(StringBuilder::new()),
            dns_addrs: ListBuilder::new(StringBuilder::new()),
            dns_ttl: UInt32Builder::new(),
            dns_scope: Dict::new(),
            addr_buf: String::with_capacity(64),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Earliest and latest `ts` appended since the last `finish`.
    pub fn time_span(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_ts, self.max_ts))
    }

    pub fn append(&mut self, e: &Event<'_>) {
        use std::fmt::Write;

        self.min_ts = self.min_ts.min(e.ts_ns);
        self.max_ts = self.max_ts.max(e.ts_ns);
        self.ts.append_value(e.ts_ns.div_euclid(1000));
        self.ts_ns.append_value(e.ts_ns);
        self.host_col.append_value(&self.host);
        self.pid.append_value(e.pid);
        self.tid.append_value(e.tid);
        self.ppid.append_value(e.ppid);
        self.uid.append_value(e.uid);
        self.gid.append_value(e.gid);
        self.comm.append_value(e.comm);
        self.exe_path.append_option(e.exe.path);
        match e.exe.sha256 {
            Some(h) => self.exe_sha256.append_value(h).expect("sha256 is 32 bytes"),
            None => self.exe_sha256.append_null(),
        }
        self.exe_status.append_value(e.exe.status.as_str());
        // 64-bit ids as signed integers, bit for bit (Spark reads unsigned 64-bit
        // columns as decimals); none of these reaches 2^63 in practice.
        self.exe_dev.append_value(e.exe.dev as i64);
        self.exe_ino.append_value(e.exe.ino as i64);
        self.cgroup_id.append_value(e.cgroup_id as i64);
        self.cgroup.append_option(e.cgroup);
        self.netns.append_value(e.netns);
        let dst = canonical_addr(e.dst_addr);
        self.ip_version
            .append_value(if dst.is_ipv4() { 4 } else { 6 });
        self.protocol.append_value(e.protocol.as_str());
        self.addr_buf.clear();
        let _ = write!(self.addr_buf, "{dst}");
        self.dst_addr.append_value(&self.addr_buf);
        self.dst_port.append_value(e.dst_port);
        self.hook.append_value(e.hook.as_str());
        self.verdict.append_value(e.verdict.as_str());
        self.sock_cookie.append_value(e.sock_cookie as i64);
        self.rule_id.append_option(e.rule_id);
        self.app.append_option(e.app);
        self.note.append_option(e.note);
        self.dst_name.append_option(e.dst_name);
        self.append_dns(e);
    }

    /// A DNS answer row's columns; on a connect row, `dns_scope` says whose answer
    /// gave `dst_name`.
    fn append_dns(&mut self, e: &Event<'_>) {
        let Some(d) = e.dns.as_ref() else {
            self.dns_qname.append_null();
            self.dns_qtype.append_null();
            self.dns_rcode.append_null();
            self.dns_cnames.append_null();
            self.dns_addrs.append_null();
            self.dns_ttl.append_null();
            let scope = e.dst_name.map(|_| match e.dst_name_from_host {
                true => "host",
                false => "app",
            });
            self.dns_scope.append_option(scope);
            return;
        };
        let r = d.reply;
        self.dns_qname.append_value(&r.qname);
        self.dns_qtype.append_value(&r.qtype);
        self.dns_rcode.append_value(&r.rcode);
        for c in &r.cnames {
            self.dns_cnames.values().append_value(c);
        }
        self.dns_cnames.append(true);
        for a in &r.addrs {
            self.dns_addrs
                .values()
                .append_value(canonical_addr(*a).to_string());
        }
        self.dns_addrs.append(true);
        self.dns_ttl.append_value(r.ttl);
        self.dns_scope
            .append_value(if d.host_scope { "host" } else { "app" });
    }

    /// Takes everything appended so far as one batch and starts afresh.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.host_col.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.ppid.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.gid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.exe_path.finish()),
            Arc::new(self.exe_sha256.finish()),
            Arc::new(self.exe_status.finish()),
            Arc::new(self.exe_dev.finish()),
            Arc::new(self.exe_ino.finish()),
            Arc::new(self.cgroup_id.finish()),
            Arc::new(self.cgroup.finish()),
            Arc::new(self.netns.finish()),
            Arc::new(self.ip_version.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.dst_addr.finish()),
            Arc::new(self.dst_port.finish()),
            Arc::new(self.hook.finish()),
            Arc::new(self.verdict.finish()),
            Arc::new(self.sock_cookie.finish()),
            Arc::new(self.rule_id.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.note.finish()),
            Arc::new(self.dst_name.finish()),
            Arc::new(self.dns_qname.finish()),
            Arc::new(self.dns_qtype.finish()),
            Arc::new(self.dns_rcode.finish()),
            Arc::new(self.dns_cnames.finish()),
            Arc::new(self.dns_addrs.finish()),
            Arc::new(self.dns_ttl.finish()),
            Arc::new(self.dns_scope.finish()),
            Arc::new(self.ts_ns.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}
