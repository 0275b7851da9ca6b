//! Poll-mode drivers. Each registers under a stable name (ARCHITECTURE.md, rule 2); a binary
//! calls [`register_all`] before `net::init` to have them all.

#![warn(missing_docs)]

pub mod af_xdp;
pub mod fd_share;
pub mod intel;
pub mod irq;
mod netdev;
pub mod null;
pub mod ring;
pub mod tap;
pub mod virtio;

/// Registers every driver of this crate with the port layer of this process.
pub fn register_all() {
    net::register_driver(&ring::RingDriver);
    net::register_driver(&null::NullDriver);
    net::register_driver(&tap::TapDriver);
    net::register_driver(&af_xdp::AfXdpDriver);
    net::register_driver(&virtio::VirtioNetDriver);
    net::register_driver(&virtio::user::VirtioUserDriver);
    net::register_driver(&intel::igb::IgbDriver);
    net::register_driver(&intel::ixgbe::IxgbeDriver);
    net::register_driver(&intel::ixgbe::IxgbeModelDriver);
}

/// The link of a software port: up while the port is started.
fn software_link(rec: &net::ethdev::PortRecord) -> net::Link {
    net::Link {
        up: rec.state() == net::PortState::Started,
        full_duplex: true,
        speed_mbps: 10_000,
    }
}

/// The value of `key` in a vdev's arguments.
fn arg<'a>(args: &'a [(String, String)], key: &str) -> Option<&'a str> {
    args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Refuses arguments a driver does not know, naming the ones it does.
fn check_args(port: &str, args: &[(String, String)], known: &[&str]) -> net::ethdev::Result<()> {
    match args.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(net::ethdev::Error::BadArg {
            port: port.into(),
            why: format!(
                "unknown argument '{k}' (this driver takes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }),
        None => Ok(()),
    }
}
