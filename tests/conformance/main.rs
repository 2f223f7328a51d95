//! Conformance of the simulated cluster to Kafka's (and librdkafka's) semantics. Each test's
//! name states the Kafka behaviour it checks; each would fail if the simulator got it wrong.

#[path = "../../fixtures/mod.rs"]
mod fixtures;
mod support;

mod broker_restart;
mod groups;
mod offsets;
mod producer;
mod runtime;
mod store;
mod transactions;
