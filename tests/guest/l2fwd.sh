# Guest side of tests/tests/guest.rs::l2fwd_between_virtio_ports: l2fwd on the two
# virtio-net ports until the host says `stop`, then the bad-input cases.
l2fwd -l 0-1 -m 96 -- -p 0x3 -T 0 &
pid=$!
read -r cmd
echo "host said: $cmd"
# A second group asking for a device the first one holds.
l2fwd -l 1 -m 32 --file-prefix=other -a 0000:00:02.0 -- -p 0x1 -T 0
echo "second group status $?"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
# A device not bound to vfio-pci, named with -a.
devbind --unbind 0000:00:03.0
l2fwd -l 0 -m 32 -a 0000:00:03.0 -- -p 0x1 -T 0
echo "unbound device status $?"
