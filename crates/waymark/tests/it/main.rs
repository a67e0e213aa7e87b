//! End-to-end tests of the `waymark` binary against real databases.

mod clusters;
mod common;

mod adopt;
mod backup_estimate;
mod backup_pages;
mod backups;
mod bad_input;
mod component_steps;
mod concurrency;
mod connections;
mod corpus;
mod crash_points;
mod cutover;
mod expand_contract;
mod failures;
mod first_hour;
mod fleet;
mod guide;
mod hostile;
mod json_contract;
mod layouts;
mod lifecycle;
mod lint;
mod lock_waits;
mod ops_direct;
mod plugins;
mod preimages;
mod real_histories;
mod rehearse;
mod saved_plans;
mod schema_upgrade;
mod settings;
mod switchover;
mod trace;
