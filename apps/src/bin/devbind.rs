//! devbind, as `dpdk-devbind.py`: shows network devices by driver and moves them between
//! kernel drivers and vfio-pci (through `driver_override`, so the choice survives a
//! re-probe and touches no other device).
//!
//! ```text
//! devbind --status
//! devbind --bind=vfio-pci 0000:00:02.0 [0000:00:03.0 ...]
//! devbind --unbind 0000:00:02.0
//! ```
//! A device whose kernel interface is up or carries routes is left alone unless `--force`.

use clap::Parser;
use eal::options::PciAddr;
use eal::pci::{PciDevice, Sysfs};

#[derive(Parser, Debug)]
#[command(
    name = "devbind",
    about = "Show network devices and bind them to vfio-pci"
)]
struct Args {
    /// Print network devices grouped by driver.
    #[arg(short = 's', long)]
    status: bool,
    /// Bind the devices to this driver (e.g. vfio-pci).
    #[arg(short = 'b', long, value_name = "DRIVER")]
    bind: Option<String>,
    /// Unbind the devices from their driver.
    #[arg(short = 'u', long)]
    unbind: bool,
    /// Also unbind devices whose interfaces are up or routed.
    #[arg(long)]
    force: bool,
    /// PCI addresses (DDDD:BB:DD.F or BB:DD.F).
    #[arg(value_name = "ADDR", value_parser = parse_addr)]
    devices: Vec<PciAddr>,
}

fn parse_addr(s: &str) -> Result<PciAddr, String> {
    s.parse()
}

fn line(d: &PciDevice) -> String {
    let mut s = format!(
        "{} '{}' {:04x}:{:04x}",
        d.addr,
        d.description(),
        d.vendor_id,
        d.device_id
    );
    if !d.interfaces.is_empty() {
        s += &format!(" if={}", d.interfaces.join(","));
    }
    if let Some(g) = d.iommu_group {
        s += &format!(" iommu_group={g}");
    }
    if let Some(n) = d.numa_node {
        s += &format!(" numa_node={n}");
    }
    s
}

fn status(sys: &Sysfs) -> Result<(), String> {
    let devs: Vec<PciDevice> = sys
        .devices()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|d| d.is_network())
        .collect();
    // Sections as dpdk-devbind.py prints them: 0 user-space driver, 1 kernel, 2 none.
    let section = |d: &PciDevice| match d.driver.as_deref() {
        Some("vfio-pci") => 0,
        Some(_) => 1,
        None => 2,
    };
    let titles = [
        "Network devices using a user-space driver (vfio-pci)",
        "Network devices using kernel drivers",
        "Other network devices (no driver)",
    ];
    for (k, title) in titles.iter().enumerate() {
        println!("\n{title}\n{}", "=".repeat(title.len()));
        let mut any = false;
        for d in devs.iter().filter(|d| section(d) == k) {
            any = true;
            match &d.driver {
                Some(drv) => println!("{} drv={drv}", line(d)),
                None => println!("{}", line(d)),
            }
        }
        if !any {
            println!("<none>");
        }
    }
    if sys.noiommu_enabled() {
        println!("\nNote: vfio runs in its unsafe no-IOMMU mode: devices bound to vfio-pci see physical addresses and can reach all memory");
    } else if !sys.has_iommu() {
        println!("\nNote: no IOMMU groups: vfio-pci needs an IOMMU (boot with intel_iommu=on)");
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let sys = Sysfs::default();
    let actions = args.status as u8 + args.bind.is_some() as u8 + args.unbind as u8;
    let result = if actions != 1 {
        Err("give exactly one of --status, --bind=DRIVER, --unbind (see --help)".into())
    } else if args.status {
        status(&sys)
    } else if args.devices.is_empty() {
        Err("name the devices to bind or unbind by PCI address (see --status)".into())
    } else {
        args.devices.iter().try_for_each(|a| {
            match &args.bind {
                Some(drv) => sys
                    .bind(*a, drv, args.force)
                    .map(|_| println!("{a}: bound to {drv}")),
                None => sys.unbind(*a, args.force).map(|_| println!("{a}: unbound")),
            }
            .map_err(|e| e.to_string())
        })
    };
    if let Err(e) = result {
        eprintln!("devbind: {e}");
        std::process::exit(1);
    }
}
