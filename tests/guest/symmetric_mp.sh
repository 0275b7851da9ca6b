# Guest side of tests/tests/guest.rs::symmetric_mp_two_processes_two_queue_pairs: the
# primary polls queue pair 0 of both multi-queue virtio ports, a secondary pair 1.
symmetric_mp -l 0 -m 96 --proc-type=primary -- -p 0x3 --num-procs 2 --proc-id 0 &
p0=$!
i=0
while [ ! -S /var/run/rpmd/rpmd/mp_socket ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
sleep 1
symmetric_mp --lcores 1@1 --proc-type=secondary -- -p 0x3 --num-procs 2 --proc-id 1 &
p1=$!
read -r cmd
echo "host said: $cmd"
kill -INT $p1
wait $p1
echo "secondary status $?"
kill -INT $p0
wait $p0
echo "primary status $?"
