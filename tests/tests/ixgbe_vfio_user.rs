//! The 82599 model's vfio-user transport under bad input and faults, driven from the host by
//! the `vfio_user` crate's client (as QEMU drives it, without a guest): a second client is
//! refused while one is served; a TX descriptor pointing outside the memory the device was
//! given is logged, its frame dropped and counted, and the port keeps sending; a driver's
//! reset stops the queues; a client that dies leaves the port ready for the next one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use system_tests::{workspace_bin, Proc};
use vfio_bindings::bindings::vfio::{
    VFIO_PCI_BAR0_REGION_INDEX as BAR0, VFIO_PCI_CONFIG_REGION_INDEX as CONFIG,
};
use vfio_user::Client;

const T: Duration = Duration::from_secs(10);
// Register offsets (82599 datasheet, section 8), as a driver would name them.
const CTRL: u64 = 0x0;
const CTRL_RST: u32 = 1 << 26;
const AUTOC: u64 = 0x42a0;
const AUTOC_AN_RESTART: u32 = 1 << 12;
const LINKS: u64 = 0x42a4;
const DMATXCTL: u64 = 0x4a80;
const TDBAL0: u64 = 0x6000;
const TDLEN0: u64 = 0x6008;
const TDH0: u64 = 0x6010;
const TDT0: u64 = 0x6018;
const TXDCTL0: u64 = 0x6028;
const ENABLE: u32 = 1 << 25;
const EERD: u64 = 0x1_0014;
/// Where the test's guest memory sits in the device's DMA space, and how big it is.
const IOVA: u64 = 0x10_0000;
const MEM: usize = 1 << 20;

fn read32(c: &mut Client, off: u64) -> u32 {
    let mut v = [0u8; 4];
    c.region_read(BAR0, off, &mut v).expect("BAR 0 read");
    u32::from_le_bytes(v)
}

fn write32(c: &mut Client, off: u64, v: u32) {
    c.region_write(BAR0, off, &v.to_le_bytes())
        .expect("BAR 0 write");
}

/// A client that has checked the function is an 82599 KX4.
fn connect(path: &str) -> Client {
    let mut c = Client::new(std::path::Path::new(path)).expect("vfio-user connection");
    let mut id = [0u8; 4];
    c.region_read(CONFIG, 0, &mut id).expect("config read");
    assert_eq!(u32::from_le_bytes(id), 0x10f7_8086);
    c
}

/// Guest memory the test shares with the model: a memfd mapped here.
struct Memory {
    fd: OwnedFd,
    map: memmap2::MmapMut,
}

impl Memory {
    fn new() -> Memory {
        // SAFETY: a plain syscall with a static name; the fd is owned right away.
        let fd = unsafe { libc::memfd_create(c"rpmd-test-dma".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd.try_clone().expect("dup"));
        file.set_len(MEM as u64).expect("memfd size");
        // SAFETY: our memfd; the model writes descriptors in it as a device would.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map memfd");
        Memory { fd, map }
    }
    fn put(&mut self, iova: u64, bytes: &[u8]) {
        let at = (iova - IOVA) as usize;
        self.map[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn get_u64(&self, iova: u64) -> u64 {
        let at = (iova - IOVA) as usize;
        u64::from_le_bytes(self.map[at..at + 8].try_into().expect("8 bytes"))
    }
}

/// An advanced TX data descriptor for one whole frame, with RS.
fn tx_desc(addr: u64, len: u16) -> [u8; 16] {
    let cmd = len as u64 | 0x3 << 20 | (1 | 2 | 8 | 0x20) << 24 | (len as u64) << 46;
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..].copy_from_slice(&cmd.to_le_bytes());
    d
}

#[test]
fn vfio_user_port_refuses_a_second_client_drops_bad_dma_and_outlives_its_client() {
    let dir = std::env::temp_dir().join(format!("rpmd-vu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("socket directory");
    let sock = dir.join("port0").to_string_lossy().into_owned();
    let wire = std::net::UdpSocket::bind("127.0.0.1:23101").expect("the port's wire");
    wire.set_read_timeout(Some(T)).expect("timeout");
    let mut model = Proc::start(
        &workspace_bin("ixgbe_model"),
        &["--port", &format!("vfio-user={sock},udp=23100:23101")],
    );
    model.expect("READY", T);

    let mut c = connect(&sock);
    // The EEPROM: word 0x3f makes the datasheet's checksum; read it through EERD.
    write32(&mut c, EERD, 0x3f << 2 | 1);
    assert_eq!(read32(&mut c, EERD) & 2, 2, "EERD done");

    // A second client while the first is served: refused, the first unharmed.
    assert!(Client::new(std::path::Path::new(&sock)).is_err());
    model.expect_stderr("refused a second client", T);

    // Reset, link, TX on: one descriptor outside the memory, one inside.
    let mut mem = Memory::new();
    c.dma_map(0, IOVA, MEM as u64, mem.fd.as_raw_fd())
        .expect("DMA map");
    write32(&mut c, CTRL, CTRL_RST);
    assert_eq!(read32(&mut c, CTRL) & CTRL_RST, 0, "reset self-clears");
    let autoc = read32(&mut c, AUTOC);
    write32(&mut c, AUTOC, autoc | AUTOC_AN_RESTART);
    let deadline = std::time::Instant::now() + T;
    while read32(&mut c, LINKS) & 1 << 30 == 0 {
        assert!(std::time::Instant::now() < deadline, "link never came up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (ring, frame) = (IOVA, IOVA + 0x1000);
    mem.put(frame, &[0xab; 64]);
    mem.put(ring, &tx_desc(0xdead_0000, 64));
    mem.put(ring + 16, &tx_desc(frame, 64));
    write32(&mut c, DMATXCTL, 1);
    write32(&mut c, TDBAL0, ring as u32);
    write32(&mut c, TDLEN0, 8 * 16);
    write32(&mut c, TXDCTL0, ENABLE);
    write32(&mut c, TDT0, 2);
    let mut buf = [0u8; 2048];
    let n = wire.recv(&mut buf).expect("the good frame on the wire");
    assert_eq!(&buf[..n], &[0xab; 64][..]);
    model.expect_stderr("DMA buffer at 0xdead0000+64 is outside the memory", T);
    assert_eq!(
        mem.get_u64(ring + 24) >> 32 & 1,
        1,
        "DD written back for the good frame"
    );
    model.send("stats");
    let stats = model.expect("port 0 dma_errors", T);
    assert!(
        stats.starts_with("port 0 dma_errors 1 tx_refused 0 "),
        "{stats}"
    );

    // A driver's reset stops the queue, as on the card.
    write32(&mut c, CTRL, CTRL_RST);
    assert_eq!(read32(&mut c, TXDCTL0) & ENABLE, 0);
    assert_eq!(read32(&mut c, TDH0), 0);

    // The client dies without a word (QEMU killed): the port is ready for the next one.
    drop(c);
    model.expect("port 0: ready for the next client", T);
    let mut next = connect(&sock);
    assert_eq!(read32(&mut next, TXDCTL0) & ENABLE, 0);
    drop(next);
    model.send("quit");
    let _ = std::fs::remove_dir_all(&dir);
}
