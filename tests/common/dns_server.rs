//! A DNS server for tests, on a loopback address's port 53 (UDP and TCP), in this or
//! another network namespace: answers questions from a table of names, each name's
//! answers rotating per query, with optional CNAMEs. Stops when dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record};

/// What a name answers: a CNAME target (answered in turn), or rounds of addresses.
#[derive(Clone)]
pub enum Answer {
    Alias(&'static str),
    Rounds(Vec<Vec<Ipv4Addr>>),
    /// These bytes, with the query's id put in front (hostile or broken servers).
    Raw(Vec<u8>),
    /// Whole answers in turn, one per query: a CNAME chain from the asked name (each
    /// name's target), then the addresses of its last name, with this TTL.
    Chains(Vec<Chain>),
}

#[derive(Clone)]
pub struct Chain {
    pub cnames: Vec<String>,
    pub addrs: Vec<IpAddr>,
    pub ttl: u32,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Table {
    names: HashMap<String, Answer>,
    asked: HashMap<String, usize>,
    ttl: u32,
}

impl Table {
    fn reply(&mut self, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let question = q.queries.first()?.clone();
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.add_query(question.clone());
        m.metadata.recursion_available = true;
        let mut name = question
            .name
            .to_ascii()
            .trim_end_matches('.')
            .to_lowercase();
        for _ in 0..8 {
            match self.names.get(&name).cloned() {
                Some(Answer::Alias(target)) => {
                    let owner = Name::from_ascii(format!("{name}.")).ok()?;
                    let to = Name::from_ascii(format!("{target}.")).ok()?;
                    m.add_answer(Record::from_rdata(owner, self.ttl, RData::CNAME(CNAME(to))));
                    name = target.to_owned();
                }
                Some(Answer::Chains(chains)) => {
                    let n = self.asked.entry(name.clone()).or_default();
                    let chain = &chains[*n % chains.len()];
                    *n += 1;
                    let mut owner = Name::from_ascii(format!("{name}.")).ok()?;
                    for target in &chain.cnames {
                        let to = Name::from_ascii(format!("{target}.")).ok()?;
                        let rdata = RData::CNAME(CNAME(to.clone()));
                        m.add_answer(Record::from_rdata(owner, chain.ttl, rdata));
                        owner = to;
                    }
                    for a in &chain.addrs {
                        let rdata = match a {
                            IpAddr::V4(v4) => RData::A(A(*v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                        };
                        m.add_answer(Record::from_rdata(owner.clone(), chain.ttl, rdata));
                    }
                    return m.to_vec().ok();
                }
                Some(Answer::Raw(bytes)) => {
                    let mut r = q.metadata.id.to_be_bytes().to_vec();
                    r.extend_from_slice(&bytes);
                    return Some(r);
                }
                Some(Answer::Rounds(rounds)) => {
                    let n = self.asked.entry(name.clone()).or_default();
                    let addrs = &rounds[*n % rounds.len()];
                    *n += 1;
                    let owner = Name::from_ascii(format!("{name}.")).ok()?;
                    for a in addrs {
                        m.add_answer(Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*a))));
                    }
                    return m.to_vec().ok();
                }
                None => {
                    m.metadata.response_code = ResponseCode::NXDomain;
                    return m.to_vec().ok();
                }
            }
        }
        m.to_vec().ok()
    }
}

/// A name in DNS wire format (labels, then the root), for hand-made replies.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Runs `f` with this thread in the network namespace at `netns`, then moves it back.
fn in_netns<T>(netns: &Path, f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    let home = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
    let there = std::fs::File::open(netns).unwrap();
    // SAFETY: setns on this thread with namespace descriptors just opened.
    assert_eq!(
        unsafe { libc::setns(there.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    let out = f();
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    out
}

impl DnsServer {
    /// Serves `names` on `addr` inside the network namespace at `netns` (its sockets
    /// are made there; the threads serving them may run anywhere).
    pub fn start_in(netns: &Path, addr: SocketAddr, names: Vec<(&str, Answer)>) -> DnsServer {
        in_netns(netns, || DnsServer::start(addr, names, 0))
    }

    /// Serves `names` on `addr` (a loopback address, port 53) with answers of `ttl` s.
    pub fn start(addr: SocketAddr, names: Vec<(&str, Answer)>, ttl: u32) -> DnsServer {
        let table = Arc::new(Mutex::new(Table {
            names: names.into_iter().map(|(n, a)| (n.to_owned(), a)).collect(),
            asked: HashMap::new(),
            ttl,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let udp = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("binding udp {addr}: {e}"));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tcp = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding tcp {addr}: {e}"));
        tcp.set_nonblocking(true).unwrap();
        let (t1, s1) = (table.clone(), stop.clone());
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::Acquire) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let reply = t1.lock().unwrap().reply(&buf[..n]);
                    if let Some(r) = reply {
                        let _ = udp.send_to(&r, from);
                    }
                }
            }
        });
        let (t2, s2) = (table, stop.clone());
        let tcp_thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Acquire) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if c.read_exact(&mut q).is_err() {
                    continue;
                }
                let reply = t2.lock().unwrap().reply(&q);
                if let Some(r) = reply {
                    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                    framed.extend(r);
                    let _ = c.write_all(&framed);
                }
            }
        });
        DnsServer {
            addr,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
