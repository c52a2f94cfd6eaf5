//! Picture handling per frame: one pooled `x264_picture_alloc` filled by copy, a picture
//! allocated, filled and cleaned every frame, and the camera's planes borrowed; first the
//! handling alone, then with the x264 encode it feeds (the `picture-pool` scenario's
//! workload, 640×480 `veryfast`/`zerolatency`).

mod support;

use std::hint::black_box;

use avsoak::scenario::Workload as _;
use avsoak_fixtures::{Camera, CameraConfig, Frame, Pattern};
use avsoak_scenarios::cases::picture_pool::{Mode, PictureWorkload};
use avsoak_scenarios::ffi;
use avsoak_scenarios::ffi::x264::{AllocatedPicture, Sink};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SIZES: [(u32, u32); 2] = [(640, 480), (1280, 720)];
const MODES: [Mode; 3] = [Mode::Pooled, Mode::PerFrameAllocClean, Mode::BorrowedPlanes];

fn frame(width: u32, height: u32) -> Frame {
    let mut camera = Camera::new(CameraConfig::new(width, height).pattern(Pattern::Gradient))
        .expect("a valid camera size");
    camera.next_frame()
}

/// The handling alone: what each mode does to get a frame into an `x264_image_t`.
fn handle(mode: Mode, frame: &Frame, pooled: &mut AllocatedPicture) -> usize {
    match mode {
        Mode::Pooled => {
            pooled.fill_from(frame).expect("sizes match");
            pooled.image().width() as usize
        }
        Mode::PerFrameAllocClean => {
            let mut picture =
                AllocatedPicture::new(frame.width(), frame.height()).expect("x264 allocates");
            picture.fill_from(frame).expect("sizes match");
            picture.image().width() as usize
        }
        _ => ffi::x264::borrowed_image(frame).width() as usize,
    }
}

fn handling(c: &mut Criterion) {
    let mut group = c.benchmark_group("picture-handling");
    for (w, h) in SIZES {
        let frame = frame(w, h);
        let mut pooled = AllocatedPicture::new(w, h).expect("x264 allocates");
        group.throughput(Throughput::Bytes(frame.data().len() as u64));
        for mode in MODES {
            let (id, full) = support::id("picture-handling", mode.name(), format!("{w}x{h}"));
            support::heap_figures(&full, 200, || {
                black_box(handle(mode, &frame, &mut pooled));
            });
            group.bench_function(id, |b| {
                b.iter(|| black_box(handle(mode, black_box(&frame), &mut pooled)))
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("picture-encode");
    group.sample_size(20);
    let (w, h) = SIZES[0];
    group.throughput(Throughput::Elements(1));
    for mode in MODES {
        let mut workload = PictureWorkload::new(mode, w, h, Sink::counting()).expect("x264 opens");
        let (id, full) = support::id("picture-encode", mode.name(), format!("{w}x{h}"));
        support::heap_figures(&full, 60, || {
            workload.iterate().expect("x264 encodes");
        });
        group.bench_function(id, |b| {
            b.iter(|| black_box(workload.iterate().expect("x264 encodes")))
        });
    }
    group.finish();
}

criterion_group!(benches, handling, encode);
criterion_main!(benches);
