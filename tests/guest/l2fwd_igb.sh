# Guest side of tests/tests/guest.rs::l2fwd_between_igb_ports: l2fwd on two 82576 ports
# (QEMU's igb model) until the host says `stop`, dumpcap capturing 1,000 frames of port 0
# meanwhile; then each port's hardware counters.
l2fwd -l 0-1 -m 96 -- -p 0x3 -T 0 &
pid=$!
i=0
until dumpcap -D 2>/dev/null | grep -q "^0\..*started" || [ $i -ge 120 ]; do sleep 0.5; i=$((i + 1)); done
dumpcap -i 0 -w /tmp/igb0.pcapng -c 1000 &
d=$!
read -r cmd
echo "host said: $cmd"
wait $d
echo "dumpcap status $? file $(wc -c < /tmp/igb0.pcapng) bytes"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
