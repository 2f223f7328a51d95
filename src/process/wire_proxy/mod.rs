//! The Kafka wire-protocol proxy between consumer processes and the broker.
//!
//! Each instance gets its own bootstrap listener on loopback, so the proxy knows which instance
//! sent each request. Broker addresses in Metadata, FindCoordinator and Fetch responses are
//! rewritten to further listeners of the same instance (one per broker, opened when a broker is
//! first named), so every connection a client makes goes through the proxy. Requests and
//! responses pass through byte for byte except those rewrites; copies are decoded with the
//! `kafka-protocol` crate into a log of what happened on the wire ([`WireEvent`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, FindCoordinatorResponse, JoinGroupResponse, ListOffsetsResponse,
    MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, ResponseHeader, SyncGroupResponse,
};
use kafka_protocol::messages::{EndTxnResponse, ProduceResponse, TxnOffsetCommitResponse};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod recorded;

use super::{Callers, ProcessError, lock};
use crate::history::{AutoOffsetReset, Fault, InstanceId};

/// What the proxy saw on the wire, in the order it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WireEvent {
    /// A request arrived from an instance (before it was forwarded).
    Request {
        at: Duration,
        instance: InstanceId,
        api: String,
        version: i16,
    },
    /// A fetched record reached an instance (control records are left out).
    Fetched {
        at: Duration,
        instance: InstanceId,
        topic: String,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
    },
    /// The broker answered an instance's offset commit.
    Committed {
        at: Duration,
        instance: InstanceId,
        group: String,
        generation: i32,
        member: String,
        topic: String,
        partition: i32,
        offset: i64,
        /// Kafka's error code (0: committed).
        error: i16,
    },
    /// A fault fired at an instance's request.
    Fault {
        at: Duration,
        instance: InstanceId,
        api: String,
        fault: Fault,
    },
    /// An instance's group gave it partitions (a SyncGroup answer).
    Assigned {
        at: Duration,
        instance: InstanceId,
        group: String,
        generation: i32,
        partitions: Vec<(String, i32)>,
    },
    /// Where an instance's consumption of a partition starts: its group's committed offset
    /// (an OffsetFetch answer; `reset` is `None`), or where `auto.offset.reset` put it (a
    /// ListOffsets answer to a request for the earliest or the latest offset).
    Positioned {
        at: Duration,
        instance: InstanceId,
        topic: String,
        partition: i32,
        offset: i64,
        reset: Option<AutoOffsetReset>,
    },
    /// A record an instance produced was appended (a Produce answer).
    Produced {
        at: Duration,
        instance: InstanceId,
        topic: String,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        /// The producer's `transactional.id`, when it writes in transactions.
        transactional_id: Option<String>,
    },
    /// The broker took an instance's consumer offsets into a transaction (a TxnOffsetCommit
    /// answer): they become the group's committed offsets when the transaction commits.
    TxnOffsets {
        at: Duration,
        instance: InstanceId,
        transactional_id: String,
        group: String,
        offsets: Vec<(String, i32, i64)>,
    },
    /// The broker answered an instance's EndTxn: a commit (`committed`) or an abort.
    TxnEnded {
        at: Duration,
        instance: InstanceId,
        transactional_id: String,
        committed: bool,
        /// Kafka's error code (0: done).
        error: i16,
    },
    /// An instance joined its group.
    Joined {
        at: Duration,
        instance: InstanceId,
        generation: i32,
        member: String,
        error: i16,
    },
}

/// The faults to fire: by api name (`OffsetCommit`) and request (1 for the first such request
/// from any instance). [`Fault::CrashBefore`]: the sender is killed right before the request
/// is forwarded; [`Fault::CrashAfter`]: right after its response arrived (which it then never
/// gets); [`Fault::Ambiguous`]: the request is forwarded and applied, then the connection is
/// dropped before the response reaches the sender; [`Fault::Stall`]: the request is held that
/// long before it is forwarded (the connection's later requests wait behind it);
/// [`Fault::Fail`] (OffsetCommit only): the proxy answers for the broker, refusing every
/// partition with `REBALANCE_IN_PROGRESS`, which librdkafka hands to the application (the
/// error the simulator's failed commit returns), and nothing is forwarded.
pub(crate) type WireFaults = BTreeMap<(String, u32), Fault>;

/// The running proxy; it stops when dropped.
pub(crate) struct WireProxy {
    bootstrap: Vec<SocketAddr>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    started: Instant,
    /// The listener of each (instance, broker node), and where it forwards to.
    routes: Mutex<BTreeMap<(InstanceId, i32), SocketAddr>>,
    log: Mutex<Vec<WireEvent>>,
    /// What the proxy could not do (a response it could not decode and rewrite, ...).
    problems: Mutex<Vec<String>>,
    /// Topic names by topic id, from Metadata responses (Fetch names topics by id).
    topics: Mutex<HashMap<[u8; 16], String>>,
    faults: WireFaults,
    /// How many requests of each api the instances sent.
    requests: Mutex<HashMap<String, u32>>,
    callers: Arc<dyn Callers>,
}

impl WireProxy {
    /// Starts a proxy for `instances` instances in front of the broker at `bootstrap`
    /// (`host:port`, or a comma-separated list of them); its log's times count from `t0`.
    pub(crate) fn start(
        t0: Instant,
        instances: u32,
        bootstrap: &str,
        faults: WireFaults,
        callers: Arc<dyn Callers>,
    ) -> Result<Self, ProcessError> {
        if let Some(((api, n), fault)) = faults.iter().find(|((api, _), f)| match f {
            Fault::CrashBefore | Fault::CrashAfter | Fault::Ambiguous | Fault::Stall(_) => false,
            Fault::Fail => api != "OffsetCommit",
            _ => true,
        }) {
            return Err(ProcessError::Fault(format!(
                "the wire proxy cannot fire {fault:?} (at {api} request {n}): it fires \
                 CrashBefore, CrashAfter, Ambiguous and Stall at any request, and Fail at \
                 OffsetCommit"
            )));
        }
        let listen = |e: std::io::Error| ProcessError::Listen(e.to_string());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(listen)?;
        let shared = Arc::new(Shared {
            started: t0,
            routes: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
            topics: Mutex::new(HashMap::new()),
            faults,
            requests: Mutex::new(HashMap::new()),
            callers,
        });
        let mut listeners = Vec::new();
        for i in 1..=instances {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(listen)?;
            listener.set_nonblocking(true).map_err(listen)?;
            listeners.push((InstanceId(i), listener));
        }
        let addrs = listeners
            .iter()
            .map(|(_, l)| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(listen)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let upstream = bootstrap.to_string();
        let thread = std::thread::Builder::new()
            .name("effectively-once-wire-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (instance, listener) in listeners {
                        if let Ok(listener) = TcpListener::from_std(listener) {
                            let route = Route {
                                instance,
                                upstream: upstream.clone(),
                                shared: serving.clone(),
                            };
                            tokio::spawn(route.accept(listener));
                        }
                    }
                    let _ = stopped.await;
                });
            })
            .map_err(listen)?;
        Ok(WireProxy {
            bootstrap: addrs,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bootstrap address `instance` connects to (its `KAFKA_BOOTSTRAP_SERVERS`).
    pub(crate) fn bootstrap(&self, instance: InstanceId) -> String {
        self.bootstrap[instance.0 as usize - 1].to_string()
    }

    /// What the proxy saw so far.
    pub(crate) fn log(&self) -> Vec<WireEvent> {
        lock(&self.shared.log).clone()
    }

    /// What the proxy could not do so far.
    pub(crate) fn problems(&self) -> Vec<String> {
        lock(&self.shared.problems).clone()
    }
}

impl Drop for WireProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What becomes of a response when it arrives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtResponse {
    /// It is passed on.
    Deliver,
    /// Its reader is killed ([`Fault::CrashAfter`]).
    Kill,
    /// The connection is dropped ([`Fault::Ambiguous`]).
    Drop,
}

/// A request in flight: api key, version, its bytes, what becomes of its response.
type Asked = (i16, i16, Bytes, AtResponse);

/// Kafka's `REBALANCE_IN_PROGRESS`, a refused offset commit's error.
const REBALANCE_IN_PROGRESS: i16 = 27;

/// One listener: an instance's connections to one upstream address.
#[derive(Clone)]
struct Route {
    instance: InstanceId,
    upstream: String,
    shared: Arc<Shared>,
}

impl Route {
    async fn accept(self, listener: TcpListener) {
        while let Ok((client, _)) = listener.accept().await {
            let route = self.clone();
            tokio::spawn(async move {
                if let Err(why) = route.connection(client).await {
                    lock(&route.shared.problems).push(format!(
                        "{}: connection to {}: {why}",
                        route.instance, route.upstream
                    ));
                }
            });
        }
    }

    /// Relays one client connection until either side closes it.
    async fn connection(&self, client: TcpStream) -> Result<(), String> {
        // A bootstrap list is tried in order, as a client would.
        let mut upstream = Err("no address".to_string());
        for addr in self.upstream.split(',').map(str::trim) {
            upstream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("could not connect: {e}"));
            if upstream.is_ok() {
                break;
            }
        }
        let upstream = upstream?;
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (mut client_in, client_out) = client.into_split();
        let (mut upstream_in, mut upstream_out) = upstream.into_split();
        // Responses go back from the relay of responses and, for a refused commit, from the
        // relay of requests.
        let client_out = tokio::sync::Mutex::new(client_out);
        // The api, version and bytes of each request in flight by correlation id, and what
        // becomes of its response.
        let asked: Arc<Mutex<HashMap<i32, Asked>>> = Arc::default();
        let requests = async {
            while let Some(frame) = read_frame(&mut client_in).await? {
                let Some((api, version, correlation)) = request_ids(&frame) else {
                    return Err("a request too short for its header".to_string());
                };
                let at_response = match self.seen_request(api, version) {
                    Some(Fault::CrashBefore) => {
                        // The request dies with its sender.
                        self.shared.callers.kill(self.instance);
                        return Ok(());
                    }
                    Some(Fault::Fail) => {
                        let refusal = self.refused_commit(version, &frame)?;
                        if !write_frame(&mut *client_out.lock().await, &refusal).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(Fault::Stall(d)) => {
                        tokio::time::sleep(d).await;
                        AtResponse::Deliver
                    }
                    Some(Fault::CrashAfter) => AtResponse::Kill,
                    Some(Fault::Ambiguous) => AtResponse::Drop,
                    _ => AtResponse::Deliver,
                };
                lock(&asked).insert(correlation, (api, version, frame.clone(), at_response));
                let forwarded: bool = write_frame(&mut upstream_out, &frame).await?;
                if !forwarded {
                    return Ok(());
                }
            }
            Ok::<(), String>(())
        };
        let responses = async {
            while let Some(frame) = read_frame(&mut upstream_in).await? {
                if frame.len() < 4 {
                    return Err("a response too short for its header".to_string());
                }
                let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let request = lock(&asked).remove(&correlation);
                let frame = match request {
                    Some((api, version, request, at_response)) => {
                        let frame = self.seen_response(api, version, &request, frame)?;
                        match at_response {
                            AtResponse::Deliver => frame,
                            AtResponse::Kill => {
                                // The response arrived; its reader is gone.
                                self.shared.callers.kill(self.instance);
                                return Ok(());
                            }
                            // The request was applied; its answer is lost with the connection.
                            AtResponse::Drop => return Ok(()),
                        }
                    }
                    None => frame,
                };
                let delivered: bool = write_frame(&mut *client_out.lock().await, &frame).await?;
                if !delivered {
                    return Ok(());
                }
            }
            Ok::<(), String>(())
        };
        // Either side closing ends the connection, as a broker's or client's close would.
        tokio::select! {
            r = requests => r,
            r = responses => r,
        }
    }

    fn at(&self) -> Duration {
        self.shared.started.elapsed()
    }

    fn record(&self, event: WireEvent) {
        lock(&self.shared.log).push(event);
    }

    /// Records a request and returns the fault to fire at it, if any.
    fn seen_request(&self, api: i16, version: i16) -> Option<Fault> {
        let api =
            ApiKey::try_from(api).map_or_else(|()| format!("api {api}"), |k| format!("{k:?}"));
        let nth = {
            let mut requests = lock(&self.shared.requests);
            let n = requests.entry(api.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.record(WireEvent::Request {
            at: self.at(),
            instance: self.instance,
            api: api.clone(),
            version,
        });
        let fault = self.shared.faults.get(&(api.clone(), nth)).copied()?;
        self.record(WireEvent::Fault {
            at: self.at(),
            instance: self.instance,
            api,
            fault,
        });
        Some(fault)
    }

    /// Records what `response` (to `request`) says and returns the frame to pass on: the same
    /// bytes, or with broker addresses rewritten.
    fn seen_response(
        &self,
        api: i16,
        version: i16,
        request: &Bytes,
        response: Bytes,
    ) -> Result<Bytes, String> {
        let Ok(key) = ApiKey::try_from(api) else {
            return Ok(response);
        };
        let header_version = key.response_header_version(version);
        let mut body = response.clone();
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| format!("{key:?} v{version}: undecodable response header: {e}"))?;
        let undecodable =
            |e: &dyn std::fmt::Display| format!("{key:?} v{version}: undecodable: {e}");
        match key {
            ApiKey::Metadata => {
                let mut m =
                    MetadataResponse::decode(&mut body, version).map_err(|e| undecodable(&e))?;
                {
                    let mut topics = lock(&self.shared.topics);
                    for t in &m.topics {
                        if let Some(name) = &t.name {
                            topics.insert(*t.topic_id.as_bytes(), name.0.to_string());
                        }
                    }
                }
                for b in &mut m.brokers {
                    let local = self.listener_for(b.node_id.0, &b.host, b.port)?;
                    b.host = StrBytes::from_string(local.ip().to_string());
                    b.port = i32::from(local.port());
                }
                reencode(&header, header_version, &m, version)
            }
            ApiKey::FindCoordinator => {
                let mut f = FindCoordinatorResponse::decode(&mut body, version)
                    .map_err(|e| undecodable(&e))?;
                if f.error_code == 0 && f.port > 0 {
                    let local = self.listener_for(f.node_id.0, &f.host, f.port)?;
                    f.host = StrBytes::from_string(local.ip().to_string());
                    f.port = i32::from(local.port());
                }
                for c in &mut f.coordinators {
                    if c.error_code == 0 && c.port > 0 {
                        let local = self.listener_for(c.node_id.0, &c.host, c.port)?;
                        c.host = StrBytes::from_string(local.ip().to_string());
                        c.port = i32::from(local.port());
                    }
                }
                reencode(&header, header_version, &f, version)
            }
            ApiKey::Fetch => {
                let mut f =
                    FetchResponse::decode(&mut body, version).map_err(|e| undecodable(&e))?;
                self.fetched(&f);
                if f.node_endpoints.is_empty() {
                    return Ok(response);
                }
                for e in &mut f.node_endpoints {
                    let local = self.listener_for(e.node_id.0, &e.host, e.port)?;
                    e.host = StrBytes::from_string(local.ip().to_string());
                    e.port = i32::from(local.port());
                }
                reencode(&header, header_version, &f, version)
            }
            ApiKey::OffsetCommit => {
                let answer = OffsetCommitResponse::decode(&mut body, version)
                    .map_err(|e| undecodable(&e))?;
                self.committed(key, version, request, &answer)?;
                Ok(response)
            }
            // Read for the timeline and the diagnoses only: an answer that does not decode
            // (librdkafka's mock cluster sends a null assignment with an error) is passed on
            // unrecorded.
            ApiKey::SyncGroup => record_only(body, version, response, |a: &SyncGroupResponse| {
                self.assigned(version, request, a);
            }),
            ApiKey::OffsetFetch => {
                record_only(body, version, response, |a: &OffsetFetchResponse| {
                    self.committed_read(a);
                })
            }
            ApiKey::ListOffsets => {
                record_only(body, version, response, |a: &ListOffsetsResponse| {
                    self.reset(version, request, a);
                })
            }
            ApiKey::Produce => record_only(body, version, response, |a: &ProduceResponse| {
                self.produced(version, request, a);
            }),
            ApiKey::TxnOffsetCommit => {
                record_only(body, version, response, |a: &TxnOffsetCommitResponse| {
                    self.txn_offsets(version, request, a);
                })
            }
            ApiKey::EndTxn => record_only(body, version, response, |a: &EndTxnResponse| {
                self.txn_ended(version, request, a);
            }),
            ApiKey::JoinGroup => {
                let j =
                    JoinGroupResponse::decode(&mut body, version).map_err(|e| undecodable(&e))?;
                self.record(WireEvent::Joined {
                    at: self.at(),
                    instance: self.instance,
                    generation: j.generation_id,
                    member: j.member_id.to_string(),
                    error: j.error_code,
                });
                Ok(response)
            }
            _ => Ok(response),
        }
    }

    /// The local listener standing for broker `node` at `host:port`, opened on first use.
    fn listener_for(&self, node: i32, host: &str, port: i32) -> Result<SocketAddr, String> {
        let mut routes = lock(&self.shared.routes);
        if let Some(addr) = routes.get(&(self.instance, node)) {
            return Ok(*addr);
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("could not listen for broker {node}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("could not listen for broker {node}: {e}"))?;
        let listener = TcpListener::from_std(listener)
            .map_err(|e| format!("could not listen for broker {node}: {e}"))?;
        let route = Route {
            instance: self.instance,
            upstream: format!("{host}:{port}"),
            shared: self.shared.clone(),
        };
        tokio::spawn(route.accept(listener));
        routes.insert((self.instance, node), addr);
        Ok(addr)
    }
}

/// Hands the answer in `body` to `record` when it decodes as a `T`, and passes `response` on
/// either way: the answers read only for the timeline and the diagnoses.
fn record_only<T: Decodable>(
    mut body: Bytes,
    version: i16,
    response: Bytes,
    record: impl FnOnce(&T),
) -> Result<Bytes, String> {
    if let Ok(answer) = T::decode(&mut body, version) {
        record(&answer);
    }
    Ok(response)
}

fn reencode<T: Encodable>(
    header: &ResponseHeader,
    header_version: i16,
    body: &T,
    version: i16,
) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    header
        .encode(&mut out, header_version)
        .and_then(|()| body.encode(&mut out, version))
        .map_err(|e| format!("could not re-encode a rewritten response: {e}"))?;
    Ok(out.freeze())
}

/// A request's api key, api version and correlation id (the first 8 bytes of every request
/// header version).
fn request_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut b = frame.get(..8)?;
    Some((b.get_i16(), b.get_i16(), b.get_i32()))
}

/// The largest frame the proxy relays (Kafka's default `socket.request.max.bytes`).
const MAX_FRAME: usize = 100 * 1024 * 1024;

/// Reads one size-prefixed frame; `None` when the peer closed the connection between frames.
async fn read_frame(from: &mut (impl AsyncReadExt + Unpin)) -> Result<Option<Bytes>, String> {
    let mut size = [0u8; 4];
    match from.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if peer_gone(&e) => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    }
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|s| *s <= MAX_FRAME)
        .ok_or("a frame with a nonsense size")?;
    let mut frame = vec![0u8; size];
    match from.read_exact(&mut frame).await {
        Ok(_) => Ok(Some(Bytes::from(frame))),
        // A process killed in the middle of a request: its connection just ends.
        Err(e) if peer_gone(&e) => Ok(None),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Whether `e` says the other end went away (closed, reset, killed): the end of a
/// connection, not a failure of the proxy.
fn peer_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Writes one size-prefixed frame; whether the peer is still there to take it.
async fn write_frame(to: &mut (impl AsyncWriteExt + Unpin), frame: &[u8]) -> Result<bool, String> {
    let size = i32::try_from(frame.len()).map_err(|_| "a frame too large".to_string())?;
    let mut bytes = Vec::with_capacity(4 + frame.len());
    bytes.extend_from_slice(&size.to_be_bytes());
    bytes.extend_from_slice(frame);
    match to.write_all(&bytes).await {
        Ok(()) => Ok(true),
        Err(e) if peer_gone(&e) => Ok(false),
        Err(e) => Err(format!("write: {e}")),
    }
}
