//! The effect service: the side effects of a consumer process, over HTTP on loopback.
//!
//! A consumer that is not Rust code cannot call the kit's effect sinks; it calls this service
//! instead, as it would call an email or payments API: `POST /effects/{sink}` with a JSON body
//! carrying the `event_id`, and optionally an `Idempotency-Key` header with a payments API's
//! semantics (a key that already took effect on the sink is not applied again: the caller is
//! told it succeeded). Every attempt is recorded in the file ledger ([`SqliteLedger`]).
//!
//! Each instance gets its own listener (its own `EFFECTS_URL`), so the service knows which
//! instance called without the consumer saying so. Faults fire on an event's n-th effect call:
//! a definite failure (503, nothing applied), an ambiguous one (applied, then 504), or the
//! caller's death right before or right after the effect is applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Callers, ProcessError, lock};
use crate::history::{EffectOutcome, Fault, InstanceId};
use crate::ledger::{EffectRecord, SqliteLedger};

/// The faults to fire: by event id, the call (1 for its first effect call, from any
/// instance, at any sink) and what happens to it.
pub(crate) type EffectFaults = BTreeMap<(String, u32), Fault>;

/// A fault the service fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FiredEffectFault {
    pub at: Duration,
    pub instance: InstanceId,
    pub event_id: String,
    /// Which of the event's effect calls it fired at (1 for its first).
    pub call: u32,
    pub fault: Fault,
}

/// A call the service refused, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub instance: InstanceId,
    pub why: String,
}

/// The running service; it stops when dropped.
pub(crate) struct EffectService {
    urls: Vec<String>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    started: Instant,
    ledger: Mutex<SqliteLedger>,
    faults: EffectFaults,
    /// How many effect calls each event id has had.
    calls: Mutex<BTreeMap<String, u32>>,
    malformed: Mutex<Vec<Malformed>>,
    fired: Mutex<Vec<FiredEffectFault>>,
    callers: Arc<dyn Callers>,
}

#[derive(Clone)]
struct Listener {
    instance: InstanceId,
    shared: Arc<Shared>,
}

impl EffectService {
    /// Starts the service for `instances` instances (numbered from 1), recording into a new
    /// ledger file at `ledger` (refused when it exists: a run's ledger holds that run's
    /// attempts only) with times since `t0`.
    pub(crate) fn start(
        t0: Instant,
        instances: u32,
        ledger: &Path,
        faults: EffectFaults,
        callers: Arc<dyn Callers>,
    ) -> Result<Self, ProcessError> {
        if let Some(((event_id, call), fault)) = faults.iter().find(|(_, f)| {
            !matches!(
                f,
                Fault::CrashBefore | Fault::CrashAfter | Fault::Fail | Fault::Ambiguous
            )
        }) {
            return Err(ProcessError::Fault(format!(
                "the effect service cannot fire {fault:?} (at effect call {call} of {event_id}): \
                 it fires CrashBefore, CrashAfter, Fail and Ambiguous"
            )));
        }
        if ledger.exists() {
            return Err(ProcessError::Ledger {
                path: ledger.to_path_buf(),
                why: "it exists already; each run needs a ledger of its own".into(),
            });
        }
        let ledger_file = SqliteLedger::open(ledger).map_err(|e| ProcessError::Ledger {
            path: ledger.to_path_buf(),
            why: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            started: t0,
            ledger: Mutex::new(ledger_file),
            faults,
            calls: Mutex::new(BTreeMap::new()),
            malformed: Mutex::new(Vec::new()),
            fired: Mutex::new(Vec::new()),
            callers,
        });
        let listeners = (1..=instances)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProcessError::Listen(e.to_string()))?;
        let addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<Result<_, _>>()
            .map_err(|e| ProcessError::Listen(e.to_string()))?;
        for l in &listeners {
            l.set_nonblocking(true)
                .map_err(|e| ProcessError::Listen(e.to_string()))?;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| ProcessError::Listen(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("effectively-once-effects".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (i, listener) in listeners.into_iter().enumerate() {
                        let state = Listener {
                            instance: InstanceId(i as u32 + 1),
                            shared: serving.clone(),
                        };
                        let app = Router::new()
                            .route("/effects/{sink}", post(effect))
                            .fallback(not_found)
                            .with_state(state);
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            continue;
                        };
                        tasks.spawn(async move {
                            let _ = axum::serve(listener, app).await;
                        });
                    }
                    let _ = stopped.await;
                    tasks.abort_all();
                });
            })
            .map_err(|e| ProcessError::Listen(e.to_string()))?;
        Ok(EffectService {
            urls: addrs.iter().map(|a| format!("http://{a}")).collect(),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The base URL `instance` calls (its `EFFECTS_URL`).
    pub(crate) fn url(&self, instance: InstanceId) -> &str {
        &self.urls[instance.0 as usize - 1]
    }

    /// The calls refused so far.
    pub(crate) fn malformed(&self) -> Vec<Malformed> {
        lock(&self.shared.malformed).clone()
    }

    /// The faults fired so far.
    pub(crate) fn fired(&self) -> Vec<FiredEffectFault> {
        lock(&self.shared.fired).clone()
    }

    /// Every attempt recorded so far.
    pub(crate) fn attempts(&self) -> Result<Vec<EffectRecord>, ProcessError> {
        let ledger = lock(&self.shared.ledger);
        let read = ledger.read().map_err(|e| ProcessError::Ledger {
            path: ledger.path().to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(read.records().to_vec())
    }
}

impl Drop for EffectService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A JSON error response.
fn refusal(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(json!({ "error": why }))).into_response()
}

async fn not_found() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        "the effect service has one endpoint: POST /effects/{sink}",
    )
}

async fn effect(
    State(listener): State<Listener>,
    UrlPath(sink): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &listener.shared;
    let refuse = |why: String| {
        lock(&shared.malformed).push(Malformed {
            instance: listener.instance,
            why: why.clone(),
        });
        refusal(StatusCode::BAD_REQUEST, &why)
    };
    let event_id = match serde_json::from_slice::<Value>(&body) {
        Err(e) => return refuse(format!("POST /effects/{sink}: the body is not JSON ({e})")),
        Ok(value) => match value.get("event_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                return refuse(format!(
                    "POST /effects/{sink}: the JSON body has no \"event_id\" string"
                ));
            }
        },
    };
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() => Some(key.to_string()),
        Some(_) => {
            return refuse(format!(
                "POST /effects/{sink}: the Idempotency-Key header is empty or not text"
            ));
        }
    };
    let call = {
        let mut calls = lock(&shared.calls);
        let n = calls.entry(event_id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let fault = shared.faults.get(&(event_id.clone(), call)).copied();
    let instance = listener.instance;
    // A fault is told when it fires: before the effect, or after it for the faults that
    // apply it first.
    let fired = |fault: Fault| {
        lock(&shared.fired).push(FiredEffectFault {
            at: shared.started.elapsed(),
            instance,
            event_id: event_id.clone(),
            call,
            fault,
        });
    };
    let record = |outcome: EffectOutcome| -> Result<EffectOutcome, Response> {
        let attempt = EffectRecord {
            at: shared.started.elapsed(),
            incarnation: shared.callers.incarnation(instance),
            generation: None,
            sink: sink.clone(),
            event_id: event_id.clone(),
            idempotency_key: idempotency_key.clone(),
            outcome,
        };
        lock(&shared.ledger).record(&attempt).map_err(|e| {
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the effect service could not record the attempt: {e}"),
            )
        })
    };
    let applied = |outcome: EffectOutcome| {
        let name = if outcome == EffectOutcome::Deduplicated {
            "deduplicated"
        } else {
            "performed"
        };
        (StatusCode::OK, axum::Json(json!({ "outcome": name }))).into_response()
    };
    match fault {
        Some(Fault::CrashBefore) => {
            fired(Fault::CrashBefore);
            shared.callers.kill(instance);
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "injected: the caller was killed before the effect",
            )
        }
        Some(Fault::Fail) => match record(EffectOutcome::Failed) {
            Ok(_) => {
                fired(Fault::Fail);
                refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "injected: effect service unavailable (nothing applied)",
                )
            }
            Err(response) => response,
        },
        Some(Fault::Ambiguous) => match record(EffectOutcome::PerformedReportedFailed) {
            Ok(_) => {
                fired(Fault::Ambiguous);
                refusal(
                    StatusCode::GATEWAY_TIMEOUT,
                    "injected: gateway timeout (the effect may have been applied)",
                )
            }
            Err(response) => response,
        },
        Some(Fault::CrashAfter) => match record(EffectOutcome::Performed) {
            Ok(outcome) => {
                fired(Fault::CrashAfter);
                shared.callers.kill(instance);
                applied(outcome)
            }
            Err(response) => response,
        },
        Some(_) | None => match record(EffectOutcome::Performed) {
            Ok(outcome) => applied(outcome),
            Err(response) => response,
        },
    }
}
