# Guest side of tests/tests/guest.rs::l2fwd_on_packed_rings: l2fwd on two virtio-net ports
# whose devices offer packed virtqueues, until the host says `stop`. Prints which rings each
# port runs on, from l2fwd's log.
l2fwd -l 0-1 -m 96 -- -p 0x3 -T 0 2>/tmp/l2fwd.log &
pid=$!
i=0
until [ "$(grep -c 'queue pair(s) on' /tmp/l2fwd.log)" -ge 2 ] || [ $i -ge 240 ]; do sleep 0.5; i=$((i + 1)); done
echo "RINGS $(grep -c 'on packed rings' /tmp/l2fwd.log) packed of $(grep -c 'queue pair(s) on' /tmp/l2fwd.log)"
read -r cmd
echo "host said: $cmd"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
cat /tmp/l2fwd.log
