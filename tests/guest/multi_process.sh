# Guest side of tests/tests/guest.rs::two_processes_share_two_queue_pairs: symmetric_mp as
# the primary polls queue pair 0 of both multi-queue virtio ports; testpmd, a different
# binary, attaches as a secondary and forwards queue pair 1.
symmetric_mp -l 0 -m 96 --proc-type=primary -- -p 0x3 --num-procs 2 --proc-id 0 &
p0=$!
i=0
while [ ! -S /var/run/rpmd/rpmd/mp_socket ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
sleep 1
testpmd --lcores 2@1,3@1 --proc-type=secondary -- --forward-mode=io --rxq=2 --txq=2 \
    --num-procs=2 --proc-id=1 &
p1=$!
read -r cmd
echo "host said: $cmd"
kill -INT $p1
wait $p1
echo "secondary status $?"
kill -INT $p0
wait $p0
echo "primary status $?"
