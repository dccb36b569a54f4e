//! Counters, gauges and histograms that keep one cell per proxy worker, summed when scraped.
//!
//! Written here rather than taken from the `prometheus` crate, whose series are single atomics
//! every thread adds to: a request updates about twenty of them as it ends (status, latencies,
//! bytes, tokens, the active gauge), and with two workers serving one route each of those adds
//! pulls the cache line over from the other core. Measured in isolation that was 1.6–1.8 µs
//! per request against 0.4 µs on one thread. Here each worker adds to its own cache line
//! (`crate::server::current_worker` picks it), so the lines stay put; a scrape, which is rare,
//! pays for the sum. The crate still does the rest: [`MetricVec`] finds a series by its label
//! values, the registry gathers, and its encoder writes the text format.
//!
//! A scrape reads the cells while requests add to them, so a histogram's sum may miss an
//! observation its buckets already hold (or the other way round) until the next scrape; its
//! count is always the sum of its buckets.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus::core::{Describer, Metric, MetricVec, MetricVecBuilder};
use prometheus::proto::{self, LabelPair, MetricType};
use prometheus::{HistogramOpts, Opts};

/// The most cells a series keeps. Beyond it workers share cells, which stays exact (every add is
/// atomic) and bounds a series' memory on machines with many cores.
pub const MAX_SHARDS: usize = 16;

/// Two workers' cells never share a cache line, nor the pair of lines fetched together.
#[repr(align(128))]
#[derive(Default)]
struct Line<T>(T);

/// u64s in one [`Line`].
const PER_LINE: usize = 16;

/// The calling thread's cell among `shards`.
fn shard(shards: usize) -> usize {
    crate::server::current_worker() % shards
}

/// Cells per series for a node with `workers` proxy workers: one each, and one for the threads
/// that are no worker.
pub fn shards_for(workers: usize) -> usize {
    (workers + 1).clamp(1, MAX_SHARDS)
}

/// One value kept as a cell per worker, with its series' labels: what a counter and a gauge
/// share. Adds wrap, so a gauge's decrement is the two's-complement add of its negative and the
/// cells' wrapping sum, read as signed, is the gauge's value.
struct Cells {
    labels: Vec<LabelPair>,
    shards: Box<[Line<AtomicU64>]>,
}

impl Cells {
    fn new(labels: Vec<LabelPair>, shards: usize) -> Arc<Cells> {
        Arc::new(Cells { labels, shards: (0..shards.max(1)).map(|_| Line::default()).collect() })
    }

    /// Adds `by` to the calling worker's cell.
    fn add(&self, by: u64) {
        self.shards[shard(self.shards.len())].0.fetch_add(by, Relaxed);
    }

    /// The sum over every worker.
    fn sum(&self) -> u64 {
        self.shards.iter().map(|cell| cell.0.load(Relaxed)).fold(0, u64::wrapping_add)
    }

    /// The series as the registry gathers it, its value set by `set`.
    fn metric(&self, set: impl FnOnce(&mut proto::Metric)) -> proto::Metric {
        let mut metric = proto::Metric::from_label(self.labels.clone());
        set(&mut metric);
        metric
    }
}

/// A monotonic count (`TYPE counter`).
#[derive(Clone)]
pub struct Counter(Arc<Cells>);

impl Counter {
    fn new(labels: Vec<LabelPair>, shards: usize) -> Counter {
        Counter(Cells::new(labels, shards))
    }

    pub fn inc(&self) {
        self.0.add(1);
    }

    pub fn inc_by(&self, by: u64) {
        self.0.add(by);
    }

    /// The total over every worker.
    pub fn get(&self) -> u64 {
        self.0.sum()
    }
}

impl Metric for Counter {
    fn metric(&self) -> proto::Metric {
        let mut counter = proto::Counter::default();
        counter.set_value(self.get() as f64);
        self.0.metric(|metric| metric.set_counter(counter))
    }
}

/// A value that goes up and down (`TYPE gauge`). A worker may take down what another put up: the
/// cells' sum is what counts.
#[derive(Clone)]
pub struct Gauge(Arc<Cells>);

impl Gauge {
    fn new(labels: Vec<LabelPair>, shards: usize) -> Gauge {
        Gauge(Cells::new(labels, shards))
    }

    pub fn inc(&self) {
        self.0.add(1);
    }

    pub fn dec(&self) {
        self.0.add(1u64.wrapping_neg());
    }

    /// The sum over every worker.
    pub fn get(&self) -> i64 {
        self.0.sum() as i64
    }
}

impl Metric for Gauge {
    fn metric(&self) -> proto::Metric {
        let mut gauge = proto::Gauge::default();
        gauge.set_value(self.get() as f64);
        self.0.metric(|metric| metric.set_gauge(gauge))
    }
}

/// Observations in buckets (`TYPE histogram`).
#[derive(Clone)]
pub struct Histogram(Arc<HistogramCells>);

/// Each shard is `stride` lines: the sum's bits, then a count per bucket, the last for values
/// above every bound (`+Inf`). Counts are per bucket, not cumulative, so an observation is one
/// add; the scrape accumulates them.
struct HistogramCells {
    labels: Vec<LabelPair>,
    bounds: Arc<[f64]>,
    stride: usize,
    lines: Box<[Line<[AtomicU64; PER_LINE]>]>,
}

impl HistogramCells {
    /// Cell `index` (0: the sum; 1 + bucket: that bucket's count) of shard `shard`.
    fn cell(&self, shard: usize, index: usize) -> &AtomicU64 {
        &self.lines[shard * self.stride + index / PER_LINE].0[index % PER_LINE]
    }

    fn shards(&self) -> usize {
        self.lines.len() / self.stride
    }
}

impl Histogram {
    fn new(labels: Vec<LabelPair>, bounds: Arc<[f64]>, shards: usize) -> Histogram {
        let stride = (bounds.len() + 2).div_ceil(PER_LINE);
        let lines = (0..shards.max(1) * stride).map(|_| Line::default()).collect();
        Histogram(Arc::new(HistogramCells { labels, bounds, stride, lines }))
    }

    pub fn observe(&self, value: f64) {
        let cells = &*self.0;
        let shard = shard(cells.shards());
        let bucket = cells.bounds.iter().position(|bound| value <= *bound).unwrap_or(cells.bounds.len());
        cells.cell(shard, 1 + bucket).fetch_add(1, Relaxed);
        // Only this worker adds to this cell, so the exchange almost never has to go round again.
        let _ =
            cells.cell(shard, 0).fetch_update(Relaxed, Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }

    /// Observations per bucket (the last above every bound) and the sum, over every worker.
    fn totals(&self) -> (Vec<u64>, f64) {
        let cells = &*self.0;
        let mut counts = vec![0u64; cells.bounds.len() + 1];
        let mut sum = 0.0;
        for shard in 0..cells.shards() {
            sum += f64::from_bits(cells.cell(shard, 0).load(Relaxed));
            for (bucket, count) in counts.iter_mut().enumerate() {
                *count = count.wrapping_add(cells.cell(shard, 1 + bucket).load(Relaxed));
            }
        }
        (counts, sum)
    }
}

impl Metric for Histogram {
    fn metric(&self) -> proto::Metric {
        let (counts, sum) = self.totals();
        let mut cumulative = 0u64;
        let buckets = self
            .0
            .bounds
            .iter()
            .zip(&counts)
            .map(|(bound, count)| {
                cumulative = cumulative.wrapping_add(*count);
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(counts.iter().fold(0, |total, count| total.wrapping_add(*count)));
        histogram.set_sample_sum(sum);
        let mut metric = proto::Metric::from_label(self.0.labels.clone());
        metric.set_histogram(histogram);
        metric
    }
}

/// The label pairs of a new series: its variable labels with `values`, and the constant ones,
/// sorted by name as the `prometheus` crate's own series are.
fn label_pairs<V: AsRef<str>>(describer: &impl Describer, values: &[V]) -> prometheus::Result<Vec<LabelPair>> {
    let desc = describer.describe()?;
    if desc.variable_labels.len() != values.len() {
        return Err(prometheus::Error::InconsistentCardinality {
            expect: desc.variable_labels.len(),
            got: values.len(),
        });
    }
    let mut pairs: Vec<LabelPair> = desc
        .variable_labels
        .iter()
        .zip(values)
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.clone());
            pair.set_value(value.as_ref().to_owned());
            pair
        })
        .chain(desc.const_label_pairs.iter().cloned())
        .collect();
    pairs.sort();
    Ok(pairs)
}

/// Makes the series of a [`CounterVec`], [`GaugeVec`] or [`HistogramVec`] with `shards` cells.
#[derive(Clone)]
pub struct Sharded {
    shards: usize,
}

#[derive(Clone)]
pub struct CounterBuilder(Sharded);
#[derive(Clone)]
pub struct GaugeBuilder(Sharded);
#[derive(Clone)]
pub struct HistogramBuilder {
    sharded: Sharded,
    bounds: Arc<[f64]>,
}

impl MetricVecBuilder for CounterBuilder {
    type M = Counter;
    type P = Opts;

    fn build<V: AsRef<str>>(&self, opts: &Opts, values: &[V]) -> prometheus::Result<Counter> {
        Ok(Counter::new(label_pairs(opts, values)?, self.0.shards))
    }
}

impl MetricVecBuilder for GaugeBuilder {
    type M = Gauge;
    type P = Opts;

    fn build<V: AsRef<str>>(&self, opts: &Opts, values: &[V]) -> prometheus::Result<Gauge> {
        Ok(Gauge::new(label_pairs(opts, values)?, self.0.shards))
    }
}

impl MetricVecBuilder for HistogramBuilder {
    type M = Histogram;
    type P = HistogramOpts;

    fn build<V: AsRef<str>>(&self, opts: &HistogramOpts, values: &[V]) -> prometheus::Result<Histogram> {
        Ok(Histogram::new(label_pairs(opts, values)?, Arc::clone(&self.bounds), self.sharded.shards))
    }
}

pub type CounterVec = MetricVec<CounterBuilder>;
pub type GaugeVec = MetricVec<GaugeBuilder>;
pub type HistogramVec = MetricVec<HistogramBuilder>;

impl Sharded {
    /// Series with `shards` cells each (see [`shards_for`]).
    pub fn new(shards: usize) -> Sharded {
        Sharded { shards: shards.clamp(1, MAX_SHARDS) }
    }

    pub fn counters(&self, opts: Opts, labels: &[&str]) -> prometheus::Result<CounterVec> {
        MetricVec::create(MetricType::COUNTER, CounterBuilder(self.clone()), opts.variable_labels(owned(labels)))
    }

    pub fn gauges(&self, opts: Opts, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        MetricVec::create(MetricType::GAUGE, GaugeBuilder(self.clone()), opts.variable_labels(owned(labels)))
    }

    /// Histograms with `opts`' buckets; a last bucket of `+Inf` is implied, as in the text format.
    pub fn histograms(&self, opts: HistogramOpts, labels: &[&str]) -> prometheus::Result<HistogramVec> {
        let bounds: Arc<[f64]> = opts.buckets.iter().copied().filter(|bound| bound.is_finite()).collect();
        if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(prometheus::Error::Msg(format!("{}: bucket bounds must increase", opts.common_opts.name)));
        }
        let builder = HistogramBuilder { sharded: self.clone(), bounds };
        MetricVec::create(MetricType::HISTOGRAM, builder, opts.variable_labels(owned(labels)))
    }

    /// A gauge without labels, registered in `registry`.
    pub fn gauge(&self, opts: Opts, registry: &prometheus::Registry) -> prometheus::Result<Gauge> {
        let family = self.gauges(opts, &[])?;
        registry.register(Box::new(family.clone()))?;
        family.get_metric_with_label_values::<&str>(&[])
    }

    /// A histogram without labels, registered in `registry`.
    pub fn histogram(&self, opts: HistogramOpts, registry: &prometheus::Registry) -> prometheus::Result<Histogram> {
        let family = self.histograms(opts, &[])?;
        registry.register(Box::new(family.clone()))?;
        family.get_metric_with_label_values::<&str>(&[])
    }
}

fn owned(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|label| (*label).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::pretend_to_be;
    use prometheus::{Encoder, Registry, TextEncoder};

    /// Runs `work` on one thread per worker number in `workers`, each counting as that worker.
    fn on_workers(workers: std::ops::Range<usize>, work: impl Fn(usize) + Sync) {
        std::thread::scope(|scope| {
            for number in workers {
                let work = &work;
                scope.spawn(move || {
                    pretend_to_be(number);
                    work(number);
                });
            }
        });
    }

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cells_fill_whole_cache_line_pairs() {
        assert_eq!(std::mem::align_of::<Line<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Line<[AtomicU64; PER_LINE]>>(), 128);
        assert_eq!(shards_for(2), 3);
        assert_eq!(shards_for(200), MAX_SHARDS);
    }

    #[test]
    fn each_worker_adds_to_its_own_cell_and_the_total_is_their_sum() {
        let family = Sharded::new(3).counters(Opts::new("c", "c"), &["route"]).unwrap();
        let counter = family.with_label_values(&["r1"]);
        let gauge = Sharded::new(3).gauges(Opts::new("g", "g"), &["route"]).unwrap().with_label_values(&["r1"]);
        on_workers(0..3, |number| {
            for _ in 0..1000 * (number + 1) {
                counter.inc();
                gauge.inc();
            }
            // Taken down by another worker than the one that put it up: that worker's own cell
            // goes below zero.
            if number == 2 {
                for _ in 0..4000 {
                    gauge.dec();
                }
            }
        });
        let cells: Vec<u64> = counter.0.shards.iter().map(|cell| cell.0.load(Relaxed)).collect();
        assert_eq!(cells, [1000, 2000, 3000]);
        assert_eq!(counter.get(), 6000);
        assert_eq!(gauge.get(), 2000);
        // Found again by its labels: the same cells.
        assert_eq!(family.with_label_values(&["r1"]).get(), 6000);
    }

    #[test]
    fn workers_beyond_the_shards_share_cells_without_losing_a_count() {
        let counter = Sharded::new(2).counters(Opts::new("c", "c"), &["route"]).unwrap().with_label_values(&["r"]);
        on_workers(0..5, |_| (0..10_000).for_each(|_| counter.inc()));
        assert_eq!(counter.get(), 50_000);
    }

    /// The text a scrape gets is what the `prometheus` crate's own series would give for the same
    /// updates: names, label order, cumulative buckets, `+Inf`, count and sum.
    #[test]
    fn scrapes_read_as_the_prometheus_crate_s_own_series() {
        let (ours, theirs) = (Registry::new(), Registry::new());
        let sharded = Sharded::new(3);
        let bounds = vec![1.0, 5.0, 10.0];
        let hist_opts = || HistogramOpts::new("latency", "help").const_label("node", "n1").buckets(bounds.clone());
        let our_hist = sharded.histograms(hist_opts(), &["type", "route"]).unwrap();
        let their_hist = prometheus::HistogramVec::new(hist_opts(), &["type", "route"]).unwrap();
        let our_counter = sharded.counters(Opts::new("bytes", "help"), &["route", "code"]).unwrap();
        let their_counter = prometheus::IntCounterVec::new(Opts::new("bytes", "help"), &["route", "code"]).unwrap();
        let our_gauge = sharded.gauge(Opts::new("active", "help"), &ours).unwrap();
        let their_gauge = prometheus::IntGauge::new("active", "help").unwrap();
        let our_single =
            sharded.histogram(HistogramOpts::new("overhead", "help").buckets(bounds.clone()), &ours).unwrap();
        let their_single =
            prometheus::Histogram::with_opts(HistogramOpts::new("overhead", "help").buckets(bounds.clone())).unwrap();
        for collector in
            [Box::new(our_hist.clone()) as Box<dyn prometheus::core::Collector>, Box::new(our_counter.clone())]
        {
            ours.register(collector).unwrap();
        }
        theirs.register(Box::new(their_hist.clone())).unwrap();
        theirs.register(Box::new(their_counter.clone())).unwrap();
        theirs.register(Box::new(their_gauge.clone())).unwrap();
        theirs.register(Box::new(their_single.clone())).unwrap();

        let values = [0.5, 1.0, 1.5, 5.0, 7.25, 10.0, 11.0, 1e9];
        on_workers(0..3, |number| {
            for (i, value) in values.iter().enumerate() {
                let kind = if i % 2 == 0 { "request" } else { "upstream" };
                our_hist.with_label_values(&[kind, "r1"]).observe(*value + number as f64);
                our_counter.with_label_values(&["r1", if i % 3 == 0 { "200" } else { "502" }]).inc_by(i as u64);
                our_single.observe(*value);
                our_gauge.inc();
            }
            our_gauge.dec();
        });
        for number in 0..3 {
            for (i, value) in values.iter().enumerate() {
                let kind = if i % 2 == 0 { "request" } else { "upstream" };
                their_hist.with_label_values(&[kind, "r1"]).observe(*value + number as f64);
                their_counter.with_label_values(&["r1", if i % 3 == 0 { "200" } else { "502" }]).inc_by(i as u64);
                their_single.observe(*value);
                their_gauge.inc();
            }
            their_gauge.dec();
        }
        assert_eq!(text(&ours), text(&theirs));
        assert!(text(&ours).contains(r#"latency_bucket{node="n1",route="r1",type="request",le="+Inf"} 12"#));
    }

    #[test]
    fn buckets_out_of_order_are_refused() {
        let opts = HistogramOpts::new("h", "h").buckets(vec![5.0, 1.0]);
        assert!(Sharded::new(2).histograms(opts, &["a"]).is_err());
    }
}
