//! Percentiles: a small log-linear histogram for the millions of latency samples
//! (one per player per frame, merged across player threads) and exact
//! nearest-rank percentiles for small sets (one value per player).

use serde_json::{json, Value};

/// Sub-buckets per power of two: values are kept within 1/32 (~3%) of the truth.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values above 2^36 µs (~19 hours) land in the last bucket.
const MAX_SHIFT: u32 = 36 - SUB_BITS;
const BUCKETS: usize = ((MAX_SHIFT + 2) as usize) * SUB as usize;

/// Counts of values (microseconds) in log-linear buckets, plus the exact count,
/// sum, minimum and maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<u32>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = (msb - SUB_BITS).min(MAX_SHIFT);
    let mantissa = (v >> shift).min(2 * SUB - 1);
    if shift == MAX_SHIFT && v >> shift >= 2 * SUB {
        return BUCKETS - 1;
    }
    (shift as usize) * SUB as usize + mantissa as usize
}

/// The smallest value that falls in bucket `b`.
fn bucket_low(b: usize) -> u64 {
    let b = b as u64;
    if b < 2 * SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let mantissa = b % SUB + SUB;
    mantissa << shift
}

/// The middle of bucket `b` (what percentiles report).
fn bucket_mid(b: usize) -> u64 {
    let low = bucket_low(b);
    let next = if b + 1 < BUCKETS {
        bucket_low(b + 1)
    } else {
        low + 1
    };
    low + (next - low - 1) / 2
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: Vec::new(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        let b = bucket_of(v);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at quantile `q` (0..=1) by nearest rank, to bucket precision,
    /// clamped to the exact minimum and maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = rank(self.count as usize, q) as u64 + 1;
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bucket_mid(b).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// count, mean, p50, p90, p99, p99.9 and max, in milliseconds (the
    /// histogram holds microseconds); nulls when empty.
    pub fn summary_ms(&self) -> Value {
        let ms = |v: Option<u64>| v.map(|us| round3(us as f64 / 1000.0));
        json!({
            "count": self.count,
            "mean": self.mean().map(|us| round3(us / 1000.0)),
            "p50": ms(self.quantile(0.50)),
            "p90": ms(self.quantile(0.90)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms(self.max()),
        })
    }
}

/// Zero-based nearest-rank index of quantile `q` among `n` sorted values.
fn rank(n: usize, q: f64) -> usize {
    let q = q.clamp(0.0, 1.0);
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// Nearest-rank quantile of `values` (any order); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted[rank(sorted.len(), q)])
}

/// count, min, mean, p50, p99 and max of a small set of values.
pub fn summary(values: &[f64]) -> Value {
    let q = |p| quantile(values, p).map(round3);
    let mean =
        (!values.is_empty()).then(|| round3(values.iter().sum::<f64>() / values.len() as f64));
    json!({
        "count": values.len(),
        "min": q(0.0),
        "mean": mean,
        "p50": q(0.5),
        "p99": q(0.99),
        "max": q(1.0),
    })
}

/// Rounds to three decimals, for readable JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
        let s = summary(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s["mean"], 2.5);
        assert_eq!(s["p50"], 2.0);
        assert_eq!(s["max"], 4.0);
        assert_eq!(summary(&[])["p50"], Value::Null);
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for v in 0..5000u64 {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            last = b;
        }
        for v in (0..5000u64).chain((1..40).map(|s| 1u64 << s)) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v}");
            assert!(bucket_low(b) <= v, "{v} below bucket {b}");
            assert!(b == BUCKETS - 1 || v < bucket_low(b + 1), "{v}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for b in 0..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_low(b)), b);
        }
    }

    #[test]
    fn histogram_quantiles_are_within_a_few_percent() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary_ms()["p50"], Value::Null);
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.03, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), Some(100_000));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.max(), Some(100_000));
        assert_eq!(h.mean(), Some(50_000.5));
        // Small exact values stay exact.
        let mut small = Histogram::new();
        for v in [5, 5, 5, 9] {
            small.record(v);
        }
        assert_eq!(small.quantile(0.5), Some(5));
        assert_eq!(small.quantile(0.99), Some(9));
    }

    #[test]
    fn merging_equals_recording_everything_once() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..1000u64 {
            let x = v * v % 7919;
            if v % 3 == 0 { &mut a } else { &mut b }.record(x);
            all.record(x);
        }
        let mut merged = Histogram::new();
        merged.merge(&a);
        merged.merge(&Histogram::new());
        merged.merge(&b);
        assert_eq!(merged, all);
        let s = merged.summary_ms();
        assert_eq!(s["count"], 1000);
        assert_eq!(s["max"], round3(all.max().unwrap() as f64 / 1000.0));
    }
}
