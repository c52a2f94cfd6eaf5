//! The libheif edge: a context, an HEVC encoder, I420 images and encoded image handles,
//! each released in `Drop`, and `heif_context_write` into any Rust [`Write`].
//!
//! libheif 1.15's built-in x265 plugin opens an x265 encoder inside every
//! `heif_context_encode_image`, drains it there, and copies the NAL units it gets into
//! the context. What an application holds between calls is therefore the context (the
//! encoded items), the encoder object (plugin settings), images and handles; a handle
//! keeps its whole context alive.

use std::ffi::{c_void, CStr, CString};
use std::io::Write;
use std::ptr;

use avsoak_fixtures::Frame;
use libheif_sys as sys;

/// A libheif call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeifError {
    /// libheif returned an error.
    #[error("{call} failed: {message} (libheif error {code}.{subcode})")]
    Call {
        /// The function.
        call: &'static str,
        /// `heif_error_code`.
        code: u32,
        /// `heif_suberror_code`.
        subcode: u32,
        /// libheif's message.
        message: String,
    },
    /// The system libheif has no encoder for this id or format.
    #[error("libheif has no encoder {wanted:?} (it has: {available})")]
    NoEncoder {
        /// The encoder asked for.
        wanted: String,
        /// What the library offers, comma-separated.
        available: String,
    },
    /// A parameter libheif cannot take (a NUL byte in a string).
    #[error("invalid libheif parameter {name:?} = {value:?} (expected text without NUL bytes)")]
    Parameter {
        /// Parameter name.
        name: String,
        /// Value given.
        value: String,
    },
    /// The output sink failed while libheif wrote the file.
    #[error("the output sink failed after {written} bytes: {message}")]
    Sink {
        /// Bytes the sink took before it failed.
        written: u64,
        /// The sink's error.
        message: String,
    },
}

fn check(call: &'static str, error: sys::heif_error) -> Result<(), HeifError> {
    if error.code == sys::heif_error_code_heif_error_Ok {
        return Ok(());
    }
    let message = if error.message.is_null() {
        String::new()
    } else {
        // SAFETY: libheif's error messages are NUL-terminated strings that live at least
        // until the next call on the same object; we copy it right away.
        unsafe { CStr::from_ptr(error.message) }
            .to_string_lossy()
            .into_owned()
    };
    Err(HeifError::Call {
        call,
        code: error.code,
        subcode: error.subcode,
        message,
    })
}

/// The libheif version string, e.g. `1.15.1`.
pub fn version() -> String {
    // SAFETY: heif_get_version returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::heif_get_version()) }
        .to_string_lossy()
        .into_owned()
}

/// libheif's HEVC encoder descriptors with their id names, best first.
fn hevc_descriptors() -> Vec<(*const sys::heif_encoder_descriptor, String)> {
    const MAX: usize = 16;
    let mut descriptors = [ptr::null::<sys::heif_encoder_descriptor>(); MAX];
    // SAFETY: a NULL context asks for the global plugin list; libheif fills at most MAX
    // entries of our array and returns how many. Descriptors are static in libheif.
    let n = unsafe {
        sys::heif_context_get_encoder_descriptors(
            ptr::null_mut(),
            sys::heif_compression_format_heif_compression_HEVC,
            ptr::null(),
            descriptors.as_mut_ptr(),
            MAX as i32,
        )
    };
    descriptors[..(n.max(0) as usize).min(MAX)]
        .iter()
        .map(|&d| {
            // SAFETY: d is one of the descriptors libheif just returned; its id name is a
            // static string.
            let id = unsafe { CStr::from_ptr(sys::heif_encoder_descriptor_get_id_name(d)) };
            (d, id.to_string_lossy().into_owned())
        })
        .collect()
}

/// The id names of libheif's HEVC encoders (e.g. `x265`, `kvazaar`), best first.
pub fn hevc_encoders() -> Vec<String> {
    hevc_descriptors().into_iter().map(|(_, id)| id).collect()
}

/// A `heif_context`: the file being built, with every encoded image in it.
#[derive(Debug)]
pub struct Context {
    raw: *mut sys::heif_context,
}

// SAFETY: a heif_context is not tied to the thread that made it; we never share it
// between threads (no Sync), only move it.
unsafe impl Send for Context {}

impl Context {
    /// An empty context.
    pub fn new() -> Result<Self, HeifError> {
        // SAFETY: heif_context_alloc has no preconditions; NULL means out of memory.
        let raw = unsafe { sys::heif_context_alloc() };
        if raw.is_null() {
            return Err(HeifError::Call {
                call: "heif_context_alloc",
                code: 0,
                subcode: 0,
                message: "returned NULL".into(),
            });
        }
        Ok(Context { raw })
    }

    /// The HEVC encoder whose id name is `id` (e.g. `x265`).
    pub fn hevc_encoder(&self, id: &str) -> Result<Encoder, HeifError> {
        let descriptors = hevc_descriptors();
        let Some(&(descriptor, _)) = descriptors.iter().find(|(_, name)| name == id) else {
            return Err(HeifError::NoEncoder {
                wanted: id.to_owned(),
                available: descriptors
                    .iter()
                    .map(|(_, name)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let mut raw = ptr::null_mut();
        // SAFETY: context and descriptor are live; libheif writes the new encoder to `raw`
        // only on success.
        check("heif_context_get_encoder", unsafe {
            sys::heif_context_get_encoder(self.raw, descriptor, &mut raw)
        })?;
        Ok(Encoder { raw })
    }

    /// Encodes `image` with `encoder` into this context and returns the new item's
    /// handle (the first image encoded becomes the primary one).
    pub fn encode(&mut self, image: &Image, encoder: &mut Encoder) -> Result<Handle, HeifError> {
        let mut raw = ptr::null_mut();
        // SAFETY: all three objects are live and ours; NULL options mean libheif's
        // defaults; the handle is written only on success.
        check("heif_context_encode_image", unsafe {
            sys::heif_context_encode_image(self.raw, image.raw, encoder.raw, ptr::null(), &mut raw)
        })?;
        Ok(Handle { raw })
    }

    /// Writes the file into `sink`, in chunks of at most `chunk` bytes (libheif hands the
    /// whole file over at once; chunking lets a sink fail part of the way through).
    /// Returns the bytes written.
    pub fn write(&self, sink: &mut dyn Write, chunk: usize) -> Result<u64, HeifError> {
        struct State<'a> {
            sink: &'a mut dyn Write,
            chunk: usize,
            written: u64,
            failure: Option<String>,
        }
        unsafe extern "C" fn write_cb(
            _ctx: *mut sys::heif_context,
            data: *const c_void,
            size: usize,
            userdata: *mut c_void,
        ) -> sys::heif_error {
            const FAILED: &CStr = c"avsoak: the output sink failed";
            let failed = sys::heif_error {
                code: sys::heif_error_code_heif_error_Encoding_error,
                subcode: sys::heif_suberror_code_heif_suberror_Cannot_write_output_data,
                message: FAILED.as_ptr(),
            };
            // SAFETY: userdata is the `State` that `write` passed in and keeps alive and
            // unaliased for the whole heif_context_write call.
            let state = unsafe { &mut *userdata.cast::<State<'_>>() };
            let bytes: &[u8] = if size == 0 {
                &[]
            } else {
                // SAFETY: libheif passes `size` readable bytes at `data` for this call.
                unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for piece in bytes.chunks(state.chunk.max(1)) {
                    state.sink.write_all(piece)?;
                    state.written += piece.len() as u64;
                }
                state.sink.flush()
            }));
            match result {
                Ok(Ok(())) => sys::heif_error {
                    code: sys::heif_error_code_heif_error_Ok,
                    subcode: sys::heif_suberror_code_heif_suberror_Unspecified,
                    message: c"Success".as_ptr(),
                },
                Ok(Err(e)) => {
                    state.failure = Some(e.to_string());
                    failed
                }
                Err(_) => {
                    state.failure = Some("the sink panicked".into());
                    failed
                }
            }
        }
        let mut state = State {
            sink,
            chunk,
            written: 0,
            failure: None,
        };
        let mut writer = sys::heif_writer {
            writer_api_version: 1,
            write: Some(write_cb),
        };
        // SAFETY: the context is live; `writer` and `state` outlive the call, and the
        // callback only reaches `state` through the userdata pointer during it.
        let error = unsafe {
            sys::heif_context_write(self.raw, &mut writer, ptr::from_mut(&mut state).cast())
        };
        if let Some(message) = state.failure {
            return Err(HeifError::Sink {
                written: state.written,
                message,
            });
        }
        check("heif_context_write", error)?;
        Ok(state.written)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: we own the context; handles keep their own reference to its contents.
        unsafe { sys::heif_context_free(self.raw) }
    }
}

/// A `heif_encoder`: the plugin instance and its settings.
#[derive(Debug)]
pub struct Encoder {
    raw: *mut sys::heif_encoder,
}

// SAFETY: as for Context: moved between threads, never shared.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Lossy quality, 0–100.
    pub fn set_quality(&mut self, quality: i32) -> Result<(), HeifError> {
        // SAFETY: the encoder is live; libheif validates the range.
        check("heif_encoder_set_lossy_quality", unsafe {
            sys::heif_encoder_set_lossy_quality(self.raw, quality)
        })
    }

    /// A plugin parameter as text, e.g. `preset` = `ultrafast` for x265.
    pub fn set_parameter(&mut self, name: &str, value: &str) -> Result<(), HeifError> {
        let invalid = || HeifError::Parameter {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let c_name = CString::new(name).map_err(|_| invalid())?;
        let c_value = CString::new(value).map_err(|_| invalid())?;
        // SAFETY: the encoder is live and both strings outlive the call.
        check("heif_encoder_set_parameter", unsafe {
            sys::heif_encoder_set_parameter(self.raw, c_name.as_ptr(), c_value.as_ptr())
        })
    }

    /// Logging level of the plugin (0 = none).
    pub fn set_logging_level(&mut self, level: i32) -> Result<(), HeifError> {
        // SAFETY: the encoder is live.
        check("heif_encoder_set_logging_level", unsafe {
            sys::heif_encoder_set_logging_level(self.raw, level)
        })
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: we own the encoder; libheif frees the plugin instance.
        unsafe { sys::heif_encoder_release(self.raw) }
    }
}

/// A `heif_image`: planes libheif allocated.
#[derive(Debug)]
pub struct Image {
    raw: *mut sys::heif_image,
}

// SAFETY: as for Context: moved between threads, never shared.
unsafe impl Send for Image {}

impl Image {
    /// A YCbCr 4:2:0 image of `width`×`height` with its three 8-bit planes.
    pub fn new(width: u32, height: u32) -> Result<Self, HeifError> {
        let mut raw = ptr::null_mut();
        // SAFETY: plain values in, the image pointer out on success.
        check("heif_image_create", unsafe {
            sys::heif_image_create(
                width as i32,
                height as i32,
                sys::heif_colorspace_heif_colorspace_YCbCr,
                sys::heif_chroma_heif_chroma_420,
                &mut raw,
            )
        })?;
        let image = Image { raw };
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let add = |channel, w: u32, h: u32| {
            // SAFETY: the image is live; libheif allocates the plane.
            check("heif_image_add_plane", unsafe {
                sys::heif_image_add_plane(image.raw, channel, w as i32, h as i32, 8)
            })
        };
        add(sys::heif_channel_heif_channel_Y, width, height)?;
        add(sys::heif_channel_heif_channel_Cb, cw, ch)?;
        add(sys::heif_channel_heif_channel_Cr, cw, ch)?;
        Ok(image)
    }

    /// Copies the planes of an I420 `frame` into this image.
    ///
    /// # Panics
    /// If the frame is not the image's size (the copy would overrun the planes).
    pub fn fill_from(&mut self, frame: &Frame) {
        assert_eq!(
            (frame.width(), frame.height()),
            (self.width(), self.height()),
            "frame and image sizes differ"
        );
        let channels = [
            sys::heif_channel_heif_channel_Y,
            sys::heif_channel_heif_channel_Cb,
            sys::heif_channel_heif_channel_Cr,
        ];
        for (i, channel) in channels.into_iter().enumerate() {
            let mut stride = 0;
            // SAFETY: the image is live; NULL comes back for a plane it does not have.
            let dst = unsafe { sys::heif_image_get_plane(self.raw, channel, &mut stride) };
            if dst.is_null() {
                continue;
            }
            let src = frame.plane(i);
            let row = frame.stride(i);
            for (y, line) in src.chunks_exact(row).enumerate() {
                // SAFETY: the plane was added with the frame's size for this channel, so
                // it has `src.len() / row` rows of `stride >= row` bytes.
                unsafe {
                    ptr::copy_nonoverlapping(line.as_ptr(), dst.add(y * stride as usize), row);
                }
            }
        }
    }
}

impl Image {
    /// Plane `i` (0 = Y, 1 = Cb, 2 = Cr) as bytes, row stride, width and height; `None`
    /// when the image has no such plane.
    pub fn plane(&self, i: usize) -> Option<(&[u8], usize, usize, usize)> {
        let channel = [
            sys::heif_channel_heif_channel_Y,
            sys::heif_channel_heif_channel_Cb,
            sys::heif_channel_heif_channel_Cr,
        ]
        .get(i)
        .copied()?;
        let mut stride = 0;
        // SAFETY: the image is live; NULL comes back for a plane it does not have.
        let data = unsafe { sys::heif_image_get_plane_readonly(self.raw, channel, &mut stride) };
        // SAFETY: the image is live.
        let (w, h) = unsafe {
            (
                sys::heif_image_get_width(self.raw, channel),
                sys::heif_image_get_height(self.raw, channel),
            )
        };
        if data.is_null() || stride <= 0 || w <= 0 || h <= 0 {
            return None;
        }
        let (stride, w, h) = (stride as usize, w as usize, h as usize);
        // SAFETY: libheif's plane has `h` rows `stride` bytes apart, each at least `w`
        // bytes long, and lives as long as the image, which this borrow is tied to.
        let bytes = unsafe { std::slice::from_raw_parts(data, stride * (h - 1) + w) };
        Some((bytes, stride, w, h))
    }

    /// Width of the luma plane.
    pub fn width(&self) -> u32 {
        // SAFETY: the image is live.
        unsafe { sys::heif_image_get_width(self.raw, sys::heif_channel_heif_channel_Y) }.max(0)
            as u32
    }

    /// Height of the luma plane.
    pub fn height(&self) -> u32 {
        // SAFETY: the image is live.
        unsafe { sys::heif_image_get_height(self.raw, sys::heif_channel_heif_channel_Y) }.max(0)
            as u32
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: we own the image.
        unsafe { sys::heif_image_release(self.raw) }
    }
}

/// Decodes the primary image of the HEIF file `file` to YCbCr 4:2:0.
pub fn decode_primary(file: &[u8]) -> Result<Image, HeifError> {
    let context = Context::new()?;
    // SAFETY: the context is live and reads `file` without copying it; `file` outlives
    // every use, because the handle and the context are released before this function
    // returns, and the decoded image owns its planes.
    check("heif_context_read_from_memory_without_copy", unsafe {
        sys::heif_context_read_from_memory_without_copy(
            context.raw,
            file.as_ptr().cast(),
            file.len(),
            ptr::null(),
        )
    })?;
    let mut raw_handle = ptr::null_mut();
    // SAFETY: the context is live; the handle is written only on success.
    check("heif_context_get_primary_image_handle", unsafe {
        sys::heif_context_get_primary_image_handle(context.raw, &mut raw_handle)
    })?;
    let handle = Handle { raw: raw_handle };
    let mut raw = ptr::null_mut();
    // SAFETY: the handle is live; NULL options mean libheif's defaults; the image is
    // written only on success and is then ours.
    check("heif_decode_image", unsafe {
        sys::heif_decode_image(
            handle.raw,
            &mut raw,
            sys::heif_colorspace_heif_colorspace_YCbCr,
            sys::heif_chroma_heif_chroma_420,
            ptr::null(),
        )
    })?;
    Ok(Image { raw })
}

/// A `heif_image_handle` to an encoded item. It holds a reference to its context's
/// contents: a handle never released keeps every encoded item of the file alive.
#[derive(Debug)]
pub struct Handle {
    raw: *mut sys::heif_image_handle,
}

// SAFETY: as for Context: moved between threads, never shared.
unsafe impl Send for Handle {}

impl Handle {
    /// Gives the handle up without releasing it: the bug a positive control replays.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own this reference to the handle.
        unsafe { sys::heif_image_handle_release(self.raw) }
    }
}
