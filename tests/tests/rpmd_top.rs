//! rpmd-top as a person sees it: in a `tmux` pane beside a forwarding l2fwd group, its port
//! rates follow the traffic, the queues name their pollers, and a secondary SIGKILLed under
//! it leaves its process list at once; `q` ends it.

use std::process::Command;
use system_tests::{eventually, workspace_bin, Group, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");

/// A detached tmux session running one command, killed on drop.
struct Pane {
    name: String,
}

impl Pane {
    fn start(tag: &str, command: &[&str]) -> Pane {
        let name = format!("rpmd{tag}{}", std::process::id());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "132", "-y", "50"])
            .args(command)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot start tmux (scripts/setup installs it)");
        Pane { name }
    }

    /// What the pane shows now.
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let _ = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status();
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.name])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// Port `name`'s row: (RX pkt/s, TX pkt/s), or `None` before the first rates.
fn rates(screen: &str, name: &str) -> Option<(f64, f64)> {
    let row = screen
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))?;
    let f: Vec<&str> = row.split_whitespace().collect();
    // PORT NAME LINK(2 words) RX pkt/s RX Mbit/s TX pkt/s ...
    Some((f.get(4)?.parse().ok()?, f.get(6)?.parse().ok()?))
}

/// The pids in the process list (the rows after the PID ROLE NAME LCORES header).
fn processes(screen: &str) -> Vec<i32> {
    screen
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("PID ROLE"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn rpmd_top_follows_the_traffic_and_a_killed_secondary_leaves() {
    let g = Group::new("top", &workspace_bin("l2fwd"));
    let mut l2 = g.start_l2fwd_on_rings("0");
    let mut col = g.secondary(
        HELPER,
        "5@0",
        &["collect", "net_ring1", "1000000", "60", "-", "-"],
    );
    col.expect("COLLECTING", T);
    // Far more frames than the test waits for, at 5,000 a second.
    let mut inj = g.secondary(
        HELPER,
        "6@0",
        &["inject", "net_ring0", "1000000", "1", "5000"],
    );
    let top = workspace_bin("rpmd-top");
    // As a person starts it: on no CPU of its own, beside l2fwd's two busy pollers, the
    // collector's and the injector's.
    let pane = Pane::start("top", &[&top, "--file-prefix", &g.prefix]);
    // Rates on both ports: frames come in on port 0 and leave by port 1.
    let moving = |s: &String| {
        rates(s, "net_ring0").is_some_and(|(rx, _)| rx > 1000.0)
            && rates(s, "net_ring1").is_some_and(|(_, tx)| tx > 1000.0)
    };
    let first = eventually(|| pane.capture(), moving);
    assert!(moving(&first), "no rates on both ports:\n{first}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = eventually(|| pane.capture(), moving);
    assert!(moving(&second), "no rates on both ports:\n{second}");
    // Redrawn: the header's clock moved (the rates may read the same, paced as they are).
    let header = |s: &str| s.lines().next().unwrap_or_default().to_string();
    assert_ne!(header(&first), header(&second), "not redrawn:\n{second}");
    let l2_pid = l2.pid().to_string();
    assert!(
        second
            .lines()
            .any(|l| l.contains(" rx ") && l.contains(&l2_pid) && l.contains("l2fwd")),
        "l2fwd polls the RX queues:\n{second}"
    );
    let listed = processes(&second);
    for pid in [l2.pid(), col.pid(), inj.pid()] {
        assert!(listed.contains(&pid), "{pid} in:\n{second}");
    }
    // The injector killed: gone from the list, port 0 quiet.
    let gone = inj.pid();
    inj.kill();
    let quiet = |s: &String| {
        !processes(s).contains(&gone) && rates(s, "net_ring0").is_some_and(|(rx, _)| rx == 0.0)
    };
    let after = eventually(|| pane.capture(), quiet);
    assert!(
        quiet(&after),
        "{gone} still listed, or port 0 not quiet:\n{after}"
    );
    assert!(processes(&after).contains(&l2.pid()), "{after}");
    pane.keys("q");
    assert!(
        !eventually(|| pane.alive(), |a| !*a),
        "q did not end rpmd-top"
    );
    col.signal(libc::SIGINT);
    let _ = col.wait(T);
    l2.stop_ok();
}
