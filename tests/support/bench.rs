//! What the benchmarks share: percentiles and the pgbench program.

/// The `p` quantile (0.0–1.0) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// pgbench from the PostgreSQL server package (not on PATH on Debian).
pub fn pgbench() -> String {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin/pgbench"))
        .find(|p| p.exists())
        .map_or_else(|| "pgbench".into(), |p| p.display().to_string())
}
