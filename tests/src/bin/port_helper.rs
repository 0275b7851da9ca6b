//! Drives `net_ring` ports from outside, as a NIC's wire would: injects frames into a
//! port's RX rings and collects what leaves its TX rings. Runs as a secondary of the
//! group under test.
//!
//! `port_helper [EAL options] -- inject PORT N [RXQS [PPS]]` puts N UDP frames of mixed
//! sizes (60 to 1514 bytes) into `PORT_rx<q>`, the queue chosen by the frame's RSS hash when
//! RXQS > 1 (as a NIC spreads flows), at most PPS frames per second (default 100,000).
//! `port_helper [EAL options] -- collect PORT N SECS DST_MAC SRC_MAC [TXQS]` takes frames
//! from `PORT_tx<q>` until N arrived or none came for SECS seconds (a loaded machine may
//! pause a sender, so the wait counts from the last frame), checks each payload and MAC
//! (`-` skips the MAC check), and prints what it found.
//! `port_helper [EAL options] -- serve-ports QUEUES`, as the primary, starts every port with
//! QUEUES queue pairs, polls none, and holds them until standard input closes.
//! `port_helper [EAL options] -- pool NAME` prints a pool's in-use count (and fails when it holds
//! more free objects than it has: a double free).
//! `port_helper [EAL options] -- take PORT RXQ` takes an RX queue for polling (prints
//! `TAKEN` or `BUSY <why>`) and holds it until standard input closes.
//! `port_helper [EAL options] -- api-errors` (as a primary with `--vdev net_ring0`) calls
//! the port API wrongly and prints each error.
//!
//! Without EAL, on the Linux side of a TAP interface (AF_PACKET sockets):
//! `port_helper tap-send IFACE N [PPS [QUEUES]]` sends the same N frames into the interface,
//! paced (with QUEUES, first prints how RSS would spread them over that many queues);
//! `port_helper tap-recv IFACE N SECS DST_MAC SRC_MAC` receives and checks them. Frames
//! the kernel itself sends (neighbour discovery...) are counted apart as `other`.
//! `port_helper udp-fwd TO ON N PPS SECS DST_MAC SRC_MAC [QUEUES]` is the host's side of two
//! QEMU `-netdev dgram` NICs: sends the frames to 127.0.0.1:TO, paced, and checks those
//! arriving on 127.0.0.1:ON (with QUEUES, first prints the RSS spread as tap-send does).
//! `port_helper udp-send TO N PPS DST_MAC` only sends, to the given destination MAC, and
//! prints the bytes sent.
//!
//! `port_helper [EAL options] -- rx-modes PORT` (a primary, in the guest) starts PORT with
//! one queue pair, prints its link (and every change of it), then for promiscuous mode off
//! and on: resets the statistics, prints `PHASE promisc=..`, counts the frames it receives
//! for its own MAC and for others until a line `count N` on standard input and N frames to
//! its own MAC, and prints those counts beside the port's statistics. It ends on a line
//! `quit`.
//! `port_helper [EAL options] -- rx-hold PORT` (a primary) starts PORT and leaves its RX
//! queue unpolled until a line `poll N` (see `rx_hold`); `port_helper [EAL options] --
//! watch-link PORT` (a secondary) prints PORT's link and each change its callback sees.
//! `port_helper [EAL options] -- echo PORT N PPS [QUEUE [QUEUES [ROOM]]]` sends N checked
//! frames out of one queue pair of PORT (a primary sets up QUEUES pairs, a secondary takes
//! another; the pool's buffers hold ROOM bytes of data, 2048 unless given) and checks what a
//! peer echoes back on it (see `echo`).

use eal::ring::Ring;
use net::mbuf_ring::{MbufRing, MAX_BURST};
use net::{ether, MacAddr, Mbuf, PktmbufPool};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use system_tests::frames::{build_frame, check_frame, rss_queue};

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("port_helper: {msg}");
    std::process::exit(2);
}

fn arg<T: std::str::FromStr>(a: &[String], i: usize, what: &str) -> T {
    a.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("argument {i} ({what}) missing or bad")))
}

/// Appends `bytes` to `m`'s data.
fn put_bytes(m: &mut Mbuf, bytes: &[u8]) {
    m.append(bytes.len() as u16)
        .unwrap_or_else(|| fail("frame larger than an mbuf"))
        .copy_from_slice(bytes);
}

fn inject(port: &str, n: u32, rxqs: u16, pps: u64) {
    let start = Instant::now();
    let pool = PktmbufPool::create(&format!("inj{}", std::process::id()), 4095, 0, 128, 2048)
        .unwrap_or_else(|e| fail(e));
    let rings: Vec<Ring> = (0..rxqs)
        .map(|q| Ring::lookup(&drivers::ring::ring_name(port, "rx", q)).unwrap_or_else(|e| fail(e)))
        .collect();
    let mut per_queue = vec![0u64; rxqs as usize];
    for i in 0..n {
        // Pace, as a wire would: frame i goes no earlier than i/pps seconds after the start.
        if let Some(wait) =
            Duration::from_nanos(i as u64 * 1_000_000_000 / pps).checked_sub(start.elapsed())
        {
            std::thread::sleep(wait);
        }
        let frame = build_frame(i);
        let mut m = loop {
            match pool.alloc() {
                Some(m) => break m,
                None => std::thread::sleep(Duration::from_micros(100)),
            }
        };
        put_bytes(&mut m, &frame);
        let q = if rxqs > 1 {
            let (h, q) = rss_queue(&frame, rxqs);
            m.set_rss_hash(h);
            q
        } else {
            0
        };
        per_queue[q] += 1;
        let addr = m.into_addr();
        while !rings[q].enqueue_one(addr) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    println!("INJECTED {n} per_queue={per_queue:?} pool={}", pool.name());
    // Wait until the pool's buffers are all back: they are ours until freed downstream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.in_use() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("POOL in_use={}", pool.in_use());
}

/// Sends copies of one frame on TX queue `q` of `port` as fast as the queue takes them,
/// until killed; says FLOODING once a burst went out.
/// Takes 64 mbufs more than its lcore's cache of pool `name` holds and frees them again,
/// for `secs` seconds. Each round's first take refills the cache from the pool's ring
/// (which other processes share) while this process holds no mbuf; a thread without an
/// lcore frees them, straight into the ring, so the cache is empty again.
fn churn(name: &str, secs: u64) {
    let pool = PktmbufPool::lookup(name).unwrap_or_else(|e| fail(e));
    let n = pool.mempool().cache_size() as usize + 64;
    let (to_free, freeing) = std::sync::mpsc::channel::<Vec<Mbuf>>();
    let (to_take, taking) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut held in freeing {
            net::mbuf::free_bulk(&mut held);
            if to_take.send(held).is_err() {
                return;
            }
        }
    });
    let mut held = Vec::with_capacity(n);
    let (mut rounds, end) = (0u64, Instant::now() + Duration::from_secs(secs));
    println!("CHURNING");
    while Instant::now() < end {
        if !pool.alloc_bulk(&mut held, n) {
            fail("the pool ran out");
        }
        let sent = to_free.send(held).is_ok();
        held = taking
            .recv()
            .unwrap_or_else(|_| fail(format!("the freeing thread is gone ({sent})")));
        rounds += 1;
    }
    println!("CHURNED rounds={rounds}");
}

fn tx_flood(port: &str, q: u16) {
    let port = net::Port::by_name(port).unwrap_or_else(|e| fail(e));
    let mut txq = port.tx_queue(q).unwrap_or_else(|e| fail(e));
    let pool = PktmbufPool::create(&format!("flood{}", std::process::id()), 4095, 0, 128, 2048)
        .unwrap_or_else(|e| fail(e));
    let frame = build_frame(0);
    let mut pkts = Vec::with_capacity(32);
    let mut flooding = false;
    loop {
        while pkts.len() < 32 {
            let Some(mut m) = pool.alloc() else { break };
            put_bytes(&mut m, &frame);
            pkts.push(m);
        }
        if txq.tx_burst(&mut pkts) > 0 && !flooding {
            println!("FLOODING");
            flooding = true;
        }
    }
}

/// Empties the `txqs` TX rings of net_ring port `port` into the mbufs' pools as fast as
/// they fill, until killed.
fn drain(port: &str, txqs: u16) {
    let rings = tx_rings(port, txqs);
    println!("DRAINING {port}");
    let mut pkts = Vec::with_capacity(MAX_BURST);
    loop {
        for r in &rings {
            r.dequeue_burst(MAX_BURST, |m| pkts.push(m));
            net::mbuf::free_bulk(&mut pkts);
        }
    }
}

/// The TX rings of net_ring port `port`'s first `txqs` queues.
fn tx_rings(port: &str, txqs: u16) -> Vec<MbufRing> {
    (0..txqs)
        .map(|q| {
            MbufRing::lookup(&drivers::ring::ring_name(port, "tx", q)).unwrap_or_else(|e| fail(e))
        })
        .collect()
}

fn collect(port: &str, n: u32, secs: u64, dst: Option<MacAddr>, src: Option<MacAddr>, txqs: u16) {
    let rings = tx_rings(port, txqs);
    println!("COLLECTING {port}");
    let (mut ok, mut bad, mut dup, mut bad_mac) = (0u32, 0u32, 0u32, 0u32);
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let quiet = Duration::from_secs(secs);
    let mut last_frame = Instant::now();
    while ok + bad + dup < n && last_frame.elapsed() < quiet {
        let mut got = 0;
        for r in &rings {
            got += r.dequeue_burst(MAX_BURST, |m| {
                let data = m.to_vec();
                bytes += data.len() as u64;
                if dst.is_some_and(|d| ether::dst(&data) != Some(d))
                    || src.is_some_and(|s| ether::src(&data) != Some(s))
                {
                    bad_mac += 1;
                }
                match check_frame(&data) {
                    Some(i) if seen.insert(i) => ok += 1,
                    Some(_) => dup += 1,
                    None => bad += 1,
                }
            });
        }
        if got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        } else {
            last_frame = Instant::now();
        }
    }
    let missing = (0..n).filter(|i| !seen.contains(i)).count();
    println!(
        "COLLECTED ok={ok} bad={bad} dup={dup} bad_mac={bad_mac} missing={missing} bytes={bytes}"
    );
}

/// An AF_PACKET socket bound to `iface`, all protocols.
fn packet_socket(iface: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation; owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        fail(format!(
            "AF_PACKET socket: {} (run as root)",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just returned by socket.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).unwrap_or_else(|e| fail(e));
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        fail(format!("no interface {iface}"));
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds our socket to a valid sockaddr_ll of the given size.
    let r = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        fail(format!(
            "bind to {iface}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let big: libc::c_int = 64 << 20;
    // SAFETY: sets an int option we own; failure only means a smaller buffer.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &big as *const _ as *const libc::c_void,
            4,
        )
    };
    fd
}

/// Sends frames 0..n through `send`, frame i no earlier than i/pps seconds after the start.
fn send_frames(n: u32, pps: u64, mut send: impl FnMut(&[u8]) -> std::io::Result<()>) {
    let start = Instant::now();
    for i in 0..n {
        let due = Duration::from_nanos(i as u64 * 1_000_000_000 / pps);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if let Err(e) = send(&build_frame(i)) {
            fail(format!("send: {e}"));
        }
    }
    println!("SENT {n} in {:.2} s", start.elapsed().as_secs_f64());
}

/// Receives frames through `recv` (a frame's length, or None after a short timeout) until
/// n distinct ones arrived or `secs` passed, checks them and prints what it found, with
/// the rate of good frames between the first and the last one received.
fn receive_frames(
    n: u32,
    secs: u64,
    dst: Option<MacAddr>,
    src: Option<MacAddr>,
    mut recv: impl FnMut(&mut [u8]) -> Option<usize>,
) {
    let (mut ok, mut dup, mut bad_mac, mut other) = (0u32, 0u32, 0u32, 0u32);
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut first, mut last) = (None, Instant::now());
    while ok < n && Instant::now() < deadline {
        let Some(len) = recv(&mut buf) else { continue };
        last = Instant::now();
        first.get_or_insert(last);
        let data = &buf[..len];
        match check_frame(data) {
            Some(i) => {
                if dst.is_some_and(|d| ether::dst(data) != Some(d))
                    || src.is_some_and(|s| ether::src(data) != Some(s))
                {
                    bad_mac += 1;
                }
                if seen.insert(i) {
                    ok += 1
                } else {
                    dup += 1
                }
            }
            None => other += 1,
        }
    }
    let missing = (0..n).filter(|i| !seen.contains(i)).count();
    let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let rate = if span > 0.0 { ok as f64 / span } else { 0.0 };
    println!(
        "RECEIVED ok={ok} dup={dup} bad_mac={bad_mac} missing={missing} other={other} rate={rate:.0}"
    );
}

fn set_recv_timeout(fd: i32) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: sets a timeval option on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
}

/// Sends frames 0..n into `iface`; with `queues`, also prints how RSS over that many
/// queues would spread them.
/// Prints how a NIC with RSS over `queues` queues (DPDK's key, table entry i to queue
/// i % queues) spreads the `n` test frames.
fn print_rss_spread(n: u32, queues: Option<u16>) {
    if let Some(q) = queues {
        let mut per_queue = vec![0u64; q as usize];
        for i in 0..n {
            per_queue[rss_queue(&build_frame(i), q).1] += 1;
        }
        println!("RSS per_queue={per_queue:?}");
    }
}

fn tap_send(iface: &str, n: u32, pps: u64, queues: Option<u16>) {
    print_rss_spread(n, queues);
    let fd = packet_socket(iface);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    send_frames(n, pps, |f| {
        // SAFETY: sends the frame's bytes on our bound socket.
        let r = unsafe { libc::send(raw, f.as_ptr() as *const libc::c_void, f.len(), 0) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    });
}

fn tap_recv(iface: &str, n: u32, secs: u64, dst: Option<MacAddr>, src: Option<MacAddr>) {
    let fd = packet_socket(iface);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    set_recv_timeout(raw);
    println!("LISTENING {iface}");
    receive_frames(n, secs, dst, src, |buf| {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: receives into our buffer and address, with their sizes.
        let r = unsafe {
            libc::recvfrom(
                raw,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut from as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        // A timeout, or a frame the kernel sends out itself.
        (r > 0 && from.sll_pkttype != libc::PACKET_OUTGOING).then_some(r as usize)
    });
}

/// The host's side of a QEMU `-netdev dgram` NIC: one frame per UDP datagram on loopback.
/// Sends the frames to 127.0.0.1:`to` (the guest's RX) while receiving and checking what
/// arrives on 127.0.0.1:`on` (the guest's TX).
fn udp_fwd(
    to: u16,
    on: u16,
    n: u32,
    pps: u64,
    secs: u64,
    dst: Option<MacAddr>,
    src: Option<MacAddr>,
) {
    let rx = std::net::UdpSocket::bind(("127.0.0.1", on))
        .unwrap_or_else(|e| fail(format!("bind 127.0.0.1:{on}: {e}")));
    let raw = std::os::fd::AsRawFd::as_raw_fd(&rx);
    // A receive buffer large enough to hold a burst while the checker is busy.
    let big: i32 = 64 << 20;
    // SAFETY: sets an integer option on our socket.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &big as *const _ as *const libc::c_void,
            4,
        )
    };
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap_or_else(|e| fail(e));
    let receiver = std::thread::spawn(move || {
        receive_frames(n, secs, dst, src, |buf| rx.recv(buf).ok());
    });
    let tx = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap_or_else(|e| fail(e));
    send_frames(n, pps, |f| tx.send_to(f, ("127.0.0.1", to)).map(|_| ()));
    if receiver.join().is_err() {
        fail("the receiving thread panicked (its message is above)");
    }
}

/// Sends frames 0..n to 127.0.0.1:`to`, paced, all with destination MAC `dst`.
fn udp_send(to: u16, n: u32, pps: u64, dst: MacAddr) {
    let tx = std::net::UdpSocket::bind(("127.0.0.1", 0)).unwrap_or_else(|e| fail(e));
    let mut bytes = 0u64;
    send_frames(n, pps, |f| {
        let mut f = f.to_vec();
        f[..6].copy_from_slice(&dst.0);
        bytes += f.len() as u64;
        tx.send_to(&f, ("127.0.0.1", to)).map(|_| ())
    });
    println!("BYTES {bytes}");
}

fn print_link(l: net::Link) {
    println!(
        "LINK up={} speed={} full_duplex={}",
        l.up as u8, l.speed_mbps, l.full_duplex as u8
    );
}

/// Starts `port` with one queue pair of 256 descriptors on `pool` and prints its link once up.
fn start_one_pair(port: &net::Port, pool: &PktmbufPool) {
    start_pairs(port, pool, 1);
}

/// Configures `port` with `queues` RX/TX queue pairs of 256 descriptors, starts it and waits
/// for its link.
fn start_pairs(port: &net::Port, pool: &PktmbufPool, queues: u16) {
    port.configure(queues, queues, net::PortConf::default())
        .and_then(|_| (0..queues).try_for_each(|q| port.rx_queue_setup(q, 256, pool)))
        .and_then(|_| (0..queues).try_for_each(|q| port.tx_queue_setup(q, 256)))
        .and_then(|_| port.start())
        .unwrap_or_else(|e| fail(e));
    print_link(
        port.wait_link_up(Duration::from_secs(10))
            .unwrap_or_else(|e| fail(e)),
    );
}

/// The lines of standard input, trimmed, as they come.
fn stdin_lines() -> std::sync::mpsc::Receiver<String> {
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.send(l.trim().to_string()).is_err() {
                return;
            }
        }
    });
    lines
}

/// Receives on `rxq`, handing each frame to `take` (which says whether it counts), until a
/// line `count N` has come on `lines` and N frames have counted, or 10 s after that line.
/// Returns how many counted; None if standard input closed first.
fn receive_until_counted(
    lines: &std::sync::mpsc::Receiver<String>,
    rxq: &mut net::RxQueue,
    mut take: impl FnMut(&Mbuf) -> bool,
) -> Option<u64> {
    let mut burst = Vec::with_capacity(32);
    let (mut counted, mut until) = (0u64, None::<(u64, Instant)>);
    while until.is_none_or(|(n, deadline)| counted < n && Instant::now() < deadline) {
        match lines.try_recv() {
            Ok(l) => {
                if let Some(n) = l.strip_prefix("count ").and_then(|n| n.trim().parse().ok()) {
                    until = Some((n, Instant::now() + Duration::from_secs(10)));
                }
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        while rxq.rx_burst(&mut burst, 32) > 0 {
            counted += burst.drain(..).filter(|m| take(m)).count() as u64;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(counted)
}

/// The extended statistic `name` of `port` (0 if it has none of that name).
fn xstat(port: &net::Port, name: &str) -> u64 {
    port.xstats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// Starts `port` with one queue pair and leaves it unpolled until a line `poll N`, so that
/// the device runs out of RX descriptors; once the device has seen N frames (or after 10 s),
/// prints its missed count (the device's, and the port's `imissed`) and polls. At a line
/// `count N` it waits until it has received N frames (or 10 s), then prints what it
/// received and the missed counts again.
fn rx_hold(port: u16) {
    let port = net::Port::by_id(port).unwrap_or_else(|e| fail(e));
    let pool = PktmbufPool::create("rx_hold", 2047, 64, 128, 2048).unwrap_or_else(|e| fail(e));
    start_one_pair(&port, &pool);
    let lines = stdin_lines();
    let expected = |l: &str, cmd: &str| -> Option<u64> { l.strip_prefix(cmd)?.trim().parse().ok() };
    println!("HOLDING");
    let seen = loop {
        match lines.recv() {
            Ok(l) => match expected(&l, "poll") {
                Some(n) => break n,
                None => continue,
            },
            Err(_) => return,
        }
    };
    system_tests::eventually(|| xstat(&port, "rx_total_packets"), |&n| n >= seen);
    // The device's counter (an xstat), then the port's imissed, which is that counter.
    let missed = xstat(&port, "rx_missed_packets");
    println!("MISSED {missed} IMISSED {}", port.stats().imissed);
    let mut rxq = port.rx_queue(0).unwrap_or_else(|e| fail(e));
    let Some(received) = receive_until_counted(&lines, &mut rxq, |_| true) else {
        return;
    };
    println!(
        "RECEIVED {received} MISSED {} IMISSED {}",
        xstat(&port, "rx_missed_packets"),
        port.stats().imissed
    );
}

/// As the primary: sets up and starts every port of the group with `queues` queue pairs,
/// polls none of them (secondaries forward on them) and holds them until standard input
/// closes.
fn serve_ports(queues: u16) {
    let pool = PktmbufPool::create("serve_ports", 8191, 64, 128, 2048).unwrap_or_else(|e| fail(e));
    for port in net::ethdev::ports() {
        start_pairs(&port, &pool, queues);
    }
    println!("PORTS STARTED");
    let lines = stdin_lines();
    while lines.recv().is_ok() {}
}

/// Prints the link of `port` (a secondary's view) and every change a link callback sees,
/// until standard input closes.
fn watch_link(port: u16) {
    let port = net::Port::by_id(port).unwrap_or_else(|e| fail(e));
    print_link(port.link());
    port.on_link_change(|_, l| print_link(l));
    println!("WATCHING");
    let lines = stdin_lines();
    while lines.recv().is_ok() {}
}

/// Prints every port event the group announces (`PORT ADDED id name`, `PORT REMOVED id`),
/// until standard input closes.
fn watch_ports() {
    net::hotplug::on_port_event(|ev| match ev {
        net::hotplug::PortEvent::Added(id) => {
            let name = net::Port::by_id(id).map(|p| p.name()).unwrap_or_default();
            println!("PORT ADDED {id} {name}");
        }
        net::hotplug::PortEvent::Removed(id) => println!("PORT REMOVED {id}"),
    });
    println!("WATCHING PORTS");
    let lines = stdin_lines();
    while lines.recv().is_ok() {}
}

/// Receives on `port` with promiscuous mode off, then on; see the module's documentation.
fn rx_modes(port: u16) {
    let port = net::Port::by_id(port).unwrap_or_else(|e| fail(e));
    let pool = PktmbufPool::create("rx_modes", 2047, 64, 128, 2048).unwrap_or_else(|e| fail(e));
    start_one_pair(&port, &pool);
    port.on_link_change(|_, l| print_link(l));
    let lines = stdin_lines();
    let own = port.mac();
    let mut rxq = port.rx_queue(0).unwrap_or_else(|e| fail(e));
    // Promiscuous mode off, then on; then off again with a foreign unicast address added and
    // a multicast list, then without them.
    let foreign: MacAddr = "02:00:00:00:bb:bb"
        .parse()
        .unwrap_or_else(|e: String| fail(e));
    let group: MacAddr = "01:00:5e:00:00:fb"
        .parse()
        .unwrap_or_else(|e: String| fail(e));
    for phase in ["promisc=off", "promisc=on", "filters=on", "filters=off"] {
        let set = match phase {
            "promisc=off" => port.promiscuous_disable(),
            "promisc=on" => port.promiscuous_enable(),
            "filters=on" => port
                .promiscuous_disable()
                .and_then(|_| port.mac_addr_add(foreign))
                .and_then(|_| port.set_mc_addr_list(&[group])),
            _ => port
                .mac_addr_remove(foreign)
                .and_then(|_| port.set_mc_addr_list(&[])),
        };
        set.unwrap_or_else(|e| fail(e));
        port.stats_reset();
        println!("PHASE {phase}");
        let (mut mine, mut others, mut multicast, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        // The host sends the last frame to our own MAC after those the filter may drop.
        let own_frames = receive_until_counted(&lines, &mut rxq, |m| {
            bytes += m.pkt_len() as u64;
            let dst = ether::dst(m.data());
            match dst {
                Some(d) if d == own => mine += 1,
                Some(d) if d.is_multicast() => multicast += 1,
                _ => others += 1,
            }
            dst == Some(own)
        });
        if own_frames.is_none() {
            return;
        }
        let s = port.stats();
        println!("COUNTED {phase} own={mine} foreign={others} multicast={multicast} bytes={bytes}");
        println!(
            "STATS ipackets={} ibytes={} imissed={} rx_nombuf={}",
            s.ipackets, s.ibytes, s.imissed, s.rx_nombuf
        );
    }
    while lines.recv().is_ok_and(|l| l != "quit") {}
    drop(rxq);
    port.close().unwrap_or_else(|e| fail(e));
}

/// Sends `n` mixed frames (every third a two-segment chain) out of queue pair `queue` of
/// port `port` at `pps` and takes back what the peer echoes on the same queue pair (DPDK's
/// testpmd on net_vhost, io or macswap mode): each must come back once, intact, and carry
/// this queue's frame numbers (`queue` * 10,000,000 on). Prints link changes with how many
/// frames had come back by then.
///
/// The primary sets the port up with `queues` queue pairs and prints the pool's in-use count
/// before the start and after the stop; with more than one queue pair it waits for a line on
/// stdin before stopping, so that secondaries on the other pairs can finish. A secondary
/// uses the port and the pool ("echo") as the primary left them.
fn echo(eal: &eal::Eal, port: u16, n: u32, pps: u64, queue: u16, queues: u16, room: u16) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let port = net::Port::by_id(port).unwrap_or_else(|e| fail(e));
    let primary = eal.role() == eal::Role::Primary;
    let pool = if primary {
        let pool = PktmbufPool::create("echo", 8191, 64, 128, room).unwrap_or_else(|e| fail(e));
        println!("POOL before_start={}", pool.in_use());
        start_pairs(&port, &pool, queues);
        pool
    } else {
        PktmbufPool::lookup("echo").unwrap_or_else(|e| fail(e))
    };
    // DPDK's vhost lets its queues carry traffic a moment after the rings are set up (its
    // own thread handles that): what it forwards before then it drops, as its TX-dropped
    // counter shows.
    std::thread::sleep(Duration::from_millis(500));
    let back = Arc::new(AtomicU32::new(0));
    let seen_back = back.clone();
    port.on_link_change(move |_, l| {
        println!(
            "LINK up={} back_so_far={}",
            l.up as u8,
            seen_back.load(Ordering::Relaxed)
        )
    });
    let mut rxq = port.rx_queue(queue).unwrap_or_else(|e| fail(e));
    let mut txq = port.tx_queue(queue).unwrap_or_else(|e| fail(e));
    let first = u32::from(queue) * 10_000_000;
    let (mut ok, mut bad, mut dup, mut bytes) = (0u32, 0u32, 0u32, 0u64);
    let mut seen = HashSet::new();
    let mut rx = Vec::with_capacity(32);
    let mut pending: Vec<Mbuf> = Vec::with_capacity(32);
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut next = 0u32;
    loop {
        // Frames due by now, as a paced wire would offer them.
        let due = ((start.elapsed().as_nanos() as u64 * pps / 1_000_000_000) as u32).min(n);
        while next < due && pending.len() < 32 {
            let frame = build_frame(first + next);
            let alloc = || {
                pool.alloc()
                    .unwrap_or_else(|| fail("the echo pool ran dry"))
            };
            // Every third frame starts with a 40-byte segment; no segment is longer than a
            // buffer holds.
            let first = if next % 3 == 2 { 40 } else { usize::from(room) };
            let mut pieces = frame[..first.min(frame.len())]
                .chunks(usize::from(room))
                .chain(frame[first.min(frame.len())..].chunks(usize::from(room)));
            let mut m = alloc();
            put_bytes(&mut m, pieces.next().unwrap_or_default());
            for piece in pieces {
                let mut tail = alloc();
                put_bytes(&mut tail, piece);
                m.chain(tail);
            }
            pending.push(m);
            next += 1;
        }
        txq.tx_burst(&mut pending);
        while rxq.rx_burst(&mut rx, 32) > 0 {
            last_progress = Instant::now();
            for m in rx.drain(..) {
                let data = m.to_vec();
                bytes += data.len() as u64;
                match check_frame(&data).filter(|i| (first..first + n).contains(i)) {
                    Some(i) if seen.insert(i) => ok += 1,
                    Some(_) => dup += 1,
                    None => bad += 1,
                }
            }
            back.store(ok, Ordering::Relaxed);
        }
        let all_sent = next == n && pending.is_empty();
        if all_sent && (ok + dup + bad >= n || last_progress.elapsed() > Duration::from_secs(3)) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            fail("echo did not finish within 120 s");
        }
    }
    drop(pending);
    println!(
        "ECHO sent={n} ok={ok} bad={bad} dup={dup} missing={} bytes={bytes} secs={:.2}",
        n - ok,
        start.elapsed().as_secs_f64()
    );
    drop((rxq, txq));
    if !primary {
        return;
    }
    if queues > 1 {
        println!("WAITING");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    port.stop()
        .and_then(|_| port.close())
        .unwrap_or_else(|e| fail(e));
    println!("POOL after_stop={}", pool.in_use());
}

/// Uses the port API in the wrong order and prints what each misuse says.
fn api_errors() {
    let port = net::Port::by_name("net_ring0").unwrap_or_else(|e| fail(e));
    let show = |what: &str, r: net::ethdev::Result<()>| match r {
        Ok(()) => println!("{what}: accepted"),
        Err(e) => println!("{what}: {e}"),
    };
    let pool = PktmbufPool::create("api_pool", 1023, 0, 128, 2048).unwrap_or_else(|e| fail(e));
    show("start unconfigured", port.start());
    show("rx setup unconfigured", port.rx_queue_setup(0, 64, &pool));
    show(
        "configure 0 queues",
        port.configure(0, 1, net::PortConf::default()),
    );
    show(
        "configure 99 queues",
        port.configure(99, 1, net::PortConf::default()),
    );
    show(
        "configure 1/1",
        port.configure(1, 1, net::PortConf::default()),
    );
    show("start without queues", port.start());
    show("rx queue 5", port.rx_queue(5).map(drop));
    show("no port 9", net::Port::by_id(9).map(drop));
    show("mtu 100000", port.set_mtu(100_000));
    show("multicast mac", port.set_mac(MacAddr([1, 0, 0, 0, 0, 1])));
    for i in 0..32 {
        port.mac_addr_add(MacAddr::local(i))
            .unwrap_or_else(|e| fail(e));
    }
    show("33rd mac_addr_add", port.mac_addr_add(MacAddr::local(32)));
    show(
        "mac_addr_remove unknown",
        port.mac_addr_remove(MacAddr::local(99)),
    );
    show(
        "unicast in mc list",
        port.set_mc_addr_list(&[MacAddr::local(1)]),
    );
    show(
        "mc list",
        port.set_mc_addr_list(&[MacAddr([1, 0, 0x5e, 0, 0, 0xfb])]),
    );
    println!("mac filters: {}", port.record().mac_filters().len());
    show(
        "start 1/1",
        port.rx_queue_setup(0, 64, &pool)
            .and_then(|_| port.tx_queue_setup(0, 64))
            .and_then(|_| port.start()),
    );
    show("rx setup started", port.rx_queue_setup(0, 64, &pool));
    show("tx setup started", port.tx_queue_setup(0, 64));
    show(
        "configure started",
        port.configure(1, 1, net::PortConf::default()),
    );
}

fn mac_arg(s: &str) -> Option<MacAddr> {
    (s != "-").then(|| s.parse().unwrap_or_else(|e| fail(e)))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("tap-send") => {
            return tap_send(
                &args[2],
                arg(&args, 3, "count"),
                args.get(4).map_or(20_000, |_| arg(&args, 4, "pps")),
                args.get(5).map(|_| arg(&args, 5, "queues")),
            )
        }
        Some("udp-fwd") => {
            print_rss_spread(
                arg(&args, 4, "count"),
                args.get(9).map(|_| arg(&args, 9, "queues")),
            );
            return udp_fwd(
                arg(&args, 2, "port to send to"),
                arg(&args, 3, "port to receive on"),
                arg(&args, 4, "count"),
                arg(&args, 5, "packets per second"),
                arg(&args, 6, "seconds"),
                mac_arg(&args[7]),
                mac_arg(&args[8]),
            );
        }
        Some("udp-send") => {
            return udp_send(
                arg(&args, 2, "port to send to"),
                arg(&args, 3, "count"),
                arg(&args, 4, "packets per second"),
                mac_arg(&args[5]).unwrap_or_else(|| fail("udp-send needs a destination MAC")),
            )
        }
        Some("tap-recv") => {
            return tap_recv(
                &args[2],
                arg(&args, 3, "count"),
                arg(&args, 4, "seconds"),
                mac_arg(&args[5]),
                mac_arg(&args[6]),
            )
        }
        _ => {}
    }
    let (eal, app) = eal::init_or_exit(&args);
    drivers::register_all();
    if let Err(e) = net::init() {
        fail(e);
    }
    match app.get(1).map(String::as_str) {
        Some("inject") => inject(
            &app[2],
            arg(&app, 3, "count"),
            app.get(4).map_or(1, |_| arg(&app, 4, "rx queues")),
            app.get(5)
                .map_or(100_000, |_| arg(&app, 5, "packets per second")),
        ),
        Some("collect") => collect(
            &app[2],
            arg(&app, 3, "count"),
            arg(&app, 4, "seconds"),
            mac_arg(&app[5]),
            mac_arg(&app[6]),
            app.get(7).map_or(1, |_| arg(&app, 7, "tx queues")),
        ),
        Some("drain") => drain(&app[2], arg(&app, 3, "tx queues")),
        Some("churn") => churn(&app[2], arg(&app, 3, "seconds")),
        Some("tx-flood") => tx_flood(&app[2], arg(&app, 3, "queue")),
        Some("take") => {
            let port = net::Port::by_name(&app[2]).unwrap_or_else(|e| fail(e));
            let q = match port.rx_queue(arg(&app, 3, "queue")) {
                Ok(q) => {
                    println!("TAKEN");
                    Some(q)
                }
                Err(e) => {
                    println!("BUSY {e}");
                    None
                }
            };
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
            drop(q);
        }
        Some("serve-ports") => serve_ports(arg(&app, 2, "queues")),
        Some("api-errors") => api_errors(),
        Some("rx-modes") => rx_modes(arg(&app, 2, "port")),
        Some("rx-hold") => rx_hold(arg(&app, 2, "port")),
        Some("watch-link") => watch_link(arg(&app, 2, "port")),
        Some("echo") => echo(
            eal,
            arg(&app, 2, "port"),
            arg(&app, 3, "count"),
            arg(&app, 4, "packets per second"),
            app.get(5).map_or(0, |_| arg(&app, 5, "queue")),
            app.get(6).map_or(1, |_| arg(&app, 6, "queues")),
            app.get(7).map_or(2048, |_| arg(&app, 7, "data room")),
        ),
        Some("watch-ports") => watch_ports(),
        Some("hotplug") => match (app.get(2).map(String::as_str), app.get(3)) {
            (Some("attach"), Some(devargs)) => match net::hotplug::attach(devargs) {
                Ok(p) => println!("ATTACHED {} {}", p.id(), p.name()),
                Err(e) => fail(e),
            },
            (Some("detach"), Some(id)) => {
                match net::hotplug::detach(id.parse().unwrap_or_else(|e| fail(e))) {
                    Ok(()) => println!("DETACHED {id}"),
                    Err(e) => fail(e),
                }
            }
            _ => fail("hotplug attach DEVARGS | hotplug detach PORT"),
        },
        Some("pool") => match PktmbufPool::lookup(&app[2]) {
            Ok(p) => {
                let (free, size) = (p.available(), p.mempool().size());
                if free > size {
                    fail(format!(
                        "pool {} holds {free} free objects but has only {size}: an mbuf was freed twice",
                        app[2]
                    ));
                }
                println!("POOL in_use={}", size - free);
            }
            Err(e) => fail(e),
        },
        other => fail(format!(
            "unknown command {other:?}: inject, collect, drain, tx-flood, take, serve-ports, pool, api-errors, rx-modes, echo, watch-ports or hotplug"
        )),
    }
    eal.cleanup();
}
