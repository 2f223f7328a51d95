//! Partition queues: one partition's records split off a consumer with
//! [`KafkaConsumer::split_partition_queue`](crate::KafkaConsumer::split_partition_queue), as
//! rdkafka's `StreamPartitionQueue`, so that a program can run one task per partition.
//!
//! [`KafkaPartitionQueue`] is the trait a generic consumer calls `recv` and `stream` through;
//! [`PartitionQueue`] is the kit's queue (of a [`Consumer`](crate::Consumer)), rdkafka's
//! `StreamPartitionQueue` the production one.

pub use crate::client::{ArcPartitionQueue, KafkaPartitionQueue};
pub use crate::run::PartitionQueue;
