//! SplitMix64: a tiny deterministic generator for the kernel tests, so a failure names a seed
//! that reproduces it.

/// The generator; the field is the state (seed it with any `u64`).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// Integer in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// A value whose magnitude spans six orders, 1e-3 to 1e3 (so dot products cancel heavily;
    /// within `f16` range).
    pub fn wide(&mut self) -> f32 {
        let scale = [1e-3f32, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3][self.int(0, 6) as usize];
        self.unit() * scale
    }

    /// Roughly Gaussian (sum of four uniforms), for embedding-like vectors.
    pub fn gaussian(&mut self) -> f32 {
        (0..4).map(|_| self.unit()).sum::<f32>() * 0.866
    }

    /// `dim` values uniform in `[-1, 1)`.
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit()).collect()
    }

    /// A random unit-norm vector (an embedding as cosine and dot-product models produce them).
    pub fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.gaussian()).collect();
        normalised(&v)
    }
}

/// `v` scaled to unit norm (computed in `f64`).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    v.iter().map(|&x| (x as f64 / norm) as f32).collect()
}
