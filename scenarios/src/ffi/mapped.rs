//! Decoded pictures in mapped memory: a decoder's `get_buffer2` that gives every frame its
//! own anonymous `mmap`, wrapped with `av_buffer_create`, as zero-copy and hardware frame
//! pools hand out mapped buffers (DMA-BUF, a driver's or a display's frames).
//!
//! The buffer's free callback unmaps it ([`FramePool::Mapped`]), or forgets to
//! ([`FramePool::MappedNeverUnmapped`], a positive control): the frames are released as
//! FFmpeg buffers, so the heap is flat, while the mapping stays.

use std::ffi::{c_int, c_void};
use std::ptr;

use ffmpeg_next::ffi;

/// Where a decoder's pictures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FramePool {
    /// FFmpeg's own (`avcodec_default_get_buffer2`: pooled heap buffers).
    #[default]
    Default,
    /// One anonymous mapping per picture, unmapped when FFmpeg frees the buffer.
    Mapped,
    /// Control: as `Mapped`, but the free callback never unmaps.
    MappedNeverUnmapped,
}

/// Every plane starts, and every line is padded, to this many bytes (FFmpeg's largest
/// `STRIDE_ALIGN`, AVX-512).
const ALIGN: usize = 64;

/// Installs `pool` as the picture allocator of a decoder context not opened yet.
pub(crate) fn install(context: &mut ffmpeg_next::codec::Context, pool: FramePool) {
    type GetBuffer2 =
        unsafe extern "C" fn(*mut ffi::AVCodecContext, *mut ffi::AVFrame, c_int) -> c_int;
    let callback: GetBuffer2 = match pool {
        FramePool::Default => return,
        FramePool::Mapped => get_mapped::<true>,
        FramePool::MappedNeverUnmapped => get_mapped::<false>,
    };
    // SAFETY: the context is live and not opened; `get_buffer2` is the user's to set
    // before `avcodec_open2`, and the callbacks follow its contract (below).
    unsafe { (*context.as_mut_ptr()).get_buffer2 = Some(callback) };
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// `get_buffer2` over one anonymous mapping per picture: planes laid out as FFmpeg's
/// default allocator lays them (dimensions from `avcodec_align_dimensions2`, lines padded
/// to [`ALIGN`]), 16 + [`ALIGN`] bytes of tail for the decoders' over-reads.
unsafe extern "C" fn get_mapped<const UNMAP: bool>(
    ctx: *mut ffi::AVCodecContext,
    frame: *mut ffi::AVFrame,
    _flags: c_int,
) -> c_int {
    // SAFETY: FFmpeg calls this with a live, opened video decoder context and a frame
    // whose width, height and format it set; the frame's fields are written here and
    // nowhere else until this returns.
    unsafe {
        let format = (*ctx).pix_fmt;
        let (mut width, mut height) = ((*frame).width, (*frame).height);
        let mut line_align = [0 as c_int; ffi::AV_NUM_DATA_POINTERS as usize];
        ffi::avcodec_align_dimensions2(ctx, &mut width, &mut height, line_align.as_mut_ptr());
        let mut linesizes = [0 as c_int; 4];
        let code = ffi::av_image_fill_linesizes(linesizes.as_mut_ptr(), format, width);
        if code < 0 {
            return code;
        }
        let wide: [isize; 4] = linesizes.map(|l| round_up(l as usize, ALIGN) as isize);
        let mut sizes = [0usize; 4];
        let code =
            ffi::av_image_fill_plane_sizes(sizes.as_mut_ptr(), format, height, wide.as_ptr());
        if code < 0 {
            return code;
        }
        let planes: usize = sizes.iter().map(|&s| round_up(s, ALIGN)).sum();
        let length = planes + 16 + ALIGN;
        let base = libc::mmap(
            ptr::null_mut(),
            length,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return ffi::AVERROR(libc::ENOMEM);
        }
        let free: unsafe extern "C" fn(*mut c_void, *mut u8) = if UNMAP { unmap } else { forget };
        // The mapping's length rides in the opaque pointer: nothing is allocated for it.
        let buf = ffi::av_buffer_create(base.cast(), length, Some(free), length as *mut c_void, 0);
        if buf.is_null() {
            libc::munmap(base, length);
            return ffi::AVERROR(libc::ENOMEM);
        }
        (*frame).buf[0] = buf;
        let mut offset = 0;
        for plane in 0..4 {
            if sizes[plane] == 0 {
                (*frame).data[plane] = ptr::null_mut();
                (*frame).linesize[plane] = 0;
                continue;
            }
            (*frame).data[plane] = base.cast::<u8>().add(offset);
            (*frame).linesize[plane] = wide[plane] as c_int;
            offset += round_up(sizes[plane], ALIGN);
        }
        (*frame).extended_data = (*frame).data.as_mut_ptr();
        0
    }
}

/// The mapped pool's free: unmaps the picture.
unsafe extern "C" fn unmap(length: *mut c_void, data: *mut u8) {
    // SAFETY: `data` is the start of a mapping of `length` bytes made by `get_mapped`,
    // and FFmpeg frees a buffer once, when its last reference goes.
    unsafe { libc::munmap(data.cast(), length as usize) };
}

/// The control's free: forgets the mapping.
unsafe extern "C" fn forget(_length: *mut c_void, _data: *mut u8) {}
