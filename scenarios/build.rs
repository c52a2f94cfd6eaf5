//! Links libx265: `x265_ffi` calls it directly (FFmpeg and libheif load it too).

fn main() {
    println!("cargo:rustc-link-lib=x265");
}
