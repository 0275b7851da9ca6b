//! Loom models of the ring: every interleaving (up to a few preemptions) of two or three
//! threads under the C11 memory model, on the ring's own code (its atomics come from
//! `crate::sync`). A value is `10 * producer + sequence`, so that the checks can tell each
//! producer's order. Run with `RUSTFLAGS="--cfg loom" cargo test -p rpmd-eal --release --lib loom_model`.

use super::{LocalRing, RingFlags};
use crate::sync::{at_every_kill_point, explore, killed_before_write};
use loom::thread;
use std::sync::Arc;

/// A ring of capacity 3 over 4 slots: small, so that the models wrap and fill it.
fn ring(flags: RingFlags) -> Arc<LocalRing> {
    Arc::new(LocalRing::new("loom", 4, flags).expect("ring"))
}

/// Takes whatever the ring holds, one at a time, in order.
fn drain(r: &LocalRing) -> Vec<usize> {
    std::iter::from_fn(|| r.dequeue_one()).collect()
}

/// Checks that `taken` (lists of what a consumer took, in order) holds each value of `must` exactly once, each of `may` at most once and
/// nothing else, each producer's values in the order it put them.
fn check_accounted(taken: &[&[usize]], must: &[usize], may: &[usize]) {
    let all: Vec<usize> = taken.iter().flat_map(|t| t.iter().copied()).collect();
    for v in must {
        assert_eq!(
            all.iter().filter(|x| *x == v).count(),
            1,
            "{v} once: {taken:?}"
        );
    }
    for v in &all {
        assert!(
            must.contains(v) || may.contains(v),
            "{v} was never put: {taken:?}"
        );
        assert_eq!(
            all.iter().filter(|x| *x == v).count(),
            1,
            "{v} once: {taken:?}"
        );
    }
    for list in taken {
        for p in 0..10 {
            let of_p: Vec<usize> = list.iter().copied().filter(|v| v / 10 == p).collect();
            assert!(
                of_p.windows(2).all(|w| w[0] < w[1]),
                "producer {p}'s order: {taken:?}"
            );
        }
    }
}

#[test]
fn mpmc_two_producers_two_consumers() {
    explore(|| {
        // Room for all four values.
        let r = Arc::new(LocalRing::new("loom", 4, RingFlags::EXACT_SZ).expect("ring"));
        let producers = [1, 2].map(|p| {
            let r = r.clone();
            thread::spawn(move || {
                assert!(r.mp_enqueue_one(10 * p));
                assert!(r.mp_enqueue_one(10 * p + 1));
            })
        });
        let consumer = {
            let r = r.clone();
            thread::spawn(move || {
                let mut out = [0usize; 4];
                let n = r.mc_dequeue_burst(&mut out);
                out[..n].to_vec()
            })
        };
        // This thread is the second consumer, at the same time.
        let mine: Vec<usize> = r.mc_dequeue_one().into_iter().collect();
        let theirs = consumer.join().expect("consumer");
        for p in producers {
            p.join().expect("producer");
        }
        check_accounted(&[&theirs, &mine], &[], &[10, 11, 20, 21]);
        let rest = drain(&r);
        check_accounted(&[&theirs, &mine, &rest], &[10, 11, 20, 21], &[]);
    });
}

#[test]
fn spsc_across_the_wrap_with_the_copies_of_the_other_tail() {
    explore(|| {
        let r = ring(RingFlags::SP_ENQ | RingFlags::SC_DEQ);
        let producer = {
            let r = r.clone();
            thread::spawn(move || {
                // Five values through three free slots: the producer finds the ring full
                // (its copy of the consumers' tail is behind) and waits for room.
                let values = [10, 11, 12, 13, 14];
                let mut sent = 0;
                while sent < values.len() {
                    sent += r.sp_enqueue_burst(&values[sent..(sent + 2).min(values.len())]);
                    if sent < values.len() {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 5 {
            let mut out = [0usize; 2];
            let n = r.sc_dequeue_burst(&mut out);
            got.extend_from_slice(&out[..n]);
            if n == 0 {
                thread::yield_now();
            }
        }
        producer.join().expect("producer");
        assert_eq!(got, [10, 11, 12, 13, 14]);
        assert!(r.is_empty());
    });
}

#[test]
fn a_producer_killed_at_any_step_is_abandoned_and_the_ring_goes_on() {
    for flags in [RingFlags::empty(), RingFlags::SP_ENQ] {
        at_every_kill_point(move |k| {
            let r = ring(flags);
            let victim = {
                let r = r.clone();
                thread::spawn(move || killed_before_write(Some(k), || r.enqueue_bulk(&[10, 11])))
            };
            let consumer = {
                let r = r.clone();
                thread::spawn(move || {
                    let mut out = [0usize; 3];
                    let n = r.mc_dequeue_burst(&mut out);
                    out[..n].to_vec()
                })
            };
            let outcome = victim.join().expect("victim");
            // The victim's process is gone (the join stands for the kernel telling so): a
            // survivor gives up its claims and becomes the producer, while the consumer
            // goes on.
            let given_up = r.abandon_enqueue_claims();
            assert!(given_up == 0 || outcome.is_none(), "only a dead claim");
            assert_eq!(r.enqueue_bulk(&[20]), 1);
            let taken = consumer.join().expect("consumer");
            let rest = drain(&r);
            match outcome {
                Some(n) => {
                    assert_eq!(n, 2);
                    check_accounted(&[&taken, &rest], &[10, 11, 20], &[]);
                }
                // Killed before its last write, the tail store: nothing was published.
                None => check_accounted(&[&taken, &rest], &[20], &[]),
            }
            outcome.is_none()
        });
    }
}

#[test]
fn a_consumer_killed_at_any_step_is_abandoned_and_its_values_come_again() {
    for flags in [RingFlags::empty(), RingFlags::SC_DEQ] {
        at_every_kill_point(move |k| {
            let r = ring(flags);
            assert_eq!(r.enqueue_bulk(&[10]), 1);
            // The victim takes what there is, the producer's value too if it comes first.
            let victim = {
                let r = r.clone();
                thread::spawn(move || {
                    killed_before_write(Some(k), || {
                        let mut out = [0usize; 2];
                        let n = r.dequeue_burst(&mut out);
                        out[..n].to_vec()
                    })
                })
            };
            let producer = {
                let r = r.clone();
                thread::spawn(move || assert_eq!(r.mp_enqueue_bulk(&[20]), 1))
            };
            let outcome = victim.join().expect("victim");
            let given_up = r.abandon_dequeue_claims();
            assert!(given_up == 0 || outcome.is_none(), "only a dead claim");
            producer.join().expect("producer");
            let rest = drain(&r);
            match &outcome {
                Some(hand) => check_accounted(&[hand, &rest], &[10, 20], &[]),
                // Killed before its last write, the tail store: its claim was given up and
                // what it had copied comes again.
                None => check_accounted(&[&rest], &[10, 20], &[]),
            }
            outcome.is_none()
        });
    }
}

#[test]
fn a_consumer_killed_holding_a_started_dequeue_leaves_its_hand_readable() {
    at_every_kill_point(|k| {
        let r = ring(RingFlags::SP_ENQ | RingFlags::SC_DEQ);
        assert_eq!(r.enqueue_bulk(&[10]), 1);
        let victim = {
            let r = r.clone();
            thread::spawn(move || {
                killed_before_write(Some(k), || {
                    let mut out = [0usize; 2];
                    let n = r.sc_dequeue_start(&mut out);
                    r.sc_dequeue_finish(n as u32);
                    out[..n].to_vec()
                })
            })
        };
        let producer = {
            let r = r.clone();
            thread::spawn(move || assert_eq!(r.sp_enqueue_bulk(&[20]), 1))
        };
        let outcome = victim.join().expect("victim");
        // The repair (as a client-server app's settles a dead client's hand) takes what the
        // dead consumer held from the ring while the producer goes on.
        let hand = r.dequeue_claims();
        r.sc_dequeue_finish(hand.len() as u32);
        producer.join().expect("producer");
        let rest = drain(&r);
        match &outcome {
            Some(taken) => {
                assert!(hand.is_empty());
                check_accounted(&[taken, &rest], &[10, 20], &[]);
            }
            None => check_accounted(&[&hand, &rest], &[10, 20], &[]),
        }
        outcome.is_none()
    });
}
