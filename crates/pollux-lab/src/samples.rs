//! Summaries of repeated measurements, for side-by-side comparisons: every
//! sample kept, reported as median and spread (issue "The data plane made
//! sound": at least 5 interleaved pairs per case, median and spread).

/// The median of the positive samples (a run that measured nothing is not
/// a sample), the upper one of the middle two for an even count.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| *x > 0.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// (median, min, max) of the positive samples.
pub fn summary(v: &[f64]) -> Option<(f64, f64, f64)> {
    let m = median(v)?;
    let pos = v.iter().copied().filter(|x| *x > 0.0);
    let min = pos.clone().fold(f64::INFINITY, f64::min);
    let max = pos.fold(0.0, f64::max);
    Some((m, min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_skip_empty_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 0.0, 2.0, 3.0]), Some(3.0));
        assert_eq!(median(&[0.0]), None);
        assert_eq!(summary(&[1.0, 0.0, 5.0, 3.0]), Some((3.0, 1.0, 5.0)));
    }
}
