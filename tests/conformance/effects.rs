//! Effects belong to the record of the event they name, not to the record received last.

use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, KafkaConsumer, Operation, Simulation,
};

use crate::support::*;

/// A batch consumer: receives both records, then performs one effect per record, named by its
/// payload (`evt-0`, `evt-1`), and stops. A crash fires after the effect of input 0.
fn batch_with_a_crash_after_the_first_effect(named: bool) -> effectively_once::Outcome {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1).max_restarts(0).faults(
        FaultSchedule::new().with(Anchor::on(Operation::Effect).input(0), Fault::CrashAfter),
    );
    for n in 0..2 {
        let record = InputRecord::new(TOPIC)
            .partition(0)
            .payload(format!("evt-{n}"));
        b.produce(if named {
            record.event_id(format!("evt-{n}"))
        } else {
            record
        });
    }
    b.build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP)).unwrap();
            consumer.subscribe(&[TOPIC]).unwrap();
            let sink = ctx.effect_sink("email");
            let mut batch = Vec::new();
            while batch.len() < 2 {
                batch.push(payload(&consumer.recv().await.unwrap()));
            }
            for event_id in batch {
                sink.perform(&event_id).await.unwrap();
            }
        })
        .unwrap()
}

fn faulted_records(outcome: &effectively_once::Outcome) -> Vec<String> {
    entries_where(outcome, |e| matches!(e, HistoryEvent::FaultInjected { .. }))
        .into_iter()
        .map(|e| match &e.event {
            HistoryEvent::FaultInjected { record, .. } => format!("{record:?}"),
            _ => unreachable!(),
        })
        .collect()
}

fn effects(outcome: &effectively_once::Outcome) -> Vec<String> {
    entries_where(outcome, |e| matches!(e, HistoryEvent::Effect { .. }))
        .into_iter()
        .map(|e| match &e.event {
            HistoryEvent::Effect { event_id, .. } => event_id.clone(),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn a_batch_consumers_effect_belongs_to_the_record_of_the_event_it_names() {
    let outcome = batch_with_a_crash_after_the_first_effect(true);
    show(&outcome);
    // Both records were received before the first effect; the fault still fires on evt-0's.
    assert_eq!(
        faulted_records(&outcome),
        [format!("{:?}", Some(pos(TOPIC, 0, 0)))]
    );
    assert_eq!(
        effects(&outcome),
        ["evt-0"],
        "the crash came right after it"
    );
}

#[test]
fn an_effect_for_an_event_no_record_names_belongs_to_the_record_received_last() {
    let outcome = batch_with_a_crash_after_the_first_effect(false);
    show(&outcome);
    // Without names, the kit can only go by the last record received: evt-1's, so the fault
    // anchored on input 0's effect never fires.
    assert_eq!(faulted_records(&outcome), Vec::<String>::new());
    assert_eq!(effects(&outcome), ["evt-0", "evt-1"]);
}
