//! The same consumers and scenarios on real brokers: librdkafka's mock cluster (in-process)
//! and a broker container (`EFFECTIVELY_ONCE_KAFKA_IMAGE`: `ci/test.sh` builds a local Tansu
//! image), compared with the simulator.

#[path = "../../fixtures/mod.rs"]
mod fixtures;
#[path = "../conformance/notes.rs"]
mod notes;

mod aborted_read;
mod base_producer;
mod black_box;
mod cancel_safety;
mod close_during_outage;
mod commit_errors;
mod containers;
mod cooperative;
mod librdkafka_suite;
mod manual_assign;
mod partition_queues;
mod pipelines;
mod providers;
mod restart;
mod seek_pause;
mod self_check;
mod static_membership;
mod stream;
mod support;
mod sync_poll;
mod zoo;
#[path = "../zoo/support.rs"]
mod zoo_support;
