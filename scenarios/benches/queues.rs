//! The player's queues under contention (ffplay's model): a read thread putting packets
//! while the decode thread gets them, and a decode thread pushing frames into the bounded
//! frame queue (capacity 3) while the display side pops them. Each iteration moves one
//! item from one thread to the other; the item is made by the producer, as in the player.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use avsoak_scenarios::player::queue::{Activity, FrameQueue, Got, Item, Packet, PacketQueue, Slot};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ffmpeg_next as ffmpeg;

const PAYLOAD: [u8; 1024] = [0x5a; 1024];

/// Moves `n` packets from a producer thread to this one; returns the time it took.
fn packets(n: u64) -> Duration {
    let activity = Arc::new(Activity::default());
    let queue = Arc::new(PacketQueue::new(activity.clone()));
    queue.start();
    let slot = Slot::new("bench-get".into());
    let start = Instant::now();
    let producer = {
        let queue = queue.clone();
        activity.started();
        std::thread::spawn(move || {
            for _ in 0..n {
                let packet = Packet::new(ffmpeg::Packet::copy(&PAYLOAD));
                queue.put(Item::Packet(packet)).expect("not aborted");
            }
            activity.ended();
        })
    };
    for _ in 0..n {
        match queue.get(true, &slot) {
            Got::Item(_, item) => drop(item),
            other => panic!("the queue gave {other:?} while the producer ran"),
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("the producer ends");
    elapsed
}

/// Moves `n` frames through a frame queue of capacity 3 from a producer thread to this
/// one, which polls as the player's display does; returns the time it took.
fn frames(n: u64) -> Duration {
    let activity = Arc::new(Activity::default());
    let queue = Arc::new(FrameQueue::new(3, activity.clone()));
    queue.start();
    let start = Instant::now();
    let producer = {
        let queue = queue.clone();
        activity.started();
        std::thread::spawn(move || {
            let slot = Slot::new("bench-push".into());
            for i in 0..n {
                let frame = avsoak_scenarios::player::queue::Frame::new(
                    ffmpeg::frame::Video::empty(),
                    i as i64,
                    1,
                    0,
                );
                queue.push(frame, false, &slot).expect("not aborted");
            }
            activity.ended();
        })
    };
    let mut got = 0;
    while got < n {
        match queue.pop() {
            Some(frame) => {
                drop(frame);
                got += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    let elapsed = start.elapsed();
    producer.join().expect("the producer ends");
    elapsed
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("queues");
    group.throughput(Throughput::Elements(1));
    support::heap_figures_per_item("queues/packet-put-get", 3, 10_000, || {
        packets(10_000);
    });
    group.bench_function("packet-put-get", |b| b.iter_custom(packets));
    support::heap_figures_per_item("queues/frame-push-pop", 3, 10_000, || {
        frames(10_000);
    });
    group.bench_function("frame-push-pop", |b| b.iter_custom(frames));
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
