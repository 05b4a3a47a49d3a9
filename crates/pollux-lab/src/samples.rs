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

/// One Markdown table row of a side-by-side case: `what`, then Pollux's
/// and the other side's median (min–max) with `fmt`, then the median
/// (min–max) of the per-pair ratios. `pairs` holds (Pollux, other) per
/// interleaved pair.
pub fn pair_row(what: &str, pairs: &[(f64, f64)], fmt: fn(f64) -> String) -> String {
    let ours: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let theirs: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let ratio: Vec<f64> = pairs
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|p| p.0 / p.1)
        .collect();
    let s = |x: &[f64]| {
        summary(x)
            .map(|(m, lo, hi)| format!("{} ({}–{})", fmt(m), fmt(lo), fmt(hi)))
            .unwrap_or_else(|| "none".into())
    };
    let r = summary(&ratio)
        .map(|(m, lo, hi)| format!("{m:.3} ({lo:.3}–{hi:.3})"))
        .unwrap_or_else(|| "none".into());
    format!("| {what} | {} | {} | {r} |", s(&ours), s(&theirs))
}

/// The median of the per-pair ratios Pollux / other (pairs where the other
/// side measured nothing are left out).
pub fn median_ratio(pairs: &[(f64, f64)]) -> Option<f64> {
    let r: Vec<f64> = pairs
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|p| p.0 / p.1)
        .collect();
    median(&r)
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

    #[test]
    fn pair_rows_give_medians_spreads_and_ratios() {
        let pairs = [(2.0, 1.0), (3.0, 2.0), (1.0, 1.0)];
        let row = pair_row("case", &pairs, |x| format!("{x:.0}"));
        assert_eq!(row, "| case | 2 (1–3) | 1 (1–2) | 1.500 (1.000–2.000) |");
        assert_eq!(median_ratio(&pairs), Some(1.5));
        assert_eq!(median_ratio(&[(1.0, 0.0)]), None);
    }
}
