//! The test frames `port_helper` and `soak` send (frame `i`: Ethernet/IPv4/UDP, its length and
//! payload derived from `i`), how to build and check them, and how to read them back from a
//! capture file with tshark.

use crate::{workspace_bin, Group, Proc, T};

/// Size of frame `i`: spread over 60..=1514 bytes.
pub fn frame_len(i: u32) -> usize {
    60 + (i as usize * 397) % (1514 - 60 + 1)
}

/// The UDP source and destination ports of frame `i` (distinct flows for RSS).
pub fn udp_ports(i: u32) -> (u16, u16) {
    (1024 + (i % 4096) as u16, 5000 + (i / 4096) as u16)
}

/// The UDP payload of frame `i`: its index, then a pattern derived from it.
pub fn udp_payload(i: u32) -> Vec<u8> {
    let mut payload = vec![0u8; frame_len(i) - 14 - 20 - 8];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    for (k, b) in payload.iter_mut().enumerate().skip(4) {
        *b = pattern(i, k);
    }
    payload
}

fn pattern(i: u32, k: usize) -> u8 {
    (i as usize).wrapping_mul(31).wrapping_add(k) as u8
}

/// The index a frame of `len` bytes with UDP `payload` carries, if it is frame i intact.
pub fn intact_index(len: usize, payload: &[u8]) -> Option<u32> {
    let i = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
    let intact = len == frame_len(i)
        && payload
            .iter()
            .enumerate()
            .skip(4)
            .all(|(k, b)| *b == pattern(i, k));
    intact.then_some(i)
}

/// Frame `i`: Ethernet/IPv4/UDP, ports varying per frame (distinct flows for RSS), the
/// payload starting with the index and filled with a pattern derived from it.
pub fn build_frame(i: u32) -> Vec<u8> {
    let payload = udp_payload(i);
    let (sport, dport) = udp_ports(i);
    let builder = etherparse::PacketBuilder::ethernet2(
        [0x02, 0, 0, 0, 0xaa, 0xaa],
        [0x02, 0, 0, 0, 0xbb, 0xbb],
    )
    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    .udp(sport, dport);
    let mut out = Vec::with_capacity(frame_len(i));
    builder
        .write(&mut out, &payload)
        .expect("a frame of at most 1514 bytes fits IPv4 and UDP, and a Vec takes any write");
    out
}

/// The index a frame carries, if its payload is intact.
pub fn check_frame(data: &[u8]) -> Option<u32> {
    let p = etherparse::SlicedPacket::from_ethernet(data).ok()?;
    let payload = match p.transport? {
        etherparse::TransportSlice::Udp(u) => u.payload(),
        _ => return None,
    };
    intact_index(data.len(), payload)
}

/// The RSS hash of `frame` (DPDK's default key) and the queue of `queues` it picks, as a
/// NIC whose indirection table sends entry i to queue i % queues (for a power-of-two count).
pub fn rss_queue(frame: &[u8], queues: u16) -> (u32, usize) {
    let h = net::rss::hash_ipv4_frame(&net::rss::DEFAULT_KEY, frame).unwrap_or(0);
    (h, (h % queues as u32) as usize)
}

/// One frame of a capture file, as tshark reads it.
#[derive(Debug)]
pub struct Captured {
    /// The pcapng interface (0 in a pcap file).
    pub interface: u32,
    pub src: String,
    pub dst: String,
    /// The index the UDP ports say it is (u32::MAX for a frame not of port_helper's).
    pub index: u32,
    /// pcapng's direction flag: 1 inbound, 2 outbound (0 in a pcap file).
    pub direction: u32,
    /// Length and payload are those of frame `index`.
    pub payload_ok: bool,
}

/// The frames of capture `file` (pcap or pcapng), read by tshark.
pub fn tshark(file: &str) -> Vec<Captured> {
    let fields = [
        "frame.interface_id",
        "frame.len",
        "eth.src",
        "eth.dst",
        "udp.srcport",
        "udp.dstport",
        "frame.packet_flags_direction",
        "udp.payload",
    ];
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=;"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let (st, out, err) = crate::run("tshark", &args, T);
    assert!(
        st.success(),
        "tshark (install it with scripts/setup --peer): {err}"
    );
    out.lines()
        .map(|l| {
            let c: Vec<&str> = l.split(';').collect();
            assert_eq!(c.len(), fields.len(), "{l}");
            let dec = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
            let index = dec(c[4]).wrapping_sub(1024) + 4096 * dec(c[5]).wrapping_sub(5000);
            let payload: Vec<u8> = (0..c[7].len() / 2)
                .filter_map(|k| u8::from_str_radix(&c[7][2 * k..2 * k + 2], 16).ok())
                .collect();
            Captured {
                interface: dec(c[0]),
                src: c[2].into(),
                dst: c[3].into(),
                index,
                // Printed as hex (0x00000001: inbound); absent from pcap files.
                direction: u32::from_str_radix(c[6].trim_start_matches("0x"), 16).unwrap_or(0),
                payload_ok: intact_index(dec(c[1]) as usize, &payload) == Some(index),
            }
        })
        .collect()
}

/// Starts dumpcap in group `g` on lcore `lcore` with `args`, and waits until it captures.
pub fn dumpcap(g: &Group, lcore: u32, args: &[&str]) -> Proc {
    let p = g.secondary(&workspace_bin("dumpcap"), &format!("{lcore}@0"), args);
    p.expect_stderr("Capturing on", T);
    p
}

/// Checks that, for each `(interface, direction, src, dst)`, the capture holds frames 0 to
/// `n - 1` of port_helper's, each once and intact, with those MACs and that direction.
pub fn check_each_once<const I: usize>(
    frames: &[Captured],
    n: u32,
    interfaces: [(u32, u32, &str, &str); I],
) {
    for (interface, direction, src, dst) in interfaces {
        let mut seen = vec![0u32; n as usize];
        for f in frames.iter().filter(|f| f.interface == interface) {
            assert!(f.payload_ok && f.index < n, "{f:?}");
            assert_eq!(
                (f.direction, f.src.as_str(), f.dst.as_str()),
                (direction, src, dst),
                "{f:?}"
            );
            seen[f.index as usize] += 1;
        }
        assert!(
            seen.iter().all(|&k| k == 1),
            "interface {interface}: {seen:?}"
        );
    }
}
