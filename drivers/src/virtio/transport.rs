//! The transport abstraction: a virtio device's register interface as one process sees
//! it, which `pci` (PCI over VFIO) and `user` (vhost-user) implement; the device logic of
//! this driver is written once against it.

use super::virtqueue::{Notifier, VqShared};
use net::ethdev::Result;
use std::os::fd::OwnedFd;

/// A virtio device's register interface, as one process sees it.
pub trait Transport: Send + Sync {
    /// The device, for messages (a PCI address or a socket path).
    fn describe(&self) -> String;
    /// The driver name ports of this transport report.
    fn driver_name(&self) -> &'static str {
        "net_virtio"
    }
    /// The device status.
    fn status(&self) -> u8;
    /// Writes the device status; fails when the transport cannot pass it on (vhost-user
    /// sets the backend up at DRIVER_OK).
    fn set_status(&self, s: u8) -> Result<(), String>;
    /// Resets the device and waits until it is done.
    fn reset(&self);
    /// The features the device offers.
    fn device_features(&self) -> u64;
    /// The features the driver takes.
    fn set_driver_features(&self, f: u64);
    /// Reads the device-specific configuration at `off`.
    fn read_config(&self, off: usize, buf: &mut [u8]);
    /// Queues the device has.
    fn num_queues(&self) -> u16;
    /// Most entries queue `q` may have.
    fn max_queue_size(&self, q: u16) -> u16;
    /// Tells the device where queue `q` is and enables it.
    fn enable_queue(&self, q: u16, vq: &'static VqShared) -> Result<(), String>;
    /// How this process notifies queue `q`.
    fn notifier(&self, q: u16) -> Notifier;
    /// An eventfd signalled on configuration changes (link), when the transport has one.
    fn config_interrupt(&self) -> Option<OwnedFd> {
        None
    }
    /// Acknowledges an interrupt (reads the ISR, re-arms a level interrupt).
    fn ack_interrupt(&self) {}
    /// Stops interrupts set up by `config_interrupt`.
    fn disable_interrupts(&self) {}
    /// Releases what the transport holds outside the device (port close).
    fn close(&self) {}
    /// Whether the transport answers control commands itself instead of a control queue
    /// (vhost-user backends have none).
    fn emulates_control(&self) -> bool {
        false
    }
    /// Carries out a control command when `emulates_control`.
    fn control(&self, _class: u8, _cmd: u8, _data: &[u8]) -> Result<(), String> {
        Err("this device has no control queue".into())
    }
}

/// Reads a little-endian u16 of the device configuration at `off`.
pub(super) fn cfg_u16(t: &dyn Transport, off: usize) -> u16 {
    let mut b = [0u8; 2];
    t.read_config(off, &mut b);
    u16::from_le_bytes(b)
}
