//! Compute tensors stay on the 64-byte cache-line grid even after small inputs.
//!
//! ggml's compute allocator aligns each tensor only to its buffer type's alignment (32
//! bytes on the CPU). A one-element input (the output-row id of a prompt batch, a single
//! token's position) allocated before the activations shifted all of them to 32 mod 64,
//! and the AMX Q8_0 kernels, whose 64-byte stores then straddle two cache lines, ran
//! 1.3–1.6× slower (docs/PERFORMANCE.md). `Graph::input` pads such inputs; this checks the
//! layout and that the padded inputs still compute the right values.
use ggml_sys::safe::{Backend, Graph, Sched};
use ggml_sys::{GGML_TYPE_F32, GGML_TYPE_I32};

#[test]
fn activations_after_a_one_element_input_are_cache_line_aligned() {
    let backend = Backend::cpu().expect("CPU backend");
    let mut sched = Sched::new(vec![backend], 64).expect("scheduler");
    let g = Graph::new(64);
    // Allocation order (inputs first, in the order the nodes use them): table, then ids.
    let table = g.input("table", GGML_TYPE_F32, &[256, 8]);
    let ids = g.input("ids", GGML_TYPE_I32, &[1]);
    let row = g.get_rows(table, ids); // [256, 1]: allocated after `ids`
    let out = g.add(row, row);
    g.name(out, "out");
    g.output(out);
    sched.alloc(&g).expect("alloc");

    let vals: Vec<f32> = (0..256 * 8).map(|i| i as f32).collect();
    g.find("table").expect("table").set_f32(&vals);
    g.find("ids").expect("ids").set_i32(&[5]);
    sched.compute(&g).expect("compute");

    for (name, t) in [("get_rows result", row), ("add result", out)] {
        assert_eq!(t.data_addr() % 64, 0, "{name} at {:#x}: not 64-byte aligned", t.data_addr());
    }
    let mut got = vec![0f32; 256];
    g.find("out").expect("out").get_f32(0, &mut got);
    let want: Vec<f32> = (0..256).map(|j| 2.0 * (5 * 256 + j) as f32).collect();
    assert_eq!(got, want);
}
