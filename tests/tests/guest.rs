//! Tests on real virtio-net PCI devices through VFIO, in a QEMU guest with a virtual
//! IOMMU (`scripts/guest`). They need QEMU and the guest image, so `cargo test` skips them;
//! `scripts/guest-test` (called by `scripts/test`) builds the image and runs them.

use std::time::Duration;
use system_tests::guest::{boot_with, check_all_back, forward, forwards_all};
use system_tests::{
    check_rss_shares, count, number_after, udp_fwd, udp_fwd_lines, workspace_bin, MbufCensus, Proc,
};

fn boot(script: &str, nics: &[&str]) -> Proc {
    boot_with(script, nics, &[])
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn l2fwd_between_virtio_ports() {
    let boot_wait = Duration::from_secs(240);
    let mut g = boot("l2fwd.sh", &["dgram:20000:20001", "dgram:20002:20003"]);
    g.expect("Lcore 1: RX port 1", boot_wait);
    // Frames into port 0 leave port 1 with l2fwd's MACs: destination 02:00:00:00:00:01
    // (the TX port), source port 1's own MAC.
    forwards_all(
        "10,000 frames at 2,000/s",
        (20000, 20003),
        10_000,
        2_000,
        ["02:00:00:00:00:01", "52:54:00:00:00:02"],
    );
    // Where loss starts under this TCG guest: the first rate that loses frames.
    let mut first_loss = None;
    for pps in [5_000, 10_000, 20_000, 40_000, 80_000] {
        let line = udp_fwd(20000, 20003, 4_000, pps, "-", "-");
        let lost = count(&line, "missing");
        println!("4,000 frames at {pps}/s: {line}");
        if lost > 0 {
            first_loss = Some(pps);
            break;
        }
    }
    println!("loss starts at: {first_loss:?} frames/s (None: no loss up to 80,000/s)");
    g.send("stop");
    let busy = g.expect("error: ", Duration::from_secs(60));
    assert!(
        busy.contains("already in use by process") && busy.contains("l2fwd"),
        "{busy}"
    );
    g.expect("second group status 1", Duration::from_secs(30));
    g.expect("l2fwd status 0", Duration::from_secs(30));
    // PCI hotplug (the script waits for each step; a step that times out prints the log).
    let step = Duration::from_secs(90);
    for want in [
        "Start automatic packet forwarding",
        "WATCHING PORTS",
        "Port 1 is attached. Now total ports is 2",
        "ATTACHED 2 0000:00:03.0",
        "PORT ADDED 2 0000:00:03.0",
        "Port 1 is detached. Now total ports is 2",
        "Port 2 is detached. Now total ports is 1",
        "PORT REMOVED 2",
        "Port 1 is attached. Now total ports is 2",
        "PORT ADDED 1 0000:00:02.0",
        "watcher status 0",
        "testpmd status 0",
    ] {
        g.expect(want, step);
    }
    let unbound = g.expect("error: ", Duration::from_secs(60));
    assert!(
        unbound.contains("not vfio-pci") && unbound.contains("devbind --bind=vfio-pci"),
        "{unbound}"
    );
    g.expect("unbound device status 1", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn l2fwd_on_packed_rings() {
    // QEMU's virtio-net with packed=on: the PCI transport takes the packed rings it offers.
    l2fwd_on_rings(["packed", "packed"], ["packed rings", "packed rings"]);
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn l2fwd_on_rings_used_in_order() {
    // QEMU's virtio-net with in_order=on: split rings used in order on one port, packed
    // rings used in order on the other.
    l2fwd_on_rings(
        ["in_order", "packed+in_order"],
        ["split rings, in order", "packed rings, in order"],
    );
}

/// l2fwd between two virtio-net ports whose devices take the `scripts/guest` NIC options
/// `opts`: each port must run on the rings `kinds` say, and 10,000 frames cross each way.
fn l2fwd_on_rings(opts: [&str; 2], kinds: [&str; 2]) {
    let nics = [
        format!("dgram:20040:20041:{}", opts[0]),
        format!("dgram:20042:20043:{}", opts[1]),
    ];
    let mut g = boot("l2fwd_rings.sh", &[&nics[0], &nics[1]]);
    let boot_wait = Duration::from_secs(240);
    let lines = expect_all(
        &mut g,
        &["Lcore 1: RX port 1", "RINGS1: ", "RINGS2: "],
        boot_wait,
    );
    assert_eq!(lines[1], format!("RINGS1: {}", kinds[0]));
    assert_eq!(lines[2], format!("RINGS2: {}", kinds[1]));
    forwards_all(
        &format!("10,000 frames on {} at 2,000/s", kinds[0]),
        (20040, 20043),
        10_000,
        2_000,
        ["02:00:00:00:00:01", "52:54:00:00:00:02"],
    );
    forwards_all(
        &format!("10,000 frames port 1 -> port 0 on {} at 2,000/s", kinds[1]),
        (20042, 20041),
        10_000,
        2_000,
        ["02:00:00:00:00:00", "52:54:00:00:00:01"],
    );
    g.send("stop");
    g.expect("l2fwd status 0", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn l2fwd_between_igb_ports() {
    // Two Intel 82576 NICs (QEMU's igb model) driven by net_igb.
    let mut g = boot("l2fwd_igb.sh", &["igb:20030:20031", "igb:20032:20033"]);
    expect_all(
        &mut g,
        &["Lcore 1: RX port 1", "Capturing on '0000:00:02.0'"],
        Duration::from_secs(240),
    );
    forwards_all(
        "10,000 frames through igb at 2,000/s",
        (20030, 20033),
        10_000,
        2_000,
        ["02:00:00:00:00:01", "52:54:00:00:00:02"],
    );
    // The other way, into port 1 and out of port 0: 20,000 frames, so that buffers from
    // every part of the pool are sent (QEMU's igb drops a frame whose buffer crosses a page).
    // At the first phase's rate: at 4,000/s a TCG guest on a busy 2-core host can stall long
    // enough to overflow the RX ring and QEMU's socket behind it.
    forwards_all(
        "20,000 frames port 1 -> port 0 at 2,000/s",
        (20032, 20031),
        20_000,
        2_000,
        ["02:00:00:00:00:00", "52:54:00:00:00:01"],
    );
    g.send("stop");
    // dumpcap stopped by itself after 1,000 of port 0's frames (RX and TX).
    g.expect("Packets captured: 1000", Duration::from_secs(30));
    let dumpcap = g.expect("dumpcap status 0", Duration::from_secs(30));
    println!("dumpcap on igb: {dumpcap}");
    g.expect("l2fwd status 0", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn l2fwd_on_af_xdp_over_virtio_net_native_xdp() {
    // The two virtio-net NICs stay with Linux's virtio_net (the generic kernel's image has
    // it; iommu=pt spares its DMA the virtual IOMMU) and l2fwd forwards between their
    // interfaces through net_af_xdp, the program attached in native mode: with mode=drv an
    // attach virtio_net refuses is an error, not a silent fall back to generic XDP. QEMU's
    // dgram netdev offers no guest offloads (see the guest script), so the attach needs no
    // device options; the MTU stays 1,500, below virtio_net's XDP limit of 4,064.
    let mut g = boot_with(
        "l2fwd_af_xdp.sh",
        &["dgram:20050:20051", "dgram:20052:20053"],
        &["--kernel", "generic"],
    );
    let lines = expect_all(
        &mut g,
        &[
            "interfaces: ",
            "Port 0 Link ",
            "Port 1 Link ",
            "Lcore 1: RX port 1",
        ],
        Duration::from_secs(240),
    );
    for l in &lines[1..3] {
        assert!(l.contains(" Link up"), "{l}");
    }
    let ifaces: Vec<&str> = lines[0].split_whitespace().collect();
    let (if0, if1) = (ifaces[1], ifaces[3]);
    // Frames into NIC 1 leave NIC 2 with l2fwd's MACs: destination 02:00:00:00:00:01 (the
    // TX port), source NIC 2's own MAC, which the port took from its interface. Checked once
    // the guest has said what its interfaces counted (before l2fwd stopped: stopping sends
    // what the sockets' TX rings still hold) and what l2fwd counted, for a failure to show
    // where frames stayed.
    let what = "10,000 frames through AF_XDP on virtio_net at 2,000/s";
    let back = forward(
        what,
        (20050, 20053),
        10_000,
        2_000,
        ["02:00:00:00:00:01", "52:54:00:00:00:02"],
    );
    g.send("stop");
    for _ in 0..2 {
        println!("{}", g.expect("before stop: ", Duration::from_secs(30)));
    }
    // While l2fwd runs, each interface has its program in native mode: `xdp` on ip's flags
    // line and `prog/xdp` (generic mode would say xdpgeneric in both places).
    let xdp = [
        g.expect("XDP0: ", Duration::from_secs(30)),
        g.expect("XDP1: ", Duration::from_secs(30)),
    ];
    for l in &xdp {
        assert!(l.contains(": xdp prog/xdp id "), "{l}");
    }
    let sent = g.expect("Total packets sent:", Duration::from_secs(60));
    let received = g.expect("Total packets received:", Duration::from_secs(30));
    let dropped = g.expect("Total packets dropped:", Duration::from_secs(30));
    println!(
        "l2fwd: sent {}, received {}, dropped {}",
        number_after(&sent, "sent:"),
        number_after(&received, "received:"),
        number_after(&dropped, "dropped:")
    );
    check_all_back(what, 10_000, &back);
    assert_eq!(number_after(&received, "received:"), 10_000, "{received}");
    g.expect("l2fwd status 0", Duration::from_secs(30));
    // Closing the ports closed the BPF links: no program is left on either interface.
    let after = [
        g.expect("XDP0 AFTER: ", Duration::from_secs(30)),
        g.expect("XDP1 AFTER: ", Duration::from_secs(30)),
    ];
    for l in &after {
        assert!(l.ends_with(": none"), "{l}");
    }
    println!(
        "af_xdp on virtio_net: {if0} {}, {if1} {}; after l2fwd stopped: {if0} {}, {if1} {}",
        xdp[0].trim_start_matches("XDP0: "),
        xdp[1].trim_start_matches("XDP1: "),
        after[0].trim_start_matches("XDP0 AFTER: "),
        after[1].trim_start_matches("XDP1 AFTER: ")
    );
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn two_groups_then_client_server_mp_and_dumpcap() {
    // Two single-queue NICs for the groups, two with 2 queue pairs on host TAPs for
    // client_server_mp (the server gives each client a TX queue).
    let mut g = boot(
        "groups_and_client_server.sh",
        &[
            "dgram:20000:20001",
            "dgram:20002:20003",
            "tap:rpmdcs0:2",
            "tap:rpmdcs1:2",
        ],
    );
    // Group a has the first NIC (-a), group b the second (it blocks the others with -b);
    // each forwards its port back out of itself.
    // The two groups start at once: their lines come in either order.
    expect_all(
        &mut g,
        &[
            "Lcore 0: RX port 0 TX port 0",
            "Lcore 1: RX port 0 TX port 0",
        ],
        Duration::from_secs(240),
    );
    let both = std::thread::scope(|s| {
        let a = s.spawn(|| {
            udp_fwd(
                20000,
                20001,
                3_000,
                1_000,
                "02:00:00:00:00:00",
                "52:54:00:00:00:01",
            )
        });
        let b = s.spawn(|| {
            udp_fwd(
                20002,
                20003,
                3_000,
                1_000,
                "02:00:00:00:00:00",
                "52:54:00:00:00:02",
            )
        });
        [a.join(), b.join()].map(|r| r.expect("udp-fwd thread"))
    });
    for (group, line) in ["a", "b"].iter().zip(&both) {
        println!("two groups: 3,000 frames through group {group}: {line}");
        assert_eq!(count(line, "ok"), 3_000, "{line}");
        assert_eq!(count(line, "bad_mac"), 0, "{line}");
        assert_eq!(count(line, "dup"), 0, "{line}");
    }
    g.send("next");
    g.expect("group a status 0", Duration::from_secs(30));
    g.expect("group b status 0", Duration::from_secs(30));

    // client_server_mp: frames into port 0 leave port 1 once, through one client or the
    // other; dumpcap takes a copy of the first 1,000 on port 0 meanwhile.
    expect_all(
        &mut g,
        &[
            "Client 0 ready",
            "Client 1 ready",
            "Capturing on '0000:00:04.0'",
        ],
        Duration::from_secs(60),
    );
    set_up(&["rpmdcs0", "rpmdcs1"]);
    let mut rx = helper(&["tap-recv", "rpmdcs1", "3000", "60", "-", "-"]);
    rx.expect("LISTENING", Duration::from_secs(10));
    helper(&["tap-send", "rpmdcs0", "3000", "1000"]).expect("SENT", Duration::from_secs(60));
    let line = rx.expect("RECEIVED", Duration::from_secs(90));
    println!("client_server_mp: 3,000 frames through two clients: {line}");
    assert_eq!(count(&line, "ok"), 3_000, "{line}");
    assert_eq!(count(&line, "dup"), 0, "{line}");
    g.send("stop");
    g.expect("Packets captured: 1000", Duration::from_secs(30));
    let dumpcap = g.expect("dumpcap status 0", Duration::from_secs(30));
    println!("dumpcap in the guest: {dumpcap}");
    let census = g.expect("CENSUS ", Duration::from_secs(60));
    let json = serde_json::from_str(&census["CENSUS ".len()..]).expect("proc-info's JSON");
    let census = MbufCensus::read(&json, "MProc_pktmbuf_pool");
    println!("client_server_mp after client 1 was killed and client 0 stopped: {census:?}");
    // Under TCG the device may take longer than the 2 s a TX queue's cleanup waits: then
    // the process says so ("still holds"), and those frames stay the TX queue's until the
    // port stops; none may be lost.
    let waited_out = g.stdout().iter().any(|l| l.contains("still holds"));
    assert!(
        census.only_rx_buffers()
            || (waited_out && census.in_use == census.rx_queues + census.tx_queues),
        "{census:?}"
    );
    let clients: Vec<String> = (0..2)
        .map(|c| g.expect(&format!("Client  {c} - rx:"), Duration::from_secs(60)))
        .collect();
    let sent: Vec<u64> = clients.iter().map(|l| number_after(l, "tx:")).collect();
    println!("client_server_mp: frames sent by client 0 and 1: {sent:?}");
    assert!(sent.iter().all(|&n| n > 0), "{clients:?}");
    // The host's own frames on its TAP (IPv6 neighbour discovery, router solicitations)
    // come on top: a few dozen at most.
    assert!(
        (3_000..3_100).contains(&sent.iter().sum::<u64>()),
        "{clients:?}"
    );
    g.expect("server status 0", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

/// Brings the host ends of the guest's TAP NICs up.
fn set_up(taps: &[&str]) {
    for tap in taps {
        let (st, _, err) = system_tests::run(
            "ip",
            &["link", "set", "dev", tap, "up"],
            Duration::from_secs(10),
        );
        assert!(st.success(), "ip link set {tap} up: {err}");
    }
}

/// Waits until the guest has printed a line starting with each of `prefixes`, in any order
/// (processes started together print in any order); returns the lines, in the order of
/// `prefixes`.
fn expect_all(g: &mut Proc, prefixes: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = g.expect("", left);
        for (p, f) in prefixes.iter().zip(found.iter_mut()) {
            if f.is_none() && line.starts_with(p) {
                *f = Some(line.clone());
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Sends `n` frames for MAC `dst` into the guest NIC listening on UDP port `to`; returns
/// the bytes sent.
fn udp_send(to: u16, n: u32, dst: &str) -> u64 {
    let (st, out, err) = system_tests::run(
        &workspace_bin("port_helper"),
        &["udp-send", &to.to_string(), &n.to_string(), "2000", dst],
        Duration::from_secs(60),
    );
    assert!(st.success(), "port_helper udp-send failed: {out} {err}");
    out.lines()
        .find_map(|l| l.strip_prefix("BYTES "))
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no BYTES line: {out}"))
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn link_stats_and_receive_filters() {
    let monitor = std::env::temp_dir().join(format!("rpmd-guest-{}.monitor", std::process::id()));
    let mon_path = monitor.to_string_lossy().into_owned();
    let mut g = boot_with(
        "rx_modes.sh",
        &["dgram:20010:20011"],
        &["--monitor", &mon_path],
    );
    let link = g.expect("LINK ", Duration::from_secs(240));
    println!("link at start: {link}");
    assert!(link.starts_with("LINK up=1 speed="), "{link}");
    let own = "52:54:00:00:00:01";
    let foreign = "02:00:00:00:bb:bb";
    let group = "01:00:5e:00:00:fb";
    // In each phase the host sends 200 frames to the port's MAC, 300 to a foreign one, 100
    // to a multicast group and one more to the port's MAC; the port must receive exactly the
    // expected ones and count them.
    // Promiscuous mode on takes all; the filter table (mac_addr_add and the multicast list)
    // takes the foreign and group frames too, and nothing more once emptied.
    for (phase, take_others) in [
        ("promisc=off", false),
        ("promisc=on", true),
        ("filters=on", true),
        ("filters=off", false),
    ] {
        g.expect(&format!("PHASE {phase}"), Duration::from_secs(30));
        let own_bytes = udp_send(20010, 200, own);
        let foreign_bytes = udp_send(20010, 300, foreign);
        let group_bytes = udp_send(20010, 100, group);
        // One more frame to the port's MAC, last: once it is in, every frame sent before it
        // was received or dropped by the filter (one queue, in order).
        let own_bytes = own_bytes + udp_send(20010, 1, own);
        g.send("count 201");
        let counted = g.expect("COUNTED", Duration::from_secs(30));
        let stats = g.expect("STATS", Duration::from_secs(10));
        println!("{phase}: {counted} / {stats}");
        let (foreign_n, group_n, bytes) = if take_others {
            (300, 100, own_bytes + foreign_bytes + group_bytes)
        } else {
            (0, 0, own_bytes)
        };
        let n = 201 + foreign_n + group_n;
        assert_eq!(count(&counted, "own"), 201, "{counted}");
        assert_eq!(count(&counted, "foreign"), foreign_n, "{counted}");
        assert_eq!(count(&counted, "multicast"), group_n, "{counted}");
        assert_eq!(count(&counted, "bytes"), bytes, "{counted}");
        assert_eq!(count(&stats, "ipackets"), n, "{stats}");
        assert_eq!(count(&stats, "ibytes"), bytes, "{stats}");
        assert_eq!(count(&stats, "imissed"), 0, "{stats}");
    }
    // The link follows QEMU's `set_link` (a configuration-change interrupt).
    let mut mon = std::os::unix::net::UnixStream::connect(&monitor)
        .unwrap_or_else(|e| panic!("QEMU monitor {mon_path}: {e}"));
    for (cmd, want) in [
        ("set_link n0 off", "LINK up=0"),
        ("set_link n0 on", "LINK up=1"),
    ] {
        std::io::Write::write_all(&mut mon, format!("{cmd}\n").as_bytes())
            .expect("write to the QEMU monitor");
        let l = g.expect("LINK ", Duration::from_secs(30));
        println!("after {cmd}: {l}");
        assert!(l.starts_with(want), "{cmd}: {l}");
    }
    g.send("quit");
    g.expect("rx-modes status 0", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
    let _ = std::fs::remove_file(&monitor);
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn without_an_iommu_vfio_says_what_to_fix_then_runs_in_no_iommu_mode() {
    let mut g = boot_with("no_iommu.sh", &["dgram:20020:20021"], &["--no-iommu"]);
    let bind = g.expect("devbind: ", Duration::from_secs(240));
    println!("devbind --bind=vfio-pci: {bind}");
    assert!(
        bind.contains("no IOMMU group") && bind.contains("intel_iommu=on"),
        "{bind}"
    );
    g.expect("bind status 1", Duration::from_secs(10));
    let l2fwd = g.expect("error: ", Duration::from_secs(60));
    println!("l2fwd: {l2fwd}");
    assert!(
        l2fwd.contains("has no IOMMU group") && l2fwd.contains("intel_iommu=on"),
        "{l2fwd}"
    );
    g.expect("l2fwd status 1", Duration::from_secs(30));

    // vfio's no-IOMMU mode (vfio.ko rebuilt with it): the NIC binds, the group's memory is
    // in IOVA mode PA, and l2fwd forwards every frame back out of the port, intact.
    g.expect("noiommu bind status 0", Duration::from_secs(60));
    g.expect(
        "Note: vfio runs in its unsafe no-IOMMU mode",
        Duration::from_secs(10),
    );
    let mapped = g.expect("INFO EAL: mapped", Duration::from_secs(60));
    assert!(mapped.ends_with("IOVA mode Pa"), "{mapped}");
    g.expect("Lcore 0: RX port 0 TX port 0", Duration::from_secs(60));
    forwards_all(
        "no-IOMMU mode, 2,000 frames at 1,000/s",
        (20020, 20021),
        2_000,
        1_000,
        ["02:00:00:00:00:00", "52:54:00:00:00:01"],
    );
    g.send("stop");
    let stats = g.expect("  RX-packets:", Duration::from_secs(60));
    assert_eq!(number_after(&stats, "RX-packets:"), 2_000, "{stats}");
    g.expect("noiommu l2fwd status 0", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn a_group_that_is_not_viable_names_its_devices() {
    // Behind a PCIe-to-PCI bridge the IOMMU cannot tell devices apart: the NIC shares its
    // group with a serial card held by the kernel's serial driver.
    let devices = [
        "pcie-pci-bridge,id=br0",
        "virtio-net-pci,bus=br0,addr=1,disable-legacy=on,iommu_platform=on,romfile=",
        "pci-serial,bus=br0,addr=2",
    ];
    let opts: Vec<&str> = devices.iter().flat_map(|d| ["--device", d]).collect();
    let mut g = boot_with("shared_group.sh", &[], &opts);
    let group = g.expect("shared group of ", Duration::from_secs(240));
    println!("{group}");
    let l2fwd = g.expect("error: ", Duration::from_secs(60));
    println!("l2fwd: {l2fwd}");
    assert!(
        l2fwd.contains("is not viable")
            && l2fwd.contains("(serial)")
            && l2fwd.contains("devbind --unbind"),
        "{l2fwd}"
    );
    g.expect("l2fwd status 1", Duration::from_secs(30));
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

/// Runs a port_helper subcommand that needs no EAL (the host's side of a TAP NIC).
fn helper(args: &[&str]) -> Proc {
    Proc::start(&workspace_bin("port_helper"), args)
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn two_processes_share_two_queue_pairs() {
    // Two virtio NICs with 2 queue pairs each, on host TAP devices with 2 queues: the host
    // kernel spreads flows over the TAP queues, QEMU maps TAP queue i to RX queue i.
    // The primary gives each device the RSS key and table (QEMU offers RSS with rss=on).
    let mut g = boot_multi_process(
        &["tap:rpmdmq0:2", "tap:rpmdmq1:2"],
        ["0000:00:02.0", "0000:00:03.0"],
    );
    set_up(&["rpmdmq0", "rpmdmq1"]);
    let mut rx = helper(&["tap-recv", "rpmdmq1", "3000", "60", "-", "-"]);
    rx.expect("LISTENING", Duration::from_secs(10));
    let mut tx = helper(&["tap-send", "rpmdmq0", "3000", "1000", "2"]);
    let rss = tx.expect("RSS per_queue=", Duration::from_secs(10));
    tx.expect("SENT", Duration::from_secs(60));
    let got = rx.expect("RECEIVED", Duration::from_secs(90));
    stop_and_check_queue_shares(&mut g, &got, &rss);
}

/// Boots `multi_process.sh` on `nics` and waits until the primary has given both devices the
/// RSS key and table and both processes forward.
fn boot_multi_process(nics: &[&str], devices: [&str; 2]) -> Proc {
    let mut g = boot("multi_process.sh", nics);
    let boot_wait = Duration::from_secs(240);
    for dev in devices {
        g.expect(
            &format!("INFO DRIVERS: {dev}: RSS over 2 queues"),
            boot_wait,
        );
    }
    let first = g.expect("Finished Process Init", boot_wait);
    assert!(first.contains("Process 0"), "{first}");
    g.expect("Start automatic packet forwarding", Duration::from_secs(60));
    g
}

/// After 3,000 frames went through `multi_process.sh` (`got`: the receiver's line, `rss`:
/// the sender's RSS prediction): stops both processes and checks that every frame arrived
/// once and that each process took from port 0 what RSS sends to its queue.
fn stop_and_check_queue_shares(g: &mut Proc, got: &str, rss: &str) {
    println!("3,000 frames through two processes: {got}");
    g.send("stop");
    // As it stops, each process prints what it took from port 0 (the secondary, testpmd,
    // first): both must have had a share.
    g.expect(
        "  ---------------------- Forward statistics for port 0",
        Duration::from_secs(60),
    );
    let secondary = g.expect("  RX-packets: ", Duration::from_secs(10));
    g.expect("secondary status 0", Duration::from_secs(30));
    let primary = g.expect("Port 0: RX - ", Duration::from_secs(60));
    g.expect("primary status 0", Duration::from_secs(30));
    let shares = [
        // "Port 0: RX - N, TX - ..." and "  RX-packets: N   RX-dropped: ...".
        number_after(&primary, "RX - "),
        number_after(&secondary, "RX-packets:"),
    ];
    println!(
        "frames taken from port 0 by the primary (queue 0) and the secondary (queue 1): {shares:?}"
    );
    assert_eq!(count(got, "ok"), 3000, "{got}");
    assert_eq!(count(got, "dup"), 0, "{got}");
    // A few frames of the host's own (IPv6 neighbour discovery) may come on top.
    check_rss_shares(&shares, rss, 10);
    g.expect("GUEST-EXIT 0", Duration::from_secs(60));
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn two_processes_share_two_igb_queue_pairs() {
    // The same two processes on two 82576 NICs: QEMU's igb spreads flows over its RX queues
    // by the key and table net_igb programs.
    let mut g = boot_multi_process(
        &["igb:20040:20041", "igb:20042:20043"],
        ["0000:00:02.0", "0000:00:04.0"],
    );
    let [rss, got] = udp_fwd_lines(
        20040,
        20043,
        3000,
        1000,
        ["-", "-"],
        &["2"],
        ["RSS per_queue=", "RECEIVED"],
    );
    stop_and_check_queue_shares(&mut g, &got, &rss);
}
