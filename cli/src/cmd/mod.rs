//! The subcommands.

pub mod bench;
pub mod build;
pub mod export;
pub mod info;
pub mod search;
