//! Reading and writing vector files.
