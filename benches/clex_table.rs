//! Time to build a CLEX table for LLaMA-2-7B-64K's shape: d = 128, T = 64, p = 1, tanh,
//! time_dt 0.01 (6,300 RK4 steps), one thread. Prints the median of several runs.
//!
//! `cargo bench --bench clex_table` (release profile). Pass a number to override time_dt,
//! e.g. `cargo bench --bench clex_table -- 0.1`.

use std::hint::black_box;
use std::time::Instant;

use clex::clex::{ClexAct, ClexParams, ClexTable};

/// Deterministic weights in the reference init's range: U ~ kaiming-uniform(a=√5) bound
/// 1/√(d/2), D ~ U(−0.002, 0.002) as in the vector fixtures.
fn weights(d2: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let bound = 1.0 / (d2 as f64).sqrt();
    let up = (0..d2 * m).map(|_| (uniform() * bound) as f32).collect();
    let down = (0..m * d2).map(|_| (uniform() * 0.002) as f32).collect();
    (up, down)
}

fn main() {
    let time_dt = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f32>().ok())
        .unwrap_or(0.01);
    let params = ClexParams {
        head_dim: 128,
        max_factor: 64,
        param_factor: 1,
        act: ClexAct::Tanh,
        time_dt,
        ntk_base: 10000.0,
        orig_ctx: 4096,
        log_scale: false,
    };
    let d2 = params.head_dim / 2;
    let m = params.param_factor as usize * params.head_dim;
    let inv_freq: Vec<f32> = (0..d2)
        .map(|j| 10000f64.powf(-2.0 * j as f64 / params.head_dim as f64) as f32)
        .collect();
    let (up, down) = weights(d2, m);

    let solve = || ClexTable::solve(&params, &inv_freq, &up, &down).expect("solve");
    black_box(solve()); // warm-up
    let mut ms: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            black_box(solve());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "clex_table d=128 T=64 p=1 time_dt={time_dt} ({} RK4 steps): median {:.2} ms \
         (min {:.2}, max {:.2}, {} runs)",
        (params.max_factor - 1) * params.steps_per_unit(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}
