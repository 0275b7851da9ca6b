# Guest side of tests/tests/guest.rs::l2fwd_between_igb_ports: l2fwd on two 82576 ports
# (QEMU's igb model) until the host says `stop`; then each port's hardware counters.
l2fwd -l 0-1 -m 96 -- -p 0x3 -T 0 &
pid=$!
read -r cmd
echo "host said: $cmd"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
