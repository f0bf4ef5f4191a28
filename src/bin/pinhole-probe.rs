//! pinhole-probe: makes one connect, send or socket per argument and prints what the
//! kernel answered, so tests can see an enforcer's EPERM. Destinations off loopback
//! are refused unless this process sits in a network namespace with no interface but
//! `lo`, where nothing can leave the machine.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// `KIND:ADDR:PORT` (ADDR in brackets for IPv6), `raw4` / `raw6` or `packet`.
fn usage() -> ExitCode {
    eprintln!("usage: pinhole-probe {{tcp|udp|sendto|icmp|srcroute|srcroute-cmsg}}:ADDR:PORT ... | {{dns|dnstcp}}:NAME@ADDR:PORT | race:N:TCPPORT:NAME@ADDR:PORT | raw4 | raw6 | packet");
    ExitCode::from(2)
}

fn only_loopback_interfaces() -> bool {
    nix::ifaddrs::getifaddrs().is_ok_and(|mut it| it.all(|i| i.interface_name == "lo"))
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None => e.to_string(),
    }
}

fn probe(kind: &str, addr: SocketAddr) -> std::io::Result<()> {
    let domain = Domain::for_address(addr);
    let dst = SockAddr::from(addr);
    match kind {
        "tcp" => Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?.connect(&dst),
        "udp" => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?.connect(&dst),
        "sendto" => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?
            .send_to(b"p", &dst)
            .map(|_| ()),
        "icmp" => {
            let proto = match addr {
                SocketAddr::V4(_) => Protocol::ICMPV4,
                SocketAddr::V6(_) => Protocol::ICMPV6,
            };
            Socket::new(domain, Type::DGRAM, Some(proto))?.connect(&dst)
        }
        "srcroute" => source_routed(domain, &dst, addr),
        "srcroute-cmsg" => source_routed_datagram(addr),
        _ => Err(std::io::Error::other(format!("unknown probe kind {kind}"))),
    }
}

/// Sets a source route through `addr` itself (IPv4 LSRR, or an IPv6 segment routing
/// header with one segment), then connects over TCP: an enforcer must refuse the route.
fn source_routed(domain: Domain, dst: &SockAddr, addr: SocketAddr) -> std::io::Result<()> {
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    let (level, name, value): (i32, i32, Vec<u8>) = match addr.ip() {
        IpAddr::V4(v4) => {
            // NOOP, then LSRR: type, length, pointer, one hop.
            let mut v = vec![1, 131, 7, 4];
            v.extend_from_slice(&v4.octets());
            (libc::SOL_IP, libc::IP_OPTIONS, v)
        }
        IpAddr::V6(v6) => {
            // Segment routing header: next header, length in 8-byte units beyond the
            // first, type 4, segments left, last entry, flags, tag; then the segment.
            let mut v = vec![0, 2, 4, 0, 0, 0, 0, 0];
            v.extend_from_slice(&v6.octets());
            (libc::SOL_IPV6, libc::IPV6_RTHDR, v)
        }
    };
    // SAFETY: a valid socket, and a buffer of the length given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    s.connect(dst)
}

/// Sends one UDP datagram to `addr` with a loose source route through 127.0.0.2 given
/// as ancillary data (IP_RETOPTS), which never passes setsockopt. IPv4 only.
fn source_routed_datagram(addr: SocketAddr) -> std::io::Result<()> {
    let SocketAddr::V4(v4) = addr else {
        return Err(std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let dst = SockAddr::from(addr);
    // NOOP, then LSRR: type, length, pointer, the first hop; the destination is last.
    let mut opt = vec![1u8, 131, 11, 4, 127, 0, 0, 2];
    opt.extend_from_slice(&v4.ip().octets());
    // SAFETY: CMSG_SPACE/CMSG_LEN compute sizes only.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(opt.len() as u32) as usize,
            libc::CMSG_LEN(opt.len() as u32) as usize,
        )
    };
    let mut control = vec![0u8; space];
    let mut payload = *b"p";
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = dst.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = dst.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer holds CMSG_SPACE(opt.len()) bytes.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_IP;
        (*c).cmsg_type = libc::IP_RETOPTS;
        (*c).cmsg_len = len;
        std::ptr::copy_nonoverlapping(opt.as_ptr(), libc::CMSG_DATA(c), opt.len());
    }
    // SAFETY: a valid socket and message.
    let n = unsafe { libc::sendmsg(std::os::fd::AsRawFd::as_raw_fd(&s), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Asks `server` for NAME's A records (over UDP, or TCP for `tcp`) and returns the
/// addresses answered, comma-separated.
fn resolve(name: &str, server: SocketAddr, tcp: bool) -> std::io::Result<String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::io::{Read, Write};
    let name = Name::from_ascii(name).map_err(std::io::Error::other)?;
    let mut q = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name, RecordType::A));
    let query = q.to_vec().map_err(std::io::Error::other)?;
    let timeout = Some(std::time::Duration::from_secs(3));
    let domain = Domain::for_address(server);
    let reply = if tcp {
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.connect(&SockAddr::from(server))?;
        s.set_read_timeout(timeout)?;
        let mut s = std::net::TcpStream::from(s);
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend(&query);
        s.write_all(&framed)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf)?;
        buf
    } else {
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        s.connect(&SockAddr::from(server))?;
        s.set_read_timeout(timeout)?;
        let s = std::net::UdpSocket::from(s);
        s.send(&query)?;
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf)?;
        buf.truncate(n);
        buf
    };
    let m = Message::from_vec(&reply).map_err(std::io::Error::other)?;
    let addrs: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    Ok(addrs.join(","))
}

/// N times: resolve NAME, then at once connect (TCP) to the first address answered on
/// `port`. Returns how many connects were refused with EPERM, and how many failed
/// otherwise than EPERM or ECONNREFUSED (nothing listens there).
fn race(n: u32, port: u16, name: &str, server: SocketAddr) -> std::io::Result<(u32, u32)> {
    let (mut denied, mut other) = (0, 0);
    for _ in 0..n {
        let addrs = resolve(name, server, false)?;
        let first: IpAddr = addrs
            .split(',')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| std::io::Error::other("an answer without an address"))?;
        if !first.is_loopback() {
            return Err(std::io::Error::other("an answer off loopback"));
        }
        match probe("tcp", SocketAddr::new(first, port)) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => denied += 1,
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Ok(()) => {}
            Err(_) => other += 1,
        }
    }
    Ok((denied, other))
}

/// `race:N:TCPPORT:NAME@ADDR:PORT`: prints the refused and failed counts.
fn race_arg(rest: &str) -> Option<(u32, u16, &str, SocketAddr)> {
    let (n, rest) = rest.split_once(':')?;
    let (port, rest) = rest.split_once(':')?;
    let (name, server) = rest.split_once('@')?;
    Some((
        n.parse().ok()?,
        port.parse().ok()?,
        name,
        server.parse().ok()?,
    ))
}

/// Opens (and closes) a packet socket: it sends nothing.
fn packet() -> std::io::Result<()> {
    let all = (libc::ETH_P_ALL as u16).to_be() as i32;
    Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(all))).map(drop)
}

fn raw(domain: Domain) -> std::io::Result<()> {
    let proto = if domain == Domain::IPV6 {
        Protocol::ICMPV6
    } else {
        Protocol::ICMPV4
    };
    Socket::new(domain, Type::RAW, Some(proto)).map(drop)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return usage();
    }
    let isolated = only_loopback_interfaces();
    for arg in &args {
        if let Some(rest) = arg.strip_prefix("race:") {
            let Some((n, port, name, server)) = race_arg(rest) else {
                return usage();
            };
            if !server.ip().is_loopback() {
                return usage();
            }
            match race(n, port, name, server) {
                Ok((denied, other)) => println!("{arg} denied={denied},failed={other}"),
                Err(e) => println!("{arg} {}", errno_name(&e)),
            }
            continue;
        }
        if let Some((kind, rest)) = arg
            .split_once(':')
            .filter(|(k, _)| *k == "dns" || *k == "dnstcp")
        {
            let Some((name, server)) = rest.split_once('@') else {
                return usage();
            };
            let Ok(server) = server.parse::<SocketAddr>() else {
                return usage();
            };
            if !server.ip().is_loopback() && !isolated {
                eprintln!("pinhole-probe: refusing {arg}: not loopback");
                return ExitCode::from(2);
            }
            match resolve(name, server, kind == "dnstcp") {
                Ok(addrs) => println!("{arg} ok {addrs}"),
                Err(e) => println!("{arg} {}", errno_name(&e)),
            }
            continue;
        }
        let outcome = match arg.as_str() {
            "raw4" => raw(Domain::IPV4),
            "raw6" => raw(Domain::IPV6),
            "packet" => packet(),
            _ => {
                let Some((kind, rest)) = arg.split_once(':') else {
                    return usage();
                };
                let Ok(addr) = rest.parse::<SocketAddr>() else {
                    eprintln!("pinhole-probe: {rest} is not ADDR:PORT");
                    return usage();
                };
                let ip = match addr.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                if !ip.is_loopback() && !isolated {
                    eprintln!("pinhole-probe: refusing {arg}: not loopback, and this network namespace has interfaces besides lo");
                    return ExitCode::from(2);
                }
                probe(kind, addr)
            }
        };
        match outcome {
            Ok(()) => println!("{arg} ok"),
            Err(e) => println!("{arg} {}", errno_name(&e)),
        }
    }
    ExitCode::SUCCESS
}
