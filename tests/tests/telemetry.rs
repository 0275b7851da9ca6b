//! DPDK's telemetry socket, read by DPDK's own tools: `dpdk-telemetry.py` (Debian's `dpdk`
//! package) follows our l2fwd and testpmd under traffic, DPDK's Prometheus exporter (from the
//! newest DPDK, in the chroot `scripts/setup --newest-dpdk` builds) serves our counters and
//! `promtool` (Debian's `prometheus`) accepts them as it accepts DPDK's own; a socket a live
//! process serves is refused with the holder named, a stale one replaced.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use system_tests::{dpdk_testpmd, eventually, workspace_bin, Group, Proc, T};

const HELPER: &str = env!("CARGO_BIN_EXE_port_helper");
const CLIENT: &str = "/usr/bin/dpdk-telemetry.py";
/// The newest DPDK's exporter and its endpoint plugins, in the chroot.
const CHROOT: &str = "/var/lib/rpmd/unstable";

/// Runs `dpdk-telemetry.py -f PREFIX [-i N]` with `commands` on its standard input and
/// returns each reply's value (the client prints one JSON reply a line).
fn query(prefix: &str, instance: u32, commands: &[&str]) -> Vec<Value> {
    assert!(
        std::path::Path::new(CLIENT).exists(),
        "{CLIENT} is missing: run scripts/setup --peer (Debian's dpdk package)"
    );
    let mut child = Command::new("python3")
        .args([CLIENT, "-f", prefix, "-i", &instance.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dpdk-telemetry.py");
    let mut stdin = child.stdin.take().expect("stdin");
    for c in commands {
        writeln!(stdin, "{c}").expect("write a command");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("dpdk-telemetry.py ran");
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        replies.len(),
        commands.len(),
        "dpdk-telemetry.py -f {prefix} -i {instance}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    commands
        .iter()
        .zip(replies)
        .map(|(c, r)| {
            let cmd = c.split(',').next().unwrap_or(c);
            r.get(cmd)
                .cloned()
                .unwrap_or_else(|| panic!("reply to {c} is keyed by {cmd}: {r}"))
        })
        .collect()
}

fn one(prefix: &str, command: &str) -> Value {
    query(prefix, 0, &[command]).remove(0)
}

/// Our testpmd's command line on `ports` net_null ports, forwarding from the start.
fn testpmd_args(ports: usize) -> Vec<String> {
    let mut a: Vec<String> = ["-l", "0-1", "-m", "128"].map(String::from).to_vec();
    for i in 0..ports {
        a.extend(["--vdev".into(), format!("net_null{i}")]);
    }
    a.extend(["--".into(), "--auto-start".into()]);
    a
}

/// Starts our testpmd in `g` with `args` and waits until it forwards.
fn start_testpmd(g: &Group, args: &[String]) -> Proc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tp = g.start(&args);
    tp.expect("Start automatic packet forwarding", T);
    tp
}

/// DPDK's testpmd on one net_null port in group `prefix`, with `eal` and `app` options.
fn dpdk_on_null(prefix: &str, eal: &[&str], app: &[&str]) -> Proc {
    let file_prefix = format!("--file-prefix={prefix}");
    let mut args = vec!["--lcores", "0@0,1@1", "-m", "256", "--no-pci", &file_prefix];
    args.extend_from_slice(eal);
    args.extend(["--vdev", "net_null0", "--"]);
    args.extend_from_slice(app);
    dpdk_testpmd(&args)
}

fn packets(prefix: &str, port: u16) -> u64 {
    one(prefix, &format!("/ethdev/stats,{port}"))["ipackets"]
        .as_u64()
        .expect("ipackets is a number")
}

#[test]
fn dpdk_telemetry_py_follows_l2fwd_under_traffic() {
    let g = Group::new("tell2fwd", &workspace_bin("l2fwd"));
    let l2 = g.start_l2fwd_on_rings("0");
    let p = g.prefix.as_str();
    let r = query(
        p,
        0,
        &[
            "/ethdev/list",
            "/ethdev/info,0",
            "/ethdev/link_status,1",
            "/eal/app_params",
            "/ethdev/stats,7",
            "/ethdev/stats,x",
        ],
    );
    assert_eq!(r[0], json!([0, 1]));
    assert_eq!(r[1]["name"], "net_ring0");
    assert_eq!(r[1]["dev_started"], 1);
    assert_eq!(r[2]["status"], "UP");
    assert_eq!(r[3], json!(["-p", "0x3", "-T", "0"]));
    assert_eq!(r[4], Value::Null, "no port 7");
    assert_eq!(r[5], Value::Null, "not a port number");
    let before = packets(p, 0);
    // Frames into port 0, paced over a few seconds; l2fwd sends them out of port 1.
    let mut col = g.secondary(
        HELPER,
        "5@0",
        &["collect", "net_ring1", "40000", "30", "-", "-"],
    );
    col.expect("COLLECTING", T);
    let mut inj = g.secondary(
        HELPER,
        "6@0",
        &["inject", "net_ring0", "40000", "1", "5000"],
    );
    let rising = eventually(|| packets(p, 0), |n| *n > before);
    let later = eventually(|| packets(p, 0), |n| *n > rising);
    assert!(later > rising && rising > before);
    // The secondaries serve too, at the names `dpdk-telemetry.py -i N` reaches.
    let procs = one(p, "/rpmd/processes");
    let pids: Vec<i64> = procs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    assert!(pids.contains(&i64::from(l2.pid())), "{procs}");
    assert!(pids.contains(&i64::from(inj.pid())), "{procs}");
    let secondaries: Vec<Value> = (1..=2)
        .map(|i| query(p, i, &["/info"]).remove(0)["pid"].clone())
        .collect();
    assert!(secondaries.contains(&json!(inj.pid())), "{secondaries:?}");
    assert!(secondaries.contains(&json!(col.pid())), "{secondaries:?}");
    // Which process and lcore poll port 0's RX queue: l2fwd's worker.
    let queues = one(p, "/rpmd/ethdev/queues,0");
    assert_eq!(queues["rx"][0]["pid"], json!(l2.pid()), "{queues}");
    assert!(
        queues["rx"][0]["lcore"].as_i64().is_some_and(|l| l >= 0),
        "{queues}"
    );
    inj.expect("INJECTED", T);
    col.expect("COLLECTED ok=40000", T);
    inj.finish(T);
    col.finish(T);
    let mut l2 = l2;
    l2.stop_ok();
    assert!(
        !eal::telemetry::socket_dir(p).exists(),
        "a clean exit removes the socket and its directory"
    );
}

#[test]
fn dpdk_telemetry_py_reads_testpmd() {
    let g = Group::new("teltestpmd", &workspace_bin("testpmd"));
    let mut tp = start_testpmd(&g, &testpmd_args(2));
    let p = g.prefix.as_str();
    let r = query(
        p,
        0,
        &[
            "/",
            "/help,/ethdev/xstats",
            "/eal/lcore/list",
            "/eal/lcore/info,1",
            "/mempool/list",
            "/ring/list",
            "/ethdev/xstats,1,hide_zero=true",
        ],
    );
    let listed: Vec<&str> = r[0]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cmd in [
        "/",
        "/info",
        "/help",
        "/eal/params",
        "/eal/app_params",
        "/eal/lcore/list",
        "/eal/lcore/info",
        "/ethdev/list",
        "/ethdev/info",
        "/ethdev/stats",
        "/ethdev/xstats",
        "/ethdev/link_status",
        "/mempool/list",
        "/mempool/info",
        "/ring/list",
        "/ring/info",
        "/rpmd/processes",
        "/rpmd/ethdev/queues",
        "/rpmd/hash/list",
    ] {
        assert!(listed.contains(&cmd), "{cmd} not in {listed:?}");
    }
    assert!(r[1]["/ethdev/xstats"]
        .as_str()
        .is_some_and(|h| h.contains("hide_zero")));
    assert_eq!(r[2], json!([0, 1]));
    assert_eq!(r[3]["lcore_id"], 1);
    assert_eq!(r[3]["cpuset"], json!([1]));
    let pool = r[4][0].as_str().expect("a mempool").to_string();
    let ring = r[5][0].as_str().expect("a ring").to_string();
    assert!(
        r[6]["rx_good_packets"].as_u64().is_some_and(|n| n > 0),
        "{}",
        r[6]
    );
    let r = query(
        p,
        0,
        &[
            &format!("/mempool/info,{pool}"),
            &format!("/ring/info,{ring}"),
            "/mempool/info,nosuch",
        ],
    );
    assert_eq!(r[0]["name"], pool.as_str());
    assert!(r[0]["size"].as_u64().is_some_and(|n| n > 0), "{}", r[0]);
    assert_eq!(r[1]["name"], ring.as_str());
    assert!(r[1]["mask"].as_str().is_some_and(|m| m.starts_with("0x")));
    assert_eq!(
        r[2],
        json!({}),
        "an unknown pool is an empty dict, as DPDK's"
    );
    let first = packets(p, 0);
    assert!(
        eventually(|| packets(p, 0), |n| *n > first) > first,
        "port 0's packets stand still"
    );
    tp.stop_ok();
}

/// One scrape of DPDK's exporter, started on telemetry socket `socket`: the metrics text.
fn scrape(socket: &std::path::Path, port: u16) -> String {
    let exporter = format!("{CHROOT}/usr/bin/dpdk-telemetry-exporter.py");
    assert!(
        std::path::Path::new(&exporter).exists(),
        "{exporter} is missing: run scripts/setup --newest-dpdk"
    );
    let mut exp = Proc::start(
        "python3",
        &[
            &exporter,
            "-s",
            &socket.display().to_string(),
            "-o",
            &format!("openmetrics://127.0.0.1:{port}"),
            "-p",
            &format!("{CHROOT}/usr/share/dpdk/telemetry-endpoints"),
        ],
    );
    let body = eventually(
        || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(T)).ok()?;
            write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            let (head, body) = text.split_once("\r\n\r\n")?;
            head.starts_with("HTTP/1.0 200").then(|| body.to_string())
        },
        Option::is_some,
    )
    .expect("a scrape");
    exp.kill();
    body
}

/// `promtool check metrics` on `text`: its exit code and what it said.
fn promtool(text: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run scripts/setup --peer (Debian's prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), said)
}

/// promtool's complaints, less the metric values: the same for DPDK's app and ours.
fn lints(said: &str) -> Vec<String> {
    let mut l: Vec<String> = said.lines().map(str::to_string).collect();
    l.sort();
    l
}

#[test]
fn dpdks_exporter_serves_our_counters_and_promtool_takes_them_as_dpdks() {
    let g = Group::new("telexport", &workspace_bin("testpmd"));
    let mut tp = start_testpmd(&g, &testpmd_args(1));
    let socket = eal::telemetry::socket_dir(&g.prefix).join("dpdk_telemetry.v2");
    let ours = scrape(&socket, 19_876);
    let sample = ours
        .lines()
        .find(|l| l.starts_with("dpdk_counters_rx_packets{port=\"net_null0\"}"))
        .unwrap_or_else(|| panic!("no rx_packets of net_null0 in: {ours}"));
    let value: u64 = sample
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(value > 0, "{sample}");
    assert!(ours.contains("dpdk_memory_total_bytes "), "{ours}");
    let (code, said) = promtool(&ours);
    // 1 would be a text it cannot parse; 3, names its lint dislikes.
    assert!(code == 0 || code == 3, "promtool: {code}: {said}");
    assert!(!said.contains("error while linting"), "{said}");
    tp.stop_ok();

    // DPDK's own testpmd, scraped the same way, draws the same lint: the exporter's names.
    let dpdk = system_tests::prefix("telexportdpdk");
    let mut d = dpdk_on_null(&dpdk, &[], &["--auto-start", "--stats-period=0"]);
    let socket = eal::telemetry::socket_dir(&dpdk).join("dpdk_telemetry.v2");
    assert!(
        eventually(|| socket.exists(), |e| *e),
        "DPDK serves no {socket:?}"
    );
    let theirs = scrape(&socket, 19_877);
    d.signal(libc::SIGINT);
    d.wait(T);
    system_tests::remove_group_files(&dpdk);
    assert!(
        theirs.contains("dpdk_counters_rx_packets{port=\"net_null0\"}"),
        "{theirs}"
    );
    let (dcode, dsaid) = promtool(&theirs);
    assert_eq!(
        (code, lints(&said)),
        (dcode, lints(&dsaid)),
        "ours: {ours}\nDPDK's: {theirs}"
    );
    println!("promtool on both: exit {code}, {}", said.trim());
}

#[test]
fn a_live_holder_is_named_a_stale_socket_replaced() {
    let g = Group::new("telholder", &workspace_bin("testpmd"));
    let p = g.prefix.as_str();
    let path = eal::telemetry::socket_dir(p).join("dpdk_telemetry.v2");
    // DPDK's testpmd, started with this group's prefix (in memory: no files of its own to
    // collide with ours), serves the path first.
    let mut dpdk = dpdk_on_null(p, &["--in-memory"], &["-i", "--total-num-mbufs=2048"]);
    dpdk.expect("Done", T);
    assert!(
        eventually(|| path.exists(), |e| *e),
        "DPDK serves no {path:?}"
    );
    let args = testpmd_args(1);
    let (st, _, err) = g.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!st.success());
    let holder = format!("process {}", dpdk.pid());
    assert!(err.contains("telemetry") && err.contains(&holder), "{err}");
    assert!(
        err.contains("--file-prefix") && err.contains("--no-telemetry"),
        "{err}"
    );
    // --no-telemetry starts it; DPDK's socket is left as it was.
    let mut tp = start_testpmd(&g, &[&["--no-telemetry".to_string()][..], &args].concat());
    assert_eq!(one(p, "/info")["pid"], json!(dpdk.pid()));
    tp.stop_ok();
    // DPDK's testpmd killed: its socket file stays behind, stale, and is replaced.
    dpdk.kill();
    assert!(path.exists());
    let mut tp = start_testpmd(&g, &args);
    assert_eq!(one(p, "/info")["pid"], json!(tp.pid()));
    tp.stop_ok();
}
