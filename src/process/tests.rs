use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::history::{EffectOutcome, Fault, Incarnation, InstanceId};

/// A `Callers` that only remembers whom it was asked to kill.
#[derive(Default)]
struct KillLog(Mutex<Vec<InstanceId>>);

impl Callers for KillLog {
    fn incarnation(&self, instance: InstanceId) -> Incarnation {
        Incarnation {
            instance,
            number: 1,
        }
    }

    fn kill(&self, instance: InstanceId) {
        self.0.lock().unwrap().push(instance);
    }
}

/// One HTTP/1.1 POST; the status code and the body.
fn post(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn service(faults: EffectFaults) -> (tempdir::Dir, Arc<KillLog>, EffectService) {
    let dir = tempdir::Dir::new();
    let kills = Arc::new(KillLog::default());
    let service = EffectService::start(
        Instant::now(),
        2,
        &dir.path("ledger.db"),
        faults,
        kills.clone(),
    )
    .unwrap();
    (dir, kills, service)
}

pub(crate) mod tempdir {
    use std::path::PathBuf;

    /// A fresh directory under the system's temporary directory, removed when dropped.
    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new() -> Self {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "effectively-once-process-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        pub(crate) fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn effects_are_recorded_per_instance_and_an_idempotency_key_applies_once() {
    let (_dir, _kills, service) = service(EffectFaults::new());
    let (one, two) = (service.url(InstanceId(1)), service.url(InstanceId(2)));
    assert_ne!(one, two, "one listener per instance");
    let key = [("Idempotency-Key", "evt-1")];
    let body = r#"{"event_id": "evt-1", "to": "a@example.com"}"#;
    assert_eq!(post(one, "/effects/email", &key, body).0, 200);
    let (status, text) = post(two, "/effects/email", &key, body);
    assert_eq!(
        (status, text.as_str()),
        (200, r#"{"outcome":"deduplicated"}"#)
    );
    // Without a key every call takes effect.
    let body = r#"{"event_id": "evt-2"}"#;
    assert_eq!(post(one, "/effects/email", &[], body).0, 200);
    assert_eq!(post(one, "/effects/email", &[], body).0, 200);
    let attempts = service.attempts().unwrap();
    let seen: Vec<(u32, &str, EffectOutcome)> = attempts
        .iter()
        .map(|a| (a.incarnation.instance.0, a.event_id.as_str(), a.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "evt-1", EffectOutcome::Performed),
            (2, "evt-1", EffectOutcome::Deduplicated),
            (1, "evt-2", EffectOutcome::Performed),
            (1, "evt-2", EffectOutcome::Performed),
        ]
    );
    assert_eq!(attempts[0].sink, "email");
    assert_eq!(attempts[0].idempotency_key.as_deref(), Some("evt-1"));
    assert!(service.malformed().is_empty());
}

#[test]
fn malformed_calls_get_a_400_that_says_why_and_are_kept_for_the_report() {
    let (_dir, _kills, service) = service(EffectFaults::new());
    let url = service.url(InstanceId(2));
    let (status, text) = post(url, "/effects/email", &[], "not json");
    assert_eq!(status, 400);
    assert!(text.contains("the body is not JSON"), "{text}");
    let (status, text) = post(url, "/effects/email", &[], r#"{"id": "evt-1"}"#);
    assert_eq!(status, 400);
    assert!(text.contains(r#"no \"event_id\" string"#), "{text}");
    let (status, text) = post(url, "/emails", &[], r#"{"event_id": "evt-1"}"#);
    assert_eq!(status, 404);
    assert!(text.contains("POST /effects/{sink}"), "{text}");
    let malformed = service.malformed();
    assert_eq!(malformed.len(), 2);
    assert_eq!(malformed[0].instance, InstanceId(2));
    assert!(service.attempts().unwrap().is_empty());
}

#[test]
fn faults_fire_on_an_events_nth_call() {
    let faults: EffectFaults = [
        (("evt-1".to_string(), 1), Fault::Fail),
        (("evt-1".to_string(), 2), Fault::Ambiguous),
        (("evt-2".to_string(), 1), Fault::CrashBefore),
        (("evt-3".to_string(), 1), Fault::CrashAfter),
    ]
    .into_iter()
    .collect();
    let (_dir, kills, service) = service(faults);
    let url = service.url(InstanceId(1));
    let call = |id: &str| {
        post(
            url,
            "/effects/email",
            &[],
            &format!(r#"{{"event_id":"{id}"}}"#),
        )
    };
    assert_eq!(call("evt-1").0, 503, "a definite failure: nothing applied");
    assert_eq!(call("evt-1").0, 504, "ambiguous: applied, then a timeout");
    assert_eq!(call("evt-1").0, 200, "the third call has no fault");
    call("evt-2");
    assert_eq!(*kills.0.lock().unwrap(), [InstanceId(1)]);
    call("evt-3");
    assert_eq!(*kills.0.lock().unwrap(), [InstanceId(1), InstanceId(1)]);
    let outcomes: Vec<(String, EffectOutcome)> = service
        .attempts()
        .unwrap()
        .into_iter()
        .map(|a| (a.event_id, a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("evt-1".to_string(), EffectOutcome::Failed),
            ("evt-1".to_string(), EffectOutcome::PerformedReportedFailed),
            ("evt-1".to_string(), EffectOutcome::Performed),
            // evt-2's caller died before the effect: nothing recorded.
            ("evt-3".to_string(), EffectOutcome::Performed),
        ]
    );
}

#[test]
fn faults_a_part_cannot_fire_are_refused_by_name() {
    let dir = tempdir::Dir::new();
    let stall: EffectFaults = [(
        ("evt-1".to_string(), 1),
        Fault::Stall(Duration::from_secs(1)),
    )]
    .into();
    let e = EffectService::start(
        Instant::now(),
        1,
        &dir.path("l.db"),
        stall,
        Arc::new(KillLog::default()),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("cannot fire Stall"), "{e}");
    // A refusal is an OffsetCommit answer; other requests cannot be refused, nor their acks lost.
    let fail: WireFaults = [
        (("Heartbeat".to_string(), 1), Fault::Fail),
        (("OffsetCommit".to_string(), 1), Fault::Fail),
        (("Produce".to_string(), 1), Fault::LoseAck),
    ]
    .into();
    let e = WireProxy::start(
        Instant::now(),
        1,
        "127.0.0.1:9",
        fail,
        Arc::new(KillLog::default()),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .contains("cannot fire Fail (at Heartbeat request 1)"),
        "{e}"
    );
}

fn sh(script: &str) -> ConsumerCommand {
    ConsumerCommand::new(&["sh", "-c", script]).unwrap()
}

fn instance_env(i: InstanceId) -> Vec<(String, String)> {
    vec![("INSTANCE".to_string(), i.0.to_string())]
}

#[test]
fn instances_start_with_their_environment_and_restart_after_a_kill() {
    let supervisor = Supervisor::start(
        Instant::now(),
        &sh("echo started $INSTANCE; exec sleep 30"),
        2,
        instance_env,
        Duration::from_millis(10),
        5,
    )
    .unwrap();
    let started = |n: usize| {
        move |lives: &[Life]| {
            lives
                .iter()
                .filter(|l| l.output.contains("started"))
                .count()
                >= n
        }
    };
    assert!(supervisor.wait_until(Duration::from_secs(20), started(2)));
    supervisor.kill(InstanceId(1));
    assert!(supervisor.wait_until(Duration::from_secs(20), started(3)));
    assert_eq!(
        supervisor.incarnation(InstanceId(1)),
        Incarnation {
            instance: InstanceId(1),
            number: 2
        }
    );
    supervisor.stop();
    let lives = supervisor.lives();
    let mut summary: Vec<(String, String, Option<Ended>)> = lives
        .iter()
        .map(|l| (l.incarnation.to_string(), l.output.clone(), l.ended.clone()))
        .collect();
    summary.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        summary,
        [
            ("i1#1".into(), "started 1\n".into(), Some(Ended::Killed)),
            ("i1#2".into(), "started 1\n".into(), Some(Ended::Killed)),
            ("i2#1".into(), "started 2\n".into(), Some(Ended::Killed)),
        ]
    );
}

#[test]
fn a_stop_while_an_instance_restarts_records_the_end_of_every_incarnation() {
    // The window: a restarted incarnation's life exists before the monitor holds its child.
    for _ in 0..20 {
        let supervisor = Supervisor::start(
            Instant::now(),
            &sh("exec sleep 30"),
            1,
            instance_env,
            Duration::ZERO,
            5,
        )
        .unwrap();
        supervisor.kill(InstanceId(1));
        assert!(supervisor.wait_until(Duration::from_secs(20), |lives| lives.len() == 2));
        supervisor.stop();
        let ends: Vec<Option<Ended>> = supervisor.lives().iter().map(|l| l.ended.clone()).collect();
        assert_eq!(ends, [Some(Ended::Killed), Some(Ended::Killed)]);
    }
}

#[test]
fn an_instance_that_fails_is_restarted_up_to_the_limit_and_one_that_finishes_is_not() {
    let supervisor = Supervisor::start(
        Instant::now(),
        &sh(r#"echo "boom" >&2; [ "$INSTANCE" = 2 ] && exit 0; exit 3"#),
        2,
        instance_env,
        Duration::from_millis(1),
        2,
    )
    .unwrap();
    let ended = |lives: &[Life]| lives.len() == 4 && lives.iter().all(|l| l.ended.is_some());
    assert!(supervisor.wait_until(Duration::from_secs(20), ended));
    supervisor.stop();
    let lives = supervisor.lives();
    let of = |i: u32| -> Vec<Option<Ended>> {
        lives
            .iter()
            .filter(|l| l.incarnation.instance == InstanceId(i))
            .map(|l| l.ended.clone())
            .collect()
    };
    assert_eq!(of(1), vec![Some(Ended::Exited(Some(3))); 3]);
    assert_eq!(of(2), [Some(Ended::Exited(Some(0)))]);
    assert!(lives.iter().all(|l| l.output == "boom\n"));
}

#[test]
fn a_command_that_cannot_start_is_an_error_that_names_it() {
    let e = Supervisor::start(
        Instant::now(),
        &ConsumerCommand::new(&["/nonexistent/consumer", "--flag"]).unwrap(),
        1,
        instance_env,
        Duration::ZERO,
        0,
    )
    .err()
    .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("could not start the consumer command `/nonexistent/consumer --flag`"),
        "{text}"
    );
    assert!(ConsumerCommand::new::<&str>(&[]).is_err());
    assert!(ConsumerCommand::new(&[" "]).is_err());
}

#[test]
fn dropping_the_supervisor_kills_every_child() {
    let dir = tempdir::Dir::new();
    let pid_file = dir.path("pid");
    let supervisor = Supervisor::start(
        Instant::now(),
        &sh(&format!("echo $$ > {}; exec sleep 30", pid_file.display())),
        1,
        instance_env,
        Duration::ZERO,
        0,
    )
    .unwrap();
    let pid = pid_in(&pid_file);
    assert!(alive(&pid), "the child runs: {pid}");
    drop(supervisor);
    assert!(!alive(&pid), "the child is gone after the drop");
}

#[test]
fn a_crash_kills_what_the_instance_started_and_so_does_the_end_of_the_run() {
    let dir = tempdir::Dir::new();
    // A launcher that does not `exec`: the consumer is its child (as under `npm start`).
    let launcher = |name: &str| {
        sh(&format!(
            "sleep 30 & echo $! > {}; wait",
            dir.path(&format!("{name}-$INSTANCE")).display()
        ))
    };
    let supervisor = Supervisor::start(
        Instant::now(),
        &launcher("crashed"),
        1,
        instance_env,
        Duration::ZERO,
        0,
    )
    .unwrap();
    let consumer = pid_in(&dir.path("crashed-1"));
    assert!(alive(&consumer), "the launched consumer runs: {consumer}");
    supervisor.kill(InstanceId(1));
    assert!(supervisor.wait_until(Duration::from_secs(20), |lives| lives[0].ended.is_some()));
    assert!(
        !alive(&consumer),
        "the crash killed the launched consumer too"
    );

    let supervisor = Supervisor::start(
        Instant::now(),
        &launcher("stopped"),
        1,
        instance_env,
        Duration::ZERO,
        0,
    )
    .unwrap();
    let consumer = pid_in(&dir.path("stopped-1"));
    drop(supervisor);
    assert!(
        !alive(&consumer),
        "the end of the run killed the launched consumer too"
    );
}

#[test]
fn a_consumer_dies_with_a_kit_killed_outright() {
    let dir = tempdir::Dir::new();
    let pid_file = dir.path("pid");
    let mut kit = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "process::tests::a_kit_that_gets_killed",
            "--ignored",
        ])
        .env(KILLED_KIT_PID_FILE, &pid_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let consumer = pid_in(&pid_file);
    assert!(alive(&consumer), "the consumer runs: {consumer}");
    kit.kill().unwrap();
    kit.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(&consumer) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(&consumer), "the consumer died with the kit");
}

/// Where [`a_kit_that_gets_killed`] writes its consumer's pid.
const KILLED_KIT_PID_FILE: &str = "EFFECTIVELY_ONCE_TEST_KILLED_KIT_PID_FILE";

#[test]
#[ignore = "a helper: `a_consumer_dies_with_a_kit_killed_outright` runs it in a process of its own"]
fn a_kit_that_gets_killed() {
    let pid_file = std::env::var(KILLED_KIT_PID_FILE).expect("run by another test");
    let _supervisor = Supervisor::start(
        Instant::now(),
        &sh(&format!("echo $$ > {pid_file}; exec sleep 60")),
        1,
        instance_env,
        Duration::ZERO,
        0,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// The pid a test's shell wrote to `file`, waited for up to 20 s.
fn pid_in(file: &std::path::Path) -> String {
    for _ in 0..2000 {
        let pid = std::fs::read_to_string(file).unwrap_or_default();
        if pid.ends_with('\n') {
            return pid.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no pid in {file:?} after 20 s");
}

/// Whether process `pid` exists and is not a zombie (a killed orphan stays one until its new
/// parent reaps it).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap_or(0)..].starts_with(") Z"))
}

mod wire {
    use std::time::{Duration, Instant};

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    use std::sync::Arc;

    use super::KillLog;
    use crate::history::{AutoOffsetReset, InstanceId};
    use crate::process::{WireEvent, WireFaults, WireProxy};

    /// Five keyed records in `topic` of `mock`, written directly (not through the proxy).
    fn produce(mock: &MockCluster<'_, DefaultProducerContext>, topic: &str) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()
            .unwrap();
        for n in 0..5 {
            let key = format!("k{n}");
            producer
                .send(BaseRecord::to(topic).key(&key).payload("v"))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_librdkafka_consumer_talks_only_through_its_instances_listeners_and_the_log_shows_it() {
        let mock = MockCluster::new(3).unwrap();
        mock.create_topic("orders", 2, 1).unwrap();
        produce(&mock, "orders");
        let proxy = WireProxy::start(
            Instant::now(),
            2,
            &mock.bootstrap_servers(),
            WireFaults::new(),
            Arc::new(KillLog::default()),
        )
        .unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", proxy.bootstrap(InstanceId(2)))
            .set("group.id", "wire-test")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["orders"]).unwrap();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < 5 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                assert!(m.key().is_some());
                consumer.commit_message(&m, CommitMode::Sync).unwrap();
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            5,
            "every record consumed through the proxy; problems {:?}; log {:?}",
            proxy.problems(),
            proxy.log()
        );
        // The client knows only the proxy's addresses.
        let metadata = consumer
            .fetch_metadata(Some("orders"), Duration::from_secs(10))
            .unwrap();
        let direct: Vec<String> = mock
            .bootstrap_servers()
            .split(',')
            .map(str::to_string)
            .collect();
        for b in metadata.brokers() {
            let addr = format!("{}:{}", b.host(), b.port());
            assert!(!direct.contains(&addr), "broker {addr} reached directly");
            assert_eq!(b.host(), "127.0.0.1");
        }
        drop(consumer);
        let log = proxy.log();
        assert!(proxy.problems().is_empty(), "{:?}", proxy.problems());
        let mut fetched: Vec<(i32, i64, Vec<u8>)> = log
            .iter()
            .filter_map(|e| match e {
                WireEvent::Fetched {
                    instance,
                    topic,
                    partition,
                    offset,
                    key,
                    ..
                } => {
                    assert_eq!((*instance, topic.as_str()), (InstanceId(2), "orders"));
                    Some((*partition, *offset, key.clone().unwrap()))
                }
                _ => None,
            })
            .collect();
        fetched.sort();
        fetched.dedup();
        assert_eq!(fetched.len(), 5, "{fetched:?}");
        let committed: Vec<(i32, i64, i16)> = log
            .iter()
            .filter_map(|e| match e {
                WireEvent::Committed {
                    partition,
                    offset,
                    error,
                    group,
                    ..
                } => {
                    assert_eq!(group, "wire-test");
                    Some((*partition, *offset, *error))
                }
                _ => None,
            })
            .collect();
        assert_eq!(committed.len(), 5, "{committed:?}");
        assert!(committed.iter().all(|(_, _, error)| *error == 0));
        // Each commit names the offset after a fetched record of its partition.
        for (partition, offset, _) in &committed {
            assert!(
                fetched
                    .iter()
                    .any(|(p, o, _)| p == partition && o + 1 == *offset),
                "commit {partition}@{offset} without its record"
            );
        }
        assert!(log.iter().any(|e| matches!(
            e,
            WireEvent::Joined { instance: InstanceId(2), generation, error: 0, .. } if *generation >= 1
        )));
        assert!(log.iter().any(|e| matches!(
            e,
            WireEvent::Request { api, .. } if api == "Metadata"
        )));
        // The SyncGroup answer's assignment: both partitions, in the generation joined.
        let assigned: Vec<&WireEvent> = log
            .iter()
            .filter(|e| matches!(e, WireEvent::Assigned { .. }))
            .collect();
        assert!(
            assigned.iter().any(|e| matches!(
                e,
                WireEvent::Assigned { instance: InstanceId(2), group, generation, partitions, .. }
                    if group == "wire-test" && *generation >= 1
                        && partitions.len() == 2 && partitions.iter().all(|(t, _)| t == "orders")
            )),
            "{assigned:?}"
        );
        // A new group: no committed offsets, so both partitions were reset to the earliest.
        let mut positioned: Vec<(i32, i64, Option<AutoOffsetReset>)> = log
            .iter()
            .filter_map(|e| match e {
                WireEvent::Positioned {
                    partition,
                    offset,
                    reset,
                    ..
                } => Some((*partition, *offset, *reset)),
                _ => None,
            })
            .collect();
        positioned.sort();
        positioned.dedup();
        assert_eq!(
            positioned,
            [
                (0, 0, Some(AutoOffsetReset::Earliest)),
                (1, 0, Some(AutoOffsetReset::Earliest))
            ]
        );
    }

    #[test]
    fn a_broker_that_is_down_is_a_problem_the_proxy_names() {
        // Nothing listens on this port: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = WireProxy::start(
            Instant::now(),
            1,
            &format!("127.0.0.1:{port}"),
            WireFaults::new(),
            Arc::new(KillLog::default()),
        )
        .unwrap();
        let mut client = std::net::TcpStream::connect(proxy.bootstrap(InstanceId(1))).unwrap();
        use std::io::Read;
        let mut buf = [0u8; 4];
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The proxy closes the client's connection.
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.problems().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let problems = proxy.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("could not connect"), "{problems:?}");
    }
}
