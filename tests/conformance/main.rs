//! Conformance of the simulated cluster to Kafka's (and librdkafka's) semantics. Each test's
//! name states the Kafka behaviour it checks; each would fail if the simulator got it wrong.

mod support;

mod groups;
mod offsets;
mod producer;
mod runtime;
mod store;
mod transactions;
