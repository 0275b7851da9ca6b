//! mbuf operations and the port API in one process (its own test binary: the EAL is
//! initialised once per process), on real hugepages.

use net::{Link, Mbuf, PktmbufPool, Port, PortConf};
use std::sync::mpsc;
use std::time::Duration;

fn init() {
    let prefix = format!("t{}_inproc", std::process::id());
    let args: Vec<String> = [
        "mbuf_ethdev",
        "-l",
        "0",
        "-m",
        "64",
        "--log-level",
        "warning",
        "--file-prefix",
        &prefix,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    eal::init(&args).expect("EAL starts");
    drivers::register_all();
    net::init().expect("ports start");
}

fn mbuf_operations(pool: &PktmbufPool) {
    let mut m = pool.alloc().expect("a buffer");
    assert_eq!(
        (m.pkt_len(), m.headroom(), m.tailroom(), m.nb_segs()),
        (0, 128, 2048, 1)
    );
    m.append(100).expect("room").fill(0xab);
    assert!(m.prepend(14).is_some());
    assert_eq!((m.pkt_len(), m.data_len(), m.headroom()), (114, 114, 114));
    assert!(m.adj(14) && m.trim(50));
    assert_eq!(m.pkt_len(), 50);
    assert!(m.data().iter().all(|b| *b == 0xab));
    assert!(!m.adj(51), "cannot remove more than there is");
    assert!(m.prepend(200).is_none(), "headroom is 128");
    // A header zeroed in front of the data, which stays where it was.
    m.prepend(12).expect("room").fill(0x5a);
    assert!(m.adj(12));
    assert!(m.zero_before_data(12));
    assert_eq!((m.pkt_len(), m.headroom()), (50, 128));
    assert!(m.prepend(12).expect("room").iter().all(|b| *b == 0));
    assert!(m.adj(12));
    assert!(!m.zero_before_data(129), "headroom is 128");
    assert!(m.append(3000).is_none(), "tailroom is finite");

    // Chains: lengths add up, data reads in order, every segment is freed.
    let mut tail = pool.alloc().expect("a buffer");
    tail.append(20).expect("room").fill(0xcd);
    m.chain(tail);
    assert_eq!((m.pkt_len(), m.data_len(), m.nb_segs()), (70, 50, 2));
    let v = m.to_vec();
    assert_eq!(v.len(), 70);
    assert!(v[..50].iter().all(|b| *b == 0xab) && v[50..].iter().all(|b| *b == 0xcd));
    m.append(5).expect("appends to the last segment");
    assert_eq!(
        m.segments().map(<[u8]>::len).collect::<Vec<_>>(),
        vec![50, 25]
    );

    // Shared references: the buffer goes back only with the last one.
    let before = pool.in_use();
    let c = m.clone_ref();
    assert_eq!((m.refcnt(), c.refcnt()), (2, 2));
    drop(c);
    assert_eq!((m.refcnt(), pool.in_use()), (1, before));
    drop(m);
    assert_eq!(pool.in_use(), before - 2, "both segments returned");

    // Bulk allocation is all or nothing; bulk free returns everything.
    let mut v: Vec<Mbuf> = Vec::new();
    assert!(pool.alloc_bulk(&mut v, 500));
    assert!(!pool.alloc_bulk(&mut v, 600), "only 511 in the pool");
    assert_eq!(v.len(), 500, "a failed bulk leaves what was there");
    net::mbuf::free_bulk(&mut v);
    assert!(v.is_empty());
    assert_eq!(pool.in_use(), 0);

    // A burst with a chain and a shared buffer in it: each segment comes back once, the
    // shared one only with its last reference.
    assert!(pool.alloc_bulk(&mut v, 8));
    let mut chained = pool.alloc().expect("a buffer");
    chained.chain(pool.alloc().expect("a buffer"));
    v.push(chained);
    let kept = v[0].clone_ref();
    net::mbuf::free_bulk(&mut v);
    assert!(v.is_empty());
    assert_eq!(
        pool.in_use(),
        1,
        "the shared buffer stays for its other reference"
    );
    drop(kept);
    assert_eq!(pool.in_use(), 0);
}

fn port_api(pool: &PktmbufPool) {
    let spec = eal::options::VdevSpec {
        name: "net_ring7".into(),
        args: Vec::new(),
    };
    let port = net::ethdev::probe_vdev(&spec).expect("a ring port");
    assert!(net::ethdev::probe_vdev(&spec).is_err(), "one port per name");
    assert_eq!(
        Port::by_name("net_ring7").map(|p| p.id()).ok(),
        Some(port.id())
    );
    port.configure(2, 2, PortConf::default())
        .expect("configure");
    for q in 0..2 {
        port.rx_queue_setup(q, 256, pool).expect("rx setup");
        port.tx_queue_setup(q, 256).expect("tx setup");
    }
    let (tx, rx) = mpsc::channel();
    port.on_link_change(move |id, l| {
        let _ = tx.send((id, l));
    });
    port.start().expect("start");
    let up = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("link-up event");
    assert_eq!(
        up,
        (
            port.id(),
            Link {
                up: true,
                full_duplex: true,
                speed_mbps: 10_000
            }
        )
    );

    // Frames through RX queue 1 via its ring, out of TX queue 0; the counters follow.
    let ring_in = eal::ring::Ring::lookup("net_ring7_rx1").expect("rx ring");
    let ring_out = net::mbuf_ring::MbufRing::lookup("net_ring7_tx0").expect("tx ring");
    for _ in 0..10 {
        let mut m = pool.alloc().expect("buffer");
        m.append(64);
        assert!(ring_in.enqueue_one(m.into_addr()));
    }
    let mut rxq = port.rx_queue(1).expect("rx queue 1");
    assert!(port.rx_queue(1).is_err(), "one poller per queue");
    let mut txq = port.tx_queue(0).expect("tx queue 0");
    let mut burst = Vec::new();
    assert_eq!(rxq.rx_burst(&mut burst, 32), 10);
    assert!(burst.iter().all(|m| m.port() == port.id()));
    assert_eq!(txq.tx_burst(&mut burst), 10);
    let s = port.stats();
    assert_eq!(
        (s.ipackets, s.ibytes, s.opackets, s.obytes),
        (10, 640, 10, 640)
    );
    assert_eq!(
        (s.q_ipackets.clone(), s.q_opackets.clone()),
        (vec![0, 10], vec![10, 0])
    );
    assert!(port.xstats().contains(&("rx_q1_packets".to_string(), 10)));
    port.stats_reset();
    assert_eq!(port.stats().ipackets, 0);
    assert_eq!(ring_out.dequeue_burst(16, drop), 10);

    // A stopped port receives nothing and says its link is down.
    port.stop().expect("stop");
    let down = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("link-down event");
    assert_eq!(down.1, Link::DOWN);
    assert_eq!(rxq.rx_burst(&mut burst, 32), 0);
    drop(rxq);
    drop(txq);
    port.close().expect("close");
    assert!(Port::by_name("net_ring7").is_err());
    assert_eq!(pool.in_use(), 0);
}

/// The lcore cache in front of a mempool's ring: refilled on a get that finds too few,
/// flushed down to its size on a put that reaches the threshold (1.5 times the size), and
/// no object lost or handed out twice on the way, through both the pool and the handle.
fn mempool_cache() {
    use eal::mempool::Mempool;
    let mp = Mempool::create("cache_semantics", 200, 64, 32, |_, _| {}).expect("pool");
    let cache = mp.local_cache().expect("the main thread is lcore 0");
    let mut one = [0usize];
    cache.get_bulk(&mut one).expect("an object");
    assert_eq!(
        (mp.cached(), mp.in_use()),
        (32, 1),
        "refilled to 32 plus the one taken"
    );
    cache.put_bulk(&one);
    assert_eq!((mp.cached(), mp.in_use()), (33, 0));
    // A bulk larger than the cache comes from the ring.
    let mut big = vec![0usize; 100];
    cache.get_bulk(&mut big).expect("100 objects");
    assert_eq!((mp.cached(), mp.in_use()), (33, 100));
    cache.put_bulk(&big[..14]);
    assert_eq!(mp.cached(), 47);
    cache.put_bulk(&big[14..15]);
    assert_eq!(
        mp.cached(),
        32,
        "at 48, 1.5 times 32: 32 kept, 16 to the ring"
    );
    // What a flushing put brought stays on top, older objects went: the next get takes it.
    cache.get_bulk(&mut one).expect("the top object");
    assert_eq!(one[0], big[14]);
    cache.put_bulk(&one);
    cache.put_bulk(&big[15..]);
    assert_eq!(
        (mp.cached(), mp.in_use()),
        (32, 0),
        "85 do not fit the cache's 64 slots: all to the ring"
    );
    // A pinned put stays in the cache, marked, until the unpin; one larger than the cache
    // is refused and puts nothing.
    let mut five = [0usize; 5];
    cache.get_bulk(&mut five).expect("5 objects");
    assert!(cache.put_pinned(&five));
    assert!(mp.has_pin(0) && mp.cached() == 32);
    cache.unpin();
    assert!(!mp.has_pin(0));
    assert!(!cache.put_pinned(&big[..33]));
    assert!(!mp.has_pin(0) && mp.cached() == 32);
    // The pool's own calls find the same cache.
    mp.get_bulk(&mut big[..10]).expect("10 objects");
    assert_eq!(mp.cached(), 22);
    mp.put_bulk(&big[..10]);
    assert_eq!(mp.cached(), 32);
    // Every object comes out once, then a get fails and takes nothing.
    let mut all = vec![0usize; 200];
    cache.get_bulk(&mut all[..150]).expect("150 from the ring");
    for chunk in all[150..].chunks_mut(10) {
        cache
            .get_bulk(chunk)
            .expect("the cache, then the ring's last 18");
    }
    assert!(cache.get_bulk(&mut one).is_err(), "the pool is empty");
    assert_eq!((mp.cached(), mp.available()), (0, 0));
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 200, "every object handed out once");
    assert!(all.iter().all(|&o| mp.contains(o)));
    for chunk in all.chunks(7) {
        cache.put_bulk(chunk);
    }
    assert_eq!((mp.in_use(), mp.available()), (0, 200));
    mp.free().expect("free the pool");
}

#[test]
fn mbufs_and_ports_in_one_process() {
    init();
    mempool_cache();
    let pool = PktmbufPool::create("inproc", 511, 0, 128, 2048).expect("pool");
    mbuf_operations(&pool);
    port_api(&pool);
    eal::eal().expect("eal").cleanup();
}
