//! Conformance of the simulated cluster to Kafka's (and librdkafka's) semantics. Each test's
//! name states the Kafka behaviour it checks; each would fail if the simulator got it wrong.

#[path = "../../fixtures/mod.rs"]
mod fixtures;
mod notes;
mod support;

mod auto_commit;
mod base_producer;
mod broker_restart;
mod cancel_safety;
mod clock;
mod config;
mod cooperative;
mod cooperative_cases;
mod delivery_offsets;
mod effects;
mod freeze;
mod groups;
mod idempotence;
mod instances;
mod manual_assign;
mod offsets;
mod partition_queues;
mod partition_queues_cases;
mod partitioners;
mod record_contents;
mod seek_pause;
mod seek_pause_cases;
mod send_failures;
mod static_membership;
mod static_membership_cases;
mod store;
mod sync_poll;
mod time_limit;
mod transactions;
