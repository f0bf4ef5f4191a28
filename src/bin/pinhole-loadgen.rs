//! pinhole-loadgen: a connect load generator for tests and benchmarks. It makes real
//! connects (or unconnected UDP sends) to loopback and reports rate and latency.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// TCP connect (to a closed port it fails fast with ECONNREFUSED).
    Tcp,
    /// UDP connect (no packet is sent).
    Udp,
    /// Unconnected UDP sendto of one byte.
    Sendto,
}

/// Makes connects to loopback and prints one JSON line with the results.
#[derive(Debug, Parser)]
#[command(name = "pinhole-loadgen")]
struct Args {
    /// Destination address (loopback only: 127.0.0.0/8, ::1 or ::ffff:127.x).
    #[arg(long, default_value = "127.0.0.1")]
    addr: IpAddr,
    /// Destination port, or a range A-B that successive connects cycle through.
    #[arg(long, default_value = "9")]
    port: String,
    #[arg(long, value_enum, default_value = "tcp")]
    mode: Mode,
    /// Stop after this many connects (per process).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Pause between connects (e.g. 1ms), for a steady low rate.
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Run this many processes in parallel and sum their results.
    #[arg(long, default_value_t = 1)]
    procs: u32,
    /// Listen on the destination port(s) and accept every connection (TCP), so connects
    /// complete a handshake instead of being refused.
    #[arg(long)]
    listen: bool,
    /// Before the first connect, ask this DNS server (loopback ADDR:PORT) for NAME's A
    /// records, as NAME@ADDR:PORT, and wait for the answer: under an enforcer with name
    /// rules, the answer vouches for the destination it gives.
    #[arg(long, value_name = "NAME@ADDR:PORT")]
    resolve: Option<String>,
    /// Internal: print totals and raw latencies for a parent process.
    #[arg(long, hide = true)]
    raw: bool,
}

fn ports(spec: &str) -> Result<(u16, u16)> {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let (a, b): (u16, u16) = (a.parse().context("port")?, b.parse().context("port")?);
    if a == 0 || b < a {
        bail!("bad port range {spec}");
    }
    Ok((a, b))
}

fn is_loopback(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    connects: u64,
    seconds: f64,
    latencies_ns: Vec<u32>,
}

fn one(mode: Mode, dst: SocketAddr) {
    // Errors (refused, unreachable) are expected: the cost is in the attempt.
    match mode {
        Mode::Tcp => drop(TcpStream::connect(dst)),
        Mode::Udp => {
            let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            if let Ok(s) = UdpSocket::bind(bind) {
                let _ = s.connect(dst);
            }
        }
        Mode::Sendto => {
            let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            if let Ok(s) = UdpSocket::bind(bind) {
                let _ = s.send_to(b"x", dst);
            }
        }
    }
}

/// One A query for `name` to `server` over UDP; returns once a reply arrives.
fn resolve(spec: &str) -> Result<()> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let (name, server) = spec
        .split_once('@')
        .context("--resolve takes NAME@ADDR:PORT")?;
    let server: SocketAddr = server
        .parse()
        .context("--resolve: the server's ADDR:PORT")?;
    if !is_loopback(server.ip()) {
        bail!("--resolve: the server must be on loopback");
    }
    let mut q = Message::new(0x10ad, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii(name).context("--resolve: the name")?,
        RecordType::A,
    ));
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let s = UdpSocket::bind(bind)?;
    s.connect(server)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.send(&q.to_vec()?)?;
    let mut buf = [0u8; 1500];
    s.recv(&mut buf).context("--resolve: no answer")?;
    Ok(())
}

fn run_here(args: &Args) -> Result<Outcome> {
    let (lo, hi) = ports(&args.port)?;
    if let Some(spec) = &args.resolve {
        resolve(spec)?;
    }
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut port = lo;
    loop {
        if args.count.is_some_and(|c| out.connects >= c)
            || args.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        let t = Instant::now();
        one(args.mode, SocketAddr::new(args.addr, port));
        out.latencies_ns
            .push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        out.connects += 1;
        port = if port >= hi { lo } else { port + 1 };
        if let Some(i) = args.interval {
            std::thread::sleep(i);
        }
    }
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinhole-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts and closes every connection on the port range, on background threads.
fn accept_all(addr: IpAddr, (lo, hi): (u16, u16)) -> Result<()> {
    for port in lo..=hi {
        let at = SocketAddr::new(addr, port);
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            None,
        )?;
        sock.set_reuse_address(true)?;
        sock.bind(&at.into())
            .with_context(|| format!("listening on {addr} port {port}"))?;
        // A deep backlog: a full one drops SYNs, and each retry waits a second.
        sock.listen(4096)?;
        let listener: std::net::TcpListener = sock.into();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
    }
    Ok(())
}

fn run() -> Result<()> {
    let args = Args::parse();
    if !is_loopback(args.addr) {
        bail!(
            "{} is not a loopback address: pinhole-loadgen only targets this machine",
            args.addr
        );
    }
    if args.count.is_none() && args.duration.is_none() {
        bail!("give --count or --duration");
    }
    if args.listen {
        if args.mode != Mode::Tcp {
            bail!("--listen is for --mode tcp");
        }
        accept_all(args.addr, ports(&args.port)?)?;
    }
    let mut total = if args.procs <= 1 {
        run_here(&args)?
    } else {
        // Children run the same command with --procs 1 and report their latencies.
        let exe = std::env::current_exe()?;
        let mut argv = vec![
            format!("--addr={}", args.addr),
            format!("--port={}", args.port),
            format!(
                "--mode={}",
                args.mode
                    .to_possible_value()
                    .expect("no skipped modes")
                    .get_name()
            ),
            "--raw".to_owned(),
        ];
        argv.extend(args.count.map(|c| format!("--count={c}")));
        argv.extend(args.resolve.as_ref().map(|r| format!("--resolve={r}")));
        argv.extend(
            args.duration
                .map(|d| format!("--duration={}", humantime::format_duration(d))),
        );
        argv.extend(
            args.interval
                .map(|d| format!("--interval={}", humantime::format_duration(d))),
        );
        let children: Vec<_> = (0..args.procs)
            .map(|_| {
                Command::new(&exe)
                    .args(&argv)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        let mut total = Outcome::default();
        for child in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!("a load process failed: {}", out.status);
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let head: Vec<f64> = lines
                .next()
                .unwrap_or("0 0")
                .split(' ')
                .filter_map(|x| x.parse().ok())
                .collect();
            total.connects += head.first().copied().unwrap_or(0.0) as u64;
            total.seconds = total.seconds.max(head.get(1).copied().unwrap_or(0.0));
            total
                .latencies_ns
                .extend(lines.filter_map(|l| l.parse::<u32>().ok()));
        }
        total
    };
    if args.raw {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        writeln!(out, "{} {}", total.connects, total.seconds)?;
        for l in &total.latencies_ns {
            writeln!(out, "{l}")?;
        }
        return Ok(());
    }
    total.latencies_ns.sort_unstable();
    println!(
        "{{\"connects\":{},\"seconds\":{:.6},\"per_sec\":{:.1},\"p50_ns\":{},\"p99_ns\":{}}}",
        total.connects,
        total.seconds,
        total.connects as f64 / total.seconds.max(1e-9),
        percentile(&total.latencies_ns, 0.50),
        percentile(&total.latencies_ns, 0.99)
    );
    Ok(())
}
