//! The libx264 edge: an encoder opened with explicit parameters, and a picture whose
//! planes `x264_picture_alloc` allocated, released by `x264_picture_clean` in `Drop`.

use std::borrow::Cow;
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;

use avsoak_fixtures::Frame;
use x264_sys::x264 as sys;

/// A libx264 call that failed, with what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X264Error {
    /// `x264_param_default_preset` rejected the preset or tune.
    #[error("x264_param_default_preset rejected preset {preset:?} with tune {tune:?}")]
    Preset {
        /// Preset given.
        preset: String,
        /// Tune given.
        tune: String,
    },
    /// A size or frame rate x264 would reject, refused before calling it: libx264 164
    /// leaks 3 blocks (184 bytes) on every `x264_encoder_open` that fails validation.
    #[error(
        "invalid encoder settings {width}x{height} at {fps_num}/{fps_den} fps (expected even \
         width and height from {MIN_SIDE} to {MAX_SIDE} and a positive frame rate)"
    )]
    InvalidSettings {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Frame rate numerator.
        fps_num: u32,
        /// Frame rate denominator.
        fps_den: u32,
    },
    /// An option `x264_param_parse` does not know, or whose value it rejects.
    #[error("x264-direct: {what} option {name:?}={value:?} (x264_param_parse)")]
    Param {
        /// `unknown` or `bad value for`.
        what: &'static str,
        /// The option's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `x264_encoder_open` returned NULL.
    #[error("x264_encoder_open failed for {width}x{height} at {fps_num}/{fps_den} fps")]
    Open {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Frame rate numerator.
        fps_num: u32,
        /// Frame rate denominator.
        fps_den: u32,
    },
    /// `x264_picture_alloc` failed.
    #[error("x264_picture_alloc failed for {width}x{height} I420 (returned {code})")]
    PictureAlloc {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Return code.
        code: i32,
    },
    /// `x264_encoder_encode` returned an error.
    #[error("x264_encoder_encode failed on frame {frame}")]
    Encode {
        /// Frame index.
        frame: u64,
    },
    /// A frame of another size than the picture or encoder.
    #[error("frame {frame} is {got_w}x{got_h} but the {what} is {want_w}x{want_h}")]
    SizeMismatch {
        /// `picture` or `encoder`.
        what: &'static str,
        /// Frame index.
        frame: u64,
        /// Frame width.
        got_w: u32,
        /// Frame height.
        got_h: u32,
        /// Expected width.
        want_w: u32,
        /// Expected height.
        want_h: u32,
    },
}

/// Encoder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// x264 preset, e.g. `veryfast`.
    pub preset: Cow<'static, CStr>,
    /// x264 tune, e.g. `zerolatency` (a live camera: no lookahead, no B-frames).
    pub tune: Option<Cow<'static, CStr>>,
    /// Maximum GOP length in frames.
    pub keyint: i32,
    /// Average bitrate in kbit/s (ABR), or the preset's constant rate factor when `None`.
    pub bitrate_kbps: Option<u32>,
    /// x264's own options (`x264_param_parse` names, as the x264 command line's long
    /// options: `ref`, `bframes`, `crf`, `threads`…), applied after everything above.
    pub params: Vec<(CString, CString)>,
}

impl EncoderConfig {
    /// A live-camera encoder: `veryfast` + `zerolatency`, keyframe every 2 s.
    pub fn live(width: u32, height: u32, fps_num: u32, fps_den: u32) -> Self {
        EncoderConfig {
            width,
            height,
            fps_num,
            fps_den,
            preset: Cow::Borrowed(c"veryfast"),
            tune: Some(Cow::Borrowed(c"zerolatency")),
            keyint: (2 * fps_num / fps_den.max(1)).max(1) as i32,
            bitrate_kbps: None,
            params: Vec::new(),
        }
    }
}

/// Smallest encoder side accepted.
pub const MIN_SIDE: u32 = 2;
/// Largest encoder side accepted.
pub const MAX_SIDE: u32 = 16384;

/// Opens an x264 encoder producing Annex B with headers repeated on keyframes, logging
/// warnings and errors only. Sizes and rates x264 would reject are refused first (see
/// [`X264Error::InvalidSettings`]).
pub fn open_encoder(config: &EncoderConfig) -> Result<x264::Encoder, X264Error> {
    let side_ok = |v: u32| v.is_multiple_of(2) && (MIN_SIDE..=MAX_SIDE).contains(&v);
    if !side_ok(config.width)
        || !side_ok(config.height)
        || config.fps_num == 0
        || config.fps_den == 0
    {
        return Err(X264Error::InvalidSettings {
            width: config.width,
            height: config.height,
            fps_num: config.fps_num,
            fps_den: config.fps_den,
        });
    }
    let mut param = MaybeUninit::<sys::x264_param_t>::uninit();
    // SAFETY: x264_param_default_preset fully initialises `param` when it returns 0;
    // preset and tune are NUL-terminated static strings or NULL (no tune).
    let rc = unsafe {
        sys::x264_param_default_preset(
            param.as_mut_ptr(),
            config.preset.as_ptr(),
            config
                .tune
                .as_deref()
                .map_or(std::ptr::null(), CStr::as_ptr),
        )
    };
    if rc < 0 {
        return Err(X264Error::Preset {
            preset: config.preset.to_string_lossy().into_owned(),
            tune: config
                .tune
                .as_deref()
                .map_or_else(String::new, |t| t.to_string_lossy().into_owned()),
        });
    }
    // SAFETY: initialised by the successful call above.
    let mut param = unsafe { param.assume_init() };
    param.i_csp = sys::X264_CSP_I420 as i32;
    param.i_width = config.width as i32;
    param.i_height = config.height as i32;
    param.i_fps_num = config.fps_num;
    param.i_fps_den = config.fps_den;
    param.i_timebase_num = 1;
    param.i_timebase_den = 1_000_000;
    param.b_vfr_input = 1;
    param.i_keyint_max = config.keyint;
    param.b_annexb = 1;
    param.b_repeat_headers = 1;
    param.i_log_level = sys::X264_LOG_WARNING as i32;
    if let Some(kbps) = config.bitrate_kbps {
        param.rc.i_rc_method = sys::X264_RC_ABR as i32;
        param.rc.i_bitrate = kbps.min(i32::MAX as u32) as i32;
    }
    apply_params(&mut param, &config.params)?;
    // SAFETY: `param` is a fully initialised parameter set; x264 copies it.
    let raw = unsafe { sys::x264_encoder_open(&mut param) };
    if raw.is_null() {
        return Err(X264Error::Open {
            width: config.width,
            height: config.height,
            fps_num: config.fps_num,
            fps_den: config.fps_den,
        });
    }
    // SAFETY: `raw` is a live encoder just opened; the returned Encoder owns it and
    // closes it exactly once in its Drop.
    Ok(unsafe { x264::Encoder::from_raw(raw) })
}

/// Applies x264's own options to `param` with `x264_param_parse`.
fn apply_params(
    param: &mut sys::x264_param_t,
    params: &[(CString, CString)],
) -> Result<(), X264Error> {
    for (name, value) in params {
        // SAFETY: `param` is a fully initialised parameter set; name and value are
        // NUL-terminated strings that outlive the call, which copies what it keeps.
        let rc = unsafe { sys::x264_param_parse(param, name.as_ptr(), value.as_ptr()) };
        if rc != 0 {
            return Err(X264Error::Param {
                what: if rc == sys::X264_PARAM_BAD_NAME {
                    "unknown"
                } else {
                    "bad value for"
                },
                name: name.to_string_lossy().into_owned(),
                value: value.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// Checks a preset and x264's own options without opening an encoder: what
/// [`open_encoder`] would refuse, refused first.
pub fn check_params(
    preset: &CStr,
    tune: Option<&CStr>,
    params: &[(CString, CString)],
) -> Result<(), X264Error> {
    let mut param = MaybeUninit::<sys::x264_param_t>::uninit();
    // SAFETY: x264_param_default_preset fully initialises `param` when it returns 0; the
    // preset and tune are NUL-terminated or NULL.
    let rc = unsafe {
        sys::x264_param_default_preset(
            param.as_mut_ptr(),
            preset.as_ptr(),
            tune.map_or(std::ptr::null(), CStr::as_ptr),
        )
    };
    if rc < 0 {
        return Err(X264Error::Preset {
            preset: preset.to_string_lossy().into_owned(),
            tune: tune.map_or_else(String::new, |t| t.to_string_lossy().into_owned()),
        });
    }
    // SAFETY: initialised by the successful call above.
    let mut param = unsafe { param.assume_init() };
    apply_params(&mut param, params)
}

/// Encoded output of one call, summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// NAL units.
    pub nals: u64,
    /// Bytes.
    pub bytes: u64,
    /// 1 when a frame came out.
    pub frames: u64,
}

/// Where encoded bytes go: counted only (soaks) or kept (tests that decode them back).
#[derive(Debug, Default)]
pub struct Sink {
    /// NAL units seen.
    pub nals: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Frames that came out of the encoder.
    pub frames: u64,
    /// The Annex B stream, when keeping.
    pub kept: Option<Vec<u8>>,
    /// The output of every encode call that produced a frame (an access unit each), when
    /// keeping packets.
    pub packets: Option<Vec<Vec<u8>>>,
}

impl Sink {
    /// A sink that counts and discards (no allocation per frame).
    pub fn counting() -> Self {
        Sink::default()
    }

    /// A sink that keeps the whole stream.
    pub fn keeping() -> Self {
        Sink {
            kept: Some(Vec::new()),
            ..Sink::default()
        }
    }

    /// A sink that keeps each access unit as a packet of its own.
    pub fn packets() -> Self {
        Sink {
            packets: Some(Vec::new()),
            ..Sink::default()
        }
    }

    fn take(&mut self, data: &x264::Data<'_>) -> Encoded {
        let bytes = data.entirety();
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(bytes);
        }
        if let Some(packets) = self.packets.as_mut().filter(|_| !bytes.is_empty()) {
            packets.push(bytes.to_vec());
        }
        let out = Encoded {
            nals: data.len() as u64,
            bytes: bytes.len() as u64,
            frames: u64::from(!bytes.is_empty()),
        };
        self.nals += out.nals;
        self.bytes += out.bytes;
        self.frames += out.frames;
        out
    }
}

/// Encodes `image` at `pts_us` and hands the output to `sink`.
pub fn encode(
    encoder: &mut x264::Encoder,
    frame_index: u64,
    pts_us: i64,
    image: x264::Image<'_>,
    sink: &mut Sink,
) -> Result<Encoded, X264Error> {
    if (image.width(), image.height()) != (encoder.width(), encoder.height()) {
        return Err(X264Error::SizeMismatch {
            what: "encoder",
            frame: frame_index,
            got_w: image.width() as u32,
            got_h: image.height() as u32,
            want_w: encoder.width() as u32,
            want_h: encoder.height() as u32,
        });
    }
    let (data, _picture) = encoder
        .encode(pts_us, image)
        .map_err(|_| X264Error::Encode { frame: frame_index })?;
    Ok(sink.take(&data))
}

/// Drains the encoder's delayed frames into `sink` and closes it.
pub fn finish(encoder: x264::Encoder, sink: &mut Sink) -> Result<(), X264Error> {
    drain(encoder, sink)?;
    Ok(())
}

/// Drains the encoder's delayed frames into `sink` and says when the last one came out.
/// The encoder closes (joining its threads) when the returned `Flush` is dropped.
pub fn drain(
    encoder: x264::Encoder,
    sink: &mut Sink,
) -> Result<(std::time::Instant, x264::Flush), X264Error> {
    let mut flush = encoder.flush();
    let mut n = 0;
    while let Some(result) = flush.next() {
        let (data, _) = result.map_err(|_| X264Error::Encode { frame: n })?;
        sink.take(&data);
        n += 1;
    }
    Ok((std::time::Instant::now(), flush))
}

/// Borrows a camera frame's planes as an x264 image (no copy, no allocation).
pub fn borrowed_image(frame: &Frame) -> x264::Image<'_> {
    let planes = [0, 1, 2].map(|i| x264::Plane {
        stride: frame.stride(i) as i32,
        data: frame.plane(i),
    });
    x264::Image::new(
        x264::Colorspace::I420,
        frame.width() as i32,
        frame.height() as i32,
        &planes,
    )
}

/// An `x264_picture_t` whose planes `x264_picture_alloc` allocated (one block for all
/// three planes); `x264_picture_clean` releases it in `Drop`.
#[derive(Debug)]
pub struct AllocatedPicture {
    raw: sys::x264_picture_t,
    width: u32,
    height: u32,
}

impl AllocatedPicture {
    /// Allocates an I420 picture of `width`×`height`.
    pub fn new(width: u32, height: u32) -> Result<Self, X264Error> {
        let mut raw = MaybeUninit::<sys::x264_picture_t>::zeroed();
        // SAFETY: x264_picture_alloc initialises the picture (x264_picture_init) before
        // allocating; on failure it leaves no allocation behind.
        let code = unsafe {
            sys::x264_picture_alloc(
                raw.as_mut_ptr(),
                sys::X264_CSP_I420 as i32,
                width as i32,
                height as i32,
            )
        };
        if code < 0 {
            return Err(X264Error::PictureAlloc {
                width,
                height,
                code,
            });
        }
        // SAFETY: initialised by the successful call above.
        let raw = unsafe { raw.assume_init() };
        Ok(AllocatedPicture { raw, width, height })
    }

    fn plane_len(&self, i: usize) -> usize {
        let rows = if i == 0 { self.height } else { self.height / 2 } as usize;
        self.raw.img.i_stride[i] as usize * rows
    }

    fn plane_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.plane_len(i);
        // SAFETY: x264_picture_alloc gave plane `i` `stride * rows` bytes inside its one
        // block, which this value owns until Drop; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.raw.img.plane[i], len) }
    }

    fn plane(&self, i: usize) -> &[u8] {
        // SAFETY: as in `plane_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.raw.img.plane[i], self.plane_len(i)) }
    }

    /// Copies a frame's planes in, row by row (the incident's fix: copy, never re-point).
    pub fn fill_from(&mut self, frame: &Frame) -> Result<(), X264Error> {
        if (frame.width(), frame.height()) != (self.width, self.height) {
            return Err(X264Error::SizeMismatch {
                what: "picture",
                frame: frame.index(),
                got_w: frame.width(),
                got_h: frame.height(),
                want_w: self.width,
                want_h: self.height,
            });
        }
        for i in 0..3 {
            let stride = self.raw.img.i_stride[i] as usize;
            let width = frame.stride(i);
            let src = frame.plane(i);
            for (dst_row, src_row) in self
                .plane_mut(i)
                .chunks_exact_mut(stride)
                .zip(src.chunks_exact(width))
            {
                dst_row[..width].copy_from_slice(src_row);
            }
        }
        Ok(())
    }

    /// The picture's planes as an x264 image.
    pub fn image(&self) -> x264::Image<'_> {
        let planes = [0, 1, 2].map(|i| x264::Plane {
            stride: self.raw.img.i_stride[i],
            data: self.plane(i),
        });
        x264::Image::new(
            x264::Colorspace::I420,
            self.width as i32,
            self.height as i32,
            &planes,
        )
    }

    /// The incident's leak: forgets the picture without `x264_picture_clean`.
    pub fn leak(self) {
        std::mem::forget(self);
    }

    /// The incident's crash: re-points the planes at the caller's frame buffer, as the
    /// camera code did, then calls `x264_picture_clean`, which frees memory x264 never
    /// allocated (the frame's own buffer) and loses the block it did allocate.
    ///
    /// # Safety
    ///
    /// Never sound: `x264_picture_clean` frees `frame`'s buffer behind its owner's back,
    /// so the frame's later drop frees it again. Call it only in a child process that is
    /// expected to die (the `clean-after-repoint` control), never in a test process.
    pub unsafe fn repoint_and_clean(mut self, frame: &Frame) {
        let base = frame.data().as_ptr() as *mut u8;
        let y = frame.plane(0).len();
        let c = frame.plane(1).len();
        self.raw.img.plane[0] = base;
        // SAFETY: offsets inside the frame's buffer, which holds y + 2c bytes.
        unsafe {
            self.raw.img.plane[1] = base.add(y);
            self.raw.img.plane[2] = base.add(y + c);
            sys::x264_picture_clean(&mut self.raw);
        }
        std::mem::forget(self);
    }
}

impl Drop for AllocatedPicture {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful x264_picture_alloc and still points at
        // the block it allocated (only `repoint_and_clean` re-points, and it forgets
        // `self`); Drop runs once.
        unsafe { sys::x264_picture_clean(&mut self.raw) };
    }
}

/// The libx264 build number this crate was built against.
pub fn build() -> u32 {
    sys::X264_BUILD
}
