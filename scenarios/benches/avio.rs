//! Custom AVIO throughput by buffer size: demuxing a file held in memory through a read
//! callback (MP4 with a seek callback, MPEG-TS as a stream), and muxing into memory
//! through a write callback (MP4, seekable, and fragmented MP4). The media is 10 s of
//! 640×480 H.264 at 25 fps made by x264 from the synthetic camera (cached under `target/`).

mod support;

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;

use avsoak_scenarios::ffi::avio::{Avio, Demuxer, Muxer};
use avsoak_scenarios::media::{self, Clip, Container, EncodedClip};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ffmpeg_next as ffmpeg;

const BUFFERS: [(&str, usize); 4] = [
    ("4k", 4 << 10),
    ("32k", 32 << 10),
    ("256k", 256 << 10),
    ("1m", 1 << 20),
];

const CLIP: Clip = Clip {
    width: 640,
    height: 480,
    fps: 25,
    frames: 250,
    keyint: 25,
};

/// Demuxes all of `file`; returns the packets read.
fn demux(file: &Arc<[u8]>, container: Container, buffer: usize) -> u64 {
    let cursor = Cursor::new(file.clone());
    let io = match container {
        Container::MpegTs => Avio::reader(cursor, buffer),
        _ => Avio::seekable_reader(cursor, buffer),
    }
    .expect("a valid buffer size");
    let mut demuxer = Demuxer::open(io, None).expect("the fixture opens");
    let mut packet = ffmpeg::Packet::empty();
    let mut packets = 0;
    while demuxer.read(&mut packet).expect("the fixture reads") {
        packets += 1;
    }
    packets
}

/// Muxes `clip` into memory; returns the bytes written.
fn mux(clip: &EncodedClip, container: Container, buffer: usize) -> usize {
    let io = Avio::seekable_writer(Cursor::new(Vec::new()), buffer).expect("a valid buffer size");
    let mut muxer = Muxer::new(io, container.muxer()).expect("the muxer opens");
    media::write_clip(&mut muxer, clip, container.options()).expect("the clip muxes");
    muxer
        .finish()
        .expect("the trailer writes")
        .into_inner()
        .len()
}

fn read(c: &mut Criterion) {
    media::init().expect("FFmpeg initialises");
    let mut group = c.benchmark_group("avio-read");
    for container in [Container::Mp4, Container::MpegTs] {
        let file = media::fixture(CLIP, container).expect("the fixture is made");
        group.throughput(Throughput::Bytes(file.len() as u64));
        for (name, size) in BUFFERS {
            let (id, full) = support::id("avio-read", container.name(), name);
            support::heap_figures(&full, 5, || {
                black_box(demux(&file, container, size));
            });
            group.bench_function(id, |b| b.iter(|| demux(&file, container, size)));
        }
    }
    group.finish();
}

fn write(c: &mut Criterion) {
    media::init().expect("FFmpeg initialises");
    let clip = media::encode_clip(CLIP).expect("x264 encodes the clip");
    let mut group = c.benchmark_group("avio-write");
    for container in [Container::Mp4, Container::Fmp4] {
        let bytes = mux(&clip, container, 32 << 10);
        group.throughput(Throughput::Bytes(bytes as u64));
        for (name, size) in BUFFERS {
            let (id, full) = support::id("avio-write", container.name(), name);
            support::heap_figures(&full, 5, || {
                black_box(mux(&clip, container, size));
            });
            group.bench_function(id, |b| b.iter(|| mux(&clip, container, size)));
        }
    }
    group.finish();
}

criterion_group!(benches, read, write);
criterion_main!(benches);
