//! The simulated cluster as the run's backend.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use tokio::time::Instant;

use super::base_producer::SimBaseProducer;
use super::{Shared, SimConsumer, SimProducer, SimSettings, World};
use crate::client::RebalanceHandler;
use crate::error::Error;
use crate::history::{ClusterSnapshot, Incarnation, Lag, RecordPosition, TopicPartition};
use crate::run::backend::{
    Backend, BaseProducerClient, ConsumerClient, InputWrite, LocalBoxFuture, ProducerClient,
};
use crate::run::core::Run;
use crate::run::store_progress::Progress;

/// The simulated cluster a run drives, on virtual time.
pub(crate) struct SimBackend {
    shared: Arc<Shared>,
}

impl SimBackend {
    /// A cluster with `topics`, serving `run`. Create it on the run's runtime (its clock).
    pub(crate) fn new(run: Arc<Run>, settings: SimSettings, topics: &[(String, i32)]) -> Self {
        SimBackend {
            shared: Arc::new(Shared::new(World::new(run, settings, topics))),
        }
    }
}

impl Backend for SimBackend {
    fn react(&self) {
        self.shared.lock().react();
    }

    fn write_input<'a>(
        &'a self,
        records: Vec<InputWrite>,
    ) -> LocalBoxFuture<'a, Result<Vec<RecordPosition>, Error>> {
        let mut world = self.shared.lock();
        // The batch is written at one instant of virtual time.
        let now = Instant::now();
        let at = (now, world.elapsed().as_millis() as i64);
        let written = records
            .into_iter()
            .map(|r| world.append_input(at, &r.topic, r.partition, r.key, r.payload, r.transaction))
            .collect();
        drop(world);
        Box::pin(std::future::ready(written))
    }

    fn fire_timers(&self) {
        self.shared.lock().fire_timers();
    }

    fn next_timer(&self) -> Option<Instant> {
        self.shared.lock().next_timer()
    }

    fn broker_down(&self) -> Option<Instant> {
        self.shared.lock().broker_down()
    }

    fn idle(&self, running: &[Incarnation], progress: Option<&Progress>) -> bool {
        self.shared.lock().idle(running, progress)
    }

    fn settle(&self, configured: Duration) -> Duration {
        configured
    }

    fn check_interval(&self) -> Option<Duration> {
        None
    }

    fn lag(&self) -> Result<Vec<Lag>, Error> {
        Ok(self.shared.lock().lag())
    }

    /// The simulator's idleness already covers the lag: quiet means done.
    fn quiesced(&self, _progress: Option<&Progress>) -> Result<bool, Error> {
        Ok(true)
    }

    fn end_offsets(&self, topics: &[String]) -> Result<Vec<(TopicPartition, i64)>, Error> {
        let world = self.shared.lock();
        Ok(topics
            .iter()
            .filter_map(|t| world.topics.get(t.as_str()).map(|topic| (t, topic)))
            .flat_map(|(t, topic)| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(p, log)| (TopicPartition::new(t.clone(), p as i32), log.end_offset()))
            })
            .collect())
    }

    fn create_consumer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Box<dyn ConsumerClient>> {
        let consumer = SimConsumer::create(self.shared.clone(), incarnation, config, handler)?;
        Ok(Box::new(consumer))
    }

    fn create_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn ProducerClient>> {
        let producer = SimProducer::create(self.shared.clone(), incarnation, config)?;
        Ok(Box::new(producer))
    }

    fn create_base_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn BaseProducerClient>> {
        let producer = SimBaseProducer::create(self.shared.clone(), incarnation, config)?;
        Ok(Box::new(producer))
    }

    fn snapshot(&self, _topics: &[(String, i32)]) -> Result<ClusterSnapshot, Error> {
        Ok(self.shared.lock().take_snapshot())
    }
}
