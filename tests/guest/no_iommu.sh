# Guest side of tests/tests/guest.rs::without_an_iommu_vfio_says_what_to_fix_then_runs_in_no_iommu_mode:
# the guest has no IOMMU, so /init could not bind the NICs; binding by hand and using one
# both fail with the fix.
devbind --bind=vfio-pci 0000:00:02.0
echo "bind status $?"
l2fwd -l 0 -m 32 -a 0000:00:02.0 -- -p 0x1 -T 0
echo "l2fwd status $?"
# vfio's no-IOMMU mode: vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU (scripts/setup --guest)
# in place of the kernel's, loaded with enable_unsafe_noiommu_mode=1. Then the NIC binds
# and l2fwd forwards with IOVA = physical addresses, a secondary polling nothing but
# reading the port's counters.
for m in vfio_pci vfio_pci_core vfio_virqfd vfio_iommu_type1 vfio; do rmmod $m; done
insmod /modules/noiommu/vfio.ko enable_unsafe_noiommu_mode=1 || echo "no no-IOMMU vfio.ko"
for m in vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do insmod /modules/$m.ko; done
devbind --bind=vfio-pci 0000:00:02.0
echo "noiommu bind status $?"
devbind --status | grep "no-IOMMU"
l2fwd -l 0 -m 48 -a 0000:00:02.0 -- -p 0x1 --portmap "(0,0)" -T 0 &
pid=$!
read -r cmd
echo "host said: $cmd"
proc-info -- --stats | grep -E "^ *RX-packets"
kill -INT $pid
wait $pid
echo "noiommu l2fwd status $?"
