//! The test devices the host tests run beside a group: the 82599 model (`ixgbe_model`,
//! for `net_ixgbe`) and the vhost-user backend that can lie (`vhost_liar`, for
//! `net_virtio_user`). Each is stopped, and its files removed, when dropped.

use crate::{workspace_bin, Group, Proc, T};

/// The model serving some ports for a group, port i's BAR file `/dev/shm/<prefix>_ixgbe<i>`.
pub struct Model {
    /// The model's process.
    pub proc: Proc,
    bars: Vec<String>,
}

impl Model {
    /// `ports` ports listening on UDP: port i on `base + 2i`, sending to `base + 2i + 1`;
    /// its MAC is 52:54:00:82:59:0i.
    pub fn start(g: &Group, ports: u16, base: u16) -> Model {
        Model::lying(g, ports, base, &[])
    }

    /// As `start`, the model told `--evil` lies (none: an honest model).
    pub fn lying(g: &Group, ports: u16, base: u16, evil: &[&str]) -> Model {
        Model::with_wires_and(g, ports, evil, |i| {
            format!("udp={}:{}", base + 2 * i, base + 2 * i + 1)
        })
    }

    /// A model whose ports receive `len`-byte frames as fast as their RX rings take them.
    pub fn generating(g: &Group, ports: u16, len: usize) -> Model {
        Model::with_wires(g, ports, |_| format!("gen={len}"))
    }

    /// `ports` ports, port i's wire given by `wire(i)` (the model's `--port` syntax).
    pub fn with_wires(g: &Group, ports: u16, wire: impl Fn(u16) -> String) -> Model {
        Model::with_wires_and(g, ports, &[], wire)
    }

    /// As `with_wires`, with more arguments for the model.
    pub fn with_wires_and(
        g: &Group,
        ports: u16,
        more: &[&str],
        wire: impl Fn(u16) -> String,
    ) -> Model {
        let bars: Vec<String> = (0..ports)
            .map(|i| format!("/dev/shm/{}_ixgbe{i}", g.prefix))
            .collect();
        let specs: Vec<String> = bars
            .iter()
            .zip(0u16..)
            .map(|(b, i)| format!("bar={b},{}", wire(i)))
            .collect();
        let mut args = vec!["--file-prefix", g.prefix.as_str()];
        for s in &specs {
            args.extend(["--port", s.as_str()]);
        }
        args.extend_from_slice(more);
        let mut proc = Proc::start(&workspace_bin("ixgbe_model"), &args);
        proc.expect("READY", T);
        Model { proc, bars }
    }

    /// `--vdev net_ixgbe_model<i>,bar=...` for each port.
    pub fn vdevs(&self) -> Vec<String> {
        self.bars
            .iter()
            .enumerate()
            .flat_map(|(i, b)| ["--vdev".to_string(), format!("net_ixgbe_model{i},bar={b}")])
            .collect()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.proc.kill();
        for b in &self.bars {
            let _ = std::fs::remove_file(b);
            let _ = std::fs::remove_file(format!("{b}.irq"));
        }
    }
}

/// `vhost_liar` listening on a socket of the group's, telling `lie` (`none`: honest)
/// while it sends `frames` frames at `pps` a second.
pub struct Liar {
    /// The backend's process.
    pub proc: Proc,
    /// Its socket, for `--vdev net_virtio_user0,path=...`.
    pub sock: String,
    /// The rings it offers besides split rings used in any order (its 5th argument:
    /// `packed`, `packed-in-order`, `split-in-order`), if any.
    rings: Option<&'static str>,
}

impl Liar {
    /// Starts it and waits until it listens.
    pub fn start(g: &Group, lie: &str, frames: u64, pps: u32) -> Liar {
        Liar::launch(g, lie, frames, pps, None)
    }

    /// Starts an honest one that offers packed rings (it lies on split rings only), on a
    /// socket of its own (a group may run one of each kind).
    pub fn start_packed(g: &Group, frames: u64, pps: u32) -> Liar {
        Liar::launch(g, "none", frames, pps, Some("packed"))
    }

    /// As `start_packed`, offering to use them in order too (VIRTIO_F_IN_ORDER): it then
    /// completes TX chains in batches, one used descriptor for each.
    pub fn start_packed_in_order(g: &Group, frames: u64, pps: u32) -> Liar {
        Liar::launch(g, "none", frames, pps, Some("packed-in-order"))
    }

    /// An honest one that offers split rings used in order (VIRTIO_F_IN_ORDER without
    /// packed rings): it completes TX chains in batches, one used entry for each.
    pub fn start_split_in_order(g: &Group, frames: u64, pps: u32) -> Liar {
        Liar::launch(g, "none", frames, pps, Some("split-in-order"))
    }

    fn launch(g: &Group, lie: &str, frames: u64, pps: u32, rings: Option<&'static str>) -> Liar {
        let tag = rings.map_or(String::new(), |r| format!("-{r}"));
        let sock = std::env::temp_dir()
            .join(format!("rpmd-{}{tag}.sock", g.prefix))
            .display()
            .to_string();
        let (frames, pps) = (frames.to_string(), pps.to_string());
        let mut args = vec![sock.as_str(), lie, &frames, &pps];
        args.extend(rings);
        let mut proc = Proc::start(&workspace_bin("vhost_liar"), &args);
        proc.expect("LISTENING", T);
        Liar { proc, sock, rings }
    }

    /// `net_virtio_user<port>,path=<its socket>`, asking for packed rings from one that
    /// offers them (used in order when it offers that too: the driver's default).
    pub fn vdev(&self, port: u16) -> String {
        let packed = if self.rings.is_some_and(|r| r.starts_with("packed")) {
            ",packed_vq=1"
        } else {
            ""
        };
        format!("net_virtio_user{port},path={}{packed}", self.sock)
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_file(&self.sock);
    }
}
