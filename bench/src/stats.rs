//! Percentiles of timing samples.

use std::time::Duration;

/// Summary of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// The `p`-th percentile (0..=100) of sorted `xs`, by linear interpolation between the closest
/// ranks (the definition of numpy's default and of Excel's `PERCENTILE.INC`). `None` when empty.
pub fn percentile_sorted(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = p / 100.0 * (xs.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(xs[lo] + (xs[hi] - xs[lo]) * frac)
}

/// The median of `xs` (any order).
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, 50.0)
}

/// Summary of `xs` (any order); `None` when empty.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        p50: percentile_sorted(&v, 50.0)?,
        p99: percentile_sorted(&v, 99.0)?,
        min: *v.first()?,
        max: *v.last()?,
        mean: v.iter().sum::<f64>() / v.len() as f64,
    })
}

/// Microseconds of a duration.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&xs, 0.0), Some(1.0));
        assert_eq!(percentile_sorted(&xs, 100.0), Some(4.0));
        assert_eq!(percentile_sorted(&xs, 50.0), Some(2.5));
        assert_eq!(percentile_sorted(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile_sorted(&[], 50.0), None);
        let hundred: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile_sorted(&hundred, 99.0), Some(100.0));
        assert_eq!(percentile_sorted(&hundred, 50.0), Some(51.0));
    }

    #[test]
    fn median_and_summary_sort_first() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.n, s.min, s.max, s.p50, s.mean), (3, 1.0, 5.0, 3.0, 3.0));
        assert!(summarize(&[]).is_none());
        assert_eq!(us(Duration::from_millis(2)), 2000.0);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
