//! The shared hash table (`eal::hash`) across processes: found by name from any process,
//! its refusals, and writers killed at random moments while another process looks keys
//! up. (Every kill point of each write is explored by crash_points' `hash` family.)

use std::time::Duration;
use system_tests::{number_after, Group, T};

const HELPER: &str = env!("CARGO_BIN_EXE_eal_helper");

/// Runs eal_helper as a secondary on lcore `lcore` (on CPU 0) with `app`; its last line.
fn sec(g: &Group, lcore: &str, app: &[&str]) -> String {
    sec_with_stderr(g, lcore, app).0
}

/// [`sec`], and what the process wrote to stderr.
fn sec_with_stderr(g: &Group, lcore: &str, app: &[&str]) -> (String, String) {
    let lcores = format!("{lcore}@0");
    let mut a = vec!["--lcores", lcores.as_str(), "--proc-type=secondary", "--"];
    a.extend_from_slice(app);
    let (st, out, err) = g.run(&a);
    assert!(st.success(), "{app:?}: {err}");
    (out.lines().last().unwrap_or_default().to_string(), err)
}

#[test]
fn a_table_is_shared_by_name_and_refuses_bad_input_unchanged() {
    let g = Group::new("hash_bad", HELPER);
    let mut prim = g.start(&["-l", "0", "-m", "64", "--", "hold"]);
    prim.expect("READY", T);
    assert_eq!(
        sec(&g, "1", &["hash-create", "t", "64", "16", "crc", "fixed"]),
        "CREATED"
    );
    // Another process adds, a third finds the keys (another process computes the hash).
    assert_eq!(
        sec(&g, "1", &["hash-fill", "t", "0", "40"]),
        "FILLED added=40"
    );
    let check = sec(&g, "2", &["hash-check", "t", "0", "40"]);
    assert_eq!(
        check,
        "CHECK present=40 wrong=0 absent=0 count=40 iter=40 dups=0"
    );
    let refused = |out: String, what: &str| {
        assert!(out.starts_with("REFUSED") && out.contains(what), "{out}");
    };
    refused(
        sec(&g, "1", &["hash-create", "t", "64", "16", "jhash", "ext"]),
        "a hash table named 't' already exists",
    );
    refused(
        sec(&g, "1", &["hash-open", "t", "32"]),
        "was created with keys of 16 bytes, not 32",
    );
    refused(
        sec(&g, "1", &["hash-open", "nosuch", "16"]),
        "no hash table named 'nosuch'",
    );
    refused(
        sec(&g, "1", &["hash-badkey", "t", "15"]),
        "has keys of 16 bytes, not 15",
    );
    refused(
        sec(&g, "1", &["hash-create", "u", "4", "16", "crc", "fixed"]),
        "entries 4 is out of range",
    );
    // A full table refuses the add and keeps every key.
    let filled = sec(&g, "1", &["hash-fill", "t", "40", "100"]);
    assert!(filled.contains("is full"), "{filled}");
    let added = number_after(&filled, "added=");
    let n = (40 + added).to_string();
    let check = sec(&g, "2", &["hash-check", "t", "0", &n]);
    assert_eq!(
        check,
        format!("CHECK present={n} wrong=0 absent=0 count={n} iter={n} dups=0")
    );
    assert!(sec(&g, "1", &["hash-open", "t", "16"]).starts_with(&format!("OPENED count={n} ")));
    assert!(prim.finish(T).success());
}

/// A writer process adding and deleting its own keys is killed at random moments, 20
/// times, while a reader process looks up keys that stay: the reader never misses one,
/// and after each death the next writer finds every staying key, each churned key present
/// or absent (never with other data), the count right, no key twice, and every slot back.
/// The lookups of the reader are counted, so a reader that never ran fails the test.
#[test]
fn writers_killed_at_random_never_cost_a_reader_or_a_key() {
    let g = Group::new("hash_kill", HELPER);
    let mut prim = g.start(&["-l", "0", "-m", "128", "--", "hold"]);
    prim.expect("READY", T);
    assert_eq!(
        sec(
            &g,
            "1",
            &["hash-create", "flows", "4096", "16", "crc", "ext"]
        ),
        "CREATED"
    );
    assert_eq!(
        sec(&g, "1", &["hash-fill", "flows", "0", "2000"]),
        "FILLED added=2000"
    );
    let mut reader = g.secondary(HELPER, "2@1", &["hash-read", "flows", "0", "2000", "20"]);
    reader.expect("READY", T);
    let mut seed = std::process::id() as u64;
    let mut repairs = 0;
    for round in 0..20 {
        let mut writer = g.secondary(HELPER, "3@0", &["hash-churn", "flows", "100000", "2000"]);
        writer.expect("CHURNING", T);
        // A pseudo-random moment within the first 40 ms of churn (xorshift).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 40_000));
        writer.kill();
        let (stay, err) = sec_with_stderr(&g, "1", &["hash-check", "flows", "0", "2000"]);
        repairs += u32::from(err.contains("died; repairing the table"));
        assert!(
            stay.starts_with("CHECK present=2000 wrong=0 absent=0"),
            "round {round}: {stay}"
        );
        let churned = sec(&g, "1", &["hash-check", "flows", "100000", "2000"]);
        let present = number_after(&churned, "present=");
        assert_eq!(
            number_after(&churned, "wrong="),
            0,
            "round {round}: {churned}"
        );
        let count = 2000 + present;
        assert_eq!(
            number_after(&churned, "count="),
            count,
            "round {round}: {churned}"
        );
        assert_eq!(
            number_after(&churned, "iter="),
            count,
            "round {round}: {churned}"
        );
        assert_eq!(
            number_after(&churned, "dups="),
            0,
            "round {round}: {churned}"
        );
    }
    // The churn holds the writers' lock nearly all the time: most kills land inside a write.
    assert!(
        repairs > 0,
        "no kill landed inside a write: the test checked no repair"
    );
    let read = reader.expect("READ", Duration::from_secs(60));
    assert!(number_after(&read, "lookups=") > 0, "{read}");
    assert_eq!(number_after(&read, "failures="), 0, "{read}");
    eprintln!("{repairs} of 20 kills landed with the writers' lock held; the reader: {read}");
    // Every slot came back: the table fills to its 4096 entries exactly.
    let churned = sec(&g, "1", &["hash-check", "flows", "100000", "2000"]);
    let room = 4096 - 2000 - number_after(&churned, "present=");
    let filled = sec(
        &g,
        "1",
        &["hash-fill", "flows", "500000", &(room + 1).to_string()],
    );
    assert!(
        filled.starts_with(&format!("FILLED added={room} refused=")),
        "{filled}"
    );
    assert!(prim.finish(T).success());
}
