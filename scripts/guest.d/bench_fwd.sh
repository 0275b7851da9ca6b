# Guest side of `scripts/bench guest-fwd`: on the host's word, starts our l2fwd (`ours`) or
# DPDK's testpmd in mac mode (`dpdk`) on the two virtio ports, one forwarding lcore each
# (lcore 1); stops it at `stop` and says `STOPPED <who> status <n>`; `done` ends. The
# host knows an app is forwarding from the app's own lines on the console.
mkdir -p /var/run/dpdk
while read -r cmd; do
    case "$cmd" in
        ours) who=ours; l2fwd -l 1 -m 96 -- -p 0x3 -q 2 -T 0 & app=$! ;;
        dpdk) who=dpdk
              dpdk-testpmd -l 0-1 -n 1 -m 96 --file-prefix dpdk -a 0000:00:02.0 -a 0000:00:03.0 \
                  -- --forward-mode=mac --nb-cores=1 --stats-period 3600 & app=$! ;;
        stop) kill -INT "$app"; wait "$app"; echo "STOPPED $who status $?" ;;
        done) exit 0 ;;
    esac
done
