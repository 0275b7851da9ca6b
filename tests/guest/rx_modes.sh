# Guest side of tests/tests/guest.rs::link_stats_and_promiscuous_mode: port_helper receives
# on the first virtio port with promiscuous mode off, then on, and reports link changes.
port_helper -l 0 -m 64 -- rx-modes 0
echo "rx-modes status $?"
