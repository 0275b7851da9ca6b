# Guest side of tests/tests/guest.rs::l2fwd_on_packed_rings and l2fwd_on_rings_used_in_order:
# l2fwd on two virtio-net ports whose devices offer packed virtqueues or in-order use, until
# the host says `stop`. Prints the rings each port runs on, from l2fwd's log (RINGS1: port 0's,
# RINGS2: port 1's).
l2fwd -l 0-1 -m 96 -- -p 0x3 -T 0 2>/tmp/l2fwd.log &
pid=$!
i=0
until [ "$(grep -c 'queue pair(s) on' /tmp/l2fwd.log)" -ge 2 ] || [ $i -ge 240 ]; do sleep 0.5; i=$((i + 1)); done
grep 'queue pair(s) on' /tmp/l2fwd.log | sed 's/.* queue pair(s) on //' | awk '{print "RINGS" NR ": " $0}'
read -r cmd
echo "host said: $cmd"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
cat /tmp/l2fwd.log
