//! A hash table every process of a group uses: symmetric_mp's per-flow counters
//! (`--flow-stats`), counted by a primary and a secondary into one `eal::hash` table, and
//! read by another binary, proc-info (`--show-hash`), while the group runs; a secondary
//! killed with a burst in its hands loses that burst's counts and nothing else.

use serde_json::Value;
use system_tests::frames::{frame_len, udp_ports};
use system_tests::{proc_info_json, workspace_bin, Group, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
const TABLE: &str = "symmetric_mp_flows";
/// Where a process has received a burst and not yet looked at it.
const HELD: &str = "ethdev.rx_burst.returned";

/// Sends frames 0 to `n - 1` of port_helper's into net_ring0, spread over both RX queues by
/// RSS, and collects them from net_ring1's two TX queues; returns the injector's line.
fn round(g: &Group, n: u32) -> String {
    let (injected, collected) = round_with(g, n, "30", |_| {});
    assert!(
        collected.starts_with(&format!("COLLECTED ok={n} bad=0 dup=0")),
        "{collected}"
    );
    injected
}

/// [`round`] that calls `meanwhile` once the frames are on their way and waits `quiet`
/// seconds for missing ones; returns the injector's and the collector's lines.
fn round_with(g: &Group, n: u32, quiet: &str, meanwhile: impl FnOnce(&Group)) -> (String, String) {
    let n = n.to_string();
    let mut col = g.secondary(
        HELPER,
        "5@0",
        &["collect", "net_ring1", &n, quiet, "-", "-", "2"],
    );
    col.expect("COLLECTING", T);
    let mut inj = g.secondary(HELPER, "6@0", &["inject", "net_ring0", &n, "2"]);
    meanwhile(g);
    let injected = inj.expect("INJECTED", T);
    let collected = col.expect("COLLECTED", T);
    // Every frame is back in its pool: counted and sent by the forwarders, or freed by the
    // primary from a dead one's hands.
    assert_eq!(inj.expect("POOL", T), "POOL in_use=0");
    (injected, collected)
}

/// The flows proc-info should show first: (packets, bytes, source port, destination port)
/// of frame i's flow, flow i having had `rounds.filter(|n| i < n).count()` packets, most
/// packets first, then most bytes, then by key (the ports, the addresses being the same).
fn expected_flows(rounds: &[u32]) -> Vec<(u64, u64, u16, u16)> {
    let all = rounds.iter().copied().max().unwrap_or(0);
    let mut flows: Vec<(u64, u64, u16, u16)> = (0..all)
        .map(|i| {
            let packets = rounds.iter().filter(|&&n| i < n).count() as u64;
            let (sport, dport) = udp_ports(i);
            (packets, packets * frame_len(i) as u64, sport, dport)
        })
        .collect();
    flows.sort_by(|a, b| (b.0, b.1, a.2, a.3).cmp(&(a.0, a.1, b.2, b.3)));
    flows
}

const SECONDARY: [&str; 7] = [
    "-p",
    "0x3",
    "--num-procs",
    "2",
    "--proc-id",
    "1",
    "--flow-stats",
];

fn symmetric_mp_secondary(g: &Group) -> Proc {
    let mut p = g.secondary(&workspace_bin("symmetric_mp"), "1@1", &SECONDARY);
    p.expect("Finished Process Init", T);
    p
}

/// The flow table's totals as proc-info gives them: flows, packets, bytes.
fn totals(g: &Group) -> (u64, u64, u64) {
    let shown = proc_info_json(g, &["--show-hash", TABLE, "--top", "0"]);
    let n = |k: &str| {
        shown["hash"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k}: {shown}"))
    };
    (n("flows"), n("packets"), n("bytes"))
}

#[test]
fn symmetric_mp_counts_flows_in_one_shared_table_that_proc_info_reads() {
    let g = Group::new("flows", &workspace_bin("symmetric_mp"));
    let mut p0 = g.start_on_rings_at(
        "0",
        &[
            "-p",
            "0x3",
            "--num-procs",
            "2",
            "--proc-id",
            "0",
            "--flow-stats",
        ],
    );
    p0.expect("Finished Process Init", T);
    let mut p1 = symmetric_mp_secondary(&g);

    // The primary made the table; the list shows how.
    let list = proc_info_json(&g, &["--show-hash"]);
    assert_eq!(
        list["hash_tables"],
        serde_json::json!([{
            "name": TABLE, "key_len": 16, "entries": 65536, "count": 0,
            "function": "crc32c", "extendable": true,
        }]),
        "{list}"
    );

    // Flow i gets one packet per round whose frames include frame i. Between the first
    // and the second round the secondary is killed and another takes its queue: the table
    // and the counts go on.
    let rounds = [1000, 100, 10];
    let spread = round(&g, rounds[0]);
    let per_queue = system_tests::bracketed_counts(&spread);
    assert!(
        per_queue.len() == 2 && per_queue.iter().all(|&c| c > 0),
        "both processes count: {spread}"
    );
    p1.kill();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut p1 = symmetric_mp_secondary(&g);
    for n in &rounds[1..] {
        round(&g, *n);
    }

    let want = expected_flows(&rounds);
    let packets: u64 = want.iter().map(|f| f.0).sum();
    let bytes: u64 = want.iter().map(|f| f.1).sum();
    assert_eq!(packets, 1110);
    let shown = proc_info_json(&g, &["--show-hash", TABLE, "--top", "5"]);
    let h = &shown["hash"];
    assert_eq!(
        (&h["count"], &h["flows"], &h["packets"], &h["bytes"]),
        (
            &Value::from(1000),
            &Value::from(1000),
            &Value::from(packets),
            &Value::from(bytes)
        ),
        "{shown}"
    );
    assert_eq!(h["untracked"]["packets"], 0, "{shown}");
    let top: Vec<(u64, u64, u16, u16)> = h["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top flows: {shown}"))
        .iter()
        .map(|f| {
            assert_eq!(
                (&f["src"], &f["dst"], &f["proto"]),
                (
                    &Value::from("10.0.0.1"),
                    &Value::from("10.0.0.2"),
                    &Value::from(17)
                ),
                "{f}"
            );
            let n = |k: &str| f[k].as_u64().unwrap_or_else(|| panic!("no {k} in {f}"));
            (
                n("packets"),
                n("bytes"),
                n("sport") as u16,
                n("dport") as u16,
            )
        })
        .collect();
    assert_eq!(top, want[..5], "{shown}");

    // The same as text: the busiest flow's row.
    let (pk, by, sport, dport) = want[0];
    let row = format!("{pk:>12} {by:>14}  10.0.0.1:{sport} -> 10.0.0.2:{dport} udp");
    let (st, out, err) = system_tests::run(
        &workspace_bin("proc-info"),
        &[
            "--file-prefix",
            &g.prefix,
            "--",
            "--show-hash",
            TABLE,
            "--top",
            "3",
        ],
        T,
    );
    assert!(st.success(), "{err}");
    assert!(
        out.contains(&format!("flows=1000 packets={packets} bytes={bytes}")) && out.contains(&row),
        "want '{row}' in:\n{out}"
    );

    // A table that does not exist: the typed error's message, and a failure.
    let (st, _, err) = system_tests::run(
        &workspace_bin("proc-info"),
        &["--file-prefix", &g.prefix, "--", "--show-hash", "NOSUCH"],
        T,
    );
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("no hash table named 'NOSUCH' in this group: has a process created it, and is this one in the same --file-prefix group?"),
        "{err}"
    );

    // A process prints the table's busiest flows as it stops.
    let heading = format!("Flows in {TABLE}: 1000 of 65536");
    p1.stop_ok();
    let out = p1.stdout().join("\n");
    assert!(
        out.contains(&heading) && out.contains(&row),
        "want '{row}' in:\n{out}"
    );

    // A secondary killed with its second burst in hand, before it counted it: the burst is
    // neither forwarded nor counted (the primary frees its frames), a new secondary goes on
    // with the rest of the queue, and the counts grow by exactly what was forwarded.
    let point = format!("{HELD}@2");
    let (_, collected) = round_with(&g, 1000, "3", |g| {
        let mut armed =
            g.secondary_armed(&workspace_bin("symmetric_mp"), "1@1", &SECONDARY, &point);
        armed.expect_fault(&point);
        p1 = symmetric_mp_secondary(g);
    });
    println!("a secondary killed holding a burst: {collected}");
    let forwarded = system_tests::count(&collected, "ok");
    assert!(
        (1000 - 32..1000).contains(&forwarded) && collected.contains(" bad=0 dup=0 "),
        "the killed secondary held one burst: {collected}"
    );
    assert_eq!(
        totals(&g),
        (
            1000,
            packets + forwarded,
            bytes + system_tests::count(&collected, "bytes")
        ),
        "{collected}"
    );
    for p in [&mut p1, &mut p0] {
        p.stop_ok();
        let out = p.stdout().join("\n");
        assert!(out.contains(&heading), "{out}");
    }
}
