//! Named points where the test suite's crash matrix stops the process
//! dead (`tests/it/crash_points.rs`): at each change of state that a
//! runner killed at the wrong instant could leave half-done.
//!
//! They are compiled in only with the `crash-points` feature, which only
//! the `waymark` crate's tests turn on (as a dev-dependency feature, so a
//! `cargo build` or a release never has it). Without it each point is an
//! empty function the compiler removes.

/// Aborts the process at `name` when the run was started with
/// `FAILPOINTS=name=return` (or `name=2*off->return`: the third time it is
/// reached). An abort runs no destructor and sends nothing more to the
/// server: the connections drop as they would under `kill -9`.
#[inline(always)]
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    fail::fail_point!(name, |_| {
        eprintln!("waymark: crash point {name} reached; aborting");
        std::process::abort();
    });
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

/// Reads which crash points to arm from `FAILPOINTS`; the binary calls it
/// once at start. Does nothing without the `crash-points` feature.
pub fn arm_crash_points() {
    #[cfg(feature = "crash-points")]
    std::mem::forget(fail::FailScenario::setup());
}
