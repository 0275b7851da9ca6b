//! The project's 82599 model as a PCI device (vfio-user) in the QEMU guest, driven in one
//! boot by Linux's ixgbe, DPDK's net_ixgbe and ours: each brings the two ports up and
//! forwards 10,000 frames of 60 to 1,514 bytes between them, and sees the link change when
//! the model pulls the cable. The model records each driver's register writes from probe to
//! its first forwarded frame; the test prints, for each driver, what the other two write
//! and it does not.
//! `scripts/guest-test` runs it (it needs the guest image and the trixie chroot's QEMU).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use system_tests::guest::{self, boot_with};
use system_tests::{count, workspace_bin, Proc};

const STEP: Duration = Duration::from_secs(120);
/// UDP ports of the model's wires: port 0 listens on BASE and sends to BASE + 1, port 1
/// listens on BASE + 2 and sends to BASE + 3.
const BASE: u16 = 21000;
const DRIVERS: [&str; 3] = ["linux", "dpdk", "ours"];

/// Port 0's wire in, port 1's out.
const THROUGH: (u16, u16) = (BASE, BASE + 3);

/// Sends `n` frames at 2,000/s through the two ports and returns the result line, after
/// printing what the model counted on its wires (where a missing frame was lost).
fn forward(model: &mut Proc, what: &str, n: u32, macs: [&str; 2]) -> String {
    let line = guest::forward(what, THROUGH, n, 2_000, macs);
    print_model_stats(model);
    line
}

/// [`forward`], then checks that each frame left intact, once.
fn forwards_all(model: &mut Proc, what: &str, n: u32, macs: [&str; 2]) {
    guest::check_all_back(what, n, &forward(model, what, n, macs));
}

/// DPDK's testpmd: [`forward`], lets the guest stop forwarding and prints testpmd's totals,
/// then checks.
fn testpmd_forwards_all(g: &mut Proc, model: &mut Proc, what: &str, n: u32, macs: [&str; 2]) {
    let line = forward(model, what, n, macs);
    g.send("sent");
    println!("{}", g.expect("TESTPMD TOTALS", STEP));
    guest::check_all_back(what, n, &line);
}

/// The model's `stats` lines, printed; returns them.
fn print_model_stats(model: &mut Proc) -> Vec<String> {
    model.send("stats");
    (0..2)
        .map(|port| {
            let line = model.expect(&format!("port {port} dma_errors"), Duration::from_secs(10));
            println!("model {line}");
            line
        })
        .collect()
}

/// Pulls port 0's cable and plugs it back, waiting for the guest to see each.
fn link_down_and_up(g: &mut Proc, model: &mut Proc, down: &str, up: &str) {
    model.send("link 0 down");
    g.send("down");
    g.expect(down, STEP);
    model.send("link 0 up");
    g.send("up");
    g.expect(up, STEP);
}

/// The registers each driver wrote, from the model's `records` lines.
fn recorded_writes(model: &mut Proc) -> BTreeMap<String, BTreeSet<String>> {
    model.send("records");
    let mut writes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        let line = model.expect("record", Duration::from_secs(10));
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["records", "end"] => return writes,
            ["record", driver, _port, off, _value] => {
                writes
                    .entry(driver.to_string())
                    .or_default()
                    .insert(off.to_string());
            }
            _ => {}
        }
    }
}

/// Register offsets, sorted, as short text: the fields of the queues' register blocks
/// (RX at 0x1000 and 0xD000, TX at 0x6000, 0x40 apart) as `RXQ+0x28 x64`, runs of consecutive words as
/// `0x05c00-0x05c7c`.
fn grouped(offsets: &[usize]) -> String {
    let mut fields: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    let mut words = Vec::new();
    for &off in offsets {
        match off {
            0x1000..=0x1fff | 0xd000..=0xdfff => {
                *fields.entry(("RXQ", off % 0x40)).or_default() += 1
            }
            0x6000..=0x7fff => *fields.entry(("TXQ", off % 0x40)).or_default() += 1,
            _ => words.push(off),
        }
    }
    let mut out: Vec<String> = fields
        .iter()
        .map(|((block, field), n)| format!("{block}+{field:#04x} x{n}"))
        .collect();
    let mut i = 0;
    while i < words.len() {
        let mut j = i;
        while j + 1 < words.len() && words[j + 1] == words[j] + 4 {
            j += 1;
        }
        out.push(if i == j {
            format!("{:#07x}", words[i])
        } else {
            format!("{:#07x}-{:#07x}", words[i], words[j])
        });
        i = j + 1;
    }
    format!("{} registers: {}", offsets.len(), out.join(" "))
}

#[test]
#[ignore = "needs the QEMU guest: run scripts/guest-test"]
fn linux_dpdk_and_ours_drive_the_82599_model() {
    let dir = std::env::temp_dir().join(format!("rpmd-ixgbe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the model's sockets");
    let sock = |i: u16| dir.join(format!("port{i}")).to_string_lossy().into_owned();
    let specs: Vec<String> = (0..2u16)
        .map(|i| {
            format!(
                "vfio-user={},udp={}:{}",
                sock(i),
                BASE + 2 * i,
                BASE + 2 * i + 1
            )
        })
        .collect();
    let mut model = Proc::start(
        &workspace_bin("ixgbe_model"),
        &["--port", &specs[0], "--port", &specs[1]],
    );
    model.expect("READY", Duration::from_secs(10));
    let (s0, s1) = (sock(0), sock(1));
    let mut g = boot_with(
        "ixgbe_three_drivers.sh",
        &[],
        &[
            "--kernel",
            "generic",
            "--peer",
            "--vfio-user",
            &s0,
            "--vfio-user",
            &s1,
        ],
    );
    let phase = |g: &mut Proc, model: &mut Proc, name: &str| {
        g.expect(&format!("PHASE {name}"), Duration::from_secs(240));
        model.send(&format!("record 1 {name}"));
        model.expect(&format!("recording {name}"), Duration::from_secs(10));
        g.send("go");
    };

    phase(&mut g, &mut model, "linux");
    assert_eq!(g.expect("driver: ", STEP), "driver: ixgbe");
    for n in ["eth0", "eth1"] {
        let link = g.expect(&format!("{n}: "), STEP);
        assert!(
            link.contains("Speed: 10000Mb/s") && link.contains("Link detected: yes"),
            "{link}"
        );
    }
    g.expect("LINUX BRIDGE READY", STEP);
    // A bridge forwards frames as they came; Linux takes each in an interrupt, slower than
    // the poll-mode drivers under TCG.
    let what = "Linux ixgbe, bridged";
    let line = guest::forward(what, THROUGH, 10_000, 1_000, ["-", "-"]);
    g.send("counted");
    let rx = g.expect("eth0 ", STEP);
    let tx = g.expect("eth1 ", STEP);
    println!("ethtool -S: {rx}; {tx}");
    // What Linux says about its TX side (drops, restarts, resets), printed whatever happens.
    loop {
        let l = g.expect("", STEP);
        if l.starts_with("LINUX COUNTED") {
            break;
        }
        println!("guest: {l}");
    }
    guest::check_all_back(what, 10_000, &line);
    assert!(
        count(&rx.replace(':', "="), "rx_pkts_nic") >= 10_000,
        "{rx}"
    );
    assert!(
        count(&tx.replace(':', "="), "tx_pkts_nic") >= 10_000,
        "{tx}"
    );
    link_down_and_up(
        &mut g,
        &mut model,
        "LINUX SAW LINK DOWN",
        "LINUX SAW LINK UP",
    );
    // ifdown and ifup: Linux resets the port; the model's queues start afresh.
    g.expect("LINUX RESET DONE", STEP);
    forwards_all(&mut model, "Linux ixgbe, after ifdown and ifup", 1_000, ["-", "-"]);
    g.send("sent");

    phase(&mut g, &mut model, "dpdk");
    g.expect("DPDK LINK UP", STEP);
    g.expect("DPDK FORWARDING io", STEP);
    testpmd_forwards_all(&mut g, &mut model, "DPDK net_ixgbe, io", 10_000, ["-", "-"]);
    g.expect("DPDK FORWARDING mac", STEP);
    // testpmd's mac mode: the peer address 02:00:00:00:00:01 (port 1's default), port 1's MAC.
    let testpmd_macs = ["02:00:00:00:00:01", "52:54:00:82:59:01"];
    testpmd_forwards_all(&mut g, &mut model, "DPDK net_ixgbe, mac", 10_000, testpmd_macs);
    // port stop all, port start all: DPDK resets the ports; forwarding resumes.
    g.expect("DPDK RESTARTED", STEP);
    testpmd_forwards_all(
        &mut g,
        &mut model,
        "DPDK net_ixgbe, after port stop and start",
        1_000,
        testpmd_macs,
    );
    g.expect("DPDK READY FOR LINK", STEP);
    link_down_and_up(&mut g, &mut model, "DPDK SAW LSC", "testpmd status");

    phase(&mut g, &mut model, "ours");
    g.expect("L2FWD FORWARDING", STEP);
    // l2fwd: destination 02:00:00:00:00:<TX port>, source the TX port's MAC.
    forwards_all(
        &mut model,
        "our net_ixgbe, l2fwd",
        10_000,
        ["02:00:00:00:00:01", "52:54:00:82:59:01"],
    );
    g.send("sent");
    assert_eq!(g.expect("l2fwd status", STEP), "l2fwd status 0");
    g.expect("SYMMETRIC_MP FORWARDING", STEP);
    forwards_all(
        &mut model,
        "our net_ixgbe, symmetric_mp, 2 processes x 2 queues",
        10_000,
        ["-", "-"],
    );
    link_down_and_up(
        &mut g,
        &mut model,
        "SECONDARY SAW LINK DOWN",
        "SECONDARY SAW LINK UP",
    );
    assert_eq!(
        g.expect("symmetric_mp status", STEP),
        "symmetric_mp status 0"
    );
    g.expect("GUEST-EXIT 0", STEP);

    let writes = recorded_writes(&mut model);
    for d in DRIVERS {
        assert!(
            writes.contains_key(d),
            "no finished recording for {d}: {writes:?}"
        );
    }
    for d in DRIVERS {
        let others: BTreeSet<&String> = DRIVERS
            .iter()
            .filter(|o| **o != d)
            .flat_map(|o| writes[*o].iter())
            .collect();
        let only_others: Vec<usize> = others
            .into_iter()
            .filter(|off| !writes[d].contains(*off))
            .filter_map(|off| usize::from_str_radix(off.trim_start_matches("0x"), 16).ok())
            .collect();
        println!(
            "registers the others write and {d} does not: {}",
            grouped(&only_others)
        );
    }
    for line in print_model_stats(&mut model) {
        assert!(line.contains("dma_errors 0"), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
