//! Side-by-side benchmarks of multiproc against Python's multiprocessing.
fn main() {}
