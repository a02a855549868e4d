//! The subcommands.

pub mod bench;
pub mod build;
pub mod bulk;
pub mod churn;
pub mod export;
pub mod info;
pub mod search;
