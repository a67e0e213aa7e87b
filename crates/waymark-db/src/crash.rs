//! Named points where the test suite's crash matrix stops the process
//! dead (`tests/it/crash_points.rs`): at each change of state that a
//! runner killed at the wrong instant could leave half-done.
//!
//! They are compiled in only with the `crash-points` feature, which the
//! binary turns on, and only in a debug build (`debug_assertions`): the
//! build that `cargo run` and `cargo test` share, so the tests' binary is
//! compiled once. A release build (`cargo build --release`, `cargo
//! install`) has none: each point is an empty function the compiler
//! removes, and `FAILPOINTS` is never read.

/// Aborts the process at `name` when the run was started with
/// `FAILPOINTS=name=return` (or `name=2*off->return`: the third time it is
/// reached). An abort runs no destructor and sends nothing more to the
/// server: the connections drop as they would under `kill -9`.
#[inline(always)]
pub fn crash_point(name: &str) {
    #[cfg(all(feature = "crash-points", debug_assertions))]
    fail::fail_point!(name, |_| {
        eprintln!("waymark: crash point {name} reached; aborting");
        std::process::abort();
    });
    #[cfg(not(all(feature = "crash-points", debug_assertions)))]
    let _ = name;
}

/// Reads which crash points to arm from `FAILPOINTS`; the binary calls it
/// once at start. Does nothing without the `crash-points` feature, or in a
/// release build.
pub fn arm_crash_points() {
    #[cfg(all(feature = "crash-points", debug_assertions))]
    std::mem::forget(fail::FailScenario::setup());
}
