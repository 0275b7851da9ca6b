//! Helpers for tests that start real processes: spawn, read their lines with a deadline,
//! kill, and clean a group's files up afterwards.

pub mod devices;
pub mod frames;
pub mod guest;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Debian's `dpdk-testpmd` (`scripts/setup --peer` installs it) with `args`, its output
/// line-buffered so that its lines reach the test as they are written.
pub fn dpdk_testpmd(args: &[&str]) -> Proc {
    assert!(
        std::path::Path::new("/usr/bin/dpdk-testpmd").exists(),
        "dpdk-testpmd is missing: run scripts/setup --peer"
    );
    Proc::start("stdbuf", &[&["-oL", "dpdk-testpmd"][..], args].concat())
}

/// symmetric_mp's options for process `id` of two, forwarding between ports 0 and 1.
pub fn symmetric_mp_args(id: &str) -> [&str; 6] {
    ["-p", "0x3", "--num-procs", "2", "--proc-id", id]
}

/// The path of a program built by this workspace: the apps (l2fwd, testpmd...) are built by
/// `cargo test --workspace`. A test binary lies in the profile's `deps/` folder, one of
/// this crate's own binaries (soak) beside the apps.
pub fn workspace_bin(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("target dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target dir")
    } else {
        dir
    };
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p.display().to_string()
}

/// A group prefix unique to this test run and test.
pub fn prefix(test: &str) -> String {
    format!("t{}_{test}", std::process::id())
}

/// A started process whose stdout lines and stderr are collected.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Output streams (stdout, stderr) not yet read to end of file.
    streams_open: Arc<AtomicUsize>,
    /// Signals go to the process's own process group (it and all its descendants).
    whole_group: bool,
}

impl Proc {
    pub fn start(program: &str, args: &[&str]) -> Proc {
        Self::spawn(Command::new(program), program, args, false)
    }

    /// Starts `program` armed for fault point `point` (`name`, or `name@N` to die at its
    /// Nth hit; see `eal::fault`): it kills itself with SIGKILL there. Wait for that with
    /// [`expect_fault`](Self::expect_fault).
    pub fn start_armed(program: &str, args: &[&str], point: &str) -> Proc {
        let name = point.split_once('@').map_or(point, |(n, _)| n);
        assert!(
            eal::fault::POINTS.iter().any(|(p, _)| *p == name),
            "no fault point is named '{name}' (see eal::fault::POINTS)"
        );
        require_fault_points(&format!("this test arms fault point '{point}'"));
        let mut cmd = Command::new(program);
        cmd.env(eal::fault::ENV, point);
        Self::spawn(cmd, program, args, false)
    }

    /// Starts `program` as the leader of a new process group, so that `signal`, `kill`
    /// and drop reach its children too (a script's QEMU, for one).
    pub fn start_group(program: &str, args: &[&str]) -> Proc {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.process_group(0);
        Self::spawn(cmd, program, args, true)
    }

    fn spawn(mut cmd: Command, program: &str, args: &[&str], whole_group: bool) -> Proc {
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        // Each reader counts itself out at end of file, after it has handed on all it read.
        let streams_open = Arc::new(AtomicUsize::new(2));
        let (tx, lines) = channel();
        let out = child.stdout.take().expect("stdout is piped");
        let open = streams_open.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
            open.fetch_sub(1, Ordering::Release);
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let open = streams_open.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            open.fetch_sub(1, Ordering::Release);
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
            streams_open,
            whole_group,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next stdout line starting with `prefix`, waiting up to `timeout`.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        self.try_expect(prefix, timeout)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`expect`](Self::expect), but a missing line is an error that says what the
    /// process wrote, for a caller to add what other processes did.
    pub fn try_expect(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Ok(l);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no line starting with '{prefix}' within {timeout:?}; stdout so far: {:?}; stderr: {}",
                        self.seen,
                        self.stderr()
                    ))
                }
            }
        }
    }

    /// Waits up to `timeout` until the process has written `needle` to stderr (where the
    /// logs and the tools' progress go).
    pub fn expect_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "'{needle}' not on stderr within {timeout:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send(&mut self, line: &str) {
        if let Some(i) = self.stdin.as_mut() {
            let _ = writeln!(i, "{line}");
            let _ = i.flush();
        }
    }

    /// Closes stdin (the helper's signal to finish) and waits for the exit.
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        self.stdin = None;
        self.wait(timeout).unwrap_or_else(|| {
            panic!(
                "process did not exit within {timeout:?}; stderr: {}",
                self.stderr()
            )
        })
    }

    /// Stops the process as a user would (SIGINT) and asserts a clean exit.
    pub fn stop_ok(&mut self) {
        self.signal(libc::SIGINT);
        let status = self.finish(T);
        assert!(status.success(), "{status}; stderr: {}", self.stderr());
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the readers take what the process wrote last, up to end of file (a
                // child it left behind may hold a pipe open: do not wait for that long).
                let drained = Instant::now() + Duration::from_secs(2);
                while self.streams_open.load(Ordering::Acquire) > 0 && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to die of SIGKILL (a test killed it, or a fault point did).
    pub fn expect_killed(&mut self) {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(self.finish(T).signal(), Some(libc::SIGKILL));
    }

    /// Waits for the process, started with [`start_armed`](Self::start_armed), to say it
    /// hit fault point `point` and to die of SIGKILL there.
    pub fn expect_fault(&mut self, point: &str) {
        let name = point.split_once('@').map_or(point, |(n, _)| n);
        let hit = format!("fault point {name} hit: killing process {}", self.pid());
        let deadline = Instant::now() + T;
        while !self.stderr().contains(&hit) {
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() {
                // The process may have died after its last words reached the pipe but
                // before the reader took them: let the reader finish, then look again.
                self.wait(T);
                if self.stderr().contains(&hit) {
                    break;
                }
            }
            if exited.is_some() || Instant::now() > deadline {
                let how = exited.map_or(format!("within {T:?}"), |s| format!("before it {s}"));
                panic!(
                    "process {} did not hit fault point '{point}' {how}. Were it and the \
                     programs it runs built with the fault points? {FAULT_POINTS_BUILD}; \
                     stderr: {}",
                    self.pid(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.expect_killed();
    }

    pub fn signal(&self, sig: i32) {
        let target = if self.whole_group {
            -self.pid()
        } else {
            self.pid()
        };
        // SAFETY: sending a signal to our own child (or the process group it leads).
        unsafe { libc::kill(target, sig) };
    }

    /// Stops the process with SIGSTOP and waits until the kernel shows it stopped
    /// (signal delivery is asynchronous).
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.pid());
        for _ in 0..500 {
            let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
                // The state follows the parenthesised command name.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(String::from))
            });
            if state.as_deref() == Some("T") {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("process {} did not stop", self.pid());
    }

    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Everything the process wrote to stdout so far (including lines already expected).
    pub fn stdout(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Runs a program to completion (within `timeout`), returning status, stdout and stderr.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let mut p = Proc::start(program, args);
    let status = p.finish(timeout);
    (status, p.stdout().join("\n"), p.stderr())
}

/// Calls `probe` every 50 ms until `done` holds for what it returns, for at most `T`;
/// returns the last value, for the caller to assert on. For states another process reaches
/// in its own time (a primary noticing a dead secondary, counters catching up).
pub fn eventually<V>(mut probe: impl FnMut() -> V, done: impl Fn(&V) -> bool) -> V {
    let deadline = Instant::now() + T;
    loop {
        let v = probe();
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs proc-info in group `g` with `args` after `--`; its JSON output, parsed.
pub fn proc_info_json(g: &Group, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--file-prefix", g.prefix.as_str(), "--", "--json"];
    a.extend_from_slice(args);
    let (st, out, err) = run(&workspace_bin("proc-info"), &a, T);
    assert!(st.success(), "proc-info {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("proc-info JSON: {e}\n{out}"))
}

/// Where group `g`'s mbufs of pool `pool` are, as proc-info shows them: how many are in
/// use, and how many of those its ports' RX and TX queues hold.
#[derive(Debug, PartialEq, Eq)]
pub struct MbufCensus {
    pub in_use: u64,
    pub rx_queues: u64,
    pub tx_queues: u64,
}

impl MbufCensus {
    pub fn take(g: &Group, pool: &str) -> MbufCensus {
        MbufCensus::read(&proc_info_json(g, &["--show-port", "--show-mempool"]), pool)
    }

    /// The census in `proc-info --json --show-port --show-mempool`'s output.
    pub fn read(all: &serde_json::Value, pool: &str) -> MbufCensus {
        let sum = |key: &str| -> u64 {
            let ports = all["ports"].as_array().into_iter().flatten();
            let queues = ports.flat_map(|p| p["settings"][key].as_array().into_iter().flatten());
            queues.map(|n| n.as_u64().unwrap_or_default()).sum()
        };
        let pools = all["mempools"].as_array().into_iter().flatten();
        let in_use = pools
            .filter(|p| p["name"] == pool)
            .map(|p| p["in_use"].as_u64().unwrap_or_default())
            .next()
            .unwrap_or_else(|| panic!("no pool '{pool}' in {all}"));
        MbufCensus {
            in_use,
            rx_queues: sum("rx_queue_mbufs"),
            tx_queues: sum("tx_queue_mbufs"),
        }
    }

    /// Every mbuf in use is one the RX queues hold for the device: none is lost.
    pub fn only_rx_buffers(&self) -> bool {
        self.tx_queues == 0 && self.in_use == self.rx_queues
    }
}

/// The memory files of group `prefix` (hugepage files, or shared-memory ones without
/// hugepages).
pub fn group_files(prefix: &str) -> Vec<std::path::PathBuf> {
    let (hugepage, shm) = (format!("{prefix}map_"), format!("rpmd.{prefix}map_"));
    ["/dev/hugepages", "/dev/shm"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&hugepage) || name.starts_with(&shm)
        })
        .map(|e| e.path())
        .collect()
}

/// Removes what a group leaves behind when its processes were killed.
pub fn remove_group_files(prefix: &str) {
    for f in group_files(prefix) {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(eal::runtime::runtime_dir(prefix));
    let _ = std::fs::remove_dir_all(eal::telemetry::socket_dir(prefix));
}

/// A group of processes under test: its own prefix, a program to run, and its files
/// removed when dropped, also when the test fails.
pub struct Group {
    pub prefix: String,
    program: String,
}

impl Group {
    pub fn new(test: &str, program: &str) -> Group {
        Group {
            prefix: prefix(test),
            program: program.into(),
        }
    }

    /// `args` with `--file-prefix <prefix>` put first.
    fn with_prefix<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["--file-prefix", self.prefix.as_str()];
        a.extend_from_slice(args);
        a
    }

    /// Starts a process of this group.
    pub fn start(&self, args: &[&str]) -> Proc {
        Proc::start(&self.program, &self.with_prefix(args))
    }

    /// Runs a process of this group to completion: status, stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        run(&self.program, &self.with_prefix(args), T)
    }

    /// Starts `program` as a secondary of this group on `lcores` (e.g. `2@0`), with `app`
    /// after `--`.
    pub fn secondary(&self, program: &str, lcores: &str, app: &[&str]) -> Proc {
        self.secondary_with(program, lcores, app, None)
    }

    /// [`secondary`](Self::secondary) armed for fault point `point` (see
    /// [`Proc::start_armed`]).
    pub fn secondary_armed(&self, program: &str, lcores: &str, app: &[&str], point: &str) -> Proc {
        self.secondary_with(program, lcores, app, Some(point))
    }

    fn secondary_with(
        &self,
        program: &str,
        lcores: &str,
        app: &[&str],
        point: Option<&str>,
    ) -> Proc {
        let mut args = vec![
            "--lcores",
            lcores,
            "--proc-type=secondary",
            "--file-prefix",
            self.prefix.as_str(),
            "--",
        ];
        args.extend_from_slice(app);
        match point {
            Some(point) => Proc::start_armed(program, &args, point),
            None => Proc::start(program, &args),
        }
    }

    /// Starts `mp_client -n id` on lcore `2 + id` (CPU 0) and waits until it is ready.
    pub fn mp_client(&self, id: u16) -> Proc {
        self.mp_client_with(id, None)
    }

    /// [`mp_client`](Self::mp_client) armed for fault point `point` (see
    /// [`Proc::start_armed`]).
    pub fn mp_client_armed(&self, id: u16, point: &str) -> Proc {
        self.mp_client_with(id, Some(point))
    }

    fn mp_client_with(&self, id: u16, point: Option<&str>) -> Proc {
        let lcores = format!("{}@0", 2 + id);
        let id = id.to_string();
        let program = workspace_bin("mp_client");
        let mut c = self.secondary_with(&program, &lcores, &["-n", &id], point);
        c.expect(&format!("Client {id} ready"), T);
        c
    }

    /// Starts this group's program on lcores 0-1 with two net_ring ports and `app` after
    /// `--`.
    pub fn start_on_rings(&self, app: &[&str]) -> Proc {
        self.start_on_rings_at("0-1", app)
    }

    /// [`start_on_rings`](Self::start_on_rings) on `lcores`.
    pub fn start_on_rings_at(&self, lcores: &str, app: &[&str]) -> Proc {
        let mut args = vec![
            "-l",
            lcores,
            "-m",
            "128",
            "--vdev",
            "net_ring0",
            "--vdev",
            "net_ring1",
            "--",
        ];
        args.extend_from_slice(app);
        self.start(&args)
    }

    /// Starts this group's program inside `ns` on lcores 0-1 with two net_tap ports (the
    /// interfaces named `ifaces`) and `app` after `--`.
    pub fn start_on_taps(&self, ns: &NetNs, ifaces: [&str; 2], app: &[&str]) -> Proc {
        let taps = ifaces.map(|i| format!("iface={i}"));
        let (tap0, tap1) = (
            format!("net_tap0,{}", taps[0]),
            format!("net_tap1,{}", taps[1]),
        );
        let mut args = vec![
            "-l",
            "0-1",
            "-m",
            "128",
            "--file-prefix",
            self.prefix.as_str(),
        ];
        args.extend(["--vdev", tap0.as_str(), "--vdev", tap1.as_str(), "--"]);
        args.extend_from_slice(app);
        ns.start(&self.program, &args)
    }

    /// Starts this group's program inside `ns` with `args` (EAL options, `--`, the app's).
    pub fn start_in(&self, ns: &NetNs, args: &[&str]) -> Proc {
        ns.start(&self.program, &self.with_prefix(args))
    }

    /// Runs this group's program inside `ns` to completion: status, stdout, stderr.
    pub fn run_in(&self, ns: &NetNs, args: &[&str]) -> (ExitStatus, String, String) {
        ns.run(&self.program, &self.with_prefix(args))
    }

    /// Starts `program` inside `ns` as a secondary of this group on `lcores`, with `app`
    /// after `--`, armed for fault point `point` if one is given (see
    /// [`Proc::start_armed`]).
    pub fn secondary_in(
        &self,
        ns: &NetNs,
        program: &str,
        lcores: &str,
        app: &[&str],
        point: Option<&str>,
    ) -> Proc {
        let mut args = vec!["--lcores", lcores, "--proc-type=secondary"];
        args.extend(self.with_prefix(&["--"]));
        args.extend_from_slice(app);
        match point {
            Some(point) => Proc::start_armed("ip", &ns.args(program, &args), point),
            None => ns.start(program, &args),
        }
    }

    /// Starts this group's program (l2fwd) on two net_ring ports with statistics every
    /// `period` seconds, and waits until both links are up.
    pub fn start_l2fwd_on_rings(&self, period: &str) -> Proc {
        let mut l2 = self.start_on_rings(&["-p", "0x3", "-T", period]);
        l2.expect("Port 1 Link up", T);
        l2
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        remove_group_files(&self.prefix);
    }
}

pub const T: Duration = Duration::from_secs(20);

/// How to build the tests so that the processes they start have the fault points.
pub const FAULT_POINTS_BUILD: &str =
    "build and run the tests with `--features rpmd-eal/fault-points` \
     (cargo test --profile release-tests --workspace --features rpmd-eal/fault-points, as scripts/test does)";

/// Fails the test, saying `why` it needs them, when this build has no fault points.
pub fn require_fault_points(why: &str) {
    if !eal::fault::ENABLED {
        panic!("{why}, and this build has no fault points: {FAULT_POINTS_BUILD}");
    }
}

/// A network namespace of the test's own (deleted on drop), so that TAP interfaces and
/// what the kernel does with them stay out of the host's network.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// A new namespace, named after `tag` and this process, with IPv6 off (no router
    /// solicitations or DAD frames on the test's interfaces).
    pub fn new(tag: &str) -> NetNs {
        let name = format!("rpmd{tag}{}", std::process::id());
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip netns add {name} && ip netns exec {name} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
            ))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot make network namespace {name} (needs root and iproute2)"
        );
        NetNs { name }
    }

    /// `program args` inside the namespace.
    fn args<'a>(&'a self, program: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["netns", "exec", self.name.as_str(), program];
        a.extend_from_slice(args);
        a
    }

    /// Starts `program` inside the namespace.
    pub fn start(&self, program: &str, args: &[&str]) -> Proc {
        Proc::start("ip", &self.args(program, args))
    }

    /// Adds the veth pair `a`, `b` with `queues` RX and TX queues on each side, gives `a`
    /// the MAC address `mac`, and brings both up.
    pub fn veth(&self, a: &str, b: &str, queues: u32, mac: &str) {
        let q = queues.to_string();
        let ns = self.name.as_str();
        let steps: [&[&str]; 4] = [
            &[
                "-n",
                ns,
                "link",
                "add",
                a,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
            &["-n", ns, "link", "set", a, "address", mac],
            &["-n", ns, "link", "set", a, "up"],
            &["-n", ns, "link", "set", b, "up"],
        ];
        for step in steps {
            let (st, _, err) = run("ip", step, T);
            assert!(st.success(), "ip {step:?}: {err}");
        }
        // Frames sent before the carrier is on are dropped: wait for it on both sides.
        for dev in [a, b] {
            let up = eventually(
                || run("ip", &["-n", ns, "link", "show", dev], T).1,
                |out| out.contains("LOWER_UP"),
            );
            assert!(up.contains("LOWER_UP"), "{dev} has no carrier: {up}");
        }
    }

    /// Runs `program` inside the namespace to completion: status, stdout, stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> (ExitStatus, String, String) {
        run("ip", &self.args(program, args), T)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
/// Sends `n` frames to 127.0.0.1:`to` at `pps` (a QEMU dgram NIC, the 82599 model) and
/// checks those coming back on `on`; the `port_helper udp-fwd` output line that starts
/// with each of `lines`.
pub fn udp_fwd_lines<const L: usize>(
    to: u16,
    on: u16,
    n: u32,
    pps: u32,
    macs: [&str; 2],
    extra: &[&str],
    lines: [&str; L],
) -> [String; L] {
    udp_fwd_waiting(30, to, on, n, pps, macs, extra, lines)
}

/// As [`udp_fwd`], for frames some of which are not meant to come back: waits `secs`
/// seconds for the rest instead of 30.
pub fn udp_fwd_within(secs: u32, to: u16, on: u16, n: u32, pps: u32) -> String {
    let [line] = udp_fwd_waiting(secs, to, on, n, pps, ["-", "-"], &[], ["RECEIVED"]);
    line
}

/// `port_helper udp-fwd`, waiting `secs` after the last frame for the others to come back.
#[allow(clippy::too_many_arguments)]
fn udp_fwd_waiting<const L: usize>(
    secs: u32,
    to: u16,
    on: u16,
    n: u32,
    pps: u32,
    macs: [&str; 2],
    extra: &[&str],
    lines: [&str; L],
) -> [String; L] {
    let (to, on, n, pps, secs) = (
        to.to_string(),
        on.to_string(),
        n.to_string(),
        pps.to_string(),
        secs.to_string(),
    );
    let mut args = vec!["udp-fwd", &to, &on, &n, &pps, &secs, macs[0], macs[1]];
    args.extend_from_slice(extra);
    let (st, out, err) = run(
        &workspace_bin("port_helper"),
        &args,
        Duration::from_secs(120),
    );
    assert!(st.success(), "port_helper udp-fwd failed: {out} {err}");
    lines.map(|start| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line: {out}; stderr: {err}"))
            .to_string()
    })
}

/// `udp_fwd_lines` for the `RECEIVED` line, with destination and source MACs to check.
pub fn udp_fwd(to: u16, on: u16, n: u32, pps: u32, dst: &str, src: &str) -> String {
    let [line] = udp_fwd_lines(to, on, n, pps, [dst, src], &[], ["RECEIVED"]);
    line
}

/// The value of `key=` in a `port_helper` result line.
pub fn count(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in '{line}'"))
}

/// The numbers of the first `[a, b, ...]` list in `line` (a sender's per-queue counts).
pub fn bracketed_counts(line: &str) -> Vec<u64> {
    line.split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("", |(list, _)| list)
        .split(", ")
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// The first number after `marker` in `line`.
pub fn number_after(line: &str, marker: &str) -> u64 {
    line.split_once(marker)
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .find(|w| !w.is_empty())
        })
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count after '{marker}' in '{line}'"))
}

/// Checks that each queue took what RSS predicts (`rss`: the sender's `RSS per_queue=[..]`
/// line), give or take `slack` frames that were not the sender's.
pub fn check_rss_shares(shares: &[u64], rss: &str, slack: u64) {
    let predicted: Vec<u64> = rss
        .trim_start_matches("RSS per_queue=[")
        .trim_end_matches(']')
        .split(", ")
        .filter_map(|v| v.parse().ok())
        .collect();
    println!("RSS predicted per queue: {predicted:?}, taken: {shares:?}");
    assert_eq!(predicted.len(), shares.len(), "{rss}");
    for (got, want) in shares.iter().zip(&predicted) {
        assert!(
            (*want..=*want + slack).contains(got),
            "queue shares {shares:?}, RSS predicts {predicted:?}"
        );
    }
}

/// The number after `key:` in mp_server's closing statistics line of client `c`.
pub fn client_stat(out: &str, c: u32, key: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with(&format!("Client {c:>2} - ")))
        .unwrap_or_else(|| panic!("no statistics of client {c} in\n{out}"));
    number_after(line, &format!("{key}:"))
}
