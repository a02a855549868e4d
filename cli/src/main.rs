//! `hnsw-batch` command-line tool.
fn main() {}
