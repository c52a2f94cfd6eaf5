//! Links libx265: `ffi::x265` calls it directly (FFmpeg and libheif load it too).

fn main() {
    println!("cargo:rustc-link-lib=x265");
}
