//! Taking a running broker down and bringing it back: the real side of
//! [`Fault::BrokerRestart`](crate::Fault::BrokerRestart).
//!
//! To the clients, a restart with durable storage is an outage after which the broker answers
//! with its log, offsets and groups as they were. The kit produces exactly that:
//! - librdkafka's mock cluster: its broker refuses connections
//!   (`rd_kafka_mock_broker_set_down`) and comes back (`rd_kafka_mock_broker_set_up`), state
//!   kept in the process;
//! - a container: its network is cut (disconnected from Docker's `bridge` through the Docker
//!   API, so the published port refuses connections) and restored. The broker process keeps running: its own
//!   recovery from storage is not exercised (Tansu's `memory://` storage would not survive a
//!   real restart).
//!
//! An external cluster cannot be restarted by the kit.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::bindings::{rd_kafka_mock_broker_set_down, rd_kafka_mock_broker_set_up};

/// The mock cluster's only broker (`test.mock.num.brokers=1`).
const MOCK_BROKER_ID: i32 = 1;

/// Restarts the run's broker. Cloned into its backend; the [`RunningBroker`](super::RunningBroker)
/// that made it [`retire`](Self::retire)s it before the broker goes away.
#[derive(Clone, Debug)]
pub(crate) struct BrokerSwitch {
    state: Arc<Mutex<SwitchState>>,
}

#[derive(Clone, Debug)]
enum Target {
    /// The mock cluster (`rd_kafka_mock_cluster_t *`).
    Mock(usize),
    /// A container, by id.
    #[cfg(feature = "containers")]
    Container(String),
}

#[derive(Debug)]
struct SwitchState {
    /// `None` once retired.
    target: Option<Target>,
    /// Threads that bring the broker back.
    comebacks: Vec<JoinHandle<()>>,
    /// What went wrong taking it down or bringing it back.
    failures: Vec<String>,
}

impl BrokerSwitch {
    fn new(target: Target) -> Self {
        BrokerSwitch {
            state: Arc::new(Mutex::new(SwitchState {
                target: Some(target),
                comebacks: Vec::new(),
                failures: Vec::new(),
            })),
        }
    }

    /// A switch for the mock cluster `cluster`, which must stay alive until
    /// [`retire`](Self::retire) returns.
    pub(crate) fn mock(cluster: *mut rdkafka::bindings::rd_kafka_mock_cluster_t) -> Self {
        Self::new(Target::Mock(cluster as usize))
    }

    /// A switch for the container `id`.
    #[cfg(feature = "containers")]
    pub(crate) fn container(id: &str) -> Self {
        Self::new(Target::Container(id.to_string()))
    }

    /// Takes the broker down now and brings it back after `down` (on a thread of its own).
    pub(crate) fn restart(&self, down: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(target) = state.target.clone() else {
            return;
        };
        if let Err(e) = target.set(false) {
            state.failures.push(e);
            return;
        }
        let shared = self.state.clone();
        state.comebacks.push(std::thread::spawn(move || {
            std::thread::sleep(down);
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(target) = &state.target {
                if let Err(e) = target.set(true) {
                    state.failures.push(e);
                }
            }
        }));
    }

    /// What went wrong taking the broker down or bringing it back, if anything did.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failures
            .clone()
    }

    /// Waits until the broker is back, then disables the switch: the broker may go.
    pub(crate) fn retire(&self) {
        let comebacks = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .comebacks,
        );
        for comeback in comebacks {
            let _ = comeback.join();
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .target = None;
    }
}

impl Target {
    /// Brings the broker up (`true`) or takes it down.
    fn set(&self, up: bool) -> Result<(), String> {
        match self {
            Target::Mock(cluster) => {
                // SAFETY: the cluster is alive until `retire`, which clears the target under
                // the switch's lock, held by every caller.
                unsafe {
                    if up {
                        rd_kafka_mock_broker_set_up(*cluster as *mut _, MOCK_BROKER_ID);
                    } else {
                        rd_kafka_mock_broker_set_down(*cluster as *mut _, MOCK_BROKER_ID);
                    }
                }
                Ok(())
            }
            #[cfg(feature = "containers")]
            Target::Container(id) => super::container::set_network(id, up),
        }
    }
}
