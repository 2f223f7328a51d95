//! What librdkafka does when a consumer is closed while its broker is down, measured on the
//! mock cluster: its LeaveGroup never gets through, so its member stays in the group until
//! its session runs out, although the broker is back long before. (Seen too: the close
//! returned after about 6 s and its final auto-commit was not applied; not asserted, as it
//! depends on librdkafka's reconnect timing.) The simulator does the same:
//! `tests/conformance/broker_restart.rs`.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

fn member(bootstrap: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "g")
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    consumer
}

fn assigned(consumer: &BaseConsumer, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            return Some(started.elapsed());
        }
    }
    None
}

#[test]
fn a_consumer_closed_during_an_outage_stays_in_the_group_until_its_session_runs_out() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("t", 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for n in 0..3 {
        producer
            .send(rdkafka::producer::BaseRecord::<(), str>::to("t").payload(&format!("e{n}")))
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let a = member(&bootstrap);
    assigned(&a, Duration::from_secs(20)).expect("a joins");
    let mut got = 0;
    while got < 3 {
        if let Some(m) = a.poll(Duration::from_millis(100)) {
            m.unwrap();
            got += 1;
        }
    }
    mock.broker_down(1).unwrap();
    let down_at = Instant::now();
    let closing = std::thread::spawn(move || {
        drop(a);
        down_at.elapsed()
    });
    std::thread::sleep(Duration::from_secs(2));
    mock.broker_up(1).unwrap();
    let up_after = down_at.elapsed();
    let b = member(&bootstrap);
    let b_assigned = assigned(&b, Duration::from_secs(30)).map(|d| up_after + d);
    let closed_after = closing.join().unwrap();
    let committed = b.committed(Duration::from_secs(10)).unwrap();
    println!("committed after the close: {committed:?}");
    println!(
        "down at 0; a's close returned after {closed_after:?}; broker up after {up_after:?}; \
         b assigned after {b_assigned:?}"
    );
    // The member's last heartbeat came at most `heartbeat.interval.ms` (500 ms) before the
    // broker went down; its 6 s session ran out 5.5 s after that at the earliest. A member
    // that had left would have let `b` in right after the broker came back (2 s). (A loaded
    // machine only makes `b` later: the bound holds.)
    let b_assigned = b_assigned.expect("b gets the partition once a's session ran out");
    assert!(b_assigned >= Duration::from_millis(5500), "{b_assigned:?}");
}
