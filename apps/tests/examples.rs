//! The README's example of a forwarding app of one's own (`apps/examples/macswap_fwd.rs`)
//! runs, as a user runs it with `cargo run --example`.

use system_tests::{run, Group, T};

/// An example program built beside this test (`cargo test` builds the examples).
fn example(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let p = profile.join("examples").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace`",
        p.display()
    );
    p.display().to_string()
}

#[test]
fn the_macswap_example_forwards_what_it_was_asked() {
    let g = Group::new("example", &example("macswap_fwd"));
    let (st, out, err) = g.run(&[
        "-l",
        "0-1",
        "-m",
        "128",
        "--vdev",
        "net_null0",
        "--vdev",
        "net_null1",
        "--",
        "200000",
    ]);
    assert!(st.success(), "{out} {err}");
    let sent: u64 = out
        .strip_prefix("forwarded ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(sent >= 200_000, "{out}");
    assert!(out.contains("from net_null0 to net_null1"), "{out}");
    // One port only: told what to give it.
    let (st, _, err) = run(
        &example("macswap_fwd"),
        &[
            "-l",
            "0-1",
            "-m",
            "128",
            "--file-prefix",
            &g.prefix,
            "--vdev",
            "net_null0",
        ],
        T,
    );
    assert!(!st.success());
    assert!(err.contains("give two ports"), "{err}");
}
