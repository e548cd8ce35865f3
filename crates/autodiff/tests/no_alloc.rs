//! After warm-up, a training step of a fixed small convnet (conv-relu,
//! max-pool, conv-relu, flatten, dense, softmax cross-entropy, RMSprop
//! update) makes no heap allocation of its own: a counting global allocator
//! proves it.
//!
//! The count covers every thread the step runs on: both workers of the
//! rayon pool it is installed in (the kernels' parallel tasks included), not
//! the test harness's threads. Set `NO_ALLOC_BACKTRACE=1` to print the
//! layout, thread and backtrace of each counted allocation.
//! Two tests: the strict one (zero allocations in total, now that the
//! kernels' GEMM packs into thread-local growth-only scratch instead of
//! `matrixmultiply`'s per-call buffer), and one that compares a tape step with
//! the same kernel calls made directly on preallocated buffers, so that if a
//! kernel ever allocates again the tape, pool, parameters and optimizer are
//! still shown to add exactly zero.

use convnet_autodiff::{Activation, Conv2dSpec, ConvAlgo, Gradients, Padding, ParamId, Params, PoolSpec, Tape};
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
/// Set from `NO_ALLOC_BACKTRACE` before counting: every counted allocation
/// then prints its size, thread and backtrace (counting is paused meanwhile).
static TRACE: AtomicBool = AtomicBool::new(false);
/// The counter sees every thread, so the tests of this file must not overlap:
/// each holds this lock for its whole run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` on a worker of a 2-thread rayon pool, as a training loop should:
/// a parallel call made from a thread outside the pool is injected through
/// rayon's global queue, which allocates a 1520-byte block every 63
/// injections (crossbeam's `Injector`), so a step driven from outside the
/// pool allocates now and then however allocation-free its kernels are.
///
/// Waits until every worker of the pool has started first. `build` only
/// spawns the threads; each allocates its own job queue (another 1520-byte
/// `Injector` block) when it first runs. On a loaded machine a worker can
/// stay unscheduled through all warm-up steps (the other one does all the
/// work meanwhile) and start during the counted step: that was this test's
/// intermittent "step 9 made 1 heap allocations".
fn on_pool_worker<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    const THREADS: usize = 2;
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let on_start = std::sync::Arc::clone(&started);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        // Runs on each worker after its queues exist and before it looks for work.
        .start_handler(move |_| {
            STEP_THREAD.with(|t| t.set(true));
            on_start.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .expect("a 2-thread pool");
    while started.load(Ordering::SeqCst) < THREADS {
        std::thread::yield_now();
    }
    pool.install(f)
}

thread_local! {
    /// Set on the workers of the pool the steps run on: the counter counts
    /// their allocations only. The test harness's own threads (with
    /// `--test-threads` > 1 it starts and finishes the other test's thread,
    /// fills its result map and channels, while this one counts) are not
    /// the step's business.
    static STEP_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set while this thread prints a trace, whose own allocations are not counted.
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts one allocation if counting is on; with `NO_ALLOC_BACKTRACE` set,
/// prints its layout, thread and backtrace (shown with a failing test's output).
fn counted(layout: Layout) {
    if !COUNTING.load(Ordering::Relaxed)
        || !STEP_THREAD.try_with(|t| t.get()).unwrap_or(false)
        || IN_TRACE.try_with(|t| t.get()).unwrap_or(true)
    {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if TRACE.load(Ordering::Relaxed) {
        IN_TRACE.with(|t| t.set(true));
        let bt = std::backtrace::Backtrace::force_capture();
        let name = std::thread::current().name().map(str::to_owned);
        eprintln!(
            "counted allocation {layout:?} on thread {name:?} (rayon index {:?}):\n{bt}",
            rayon::current_thread_index()
        );
        IN_TRACE.with(|t| t.set(false));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// (`counted`) never allocates while counting is on, except when tracing,
// which marks its thread so that the nested allocations are not counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        counted(layout);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(layout);
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
    TRACE.store(std::env::var_os("NO_ALLOC_BACKTRACE").is_some(), Ordering::SeqCst);
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

/// [`step`] as `fit` runs a fine-tuning step: the first conv frozen
/// (recorded with `constant`), the other weights shared with the tape
/// (`param_shared`), and the tape reset before the update so that the
/// update writes the weights in place.
fn fine_tuning_step(tape: &mut Tape, m: &mut Model, opt: &mut RMSprop, x: &Tensor, onehot: &Tensor) -> f32 {
    tape.reset();
    m.params.zero_grad();
    let p = &m.params;
    let xv = tape.input(x.view()).unwrap();
    let (k1, b1) = (tape.constant(p, m.ids[0]).unwrap(), tape.constant(p, m.ids[1]).unwrap());
    let h = tape.conv2d(xv, k1, Some(b1), Conv2dSpec::new().relu()).unwrap();
    let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
    let (k2, b2) = (tape.param_shared(p, m.ids[2]).unwrap(), tape.param_shared(p, m.ids[3]).unwrap());
    let h = tape.conv2d(h, k2, Some(b2), Conv2dSpec::new().relu()).unwrap();
    let h = tape.flatten(h).unwrap();
    let (dk, db) = (tape.param_shared(p, m.ids[4]).unwrap(), tape.param_shared(p, m.ids[5]).unwrap());
    let logits = tape.dense(h, dk, Some(db), Activation::Linear).unwrap();
    let t = tape.input(onehot.view()).unwrap();
    let loss = tape.softmax_cross_entropy(logits, t).unwrap();
    let value = tape.scalar(loss).unwrap();
    tape.backward(loss, &mut m.params).unwrap();
    tape.reset();
    opt.begin_step().unwrap();
    m.params.update_with(|i, w, g| opt.update(i, w, g)).unwrap();
    value
}

/// Frozen weights recorded as shared constants and trainable ones shared
/// with the tape: no copy, no gradient buffer for the frozen ones, and still
/// zero allocations after warm-up (no copy-on-write in the update).
#[test]
fn fine_tuning_step_with_shared_weights_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(fine_tuning_step_with_shared_weights_makes_no_allocation_body)
}

fn fine_tuning_step_with_shared_weights_makes_no_allocation_body() {
    let mut rng = Rng::new(3);
    let mut m = model(&mut rng);
    let (x, onehot) = data(&mut rng);
    let frozen: Vec<u32> =
        [0, 1].iter().flat_map(|&i| m.params.value(m.ids[i]).unwrap().data().to_vec()).map(f32::to_bits).collect();
    let mut tape = Tape::new();
    let mut opt = RMSprop::new(0.001);
    let mut losses = Vec::with_capacity(16);
    for _ in 0..8 {
        losses.push(fine_tuning_step(&mut tape, &mut m, &mut opt, &x, &onehot));
    }
    let (loss, allocs) = count(|| fine_tuning_step(&mut tape, &mut m, &mut opt, &x, &onehot));
    losses.push(loss);
    assert_eq!(allocs, 0, "step 9 made {allocs} heap allocations");
    assert!(losses[8] < losses[0], "{losses:?}");
    // The frozen conv: untouched, and never given a gradient buffer.
    let after: Vec<u32> =
        [0, 1].iter().flat_map(|&i| m.params.value(m.ids[i]).unwrap().data().to_vec()).map(f32::to_bits).collect();
    assert_eq!(after, frozen);
    assert!(!m.params.has_grad(m.ids[0]).unwrap() && !m.params.has_grad(m.ids[1]).unwrap());
    assert!(m.params.has_grad(m.ids[2]).unwrap() && m.params.has_grad(m.ids[5]).unwrap());
    // No weight was copied into the tape's pool: every pooled buffer is an
    // activation, gradient or mask, none the size of a weight tensor.
    let copying = {
        let mut t = Tape::new();
        let mut m2 = model(&mut Rng::new(3));
        let mut o = RMSprop::new(0.001);
        step(&mut t, &mut m2, &mut o, &x, &onehot);
        t.reset();
        t.pooled_bytes()
    };
    let weights: usize = m.ids.iter().map(|&id| 4 * m.params.value(id).unwrap().len()).sum();
    tape.reset();
    assert!(tape.pooled_bytes() + weights <= copying, "{} + {weights} > {copying}", tape.pooled_bytes());
}

/// Profiling keeps the step allocation-free after warm-up: the profile's
/// entries are created in the first step and only added to afterwards.
#[test]
fn profiled_training_step_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(|| {
        let mut rng = Rng::new(3);
        let mut m = model(&mut rng);
        let (x, onehot) = data(&mut rng);
        let mut tape = Tape::new();
        tape.set_profiling(true);
        let mut opt = RMSprop::new(0.001);
        for _ in 0..8 {
            step(&mut tape, &mut m, &mut opt, &x, &onehot);
        }
        let entries = tape.profile().unwrap().entries().len();
        let (_, allocs) = count(|| step(&mut tape, &mut m, &mut opt, &x, &onehot));
        assert_eq!(allocs, 0, "profiled step 9 made {allocs} heap allocations");
        let p = tape.profile().unwrap();
        assert_eq!(p.entries().len(), entries);
        // No scopes are set here, so the two convolutions share their rows.
        assert!(p.entries().iter().all(|e| e.calls % 9 == 0), "{p:?}");
    })
}

/// [`step`] with the first conv and its pool recorded as one node
/// (`conv2d_max_pool2d`, as `fit` records the chapter's first layer).
fn fused_step(tape: &mut Tape, m: &mut Model, opt: &mut RMSprop, x: &Tensor, onehot: &Tensor) -> f32 {
    tape.reset();
    m.params.zero_grad();
    let p = &m.params;
    let xv = tape.input(x.view()).unwrap();
    let (k1, b1) = (tape.param(p, m.ids[0]).unwrap(), tape.param(p, m.ids[1]).unwrap());
    let h = tape.conv2d_max_pool2d(xv, k1, Some(b1), Conv2dSpec::new().relu(), PoolSpec::new(2, 2)).unwrap();
    let h = h.expect("the first layer fuses");
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

/// The fused first-layer node keeps the step allocation-free, and trains
/// exactly as the two ops do (the same losses, bit for bit).
#[test]
fn fused_first_layer_step_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(|| {
        let mut rng = Rng::new(3);
        let (mut m, mut m2) = (model(&mut rng), model(&mut Rng::new(3)));
        let (x, onehot) = data(&mut rng);
        let (mut tape, mut tape2) = (Tape::new(), Tape::new());
        let (mut opt, mut opt2) = (RMSprop::new(0.001), RMSprop::new(0.001));
        for _ in 0..8 {
            let a = fused_step(&mut tape, &mut m, &mut opt, &x, &onehot);
            let b = step(&mut tape2, &mut m2, &mut opt2, &x, &onehot);
            assert_eq!(a.to_bits(), b.to_bits(), "fused {a} vs two ops {b}");
        }
        let (_, allocs) = count(|| fused_step(&mut tape, &mut m, &mut opt, &x, &onehot));
        assert_eq!(allocs, 0, "fused step 9 made {allocs} heap allocations");
    })
}

/// Bit `i` set: worker `i` has run a shard (the warm-up lasts until both have).
static SHARD_WORKERS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// One step split by examples, as `fit` runs it with `shards: 2`: each half
/// of the batch forward and backward on its own tape into its own
/// [`Gradients`] set, the halves on the pool's two workers at once
/// (`rayon::join`), then the sum weighted 0.5 / 0.5 and the update.
fn sharded_step(
    tapes: &mut [Tape; 2],
    grads: &mut [Gradients; 2],
    m: &mut Model,
    opt: &mut RMSprop,
    x: &Tensor,
    onehot: &Tensor,
) -> f32 {
    let half = BATCH / 2;
    let (item, classes) = (14 * 14, 10);
    let shard = |tape: &mut Tape, g: &mut Gradients, k: usize| -> f32 {
        SHARD_WORKERS.fetch_or(1 << rayon::current_thread_index().unwrap_or(0).min(7), Ordering::SeqCst);
        tape.reset();
        g.clear();
        let p = &m.params;
        let xs = &x.data()[k * half * item..(k + 1) * half * item];
        let xv = tape.input(convnet_tensor::TensorView::new(Shape::nhwc(half, 14, 14, 1), xs).unwrap()).unwrap();
        let (k1, b1) = (tape.param_shared(p, m.ids[0]).unwrap(), tape.param_shared(p, m.ids[1]).unwrap());
        let h = tape.conv2d(xv, k1, Some(b1), Conv2dSpec::new().relu()).unwrap();
        let h = tape.max_pool2d(h, PoolSpec::new(2, 2)).unwrap();
        let (k2, b2) = (tape.param_shared(p, m.ids[2]).unwrap(), tape.param_shared(p, m.ids[3]).unwrap());
        let h = tape.conv2d(h, k2, Some(b2), Conv2dSpec::new().relu()).unwrap();
        let h = tape.flatten(h).unwrap();
        let (dk, db) = (tape.param_shared(p, m.ids[4]).unwrap(), tape.param_shared(p, m.ids[5]).unwrap());
        let logits = tape.dense(h, dk, Some(db), Activation::Linear).unwrap();
        let ts = &onehot.data()[k * half * classes..(k + 1) * half * classes];
        let t = tape.input(convnet_tensor::TensorView::new(Shape::matrix(half, classes), ts).unwrap()).unwrap();
        let loss = tape.softmax_cross_entropy(logits, t).unwrap();
        let value = tape.scalar(loss).unwrap();
        tape.backward_into(loss, g).unwrap();
        tape.reset(); // releases the shared weights before the update
        value
    };
    let ([t0, t1], [g0, g1]) = (tapes, &mut *grads);
    let (l0, l1) = rayon::join(|| shard(t0, g0, 0), || shard(t1, g1, 1));
    m.params.set_grads_to_sum(&grads[..], &[0.5, 0.5]).unwrap();
    opt.begin_step().unwrap();
    m.params.update_with(|i, w, g| opt.update(i, w, g)).unwrap();
    (l0 + l1) * 0.5
}

/// The split step: zero allocations after warm-up, with both shards' tapes,
/// gradient sets, the weighted sum and the update.
#[test]
fn sharded_training_step_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(|| {
        let mut rng = Rng::new(3);
        let mut m = model(&mut rng);
        for &id in &m.ids {
            m.params.ensure_grad(id).unwrap();
        }
        let (x, onehot) = data(&mut rng);
        let mut tapes = [Tape::new(), Tape::new()];
        let mut grads = [m.params.gradients(), m.params.gradients()];
        let mut opt = RMSprop::new(0.001);
        let mut losses = Vec::with_capacity(16);
        // Warm-up: `join` runs the second shard on the calling worker when
        // the other does not steal it (on a loaded machine it may not be
        // scheduled for several steps), and a worker's kernel scratch grows
        // the first time it runs a shard: so until both workers have run one.
        SHARD_WORKERS.store(0, Ordering::SeqCst);
        let mut warm = 0;
        while warm < 8 || (SHARD_WORKERS.load(Ordering::SeqCst) != 0b11 && warm < 10_000) {
            let loss = sharded_step(&mut tapes, &mut grads, &mut m, &mut opt, &x, &onehot);
            if warm < 8 {
                losses.push(loss);
            }
            warm += 1;
        }
        let (loss, allocs) = count(|| sharded_step(&mut tapes, &mut grads, &mut m, &mut opt, &x, &onehot));
        losses.push(loss);
        assert_eq!(allocs, 0, "the sharded step made {allocs} heap allocations");
        assert!(losses[8] < losses[0], "{losses:?}");
    })
}

/// A depthwise-separable step: 14x14x16 -> depthwise 3x3 `same` (16 groups)
/// -> pointwise 1x1 to 32, relu -> flatten -> dense 10 -> softmax CE,
/// backward, RMSprop. The depthwise kernels (gather, both gradients,
/// filter partials) and direct's pointwise paths (matrix-product forward,
/// backward-data and backward-filter) run on the pool's workers.
#[test]
fn separable_training_step_makes_no_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    on_pool_worker(|| {
        let mut rng = Rng::new(5);
        let mut params = Params::new();
        let mut add = |name: &str, t: Tensor| params.add(name, t).unwrap();
        let ids = [
            add("dw/k", Tensor::glorot_uniform(Shape::new(&[3, 3, 1, 16]).unwrap(), &mut rng).unwrap()),
            add("pw/k", Tensor::glorot_uniform(Shape::new(&[1, 1, 16, 32]).unwrap(), &mut rng).unwrap()),
            add("pw/b", Tensor::zeros(Shape::vector(32))),
            add("d/k", Tensor::glorot_uniform(Shape::matrix(14 * 14 * 32, 10), &mut rng).unwrap()),
            add("d/b", Tensor::zeros(Shape::vector(10))),
        ];
        let x = Tensor::uniform(Shape::nhwc(BATCH, 14, 14, 16), -1.0, 1.0, &mut rng).unwrap();
        let mut onehot = Tensor::zeros(Shape::matrix(BATCH, 10));
        for row in 0..BATCH {
            onehot.data_mut()[row * 10 + rng.below(10)] = 1.0;
        }
        let mut tape = Tape::new();
        let mut opt = RMSprop::new(0.001);
        let mut step = |tape: &mut Tape, params: &mut Params| {
            tape.reset();
            params.zero_grad();
            let xv = tape.input(x.view()).unwrap();
            let k = tape.param(params, ids[0]).unwrap();
            let h = tape.conv2d(xv, k, None, Conv2dSpec::new().padding(Padding::Same).groups(16)).unwrap();
            let (k, b) = (tape.param(params, ids[1]).unwrap(), tape.param(params, ids[2]).unwrap());
            let h = tape.conv2d(h, k, Some(b), Conv2dSpec::new().relu()).unwrap();
            let h = tape.flatten(h).unwrap();
            let (k, b) = (tape.param(params, ids[3]).unwrap(), tape.param(params, ids[4]).unwrap());
            let logits = tape.dense(h, k, Some(b), Activation::Linear).unwrap();
            let t = tape.input(onehot.view()).unwrap();
            let loss = tape.softmax_cross_entropy(logits, t).unwrap();
            let value = tape.scalar(loss).unwrap();
            tape.backward(loss, params).unwrap();
            opt.begin_step().unwrap();
            params.update_with(|i, w, g| opt.update(i, w, g)).unwrap();
            value
        };
        let mut losses = Vec::with_capacity(16);
        for _ in 0..8 {
            losses.push(step(&mut tape, &mut params));
        }
        let (loss, allocs) = count(|| step(&mut tape, &mut params));
        losses.push(loss);
        assert_eq!(allocs, 0, "the separable step made {allocs} heap allocations");
        assert!(losses[8] < losses[0], "{losses:?}");
    })
}
