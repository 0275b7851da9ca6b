# Guest side of tests/tests/guest.rs::a_group_that_is_not_viable_names_its_devices: a
# virtio-net NIC shares its IOMMU group (behind a PCIe-to-PCI bridge) with a serial card
# that the kernel's serial driver holds, so VFIO may not use the group.
dev=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/class")" = 0x020000 ] || continue
    [ "$(ls "$d/iommu_group/devices" | wc -l)" -gt 1 ] && dev=$(basename "$d")
done
echo "shared group of $dev: $(ls "/sys/bus/pci/devices/$dev/iommu_group/devices" | tr '\n' ' ')"
l2fwd -l 0 -m 32 -a "$dev" -- -p 0x1 -T 0
echo "l2fwd status $?"
