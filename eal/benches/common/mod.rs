//! What the benches that reproduce a DPDK autotest share: the DPDK release whose test they
//! follow (`--dpdk=22.11|25.11`, chosen by `scripts/bench` after its peer) and the EAL
//! options they run with when given none.

/// The DPDK release whose autotest a bench reproduces: its cases, definitions and lines.
#[derive(Clone, Copy)]
pub enum Dpdk {
    V22_11,
    V25_11,
}

/// The bench's command line without cargo's `--bench` and without `--dpdk=R`, and the
/// release R (default 25.11); an unknown release ends the process with a message.
pub fn take_release(bench: &str) -> (Dpdk, Vec<String>) {
    let mut dpdk = Dpdk::V25_11;
    let mut args = Vec::new();
    for a in std::env::args().filter(|a| a != "--bench") {
        match a.as_str() {
            "--dpdk=22.11" => dpdk = Dpdk::V22_11,
            "--dpdk=25.11" => dpdk = Dpdk::V25_11,
            _ if a.starts_with("--dpdk=") => {
                eprintln!("{bench}: {a}: the releases known are --dpdk=22.11 and --dpdk=25.11");
                std::process::exit(2)
            }
            _ => args.push(a),
        }
    }
    (dpdk, args)
}

/// With no EAL option in `args` (the program's name alone): two lcores, `mib` MiB and a file
/// prefix of the bench's own.
pub fn default_eal_options(args: &mut Vec<String>, bench: &str, mib: u32) {
    if args.len() == 1 {
        let mib = mib.to_string();
        args.extend(["-l", "0-1", "-m", &mib, "--log-level", "warning"].map(String::from));
        args.push(format!("--file-prefix={bench}_{}", std::process::id()));
    }
}
