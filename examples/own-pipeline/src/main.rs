//! `own-pipeline`: the soak binary of this crate. `list`, `soak`, `gate` and the child
//! each case runs in all come from the macro.

avsoak::main!(own_pipeline::Decoding);
