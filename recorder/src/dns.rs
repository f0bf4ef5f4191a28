//! DNS replies as the trail records them: the question, the response code, and what
//! the answer section says the question's name resolves to (the CNAME chain from it and
//! the A and AAAA addresses at its end), with the smallest TTL on that way. Parsing is
//! hickory-proto's; this module only follows the chain, so that records for other
//! names (a hostile or confused server's extras) never become evidence.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;

/// Longest CNAME chain followed (resolvers give up around 8 to 16).
const MAX_CHAIN: usize = 16;
/// Addresses kept from one reply.
pub const MAX_ADDRS: usize = 64;

/// What a reply says about its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// The question's name: lowercase, without the root dot.
    pub qname: String,
    /// "A", "AAAA", "HTTPS", ...
    pub qtype: String,
    /// "NoError", "NXDomain", "ServFail", ...
    pub rcode: String,
    /// CNAME targets from the question's name, in order.
    pub cnames: Vec<String>,
    /// A and AAAA addresses of the chain's last name.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the records used (0 when none was).
    pub ttl: u32,
    /// The server set the truncation flag (the full answer is over TCP).
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("not a DNS message: {0}")]
    Malformed(String),
    #[error("a query, not a reply")]
    NotAReply,
    #[error("a reply without a question")]
    NoQuestion,
}

/// RFC 1035 and 6895 mnemonics, as `dig` shows them.
fn rcode_text(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn name_text(n: &hickory_proto::rr::Name) -> String {
    let s = n.to_ascii().to_ascii_lowercase();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => s,
    }
}

/// Parses one DNS message (for TCP, without its 2-byte length prefix).
pub fn parse_reply(bytes: &[u8]) -> Result<DnsReply, DnsError> {
    let m = Message::from_vec(bytes).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if m.metadata.message_type != MessageType::Response {
        return Err(DnsError::NotAReply);
    }
    let q = m.queries.first().ok_or(DnsError::NoQuestion)?;
    let qname = name_text(&q.name);
    let mut reply = DnsReply {
        qname: qname.clone(),
        qtype: q.query_type.to_string(),
        rcode: rcode_text(u16::from(m.metadata.response_code)),
        cnames: Vec::new(),
        addrs: Vec::new(),
        ttl: u32::MAX,
        truncated: m.metadata.truncation,
    };
    // Follow the chain from the question's name; only records owned by a name on it
    // count, and each name at most once (a loop ends the chain).
    let mut current = qname;
    for _ in 0..MAX_CHAIN {
        let next = m.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if name_text(&r.name) == current => Some((name_text(&c.0), r.ttl)),
            _ => None,
        });
        let Some((target, ttl)) = next else { break };
        if target == reply.qname || reply.cnames.contains(&target) {
            break;
        }
        reply.ttl = reply.ttl.min(ttl);
        reply.cnames.push(target.clone());
        current = target;
    }
    for r in &m.answers {
        if name_text(&r.name) != current || reply.addrs.len() >= MAX_ADDRS {
            continue;
        }
        let addr = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if !reply.addrs.contains(&addr) {
            reply.addrs.push(addr);
            reply.ttl = reply.ttl.min(r.ttl);
        }
    }
    if reply.ttl == u32::MAX {
        reply.ttl = 0;
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply(q: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(q), RecordType::A));
        m.metadata.response_code = ResponseCode::NoError;
        for a in answers {
            m.add_answer(a);
        }
        m.to_vec().unwrap()
    }

    fn a(owner: &str, ttl: u32, ip: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(ip.parse().unwrap())))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    #[test]
    fn follows_the_chain_and_keeps_the_smallest_ttl() {
        let bytes = reply(
            "WWW.Example.com.",
            vec![
                cname("www.example.com.", 300, "edge.cdn.example.net."),
                a("edge.cdn.example.net.", 20, "192.0.2.1"),
                Record::from_rdata(
                    name("edge.cdn.example.net."),
                    60,
                    RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
                ),
                a("unrelated.example.org.", 1, "203.0.113.66"),
            ],
        );
        let r = parse_reply(&bytes).unwrap();
        assert_eq!(r.qname, "www.example.com");
        assert_eq!(r.qtype, "A");
        assert_eq!(r.rcode, "NOERROR");
        assert_eq!(r.cnames, ["edge.cdn.example.net"]);
        assert_eq!(
            r.addrs,
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(r.ttl, 20);
    }

    #[test]
    fn answers_for_another_name_and_cname_loops_add_nothing() {
        let other = parse_reply(&reply(
            "a.example.com.",
            vec![a("b.example.com.", 60, "192.0.2.9")],
        ))
        .unwrap();
        assert!(other.addrs.is_empty());
        let looped = parse_reply(&reply(
            "a.example.com.",
            vec![
                cname("a.example.com.", 60, "b.example.com."),
                cname("b.example.com.", 60, "a.example.com."),
            ],
        ))
        .unwrap();
        assert_eq!(looped.cnames, ["b.example.com"]);
        assert!(looped.addrs.is_empty());
    }

    #[test]
    fn a_hundred_answers_keep_at_most_max_addrs() {
        let answers = (0..150)
            .map(|i| {
                a(
                    "many.example.com.",
                    60,
                    &format!("10.0.{}.{}", i / 250, i % 250),
                )
            })
            .collect();
        let r = parse_reply(&reply("many.example.com.", answers)).unwrap();
        assert_eq!(r.addrs.len(), MAX_ADDRS);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = reply("a.example.com.", vec![a("a.example.com.", 60, "192.0.2.1")]);
        for cut in [0, 5, 12, 20, good.len() - 1] {
            assert!(parse_reply(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A compression pointer to itself in the question's name.
        let mut looped = good[..12].to_vec();
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(parse_reply(&looped).is_err());
        // A label of 64 bytes.
        let mut long = good[..12].to_vec();
        long.push(64);
        long.extend([b'a'; 64]);
        long.extend([0, 0, 1, 0, 1]);
        assert!(parse_reply(&long).is_err());
        let mut query = good.clone();
        query[2] &= 0x7f;
        assert_eq!(parse_reply(&query), Err(DnsError::NotAReply));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Any bytes, and any corruption of a real reply: an answer or an error, never a
        /// panic, and never an address the chain does not reach.
        #[test]
        fn hostile_bytes_never_panic(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..8),
        ) {
            let _ = parse_reply(&noise);
            let mut bytes = reply(
                "a.example.com.",
                vec![cname("a.example.com.", 60, "b.example.net."), a("b.example.net.", 60, "192.0.2.1")],
            );
            for (at, x) in flips {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            if let Ok(r) = parse_reply(&bytes) {
                proptest::prop_assert!(r.addrs.len() <= MAX_ADDRS);
                proptest::prop_assert!(r.cnames.len() <= MAX_CHAIN);
            }
        }
    }
}
