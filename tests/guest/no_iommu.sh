# Guest side of tests/tests/guest.rs::without_an_iommu_vfio_says_what_to_fix: the guest
# has no IOMMU, so /init could not bind the NICs; binding by hand and using one both fail
# with the fix.
devbind --bind=vfio-pci 0000:00:02.0
echo "bind status $?"
l2fwd -l 0 -m 32 -a 0000:00:02.0 -- -p 0x1 -T 0
echo "l2fwd status $?"
