# Guest side of tests/tests/guest.rs::two_groups_then_client_server_mp_and_dumpcap: two
# l2fwd groups, one allowing (-a) the first virtio NIC, the other blocking (-b) all but the
# second, forward at the same time; then mp_server on the two multi-queue NICs (a TX
# queue per client) with two clients, and dumpcap capturing the server's port 0; client 1
# is killed at the end.
l2fwd -l 0 -m 48 --file-prefix=ga -a 0000:00:02.0 -- -p 0x1 --portmap "(0,0)" -T 0 &
a=$!
l2fwd -l 1 -m 48 --file-prefix=gb -b 0000:00:02.0 -b 0000:00:04.0 -b 0000:00:05.0 -- \
    -p 0x1 --portmap "(0,0)" -T 0 &
b=$!
read -r cmd
echo "host said: $cmd"
kill -INT $a $b
wait $a
echo "group a status $?"
wait $b
echo "group b status $?"
mp_server -l 0-1 -m 96 -a 0000:00:04.0 -a 0000:00:05.0 -- -p 0x3 -n 2 -T 0 &
s=$!
i=0
while [ ! -S /var/run/rpmd/rpmd/mp_socket ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
sleep 1
mp_client --lcores 2@0 --proc-type=secondary -- -n 0 &
c0=$!
mp_client --lcores 3@1 --proc-type=secondary -- -n 1 &
c1=$!
sleep 1
dumpcap -i 0 -w /tmp/port0.pcapng -c 1000 &
d=$!
read -r cmd
echo "host said: $cmd"
# dumpcap stops by itself at 1,000 frames; if it has not, stop it and see its counts.
i=0
while kill -0 $d 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 $d 2>/dev/null && { proc-info -- --show-ring --show-mempool --xstats -p 0x1; kill -INT $d; }
wait $d
echo "dumpcap status $? file $(wc -c < /tmp/port0.pcapng) bytes"
# Client 1 dies: the server frees what its TX queues hold; client 0 frees its own as it
# stops. Then every mbuf in use is one the RX queues hold for the device.
kill -KILL $c1
wait $c1
kill -INT $c0
wait $c0
sleep 2
echo "CENSUS $(proc-info -- --json --show-port --show-mempool | tr -d ' \n')"
kill -INT $s
wait $s
echo "server status $?"
