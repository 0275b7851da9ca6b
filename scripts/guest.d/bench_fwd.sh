# Guest side of `scripts/bench guest-fwd` and `guest-ixgbe`: on the host's word, starts our
# l2fwd (`ours`) or DPDK's testpmd in mac mode (`dpdk`) on the two ports (virtio-net at
# 00:02.0 and 00:03.0, or the 82599 model's at 00:10.0 and 00:11.0, bound to vfio-pci
# here), one forwarding lcore each (lcore 1); stops it at `stop` and says
# `STOPPED <who> status <n>`; `done` ends. The host knows an app is forwarding from the
# app's own lines on the console.
mkdir -p /var/run/dpdk
if [ -e /sys/bus/pci/devices/0000:00:10.0 ]; then
    ports="0000:00:10.0 0000:00:11.0"
    for d in $ports; do devbind --bind=vfio-pci $d > /dev/null; done
else
    ports="0000:00:02.0 0000:00:03.0"
fi
allow=$(for d in $ports; do printf -- '-a %s ' $d; done)
while read -r cmd; do
    case "$cmd" in
        # shellcheck disable=SC2086 # one word per option
        ours) who=ours; l2fwd -l 1 -m 96 $allow -- -p 0x3 -q 2 -T 0 & app=$! ;;
        # shellcheck disable=SC2086
        dpdk) who=dpdk
              dpdk-testpmd -l 0-1 -n 1 -m 96 --file-prefix dpdk $allow \
                  -- --forward-mode=mac --nb-cores=1 --stats-period 3600 & app=$! ;;
        stop) kill -INT "$app"; wait "$app"; echo "STOPPED $who status $?" ;;
        done) exit 0 ;;
    esac
done
