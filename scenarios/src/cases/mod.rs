//! The five scenarios, one module each, each replaying an incident told in
//! `docs/incidents/`. [`crate::all`] registers them.

pub mod avio_memory;
pub mod encode_abort;
pub mod fmp4_mux;
pub mod picture_pool;
pub mod player_queue;
