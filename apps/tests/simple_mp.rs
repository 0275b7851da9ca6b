//! simple_mp driven from pipes, as a user scripts it.

use std::time::Duration;
use system_tests::{Group, T};

const SIMPLE_MP: &str = env!("CARGO_BIN_EXE_simple_mp");

#[test]
fn messages_cross_between_primary_and_secondary() {
    let g = Group::new("smp", SIMPLE_MP);
    let mut prim = g.start(&["-l", "0-1", "--proc-type=primary", "-m", "32"]);
    prim.expect("Starting core 1", T);
    let mut sec = g.start(&["--lcores", "2@0,3@1", "--proc-type=secondary"]);
    sec.expect("Starting core 3", T);
    sec.send("send hello primary");
    prim.expect("core 1: Received 'hello primary'", T);
    prim.send("send hello secondary");
    sec.expect("core 3: Received 'hello secondary'", T);
    sec.send("help");
    sec.expect("- send [string]", T);
    sec.send("frobnicate");
    sec.expect("Bad command 'frobnicate'", T);
    sec.send("quit");
    assert!(sec.finish(T).success());
    // The primary keeps going without its secondary.
    prim.send("send to nobody");
    prim.send("quit");
    assert!(prim.finish(T).success());
}

#[test]
fn the_secondary_stops_when_the_primary_goes() {
    let g = Group::new("smpdeath", SIMPLE_MP);
    let mut prim = g.start(&["-l", "0-1", "-m", "32"]);
    prim.expect("Starting core 1", T);
    let mut sec = g.start(&["--lcores", "2@0,3@1", "--proc-type=secondary"]);
    sec.expect("Starting core 3", T);
    prim.send("quit");
    prim.finish(T);
    let st = sec
        .wait(Duration::from_secs(5))
        .expect("the secondary stops by itself");
    assert_eq!(st.code(), Some(1));
    assert!(
        sec.stderr().contains("has exited: stopping this secondary"),
        "{}",
        sec.stderr()
    );
}

#[test]
fn one_lcore_is_not_enough() {
    let g = Group::new("smp1", SIMPLE_MP);
    let (st, _, err) = g.run(&["-l", "0", "-m", "16"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("needs at least two lcores"), "{err}");
}

#[test]
fn a_secondary_before_any_primary_is_told_to_start_one() {
    let g = Group::new("smpnoprim", SIMPLE_MP);
    let (st, _, err) = g.run(&["-l", "0-1", "--proc-type=secondary"]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("start a primary first"), "{err}");
}
