# Guest side of tests/tests/guest.rs::l2fwd_between_virtio_ports: l2fwd on the two
# virtio-net ports until the host says `stop`, then PCI hotplug, then the bad-input cases.
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

# PCI hotplug. testpmd, forwarding on a null port, attaches the first NIC; a secondary asks
# it for the second; a third process watches. Both are detached, then the first attached
# again: every process must have let its VFIO group go.
until_seen() { # FILE PATTERN COUNT: wait (60 s at most) for COUNT lines of FILE with PATTERN
    i=0
    while [ "$(grep -c "$2" "$1")" -lt "$3" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && { echo "timed out waiting for '$2' in $1:"; cat "$1"; return 1; }
        sleep 0.2
    done
    grep "$2" "$1" | tail -n 1
}
pmd_do() { echo "$1" >&3; until_seen /tmp/pmd.out "$2" "${3:-1}"; }
mkfifo /tmp/pmd.in /tmp/watch.in
testpmd -l 0-1 -m 96 -b 0000:00:02.0 -b 0000:00:03.0 --vdev net_null0 -- -i \
    --forward-mode=rxonly < /tmp/pmd.in > /tmp/pmd.out 2>&1 &
t=$!
exec 3> /tmp/pmd.in
until_seen /tmp/pmd.out "Start automatic packet forwarding" 1
port_helper --lcores 2@0 --proc-type=secondary -- watch-ports < /tmp/watch.in > /tmp/watch.out 2>&1 &
w=$!
exec 4> /tmp/watch.in
until_seen /tmp/watch.out "WATCHING PORTS" 1
pmd_do "port attach 0000:00:02.0" "is attached. Now total ports is"
port_helper --lcores 3@1 --proc-type=secondary -- hotplug attach 0000:00:03.0
until_seen /tmp/watch.out "PORT ADDED" 2
pmd_do "port detach 1" "Port 1 is detached"
pmd_do "port detach 2" "Port 2 is detached"
until_seen /tmp/watch.out "PORT REMOVED" 2
pmd_do "port attach 0000:00:02.0" "is attached. Now total ports is" 2
until_seen /tmp/watch.out "PORT ADDED" 3
exec 4>&-
wait $w
echo "watcher status $?"
echo quit >&3
exec 3>&-
wait $t
echo "testpmd status $?"
# A device not bound to vfio-pci, named with -a.
devbind --unbind 0000:00:03.0
l2fwd -l 0 -m 32 -a 0000:00:03.0 -- -p 0x1 -T 0
echo "unbound device status $?"
