//! Quick timing of the depthwise and grouped layers of
//! `../shared/anchors/run.sh depthwise` (batch 8, 3x3 `same`), each pass
//! apart, next to this machine's copy bandwidth (release build):
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p convnet-kernels --example depthwise_timing [-- FILTER [REPS]]
//! ```
//!
//! `DW_BATCH=N` sets another batch size than the anchor's 8, `DW_SHAPE=H,C,S`
//! adds a depthwise layer `H x H x C` at stride `S`, `DW_ALGO=NAME`
//! an algorithm instead of `auto` (layers it cannot run are left out),
//! `DW_MIN_MS=M` the least wall time each pass is repeated for (default
//! 500; REPS is the least number of calls, default 21), `DW_STAT=p10` the
//! 10th percentile of the calls instead of the median (for comparing two
//! builds on a noisy machine).
//! FILTER (optional) keeps the layers whose label contains it (`copy`
//! alone runs only the bandwidth measurement). For each layer it prints the
//! median milliseconds (after 5 warm-up calls) of forward, backward-data
//! and backward-filter, their sum (what PyTorch's `y = conv(x); y.backward(g)` step does, less the
//! autograd overhead), for the depthwise layers `depthwise::backward` (both
//! gradients: one sweep at stride 2, the two passes at stride 1; what the
//! autodiff tape runs when it needs both), forward + both, and `fwd;both`: the
//! two timed together, one after the other, as a training step and
//! PyTorch's `y = conv(x); y.backward(g)` run them (the backward then
//! finds the input the forward has just read in the cache), in brackets the
//! mean CPU milliseconds per call summed
//! over all threads (Linux; less sensitive to a loaded machine than the
//! wall time), and for the depthwise forward the memory bound:
//! input and output bytes moved once, at the measured copy bandwidth.
//!
//! Copy bandwidth: the median time of `copy_from_slice` between two
//! buffers of the layer's input size, split in two halves over the rayon
//! pool, counted as bytes read plus bytes written. Repeated copies of a
//! buffer that fits in L3 (this EPYC has 32 MiB) run at L3 bandwidth, as
//! repeated calls of the kernel do; both figures are printed.
//! The criterion bench `cargo bench -p convnet-benches --bench depthwise`
//! is the reference measurement; this is the quick look.

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{
    self, conv2d_backward_data, conv2d_backward_filter, conv2d_forward, select, ConvAlgo, ConvPass, ConvShape, Padding,
};
use rayon::prelude::*;
use std::time::Instant;

fn median_ms(reps: usize, f: impl FnMut()) -> f64 {
    timed(reps, f).0
}

/// CPU nanoseconds this process's threads have run so far (Linux
/// `/proc/self/task/*/schedstat`; 0 elsewhere): on a loaded machine the
/// CPU time per call says more about a kernel than its wall time.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Median wall milliseconds and mean CPU milliseconds (all threads) per
/// call, after 5 warm-up calls, over at least `reps` calls and at least
/// `DW_MIN_MS` milliseconds (default 500) of calls, as the PyTorch anchor
/// times (at least 10-20 calls and 1 s): a fixed 21 calls of a 0.1 ms
/// layer lasted 2 ms and medians moved up to 1.9x between rounds.
fn timed(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    let min_ms: f64 = std::env::var("DW_MIN_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(500.0);
    for _ in 0..5 {
        f();
    }
    let cpu0 = process_cpu_ns();
    let start = Instant::now();
    let mut t: Vec<f64> = Vec::with_capacity(reps);
    while t.len() < reps || (start.elapsed().as_secs_f64() * 1e3 < min_ms && t.len() < 100_000) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (process_cpu_ns() - cpu0) as f64 / 1e6 / t.len() as f64;
    (median(t), cpu)
}

/// The median of `v` (the upper one of an even count; `v` not empty), or
/// its 10th percentile with `DW_STAT=p10`: on a shared, noisy machine the
/// low percentile of many calls moves less between runs when two builds of
/// a kernel are compared.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if std::env::var("DW_STAT").is_ok_and(|s| s == "p10") {
        return v[v.len() / 10];
    }
    v[v.len() / 2]
}

/// Copy bandwidth in GB/s (read + write) for buffers of `bytes`.
fn copy_gbps(bytes: usize, reps: usize) -> f64 {
    let len = bytes / 4;
    let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; len];
    let half = len.div_ceil(2);
    let ms = median_ms(reps, || {
        dst.par_chunks_mut(half).zip(src.par_chunks(half)).for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
    });
    2.0 * bytes as f64 / (ms * 1e-3) / 1e9
}

/// A zeroed f32 buffer whose first element is 64-byte aligned (a cache
/// line, an AVX-512 vector), as PyTorch's allocator aligns its tensors: an
/// unaligned `Vec` splits every fourth 64-byte load across two lines.
struct Aligned {
    buf: Vec<f32>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0.0f32; len + 16];
        let off = buf.as_ptr().align_offset(64).min(16);
        Aligned { buf, off, len }
    }
}

impl std::ops::Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.off..][..self.len]
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.off..][..self.len]
    }
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let reps: usize = std::env::args().nth(2).and_then(|r| r.parse().ok()).unwrap_or(21);
    // DW_BATCH overrides the anchor's batch of 8 (a smaller batch stays in cache).
    let batch: usize = std::env::var("DW_BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(8);
    let layer = |h: usize, c: usize, stride: usize, groups: usize| {
        ConvShape::new(batch, h, h, c, c, 3, 3)
            .and_then(|s| s.with_stride(stride, stride))
            .and_then(|s| s.with_padding(Padding::Same))
            .and_then(|s| s.with_groups(groups))
            .unwrap()
    };
    let mut layers = vec![
        ("dw 112x112x32 s1".to_string(), layer(112, 32, 1, 32)),
        ("dw 112x112x64 s2".to_string(), layer(112, 64, 2, 64)),
        ("dw 28x28x256 s1".to_string(), layer(28, 256, 1, 256)),
        ("dw 14x14x512 s1".to_string(), layer(14, 512, 1, 512)),
        ("grouped 56x56x128 g4".to_string(), layer(56, 128, 1, 4)),
    ];
    // DW_SHAPE=H,C,STRIDE: one more depthwise layer (H x H x C, 3x3 `same`).
    if let Ok(v) = std::env::var("DW_SHAPE") {
        let d: Vec<usize> = v.split(',').filter_map(|t| t.trim().parse().ok()).collect();
        if let [h, c, st] = d[..] {
            layers.push((format!("dw {h}x{h}x{c} s{st} (DW_SHAPE)"), layer(h, c, st, c)));
        }
    }
    println!(
        "simd level: {}, threads {}",
        convnet_kernels::simd::try_level().map_or_else(|e| e.to_string(), |l| l.name().to_string()),
        rayon::current_num_threads()
    );
    let mut bw = Vec::new();
    for mb in [3.2f64, 6.4, 12.8, 25.7] {
        let g = copy_gbps((mb * 1e6) as usize, reps.max(11));
        println!("copy {mb:>5.1} MB buffers: {g:6.1} GB/s (read + write)");
        bw.push((mb, g));
    }
    if filter == "copy" {
        return;
    }
    for (label, s) in layers {
        let label = label.as_str();
        if !label.contains(&filter) {
            continue;
        }
        let fill = |len: usize, k: usize| {
            let mut v = Aligned::new(len);
            v.iter_mut().enumerate().for_each(|(i, e)| *e = ((i * k) % 1000) as f32 / 1000.0 - 0.5);
            v
        };
        let (x, w, gy) = (fill(s.input_len(), 7919), fill(s.filter_len(), 104729), fill(s.output_len(), 7717));
        let (mut y, mut gx, mut gw) =
            (Aligned::new(s.output_len()), Aligned::new(s.input_len()), Aligned::new(s.filter_len()));
        let algo: ConvAlgo = std::env::var("DW_ALGO").ok().and_then(|a| a.parse().ok()).unwrap_or(ConvAlgo::Auto);
        if conv::supports(algo, &s, ConvPass::Forward).is_err() {
            continue;
        }
        let shown = if algo == ConvAlgo::Auto { select(&s, ConvPass::Forward) } else { algo };
        let (f, fc) = timed(reps, || conv2d_forward(algo, &s, &x, &w, None, Activation::Linear, &mut y).unwrap());
        let (d, dc) = timed(reps, || conv2d_backward_data(algo, &s, &gy, &w, &mut gx).unwrap());
        let (b, bc) = timed(reps, || conv2d_backward_filter(algo, &s, &x, &gy, &mut gw).unwrap());
        print!(
            "{label:<22} {shown:<11} fwd {f:7.3} ({fc:.3} cpu)  bwd-data {d:7.3} ({dc:.3})  bwd-filter {b:7.3} ({bc:.3})  \
             fwd+bwd {:7.3} ms",
            f + d + b
        );
        if s.groups == s.c_in && algo != ConvAlgo::Im2col {
            let (bb, bbc) = timed(reps, || conv::depthwise::backward(&s, &x, &gy, &w, &mut gx, &mut gw).unwrap());
            print!("  bwd-both {bb:7.3} ({bbc:.3})  fwd+both {:7.3} ms", f + bb);
            // The training step's order, as PyTorch's `y = conv(x);
            // y.backward(g)` runs it: the backward reads the input the
            // forward has just read.
            let mut parts = Vec::new();
            let (q, qc) = timed(reps, || {
                let t = Instant::now();
                conv2d_forward(algo, &s, &x, &w, None, Activation::Linear, &mut y).unwrap();
                let tf = t.elapsed().as_secs_f64() * 1e3;
                conv::depthwise::backward(&s, &x, &gy, &w, &mut gx, &mut gw).unwrap();
                parts.push((tf, t.elapsed().as_secs_f64() * 1e3 - tf));
            });
            let (pf, pb) = (median(parts.iter().map(|p| p.0).collect()), median(parts.iter().map(|p| p.1).collect()));
            print!("  fwd;both {q:7.3} ({qc:.3}) ms [fwd {pf:.3} + both {pb:.3}]");
        }
        if s.groups == s.c_in {
            let bytes = 4.0 * (s.input_len() + s.output_len()) as f64;
            // The copy figure measured on the buffer size nearest the layer's input.
            let (_, g) =
                bw.iter().min_by(|a, b| (a.0 - bytes / 2e6).abs().total_cmp(&(b.0 - bytes / 2e6).abs())).unwrap();
            let bound = bytes / (g * 1e9) * 1e3;
            print!(
                "  | {:.1} MB moved, bound {bound:.3} ms at {g:.1} GB/s, fwd = {:.2}x bound",
                bytes / 1e6,
                f / bound
            );
        }
        println!();
    }
}
