//! Convolution algorithms side by side: every algorithm, forward,
//! backward-data and backward-filter, on the chapter's MNIST layers (batch 64)
//! and VGG16's 3x3 `same` layers (batch 8).
//!
//! Throughput is reported as elements/s where one element is one FLOP of the
//! *direct* convolution (`ConvShape::flops`, `2*N*Ho*Wo*Cout*Cin*Kh*Kw`) for
//! every algorithm, so criterion's "Gelem/s" reads as GFLOP/s and Winograd's
//! saved multiplies show as throughput above the machine's FMA peak.
//!
//! The `peak` group measures that peak for reference: a 2048^3 sgemm
//! (our `gemm::sgemm`, the GEMM im2col runs on) and a register-only AVX-512 FMA
//! loop on every rayon thread.
//!
//! ```text
//! cargo bench -p convnet-benches --bench conv              # everything (9 min at load 6)
//! cargo bench -p convnet-benches --bench conv -- mnist     # a filter
//! cargo bench -p convnet-benches --bench conv -- conv/vgg_8x28x28x256-256/forward --warm-up-time 1 --measurement-time 5
//! ```
//!
//! Each `conv/<layer>/<pass>` group puts every algorithm that runs one layer
//! and pass side by side (ids are the algorithm names; `auto(<algo>)` is the
//! one `Auto` picks), so criterion's report for the group
//! (`target/criterion/conv_<layer>_<pass>/report/index.html`, a violin plot
//! of the algorithms) compares them directly. Sample size 10, warm-up 0.3 s
//! and measurement 1.5 s are the defaults of the group config below; the
//! command-line flags override them.

use convnet_kernels::activation::Activation;
use convnet_kernels::conv::{self, ConvAlgo, ConvPass, ConvShape, Padding};
use convnet_kernels::gemm::{sgemm, MatLayout};
use convnet_tensor::Rng;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

/// `Reference` (f64 loops) is only benched on shapes below this many FLOPs.
const REFERENCE_MAX_FLOPS: usize = 100_000_000;

/// The benchmarked layers: name and shape.
fn layers() -> Vec<(&'static str, ConvShape)> {
    let layer = |n, h, c_in, c_out, padding| {
        ConvShape::nhwc(n, h, h, c_in).filter(3, 3, c_out).padding(padding).build().unwrap()
    };
    let valid = |n, h, c_in, c_out| layer(n, h, c_in, c_out, Padding::Valid);
    let same = |n, h, c_in, c_out| layer(n, h, c_in, c_out, Padding::Same);
    vec![
        ("mnist1_64x28x28x1-32", valid(64, 28, 1, 32)),
        ("mnist2_64x13x13x32-64", valid(64, 13, 32, 64)),
        ("mnist3_64x5x5x64-64", valid(64, 5, 64, 64)),
        ("vgg_8x56x56x64-64", same(8, 56, 64, 64)),
        ("vgg_8x56x56x128-128", same(8, 56, 128, 128)),
        ("vgg_8x28x28x256-256", same(8, 28, 256, 256)),
        ("vgg_8x14x14x512-512", same(8, 14, 512, 512)),
    ]
}

fn uniform(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn conv_layers(c: &mut Criterion) {
    let mut rng = Rng::new(42);
    for (name, s) in layers() {
        let x = uniform(s.input_len(), &mut rng);
        let w = uniform(s.filter_len(), &mut rng);
        let b = uniform(s.c_out, &mut rng);
        let gy = uniform(s.output_len(), &mut rng);
        let (mut y, mut gx, mut gw) = (vec![0.0; s.output_len()], vec![0.0; s.input_len()], vec![0.0; s.filter_len()]);
        for pass in [ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter] {
            let mut group = c.benchmark_group(format!("conv/{name}/{}", pass.name()));
            group.throughput(Throughput::Elements(s.flops() as u64));
            for algo in ConvAlgo::ALL.into_iter().chain([ConvAlgo::Auto]) {
                if algo == ConvAlgo::Reference && s.flops() > REFERENCE_MAX_FLOPS {
                    continue;
                }
                if let Err(e) = conv::supports(algo, &s, pass) {
                    eprintln!("note: skipping {name} {algo} {}: {e}", pass.name());
                    continue;
                }
                let id = match algo {
                    ConvAlgo::Auto => format!("auto({})", conv::select(&s, pass).name()),
                    a => a.name().to_string(),
                };
                match pass {
                    ConvPass::Forward => group.bench_function(id, |bench| {
                        bench.iter(|| {
                            conv::conv2d_forward(algo, &s, &x, &w, Some(&b), Activation::Relu, &mut y).unwrap();
                            black_box(&y);
                        })
                    }),
                    ConvPass::BackwardData => group.bench_function(id, |bench| {
                        bench.iter(|| {
                            conv::conv2d_backward_data(algo, &s, &gy, &w, &mut gx).unwrap();
                            black_box(&gx);
                        })
                    }),
                    ConvPass::BackwardFilter => group.bench_function(id, |bench| {
                        bench.iter(|| {
                            conv::conv2d_backward_filter(algo, &s, &x, &gy, &mut gw).unwrap();
                            black_box(&gw);
                        })
                    }),
                };
            }
            group.finish();
        }
    }
}

/// The GEMM of a layer's im2col forward, `[n*ho*wo, 9*c_in] x [9*c_in, c_out]`,
/// so im2col's throughput can be compared with the bare sgemm it runs on.
fn im2col_equivalent_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_equivalent");
    let mut rng = Rng::new(3);
    for (name, s) in layers() {
        let (m, k, n) = (s.n * s.out_h() * s.out_w(), s.kh * s.kw * s.c_in, s.c_out);
        let a = uniform(m * k, &mut rng);
        let b = uniform(k * n, &mut rng);
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(BenchmarkId::new("sgemm", format!("{name}_{m}x{k}x{n}")), |bench| {
            bench.iter(|| {
                sgemm(1.0, &a, MatLayout::dense(m, k), false, &b, MatLayout::dense(k, n), false, 0.0, &mut out)
                    .unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// Iterations of the FMA loop per call.
const FMA_ITERS: u64 = 1 << 22;
/// Independent accumulators: enough to cover the FMA latency on both pipes.
const FMA_CHAINS: u64 = 12;

/// `FMA_ITERS * FMA_CHAINS` 16-lane fused multiply-adds from registers only
/// (12 independent accumulators cover the FMA latency on both pipes). Written
/// in `asm!` because the AVX-512 intrinsics need a newer Rust than the
/// workspace's MSRV; the operands are zero, so no denormal slows it down.
///
/// # Safety
/// The CPU must support AVX-512F (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) {
    // SAFETY: the asm touches only the zmm registers it declares clobbered and
    // its loop counter; the caller guarantees AVX-512F.
    unsafe {
        std::arch::asm!(
            "vpxord zmm0, zmm0, zmm0",
            "vmovaps zmm1, zmm0", "vmovaps zmm2, zmm0", "vmovaps zmm3, zmm0", "vmovaps zmm4, zmm0",
            "vmovaps zmm5, zmm0", "vmovaps zmm6, zmm0", "vmovaps zmm7, zmm0", "vmovaps zmm8, zmm0",
            "vmovaps zmm9, zmm0", "vmovaps zmm10, zmm0", "vmovaps zmm11, zmm0", "vmovaps zmm12, zmm0",
            "vmovaps zmm13, zmm0",
            "2:",
            "vfmadd231ps zmm0, zmm12, zmm13", "vfmadd231ps zmm1, zmm12, zmm13",
            "vfmadd231ps zmm2, zmm12, zmm13", "vfmadd231ps zmm3, zmm12, zmm13",
            "vfmadd231ps zmm4, zmm12, zmm13", "vfmadd231ps zmm5, zmm12, zmm13",
            "vfmadd231ps zmm6, zmm12, zmm13", "vfmadd231ps zmm7, zmm12, zmm13",
            "vfmadd231ps zmm8, zmm12, zmm13", "vfmadd231ps zmm9, zmm12, zmm13",
            "vfmadd231ps zmm10, zmm12, zmm13", "vfmadd231ps zmm11, zmm12, zmm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
            out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _,
            options(nomem, nostack),
        );
    }
}

fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("peak");
    let n = 2048;
    let mut rng = Rng::new(9);
    let a = uniform(n * n, &mut rng);
    let b = uniform(n * n, &mut rng);
    let mut out = vec![0.0; n * n];
    group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    group.bench_function("sgemm_2048", |bench| {
        bench.iter(|| {
            sgemm(1.0, &a, MatLayout::dense(n, n), false, &b, MatLayout::dense(n, n), false, 0.0, &mut out).unwrap();
            black_box(&out);
        })
    });
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads() as u64;
        group.throughput(Throughput::Elements(threads * FMA_ITERS * FMA_CHAINS * 16 * 2));
        group.bench_function(format!("avx512_fma_{threads}_threads"), |bench| {
            bench.iter(|| {
                (0..threads).into_par_iter().for_each(|_| {
                    // SAFETY: AVX-512F was detected just above.
                    unsafe { fma_loop_avx512(black_box(FMA_ITERS)) }
                })
            })
        });
    } else {
        eprintln!("note: no AVX-512F, skipping the FMA peak loop");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Defaults only: criterion applies the command line after this config,
    // so `-- --warm-up-time 1 --measurement-time 5 --sample-size 20` win.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    targets = peak, conv_layers, im2col_equivalent_gemm
}
criterion_main!(benches);
