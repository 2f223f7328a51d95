//! The transaction coordinator: `transactional.id`s, epochs, open transactions, markers and
//! transactional offsets.
//!
//! As in Kafka, `init_transactions` gives a `transactional.id` its producer id and a new epoch;
//! an older epoch is fenced on its next produce, offset send or commit, and its open
//! transaction is aborted. A transaction's records carry the producer id; commit and abort
//! write a marker to every partition the transaction wrote to. Offsets sent to the transaction
//! become the group's committed offsets only when it commits. A transaction open longer than
//! `transaction.timeout.ms` is aborted by the coordinator, which bumps the epoch.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::{ClientId, World};
use crate::client::txn_error::{TxnError, TxnPhase};
use crate::history::HistoryEvent;
use crate::history::TopicPartition;
use crate::run::fault_plan::Injection;

/// The coordinator's state of one `transactional.id`.
#[derive(Debug)]
pub(crate) struct TxnRecord {
    producer_id: i64,
    epoch: i16,
    open: Option<OpenTxn>,
}

/// A transaction the coordinator knows is open.
#[derive(Debug)]
struct OpenTxn {
    deadline: Instant,
    partitions: BTreeSet<TopicPartition>,
    offsets: BTreeMap<(String, TopicPartition), i64>,
}

/// A transactional producer's own view.
#[derive(Debug)]
pub(crate) struct TxnClient {
    pub id: String,
    phase: TxnPhase,
    /// A fatal error: every later call returns it.
    fatal: Option<TxnError>,
    /// An abortable error: every call but `abort_transaction` returns it.
    abortable: Option<TxnError>,
    /// The last commit was applied although the application was told it failed.
    committed_unknowingly: bool,
}

impl TxnClient {
    pub(crate) fn new(id: String) -> Self {
        TxnClient {
            id,
            phase: TxnPhase::Init,
            fatal: None,
            abortable: None,
            committed_unknowingly: false,
        }
    }
}

/// Why a send of a transactional producer is refused.
pub(crate) enum SendRefused {
    /// No transaction is open (librdkafka: `_STATE`).
    State,
    /// The producer was fenced (the first time the broker says so).
    Fenced,
    /// The producer already has a fatal error (librdkafka: `_FATAL`).
    Fatal,
}

impl World {
    fn txn_client(&mut self, client: ClientId) -> Option<&mut TxnClient> {
        self.producers.get_mut(&client)?.txn.as_mut()
    }

    /// Whether the coordinator has moved past the producer's epoch; marks it fatally fenced.
    fn fenced(&mut self, client: ClientId) -> bool {
        let Some(p) = self.producers.get(&client) else {
            return true;
        };
        let (Some(txn), Some((_, epoch))) = (&p.txn, p.identity) else {
            return false;
        };
        let current = self.transactions.get(&txn.id).map(|r| r.epoch);
        if current.is_some_and(|e| e != epoch) {
            if let Some(t) = self.txn_client(client) {
                t.fatal = Some(TxnError::Fenced);
            }
            return true;
        }
        false
    }

    /// The common checks: fatal first, then (`abortable_too`) a pending abortable error, then
    /// the phase the call needs.
    fn txn_check(
        &mut self,
        client: ClientId,
        needs: TxnPhase,
        abortable_too: bool,
    ) -> Result<(), TxnError> {
        let Some(t) = self.txn_client(client) else {
            return Err(TxnError::NotConfigured);
        };
        if let Some(e) = t.fatal {
            return Err(e);
        }
        if abortable_too {
            if let Some(e) = t.abortable {
                return Err(e);
            }
        }
        if t.phase != needs {
            return Err(TxnError::State(t.phase));
        }
        Ok(())
    }

    pub(crate) fn txn_init(&mut self, client: ClientId) -> Result<(), TxnError> {
        self.txn_check(client, TxnPhase::Init, true)?;
        let id = self.txn_client(client).expect("checked").id.clone();
        if !self.transactions.contains_key(&id) {
            let producer_id = self.next_producer_id();
            self.transactions.insert(
                id.clone(),
                TxnRecord {
                    producer_id,
                    epoch: -1,
                    open: None,
                },
            );
        }
        let record = self.transactions.get_mut(&id).expect("inserted");
        record.epoch += 1;
        let (producer_id, epoch, open) = (record.producer_id, record.epoch, record.open.take());
        if let Some(open) = open {
            self.end_open(&id, producer_id, open, false, "fenced by a newer instance");
        }
        let p = self.producers.get_mut(&client).expect("checked");
        p.identity = Some((producer_id, epoch));
        p.sequences.clear();
        let incarnation = p.incarnation;
        p.txn.as_mut().expect("checked").phase = TxnPhase::Ready;
        self.record(
            Some(incarnation),
            HistoryEvent::TransactionsInitialized {
                transactional_id: id,
                producer_id,
                epoch,
            },
        );
        Ok(())
    }

    pub(crate) fn txn_begin(&mut self, client: ClientId) -> Result<(), TxnError> {
        self.txn_check(client, TxnPhase::Ready, true)?;
        let t = self.txn_client(client).expect("checked");
        t.phase = TxnPhase::InTransaction;
        t.committed_unknowingly = false;
        Ok(())
    }

    /// Checks that the producer may send now; a fenced producer learns it here.
    pub(crate) fn txn_may_send(&mut self, client: ClientId) -> Result<(), SendRefused> {
        let Some(t) = self.txn_client(client) else {
            return Ok(());
        };
        if t.fatal.is_some() {
            return Err(SendRefused::Fatal);
        }
        if t.phase != TxnPhase::InTransaction {
            return Err(SendRefused::State);
        }
        if self.fenced(client) {
            return Err(SendRefused::Fenced);
        }
        Ok(())
    }

    /// The open transaction of the producer's `transactional.id`, opened now if needed.
    fn open_txn(&mut self, client: ClientId) -> Option<(i64, &mut OpenTxn)> {
        let p = self.producers.get(&client)?;
        let id = p.txn.as_ref()?.id.clone();
        let deadline = Instant::now() + p.settings.transaction_timeout;
        let record = self.transactions.get_mut(&id)?;
        let open = record.open.get_or_insert_with(|| OpenTxn {
            deadline,
            partitions: BTreeSet::new(),
            offsets: BTreeMap::new(),
        });
        Some((record.producer_id, open))
    }

    /// Notes a transactional record appended at `offset` of `tp`; returns the producer id the
    /// record carries.
    pub(crate) fn txn_note_write(&mut self, client: ClientId, tp: &TopicPartition) -> Option<i64> {
        let (producer_id, open) = self.open_txn(client)?;
        open.partitions.insert(tp.clone());
        Some(producer_id)
    }

    /// Adds offsets to the open transaction. As Kafka 2.5+ does (KIP-447), the coordinator
    /// checks the consumer's group metadata: a consumer removed from the group, or one of an
    /// older generation, is a zombie, and its transaction must abort.
    pub(crate) fn txn_send_offsets(
        &mut self,
        client: ClientId,
        group: &str,
        consumer: (Option<&str>, i32),
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), TxnError> {
        self.txn_check(client, TxnPhase::InTransaction, true)?;
        if self.fenced(client) {
            return Err(TxnError::Fenced);
        }
        let (member, generation) = consumer;
        // Metadata without a generation (a consumer that never joined) is not checked.
        let stale = generation >= 0
            && self
                .groups
                .get(group)
                .is_some_and(|g| g.check_commit(member, None, generation).is_err());
        if stale {
            self.txn_client(client).expect("checked").abortable = Some(TxnError::StaleGeneration);
            return Err(TxnError::StaleGeneration);
        }
        let (_, open) = self.open_txn(client).expect("checked");
        for (tp, offset) in offsets {
            open.offsets
                .insert((group.to_string(), tp.clone()), *offset);
        }
        Ok(())
    }

    pub(crate) fn txn_commit(
        &mut self,
        client: ClientId,
        injection: &Injection,
    ) -> Result<(), TxnError> {
        self.txn_check(client, TxnPhase::InTransaction, true)?;
        if self.fenced(client) {
            return Err(TxnError::Fenced);
        }
        if injection.fail {
            self.txn_client(client).expect("checked").abortable = Some(TxnError::CommitTimedOut);
            return Err(TxnError::CommitTimedOut);
        }
        let id = self.txn_client(client).expect("checked").id.clone();
        let record = self.transactions.get_mut(&id).expect("initialised");
        let (producer_id, open) = (record.producer_id, record.open.take());
        if let Some(open) = open {
            self.end_open(&id, producer_id, open, true, "");
        } else {
            self.record_txn_end(client, &id, true, Vec::new(), Vec::new(), "");
        }
        let t = self.txn_client(client).expect("checked");
        if injection.ambiguous {
            t.abortable = Some(TxnError::CommitTimedOut);
            t.committed_unknowingly = true;
            return Err(TxnError::CommitTimedOut);
        }
        t.phase = TxnPhase::Ready;
        Ok(())
    }

    pub(crate) fn txn_abort(&mut self, client: ClientId) -> Result<(), TxnError> {
        self.txn_check(client, TxnPhase::InTransaction, false)?;
        let t = self.txn_client(client).expect("checked");
        if t.committed_unknowingly {
            // The coordinator completed the commit: aborting it is an invalid transition.
            t.fatal = Some(TxnError::InvalidTxnState);
            return Err(TxnError::InvalidTxnState);
        }
        if self.fenced(client) {
            return Err(TxnError::Fenced);
        }
        let id = self.txn_client(client).expect("checked").id.clone();
        let record = self.transactions.get_mut(&id).expect("initialised");
        let (producer_id, open) = (record.producer_id, record.open.take());
        if let Some(open) = open {
            self.end_open(&id, producer_id, open, false, "aborted by the application");
        }
        let t = self.txn_client(client).expect("checked");
        t.phase = TxnPhase::Ready;
        t.abortable = None;
        Ok(())
    }

    /// Writes the markers, applies or discards the offsets, records the outcome.
    fn end_open(&mut self, id: &str, producer_id: i64, open: OpenTxn, commit: bool, reason: &str) {
        let timestamp = self.elapsed().as_millis() as i64;
        for tp in &open.partitions {
            if let Some(p) = self
                .topics
                .get_mut(&tp.topic)
                .and_then(|t| t.partitions.get_mut(tp.partition as usize))
            {
                p.end_transaction(producer_id, commit, timestamp);
            }
        }
        let mut offsets = Vec::new();
        if commit {
            for ((group, tp), offset) in open.offsets {
                self.group_mut(&group).committed.insert(tp.clone(), offset);
                offsets.push((group, tp, offset));
            }
        }
        let partitions = open.partitions.into_iter().collect();
        let owner = self
            .producers
            .iter()
            .find(|(_, p)| p.txn.as_ref().is_some_and(|t| t.id == id))
            .map(|(c, _)| *c);
        match owner {
            Some(client) => self.record_txn_end(client, id, commit, partitions, offsets, reason),
            None => self.record(
                None,
                HistoryEvent::TransactionAborted {
                    transactional_id: id.to_string(),
                    partitions,
                    reason: reason.to_string(),
                },
            ),
        }
        self.touch();
    }

    fn record_txn_end(
        &mut self,
        client: ClientId,
        id: &str,
        commit: bool,
        partitions: Vec<TopicPartition>,
        offsets: Vec<(String, TopicPartition, i64)>,
        reason: &str,
    ) {
        let incarnation = self.producers.get(&client).map(|p| p.incarnation);
        let transactional_id = id.to_string();
        let event = if commit {
            HistoryEvent::TransactionCommitted {
                transactional_id,
                partitions,
                offsets,
            }
        } else {
            HistoryEvent::TransactionAborted {
                transactional_id,
                partitions,
                reason: reason.to_string(),
            }
        };
        self.record(incarnation, event);
    }

    /// Aborts transactions open longer than their timeout and bumps their epoch.
    pub(crate) fn expire_transactions(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .transactions
            .iter()
            .filter(|(_, r)| r.open.as_ref().is_some_and(|o| o.deadline <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let record = self.transactions.get_mut(&id).expect("listed");
            record.epoch += 1;
            let (producer_id, open) = (record.producer_id, record.open.take());
            if let Some(open) = open {
                self.end_open(
                    &id,
                    producer_id,
                    open,
                    false,
                    "transaction.timeout.ms passed; the coordinator bumped the epoch",
                );
            }
        }
    }

    /// When the next open transaction times out.
    pub(crate) fn next_transaction_timeout(&self) -> Option<Instant> {
        self.transactions
            .values()
            .filter_map(|r| r.open.as_ref().map(|o| o.deadline))
            .min()
    }
}
