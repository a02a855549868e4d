//! Command-line parameters shared by several subcommands.

use clap::{Args, ValueEnum};
use hnsw_batch::{IndexConfig, Metric, Storage};

use crate::error::{CliError, Result};

/// Distance of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// Squared Euclidean distance.
    #[value(alias = "euclidean")]
    L2,
    /// Cosine distance (vectors are normalised).
    #[value(alias = "angular")]
    Cosine,
    /// Inner product (maximum inner-product search).
    #[value(alias = "dot")]
    Ip,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::L2 => Metric::L2,
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Ip => Metric::InnerProduct,
        }
    }
}

/// Element type of stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageArg {
    /// `u8` for byte inputs (.bvecs, uint8 .npy), `f32` otherwise.
    Auto,
    /// 32-bit floats: any finite vector.
    F32,
    /// One byte per component: integers 0..=255 only, stored losslessly, 4x smaller and faster.
    U8,
    /// IEEE half floats: 2 bytes per component (half of f32), values rounded to about 3
    /// significant digits; magnitudes above 65504 are rejected (except under cosine, which
    /// stores normalised vectors).
    F16,
    /// 8-bit scalar-quantised codes for the graph walk plus the exact f32 vectors, which
    /// re-score the best candidates (see --rerank): results and distances are exact f32 ones.
    /// Trained on the first batch; more memory in total than f32, a quarter of the vector
    /// bytes in the walk.
    Sq8,
}

impl StorageArg {
    /// The storage for an input that is (`bytes`) or is not made of bytes.
    pub fn resolve(self, bytes: bool) -> Storage {
        match self {
            StorageArg::F32 => Storage::F32,
            StorageArg::U8 => Storage::U8,
            StorageArg::F16 => Storage::F16,
            StorageArg::Sq8 => Storage::Sq8,
            StorageArg::Auto if bytes => Storage::U8,
            StorageArg::Auto => Storage::F32,
        }
    }
}

/// HNSW construction parameters.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Links per node on the upper levels (level 0 gets 2*M).
    #[arg(long, default_value_t = 16, help_heading = "Index parameters")]
    pub m: usize,
    /// Beam width while inserting.
    #[arg(long, default_value_t = 200, value_name = "EF", help_heading = "Index parameters")]
    pub ef_construction: usize,
    /// Distance.
    #[arg(long, value_enum, default_value = "l2", help_heading = "Index parameters")]
    pub metric: MetricArg,
    /// Element type of stored vectors.
    #[arg(long, value_enum, default_value = "auto", help_heading = "Index parameters")]
    pub storage: StorageArg,
    /// sq8 storage: candidates of the walk re-scored with the exact vectors (0 = max(2k, 20); at most ef).
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Index parameters")]
    pub rerank: usize,
    /// Seed of the level generator.
    #[arg(long, default_value_t = 0, help_heading = "Index parameters")]
    pub seed: u64,
    /// Most live vectors the index may ever hold (inserts beyond it fail). At most 8388608
    /// also stores each link in 3 bytes instead of 4: 32 bytes less per vector at M 16.
    #[arg(long, value_name = "N", help_heading = "Index parameters")]
    pub max_elements: Option<usize>,
}

impl IndexArgs {
    /// The index configuration for vectors of dimension `dim` from an input that is (or is not)
    /// made of bytes. Out-of-range parameters are usage errors.
    pub fn config(&self, dim: usize, bytes: bool) -> Result<IndexConfig> {
        let storage = self.storage.resolve(bytes);
        // `auto` never picks u8 for cosine, which cannot store normalised vectors as bytes.
        let storage = if self.storage == StorageArg::Auto && self.metric == MetricArg::Cosine {
            Storage::F32
        } else {
            storage
        };
        let mut cfg = IndexConfig::new(dim, self.metric.into())
            .m(self.m)
            .ef_construction(self.ef_construction)
            .seed(self.seed)
            .storage(storage)
            .rerank(self.rerank);
        if let Some(n) = self.max_elements {
            cfg = cfg.max_elements(n);
        }
        cfg.validate().map_err(|e| match e {
            hnsw_batch::IndexError::InvalidParameter { name: "dim", reason } => {
                CliError::input(format!("vector dimension {reason}"))
            }
            hnsw_batch::IndexError::InvalidParameter { name, reason } => {
                CliError::usage(format!("--{}: {reason}", name.replace('_', "-")))
            }
            other => CliError::usage(other.to_string()),
        })?;
        Ok(cfg)
    }

    /// Checks the parameters before any input is read.
    pub fn check(&self) -> Result<()> {
        self.config(1, false).map(|_| ())
    }
}

/// The number of threads for `--threads N` (0 = every core).
pub fn thread_count(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    }
}

/// A rayon pool of `n` threads (0 = every core).
pub fn pool(n: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(thread_count(n))
        .build()
        .map_err(|e| CliError::usage(format!("cannot start {n} threads: {e}")))
}
