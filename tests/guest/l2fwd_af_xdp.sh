# Guest side of tests/tests/guest.rs::l2fwd_on_af_xdp_over_virtio_net_native_xdp (generic
# kernel): the two virtio-net NICs go back from vfio-pci to Linux's virtio_net, and l2fwd
# forwards between their interfaces through net_af_xdp with its program in native (driver)
# mode, until the host says `stop`. Prints how each interface's XDP program is attached while
# l2fwd runs (XDP0:, XDP1:) and after it stopped (XDP0 AFTER:, XDP1 AFTER:), the interfaces'
# counters before and after l2fwd stopped, and what the kernel logged about XDP.
# No IPv6 on the new interfaces: their neighbour discovery would only add frames of the
# kernel's own to what the host receives.
for v in all default; do echo 1 > /proc/sys/net/ipv6/conf/$v/disable_ipv6; done
load-virtio_net || { echo "loading virtio_net failed"; exit 1; }
# The init bound both NICs to vfio-pci through driver_override: devbind moves them.
devbind --bind=virtio-pci 0000:00:02.0 0000:00:03.0 || exit 1
ifname() { ls "/sys/bus/pci/devices/$1"/virtio*/net 2>/dev/null | head -n 1; }
i=0
until [ -n "$(ifname 0000:00:03.0)" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
if0=$(ifname 0000:00:02.0)
if1=$(ifname 0000:00:03.0)
if [ -z "$if0" ] || [ -z "$if1" ]; then echo "no virtio_net interfaces"; ls /sys/class/net; exit 1; fi
echo "interfaces: $if0 (0000:00:02.0) $if1 (0000:00:03.0), MTU $(cat "/sys/class/net/$if0/mtu")"
# Native XDP on virtio_net refuses (EOPNOTSUPP) guest offloads (GUEST_CSUM/TSO4/TSO6/ECN/UFO)
# it cannot turn off, which it can only with CTRL_GUEST_OFFLOADS. None needs turning off
# here: QEMU's dgram netdev carries no virtio-net header, so QEMU offers none of them (and
# offers CTRL_GUEST_OFFLOADS anyway); no device option or ethtool -K is needed. Shown for
# the record: the features the driver took (sysfs: a string of 0s and 1s by bit number).
f=$(cat "/sys/class/net/$if0/device/features")
bit() { echo "$f" | cut -c$(($1 + 1)); }
echo "virtio features: GUEST_CSUM=$(bit 1) CTRL_GUEST_OFFLOADS=$(bit 2) GUEST_TSO4=$(bit 7) GUEST_TSO6=$(bit 8) GUEST_ECN=$(bit 9) GUEST_UFO=$(bit 10) MRG_RXBUF=$(bit 15)"
for n in $if0 $if1; do ip link set "$n" up; done
xdp() { # IFACE: how its XDP program is attached: "xdp prog/xdp id N" in native mode,
        # "xdpgeneric prog/xdpgeneric id N" in generic mode, "none" without one
    mode=$(/usr/sbin/ip link show dev "$1" | grep -oE ' (xdp|xdpgeneric|xdpoffload|xdpmulti) ' | tr -d ' ')
    prog=$(/usr/sbin/ip -d link show dev "$1" | grep -oE 'prog/xdp[a-z]* id [0-9]+')
    echo "${mode:-none}${prog:+ $prog}"
}
l2fwd -l 0-1 -m 96 --vdev "net_af_xdp0,iface=$if0,mode=drv" --vdev "net_af_xdp1,iface=$if1,mode=drv" \
    -- -p 0x3 -T 0 &
pid=$!
counters() { # PREFIX: the interfaces' counters (what the XDP program and the kernel's TX saw)
    for n in $if0 $if1; do
        line="$1$n"
        for c in rx_packets rx_dropped tx_packets tx_dropped; do
            line="$line $c=$(cat "/sys/class/net/$n/statistics/$c")"
        done
        echo "$line"
    done
}
read -r cmd
echo "host said: $cmd"
counters "before stop: "
echo "XDP0: $(xdp "$if0")"
echo "XDP1: $(xdp "$if1")"
kill -INT $pid
wait $pid
echo "l2fwd status $?"
echo "XDP0 AFTER: $(xdp "$if0")"
echo "XDP1 AFTER: $(xdp "$if1")"
dmesg | grep -i -E 'xdp|virtio_net' | sed 's/^/dmesg: /'
counters "after stop: "
