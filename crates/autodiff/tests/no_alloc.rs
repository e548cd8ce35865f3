//! After warm-up, a training step of a fixed small convnet (conv-relu,
//! max-pool, conv-relu, flatten, dense, softmax cross-entropy, RMSprop
//! update) makes no heap allocation of its own: a counting global allocator
//! proves it.
//!
//! The count covers every thread (the kernels' rayon workers included).
//! Two tests: the strict one (zero allocations in total, now that the
//! kernels' GEMM packs into thread-local growth-only scratch instead of
//! `matrixmultiply`'s per-call buffer), and one that compares a tape step with
//! the same kernel calls made directly on preallocated buffers, so that if a
//! kernel ever allocates again the tape, pool, parameters and optimizer are
//! still shown to add exactly zero.

use convnet_autodiff::{Activation, Conv2dSpec, ConvAlgo, Padding, ParamId, Params, PoolSpec, Tape};
use convnet_kernels::activation::relu_backward_inplace;
use convnet_kernels::conv::{self, ConvShape};
use convnet_kernels::dense::{self, DenseShape};
use convnet_kernels::loss::softmax_cross_entropy;
use convnet_kernels::pool::{self, PoolShape};
use convnet_optim::{Optimizer, RMSprop};
use convnet_tensor::{Rng, Shape, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The counter sees every thread, so the tests of this file must not overlap:
/// each holds this lock for its whole run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` on a worker of a 2-thread rayon pool, as a training loop should:
/// a parallel call made from a thread outside the pool is injected through
/// rayon's global queue, which allocates a 1520-byte block every 63
/// injections (crossbeam's `Injector`), so a step driven from outside the
/// pool allocates now and then however allocation-free its kernels are.
fn on_pool_worker<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a 2-thread pool").install(f)
}

// SAFETY: forwards every call to the system allocator unchanged; the counter
// is a relaxed atomic and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Model {
    params: Params,
    ids: [ParamId; 6],
}

fn model(rng: &mut Rng) -> Model {
    let mut params = Params::new();
    let mut add = |name: &str, t: Tensor| params.add(name, t).unwrap();
    let ids = [
        add("c1/k", Tensor::glorot_uniform(Shape::new(&[3, 3, 1, 8]).unwrap(), rng).unwrap()),
        add("c1/b", Tensor::zeros(Shape::vector(8))),
        add("c2/k", Tensor::glorot_uniform(Shape::new(&[3, 3, 8, 16]).unwrap(), rng).unwrap()),
        add("c2/b", Tensor::zeros(Shape::vector(16))),
        add("d/k", Tensor::glorot_uniform(Shape::matrix(4 * 4 * 16, 10), rng).unwrap()),
        add("d/b", Tensor::zeros(Shape::vector(10))),
    ];
    Model { params, ids }
}

/// One training step: 14x14x1 -> conv 3x3x8 relu (12x12) -> max-pool 2 (6x6)
/// -> conv 3x3x16 relu (4x4) -> flatten (256) -> dense 10 -> softmax CE,
/// backward, RMSprop.
fn step(tape: &mut Tape, m: &mut Model, opt: &mut RMSprop, x: &Tensor, onehot: &Tensor) -> f32 {
    tape.reset();
    m.params.zero_grad();
    let p = &m.params;
    let xv = tape.input(x.view()).unwrap();
    let (k1, b1) = (tape.param(p, m.ids[0]).unwrap(), tape.param(p, m.ids[1]).unwrap());
    let h = tape.conv2d(xv, k1, Some(b1), Conv2dSpec::new().relu()).unwrap();
    let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
    let (k2, b2) = (tape.param(p, m.ids[2]).unwrap(), tape.param(p, m.ids[3]).unwrap());
    let h = tape.conv2d(h, k2, Some(b2), Conv2dSpec::new().relu()).unwrap();
    let h = tape.flatten(h).unwrap();
    let (dk, db) = (tape.param(p, m.ids[4]).unwrap(), tape.param(p, m.ids[5]).unwrap());
    let logits = tape.dense(h, dk, Some(db), Activation::Linear).unwrap();
    let t = tape.input(onehot.view()).unwrap();
    let loss = tape.softmax_cross_entropy(logits, t).unwrap();
    let value = tape.scalar(loss).unwrap();
    tape.backward(loss, &mut m.params).unwrap();
    opt.begin_step().unwrap();
    m.params.update_with(|i, w, g| opt.update(i, w, g)).unwrap();
    value
}

const BATCH: usize = 16;

fn data(rng: &mut Rng) -> (Tensor, Tensor) {
    let x = Tensor::uniform(Shape::nhwc(BATCH, 14, 14, 1), 0.0, 1.0, rng).unwrap();
    let mut onehot = Tensor::zeros(Shape::matrix(BATCH, 10));
    for row in 0..BATCH {
        onehot.data_mut()[row * 10 + rng.below(10)] = 1.0;
    }
    (x, onehot)
}

fn count<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (out, ALLOCATIONS.load(Ordering::SeqCst))
}

/// Every buffer the kernels of one step need, allocated once.
struct Raw {
    s1: ConvShape,
    p1: PoolShape,
    s2: ConvShape,
    d: DenseShape,
    y1: Vec<f32>,
    pooled: Vec<f32>,
    y2: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    dw_dense: Vec<f32>,
    dy2: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
    dpooled: Vec<f32>,
    dy1: Vec<f32>,
    dw1: Vec<f32>,
    db1: Vec<f32>,
    argmax: Vec<u32>,
}

impl Raw {
    fn new() -> Raw {
        let s1 = ConvShape::new(BATCH, 14, 14, 1, 8, 3, 3).unwrap();
        let p1 = PoolShape::new(BATCH, 12, 12, 8, (2, 2), (2, 2), Padding::Valid).unwrap();
        let s2 = ConvShape::new(BATCH, 6, 6, 8, 16, 3, 3).unwrap();
        let d = DenseShape { batch: BATCH, inputs: 256, outputs: 10 };
        Raw {
            s1,
            p1,
            s2,
            d,
            y1: vec![0.0; s1.output_len()],
            pooled: vec![0.0; p1.output_len()],
            y2: vec![0.0; s2.output_len()],
            logits: vec![0.0; BATCH * 10],
            dlogits: vec![0.0; BATCH * 10],
            dw_dense: vec![0.0; 256 * 10],
            dy2: vec![0.0; s2.output_len()],
            dw2: vec![0.0; s2.filter_len()],
            db2: vec![0.0; 16],
            dpooled: vec![0.0; s2.input_len()],
            dy1: vec![0.0; s1.output_len()],
            dw1: vec![0.0; s1.filter_len()],
            db1: vec![0.0; 8],
            argmax: vec![0; p1.output_len()],
        }
    }

    /// The kernel calls of one tape step, in the same order, on the same shapes.
    fn step(&mut self, m: &Model, x: &Tensor, onehot: &Tensor) {
        let p = |i: usize| m.params.value(m.ids[i]).unwrap().data();
        let (a, relu) = (ConvAlgo::Auto, Activation::Relu);
        conv::conv2d_forward(a, &self.s1, x.data(), p(0), Some(p(1)), relu, &mut self.y1).unwrap();
        pool::max_pool2d_forward(&self.p1, &self.y1, &mut self.pooled, &mut self.argmax).unwrap();
        conv::conv2d_forward(a, &self.s2, &self.pooled, p(2), Some(p(3)), relu, &mut self.y2).unwrap();
        dense::dense_forward(&self.d, &self.y2, p(4), Some(p(5)), Activation::Linear, &mut self.logits).unwrap();
        softmax_cross_entropy(10, &self.logits, onehot.data(), &mut self.dlogits).unwrap();
        dense::dense_backward_weights(&self.d, &self.y2, &self.dlogits, &mut self.dw_dense, None).unwrap();
        dense::dense_backward_data(&self.d, &self.dlogits, p(4), &mut self.dy2).unwrap();
        relu_backward_inplace(&self.y2, &mut self.dy2).unwrap();
        conv::conv2d_backward_bias(&self.s2, &self.dy2, &mut self.db2).unwrap();
        conv::conv2d_backward_filter(a, &self.s2, &self.pooled, &self.dy2, &mut self.dw2).unwrap();
        conv::conv2d_backward_data(a, &self.s2, &self.dy2, p(2), &mut self.dpooled).unwrap();
        pool::max_pool2d_backward(&self.p1, &self.dpooled, &self.argmax, &mut self.dy1).unwrap();
        relu_backward_inplace(&self.y1, &mut self.dy1).unwrap();
        conv::conv2d_backward_bias(&self.s1, &self.dy1, &mut self.db1).unwrap();
        conv::conv2d_backward_filter(a, &self.s1, x.data(), &self.dy1, &mut self.dw1).unwrap();
    }
}

/// The tape, pool, parameters and optimizer add no allocation to what the
/// kernels themselves make.
#[test]
fn training_step_allocates_nothing_beyond_the_kernels() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(training_step_allocates_nothing_beyond_the_kernels_body)
}

fn training_step_allocates_nothing_beyond_the_kernels_body() {
    let mut rng = Rng::new(3);
    let mut m = model(&mut rng);
    let (x, onehot) = data(&mut rng);
    let mut tape = Tape::new();
    let mut opt = RMSprop::new(0.001);
    let mut raw = Raw::new();
    let mut losses = Vec::with_capacity(16);
    // Warm-up: the pool fills on step 1; the kernels' per-thread scratch
    // grows on whichever rayon worker first runs the largest chunk, so give
    // every worker a few steps to reach its final size.
    for _ in 0..8 {
        losses.push(step(&mut tape, &mut m, &mut opt, &x, &onehot));
        raw.step(&m, &x, &onehot);
    }
    let (loss, tape_allocs) = count(|| step(&mut tape, &mut m, &mut opt, &x, &onehot));
    let ((), kernel_allocs) = count(|| raw.step(&m, &x, &onehot));
    losses.push(loss);
    eprintln!("step 9: {tape_allocs} allocations through the tape, {kernel_allocs} by the same kernel calls alone");
    assert_eq!(
        tape_allocs, kernel_allocs,
        "the tape step made {tape_allocs} allocations, its kernels alone {kernel_allocs}"
    );
    // The step really trains (the same batch nine times: the loss falls).
    assert!(losses[8] < losses[0], "{losses:?}");
}

/// Zero allocations in total after warm-up, kernels included.
#[test]
fn steady_state_training_step_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(steady_state_training_step_makes_no_allocation_body)
}

fn steady_state_training_step_makes_no_allocation_body() {
    let mut rng = Rng::new(3);
    let mut m = model(&mut rng);
    let (x, onehot) = data(&mut rng);
    let mut tape = Tape::new();
    let mut opt = RMSprop::new(0.001);
    for _ in 0..8 {
        step(&mut tape, &mut m, &mut opt, &x, &onehot);
    }
    let (_, allocs) = count(|| step(&mut tape, &mut m, &mut opt, &x, &onehot));
    assert_eq!(allocs, 0, "step 9 made {allocs} heap allocations");
}
