# Guest side of tests/tests/guest_ixgbe.rs: the two 82599 model ports (00:10.0, 00:11.0,
# served over vfio-user) driven in turn by Linux's ixgbe, DPDK's net_ixgbe and ours. Before
# each phase the script says `PHASE NAME` and waits for the host's `go` (the host has
# started recording the driver's register writes meanwhile); within a phase it says what it
# is ready for and waits for the host to have sent frames or pulled the cable.
p0=0000:00:10.0
p1=0000:00:11.0

until_seen() { # PATTERN SECONDS COMMAND...: until the command's output has PATTERN
    pat=$1 secs=$2
    shift 2
    i=0
    while ! "$@" 2>/dev/null | grep -q "$pat"; do
        i=$((i + 1))
        [ $i -gt $((secs * 5)) ] && { echo "timed out waiting for '$pat' from $*"; "$@" | tail -n 20; return 1; }
        sleep 0.2
    done
}
more_than() { # N PATTERN FILE SECONDS: until FILE has more than N lines with PATTERN
    i=0
    while [ "$(grep -c "$2" "$3")" -le "$1" ]; do
        i=$((i + 1))
        [ $i -gt $(($4 * 5)) ] && { echo "timed out waiting for '$2' in $3"; tail -n 20 "$3"; return 1; }
        sleep 0.2
    done
}
phase() { echo "PHASE $1"; read -r go; }
host() { read -r cmd; }

# Linux's ixgbe: probe, link, a bridge between the two ports, link down and up.
phase linux
for v in all default; do echo 1 > /proc/sys/net/ipv6/conf/$v/disable_ipv6; done
load-bridge && load-ixgbe || { echo "loading ixgbe failed"; exit 1; }
until_seen eth1 30 ls /sys/class/net || exit 1
ethtool -i eth0 | head -n 1
brctl addbr br0
for n in eth0 eth1; do
    # The model does no segmentation or checksum insertion: Linux must not ask for them.
    ethtool -K $n gro off lro off tso off gso off tx off rx off >/dev/null 2>&1
    brctl addif br0 $n
    ip link set $n up
done
ip link set br0 up
until_seen "eth1: NIC Link is Up" 30 dmesg || exit 1
# The bridge forwards on a port once it has seen its carrier (state 3, forwarding), which
# the kernel reports up to a second after the driver's link message.
for n in eth0 eth1; do until_seen "^3$" 30 cat /sys/class/net/br0/brif/$n/state || exit 1; done
for n in eth0 eth1; do echo "$n: $(ethtool $n | grep -E 'Speed|Link detected' | tr -d '\t' | tr '\n' ' ')"; done
echo "LINUX BRIDGE READY"
host
echo "eth0 $(ethtool -S eth0 | grep -E '^ +(rx_packets|rx_pkts_nic|rx_missed_errors|rx_no_dma_resources|rx_dropped):' | tr -d ' ' | tr '\n' ' ')"
echo "eth1 $(ethtool -S eth1 | grep -E '^ +(tx_packets|tx_pkts_nic):' | tr -d ' ' | tr '\n' ' ')"
echo "eth1 tx_dropped=$(cat /sys/class/net/eth1/statistics/tx_dropped) $(ethtool -S eth1 | grep -E '^ +(tx_restart_queue|tx_busy|tx_timeout_count):' | tr -d ' ' | tr '\n' ' ')"
dmesg | grep -i -E "hang|reset|NIC Link" | tail -n 8
for n in eth0 eth1 br0; do echo "$n rx_dropped=$(cat /sys/class/net/$n/statistics/rx_dropped) tx_dropped=$(cat /sys/class/net/$n/statistics/tx_dropped)"; done
cat /proc/net/softnet_stat
echo "LINUX COUNTED"
host
until_seen "eth0: NIC Link is Down" 30 dmesg && echo "LINUX SAW LINK DOWN"
host
until_seen "eth0: NIC Link is Up.*" 30 sh -c 'dmesg | grep "eth0: NIC Link" | tail -n 1' && echo "LINUX SAW LINK UP"
dmesg | grep -i -E "hang|hardware error" | tail -n 5
# A driver's own reset: ifdown and ifup reset the port and set its queues up again.
ip link set eth1 down
ip link set eth1 up
until_seen "^3$" 30 cat /sys/class/net/br0/brif/eth1/state && echo "LINUX RESET DONE"
host
ip link set br0 down
for d in $p0 $p1; do echo $d > /sys/bus/pci/drivers/ixgbe/unbind; done
for d in $p0 $p1; do devbind --bind=vfio-pci $d > /dev/null || echo "cannot bind $d to vfio-pci"; done

# DPDK's net_ixgbe in testpmd: io then mac forwarding, then a link change.
phase dpdk
mkfifo /tmp/pmd.in
# --no-flush-rx: testpmd's "start" otherwise drains the RX queues for some milliseconds
# after it prints that forwarding started, and the first frames sent then are dropped.
stdbuf -oL dpdk-testpmd -l 0-1 -m 256 -a $p0 -a $p1 -- -i --total-num-mbufs=4096 --no-flush-rx \
    < /tmp/pmd.in > /tmp/pmd.out 2>&1 &
pmd=$!
exec 3> /tmp/pmd.in
pmd_do() { # COMMAND PATTERN: types COMMAND, waits for one more line with PATTERN
    n=$(grep -c "$2" /tmp/pmd.out)
    echo "$1" >&3
    more_than "$n" "$2" /tmp/pmd.out 60
}
pmd_do "set fwd io" "Set io packet forwarding mode" || { cat /tmp/pmd.out; exit 1; }
# Stops forwarding and prints testpmd's totals over both ports (where a frame was lost).
pmd_stop() {
    pmd_do "stop" "Done."
    echo "TESTPMD TOTALS $(grep -A 2 "Accumulated forward statistics" /tmp/pmd.out | tail -n 2 | tr -s ' \n' ' ')"
}
ups() { grep -c "Link status: up" /tmp/pmd.out; }
i=0
while [ $i -lt 30 ]; do
    n=$(ups)
    echo "show port info 1" >&3
    sleep 1
    [ "$(ups)" -gt "$n" ] && { echo "DPDK LINK UP"; break; }
    i=$((i + 1))
done
pmd_do "start" "io packet forwarding"
echo "DPDK FORWARDING io"
host
pmd_stop
pmd_do "set fwd mac" "Set mac packet forwarding mode"
pmd_do "start" "mac packet forwarding"
echo "DPDK FORWARDING mac"
host
pmd_stop
# A driver's own reset: the ports stopped and started again, then mac forwarding.
pmd_do "port stop all" "Done"
pmd_do "port start all" "Done"
pmd_do "start" "mac packet forwarding"
echo "DPDK RESTARTED"
host
pmd_stop
lsc="Port 0: link state change event"
seen=$(grep -c "$lsc" /tmp/pmd.out)
echo "DPDK READY FOR LINK"
host
more_than "$seen" "$lsc" /tmp/pmd.out 30 && echo "DPDK SAW LSC"
host
echo quit >&3
wait $pmd
echo "testpmd status $?"
grep -i -E "error|fail" /tmp/pmd.out | grep -v -i "error recovery" | head -n 5

# Ours: l2fwd, then symmetric_mp with two processes and RSS over two queues, and a link
# change seen by a secondary's callback.
phase ours
l2fwd -l 0-1 -m 96 -a $p0 -a $p1 -- -p 0x3 -T 0 > /tmp/l2fwd.out 2>&1 &
l2=$!
until_seen "Lcore 1: RX port 1" 60 cat /tmp/l2fwd.out || { cat /tmp/l2fwd.out; exit 1; }
echo "L2FWD FORWARDING"
host
kill -INT $l2
wait $l2
echo "l2fwd status $?"
symmetric_mp -l 0 -m 96 -a $p0 -a $p1 --proc-type=primary -- -p 0x3 --num-procs 2 --proc-id 0 \
    > /tmp/mp0.out 2>&1 &
mp0=$!
until_seen mp_socket 30 ls /var/run/rpmd/rpmd || { cat /tmp/mp0.out; exit 1; }
sleep 1
symmetric_mp -l 1 --proc-type=secondary -- -p 0x3 --num-procs 2 --proc-id 1 > /tmp/mp1.out 2>&1 &
mp1=$!
# watch-link runs until its standard input closes.
mkfifo /tmp/watch.in
port_helper --lcores 2@0 --proc-type=secondary -- watch-link 0 < /tmp/watch.in > /tmp/watch.out 2>&1 &
w=$!
exec 4> /tmp/watch.in
until_seen "LINK up=1" 30 cat /tmp/watch.out || { cat /tmp/mp0.out /tmp/mp1.out /tmp/watch.out; exit 1; }
echo "SYMMETRIC_MP FORWARDING"
host
until_seen "LINK up=0" 30 cat /tmp/watch.out && echo "SECONDARY SAW LINK DOWN" || cat /tmp/mp0.out
host
until_seen "LINK up=1.*" 30 sh -c 'grep LINK /tmp/watch.out | tail -n 1' && echo "SECONDARY SAW LINK UP"
exec 4>&-
kill -INT $mp1
wait $w $mp1
kill -INT $mp0
wait $mp0
echo "symmetric_mp status $?"
grep -h -E "Port [01]|RX-packets|TX-packets" /tmp/mp0.out /tmp/mp1.out | head -n 8
