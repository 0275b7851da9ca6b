# Guest side of tests/tests/guest.rs::link_stats_and_receive_filters: port_helper receives
# on the first virtio port in four receive-filter phases, and reports link changes.
port_helper -l 0 -m 64 -- rx-modes 0
echo "rx-modes status $?"
