//! Scenario tests: the seeds' consumer loops through hand-chosen crash windows, determinism of
//! seeded runs, and the production wiring of the same consumer code on rdkafka.

#[path = "../../fixtures/mod.rs"]
mod fixtures;

mod crash_windows;
mod determinism;
mod liveness;
mod production_wiring;
