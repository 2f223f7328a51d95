//! `KafkaConsumer::stream` on rdkafka's own `StreamConsumer` (the production side of a generic
//! consumer): the trait hands out rdkafka's `MessageStream`, which yields the records of a
//! partition in offset order, as `recv` would.

use std::time::Duration;

use effectively_once::KafkaConsumer;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// What a generic consumer reads off `stream()`: the first `n` (offset, payload) pairs.
async fn first<C: KafkaConsumer>(consumer: &C, n: usize) -> Vec<(i64, String)> {
    consumer.subscribe(&["t"]).unwrap();
    consumer
        .stream()
        .take(n)
        .map(|m| {
            let m = m.unwrap();
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            (m.offset(), payload)
        })
        .collect()
        .await
}

#[tokio::test]
async fn the_stream_of_rdkafkas_stream_consumer_yields_the_records_in_offset_order() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t", 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for n in 0..5 {
        producer
            .send(BaseRecord::<(), str>::to("t").payload(&format!("e{n}")))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "g")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(60), first(&consumer, 5))
        .await
        .expect("five records within 60 s");
    let expected: Vec<(i64, String)> = (0..5).map(|n| (n, format!("e{n}"))).collect();
    assert_eq!(read, expected);
}
