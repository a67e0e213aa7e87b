//! End-to-end tests of the `waymark` binary against real databases.

mod common;

mod bad_input;
mod concurrency;
mod failures;
mod lifecycle;
mod real_histories;
mod settings;
