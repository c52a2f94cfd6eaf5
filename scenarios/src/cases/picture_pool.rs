//! `picture-pool`: the camera → beauty filter → x264 incident (docs/incidents/x264-picture-alloc.md).
//!
//! A live-camera encoder (`veryfast`, `zerolatency`) fed by the synthetic camera, with the
//! input picture handled four ways:
//!
//! | variant | per frame | expect |
//! |---|---|---|
//! | `pooled` | one `x264_picture_alloc` for the whole run, planes filled by copy (the fix) | clean |
//! | `per-frame-alloc-clean` | `x264_picture_alloc` + copy + `x264_picture_clean` | clean |
//! | `borrowed-planes` | no picture allocation: the image points at the camera's buffer | clean |
//! | `resolution-switch` | the camera flips size every segment; picture and encoder rebuilt | clean |
//! | `per-frame-alloc-leak` | `x264_picture_alloc` and never clean (the incident's leak) | leak |
//! | `every-16th-frame-leak` | `per-frame-alloc-clean`, but every 16th frame's picture is never cleaned | leak |
//! | `clean-after-repoint` | planes re-pointed at the camera buffer, then `x264_picture_clean` (the incident's crash) | crash |
//!
//! One iteration is one frame, except `resolution-switch`, where it is one segment of
//! [`SEGMENT_FRAMES`] frames at one size: the sample then always falls at the same point
//! of the cycle (the encoder just rebuilt for the new size), so the series is judged
//! like any other. Every case runs at 640×480 and 1280×720, but `every-16th-frame-leak`,
//! a sporadic large leak (one 460 KB picture every 16 frames) whose suspect needs the
//! exact re-run's ~960 judged frames, at 640×480 only.

use avsoak::scenario::{BoxError, Case, Expect, Scenario, Work, Workload};
use avsoak_fixtures::{Camera, CameraConfig, Frame, Pattern, SizeChange};

use crate::ffi;
use crate::ffi::x264::{AllocatedPicture, EncoderConfig, Sink};

/// Frames per iteration of `resolution-switch`.
pub const SEGMENT_FRAMES: u64 = 10;

/// Sizes every case runs at.
pub const SIZES: [(u32, u32); 2] = [(640, 480), (1280, 720)];

const FPS: (u32, u32) = (30, 1);

/// How the input picture is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One picture for the run, filled by copy.
    Pooled,
    /// Alloc, copy, clean every frame.
    PerFrameAllocClean,
    /// The camera's own planes.
    BorrowedPlanes,
    /// Size flips every segment; picture and encoder rebuilt.
    ResolutionSwitch,
    /// Alloc every frame, never clean.
    PerFrameAllocLeak,
    /// Alloc and clean every frame, but every 16th frame's picture is never cleaned.
    Every16thFrameLeak,
    /// Re-point planes at the camera buffer, then clean.
    CleanAfterRepoint,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 7] = [
        Mode::Pooled,
        Mode::PerFrameAllocClean,
        Mode::BorrowedPlanes,
        Mode::ResolutionSwitch,
        Mode::PerFrameAllocLeak,
        Mode::Every16thFrameLeak,
        Mode::CleanAfterRepoint,
    ];

    /// The variant name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pooled => "pooled",
            Mode::PerFrameAllocClean => "per-frame-alloc-clean",
            Mode::BorrowedPlanes => "borrowed-planes",
            Mode::ResolutionSwitch => "resolution-switch",
            Mode::PerFrameAllocLeak => "per-frame-alloc-leak",
            Mode::Every16thFrameLeak => "every-16th-frame-leak",
            Mode::CleanAfterRepoint => "clean-after-repoint",
        }
    }

    fn expect(self) -> Expect {
        match self {
            Mode::PerFrameAllocLeak | Mode::Every16thFrameLeak => Expect::Leak,
            Mode::CleanAfterRepoint => Expect::Crash,
            _ => Expect::Clean,
        }
    }

    fn about(self) -> &'static str {
        match self {
            Mode::Pooled => "one x264_picture_alloc for the run, planes filled by memcpy (the fix)",
            Mode::PerFrameAllocClean => {
                "x264_picture_alloc + memcpy + x264_picture_clean every frame"
            }
            Mode::BorrowedPlanes => {
                "no picture allocation: the image points at the camera's planes"
            }
            Mode::ResolutionSwitch => {
                "camera flips size every segment; picture and encoder rebuilt"
            }
            Mode::PerFrameAllocLeak => "control: x264_picture_alloc every frame, never cleaned",
            Mode::Every16thFrameLeak => {
                "control: x264_picture_alloc and clean every frame, but every 16th picture never cleaned"
            }
            Mode::CleanAfterRepoint => {
                "control: planes re-pointed at the camera buffer, then x264_picture_clean"
            }
        }
    }
}

/// The scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct PicturePool;

impl Mode {
    /// The quick budget ([`Case::quick_iterations`]; the rule: docs/design/soak.md, "Quick
    /// budgets"): `resolution-switch` rebuilds its picture and encoder every segment,
    /// 55–150 ms an iteration on 2 cores, and what it must call is a rebuild that keeps
    /// the old picture (a whole frame's planes, ≥ 115 KiB per switch): 60 iterations. The
    /// other modes cost 8–27 ms and keep the runner's 120.
    fn quick_iterations(self) -> Option<u64> {
        (self == Mode::ResolutionSwitch).then_some(60)
    }
}

impl Scenario for PicturePool {
    fn name(&self) -> &'static str {
        "picture-pool"
    }

    fn about(&self) -> &'static str {
        "x264 input pictures: pooled vs per-frame x264_picture_alloc vs borrowed planes"
    }

    fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for mode in Mode::ALL {
            let sizes = match mode {
                Mode::Every16thFrameLeak => &SIZES[..1],
                _ => &SIZES[..],
            };
            for &(w, h) in sizes {
                cases.push(
                    Case::new(self.name(), mode.name(), mode.expect(), mode.about())
                        .with_param("size", &format!("{w}x{h}"))
                        .with_quick_iterations(mode.quick_iterations()),
                );
            }
        }
        cases
    }

    fn start(&self, case: &Case) -> Result<Box<dyn Workload>, BoxError> {
        let mode = crate::by_name(
            &Mode::ALL,
            Mode::name,
            "picture-pool variant",
            &case.variant,
        )?;
        let (width, height) = parse_size(case.param("size", "640x480"))?;
        Ok(Box::new(PictureWorkload::new(
            mode,
            width,
            height,
            Sink::counting(),
        )?))
    }
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(text: &str) -> Result<(u32, u32), BoxError> {
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    parsed.ok_or_else(|| {
        format!("invalid size {text:?} (expected WIDTHxHEIGHT, e.g. 640x480)").into()
    })
}

/// A running `picture-pool` case.
pub struct PictureWorkload {
    mode: Mode,
    camera: Camera,
    frame: Frame,
    encoder: Option<x264::Encoder>,
    encoder_size: (u32, u32),
    pooled: Option<AllocatedPicture>,
    sink: Sink,
}

impl std::fmt::Debug for PictureWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PictureWorkload")
            .field("mode", &self.mode)
            .field("encoder_size", &self.encoder_size)
            .field("frames_out", &self.sink.frames)
            .finish_non_exhaustive()
    }
}

impl PictureWorkload {
    /// Builds the camera and the encoder for `mode` at `width`×`height`.
    pub fn new(mode: Mode, width: u32, height: u32, sink: Sink) -> Result<Self, BoxError> {
        let mut config = CameraConfig::new(width, height)
            .fps(FPS.0, FPS.1)
            .pattern(Pattern::Gradient)
            .beauty(true);
        if mode == Mode::ResolutionSwitch {
            config = config.size_change(SizeChange::Alternate {
                every: SEGMENT_FRAMES,
                width: (width / 2) & !1,
                height: (height / 2) & !1,
            });
        }
        let camera = Camera::new(config)?;
        let encoder = ffi::x264::open_encoder(&EncoderConfig::live(width, height, FPS.0, FPS.1))?;
        let pooled = match mode {
            Mode::Pooled | Mode::ResolutionSwitch => Some(AllocatedPicture::new(width, height)?),
            _ => None,
        };
        Ok(PictureWorkload {
            mode,
            camera,
            frame: Frame::empty(),
            encoder: Some(encoder),
            encoder_size: (width, height),
            pooled,
            sink,
        })
    }

    /// Flushes and closes the encoder, returning everything it produced.
    pub fn finish(mut self) -> Result<Sink, BoxError> {
        if let Some(encoder) = self.encoder.take() {
            ffi::x264::finish(encoder, &mut self.sink)?;
        }
        Ok(std::mem::take(&mut self.sink))
    }

    /// Rebuilds encoder and pooled picture when the camera changed size.
    fn follow_size(&mut self) -> Result<(), BoxError> {
        let size = (self.frame.width(), self.frame.height());
        if size == self.encoder_size {
            return Ok(());
        }
        if let Some(old) = self.encoder.take() {
            ffi::x264::finish(old, &mut self.sink)?;
        }
        self.pooled = None;
        self.encoder = Some(ffi::x264::open_encoder(&EncoderConfig::live(
            size.0, size.1, FPS.0, FPS.1,
        ))?);
        self.pooled = Some(AllocatedPicture::new(size.0, size.1)?);
        self.encoder_size = size;
        Ok(())
    }

    fn encode_one(&mut self) -> Result<Work, BoxError> {
        if self.mode == Mode::CleanAfterRepoint {
            return self.encode_repointed();
        }
        self.camera.next_into(&mut self.frame);
        let index = self.frame.index();
        let pts = self.frame.pts_us();
        if self.mode == Mode::ResolutionSwitch {
            self.follow_size()?;
        }
        let encoder = self.encoder.as_mut().ok_or("encoder already finished")?;
        let out = match self.mode {
            Mode::Pooled | Mode::ResolutionSwitch => {
                let picture = self.pooled.as_mut().ok_or("no pooled picture")?;
                picture.fill_from(&self.frame)?;
                ffi::x264::encode(encoder, index, pts, picture.image(), &mut self.sink)?
            }
            Mode::PerFrameAllocClean | Mode::PerFrameAllocLeak | Mode::Every16thFrameLeak => {
                let mut picture = AllocatedPicture::new(self.frame.width(), self.frame.height())?;
                picture.fill_from(&self.frame)?;
                let out = ffi::x264::encode(encoder, index, pts, picture.image(), &mut self.sink)?;
                match self.mode {
                    Mode::PerFrameAllocLeak => picture.leak(),
                    Mode::Every16thFrameLeak if index % 16 == 15 => picture.leak(),
                    _ => drop(picture),
                }
                out
            }
            Mode::BorrowedPlanes => ffi::x264::encode(
                encoder,
                index,
                pts,
                ffi::x264::borrowed_image(&self.frame),
                &mut self.sink,
            )?,
            Mode::CleanAfterRepoint => unreachable!("handled by encode_repointed"),
        };
        Ok(Work {
            frames: 1,
            bytes: out.bytes,
        })
    }
}

impl PictureWorkload {
    /// The incident's second bug, frame by frame: each frame is its own allocation (the
    /// camera's buffer), the picture's planes are re-pointed at it, then cleaned.
    fn encode_repointed(&mut self) -> Result<Work, BoxError> {
        let frame = self.camera.next_frame();
        let picture = AllocatedPicture::new(frame.width(), frame.height())?;
        let encoder = self.encoder.as_mut().ok_or("encoder already finished")?;
        let out = ffi::x264::encode(
            encoder,
            frame.index(),
            frame.pts_us(),
            ffi::x264::borrowed_image(&frame),
            &mut self.sink,
        )?;
        // SAFETY: deliberately unsound, reproducing the incident; this variant runs only
        // in a child process that is expected to crash (expect: crash).
        unsafe { picture.repoint_and_clean(&frame) };
        drop(frame);
        Ok(Work {
            frames: 1,
            bytes: out.bytes,
        })
    }
}

impl Workload for PictureWorkload {
    fn iterate(&mut self) -> Result<Work, BoxError> {
        let frames = if self.mode == Mode::ResolutionSwitch {
            SEGMENT_FRAMES
        } else {
            1
        };
        let mut work = Work::default();
        for _ in 0..frames {
            work += self.encode_one()?;
        }
        Ok(work)
    }
}
