//! Where a real broker comes from: librdkafka's mock cluster, a container, or a named cluster.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

use super::BrokerError;
use super::self_check::{self, SelfCheck};
use super::session::CALL_TIMEOUT;
use super::switch::BrokerSwitch;

/// The image `container` brokers use unless `EFFECTIVELY_ONCE_KAFKA_IMAGE` names another: Apache
/// Kafka's own image, as CI machines with a registry pull it.
pub const DEFAULT_KAFKA_IMAGE: &str = "apache/kafka:3.9.0";

/// How long one probe of the self-check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a container may take to answer after it started (a JVM broker takes seconds).
const CONTAINER_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the mock cluster or a named cluster may take to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which broker a run uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerProvider {
    /// librdkafka's mock cluster, in-process: no Docker, starts in milliseconds. Groups and
    /// commits work; its transactions are a stub (see [`super::self_check`]).
    MockCluster,
    /// A fresh broker container per run, through testcontainers (the `containers` feature):
    /// `apache/kafka` with testcontainers-modules' Kafka module, an image whose name contains
    /// `tansu` as Tansu (`ADVERTISED_LISTENER_URL`), any other as Apache Kafka in KRaft mode
    /// (`KAFKA_*` variables).
    Container {
        /// The image.
        image: String,
    },
    /// A running cluster. Each run creates its topics (and refuses to run if they exist) and
    /// deletes them afterwards.
    External {
        /// Its `bootstrap.servers`.
        bootstrap: String,
    },
}

impl fmt::Display for BrokerProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerProvider::MockCluster => f.write_str("librdkafka's mock cluster"),
            BrokerProvider::Container { image } => write!(f, "container {image}"),
            BrokerProvider::External { bootstrap } => write!(f, "cluster at {bootstrap}"),
        }
    }
}

const BROKER_VARIABLE: &str = "EFFECTIVELY_ONCE_BROKER";
const IMAGE_VARIABLE: &str = "EFFECTIVELY_ONCE_KAFKA_IMAGE";
const BOOTSTRAP_VARIABLE: &str = "EFFECTIVELY_ONCE_BOOTSTRAP_SERVERS";

impl BrokerProvider {
    /// The broker the environment asks for: `EFFECTIVELY_ONCE_BROKER` = `sim` (or unset: `None`,
    /// the simulator), `mock`, `container` (image from `EFFECTIVELY_ONCE_KAFKA_IMAGE`) or
    /// `external` (servers from `EFFECTIVELY_ONCE_BOOTSTRAP_SERVERS`).
    pub fn from_env() -> Result<Option<Self>, BrokerError> {
        let var = |name| std::env::var(name).ok();
        Self::from_settings(
            var(BROKER_VARIABLE).as_deref(),
            var(IMAGE_VARIABLE).as_deref(),
            var(BOOTSTRAP_VARIABLE).as_deref(),
        )
    }

    /// [`from_env`](Self::from_env) on the given values of the three variables.
    fn from_settings(
        broker: Option<&str>,
        image: Option<&str>,
        bootstrap: Option<&str>,
    ) -> Result<Option<Self>, BrokerError> {
        let given = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        match broker.map(str::trim).unwrap_or_default() {
            "" | "sim" => Ok(None),
            "mock" => Ok(Some(BrokerProvider::MockCluster)),
            "container" => Ok(Some(BrokerProvider::Container {
                image: given(image).unwrap_or_else(|| DEFAULT_KAFKA_IMAGE.to_string()),
            })),
            "external" => match given(bootstrap) {
                Some(bootstrap) => Ok(Some(BrokerProvider::External { bootstrap })),
                None => Err(BrokerError::Environment {
                    variable: BOOTSTRAP_VARIABLE,
                    value: String::new(),
                    expected: "EFFECTIVELY_ONCE_BROKER=external needs the cluster's bootstrap servers",
                }),
            },
            other => Err(BrokerError::Environment {
                variable: BROKER_VARIABLE,
                value: other.to_string(),
                expected: "sim, mock, container or external",
            }),
        }
    }

    /// A container of `EFFECTIVELY_ONCE_KAFKA_IMAGE`, or of [`DEFAULT_KAFKA_IMAGE`].
    pub fn container() -> Self {
        let image = std::env::var(IMAGE_VARIABLE).ok();
        Self::from_settings(Some("container"), image.as_deref(), None)
            .ok()
            .flatten()
            .unwrap_or(BrokerProvider::Container {
                image: DEFAULT_KAFKA_IMAGE.to_string(),
            })
    }

    /// What this kind of broker honours ([`self_check::run`] on a broker of its own, with
    /// the probe topics). Probed once per process and provider; later calls return the same
    /// findings.
    pub fn self_check(&self) -> Result<SelfCheck, BrokerError> {
        static CACHE: OnceLock<Mutex<HashMap<BrokerProvider, SelfCheck>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(found) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(self)
        {
            return Ok(found.clone());
        }
        let topics: Vec<(String, i32)> = self_check::PROBE_TOPICS
            .iter()
            .map(|(t, partitions)| (t.to_string(), *partitions))
            .collect();
        let broker = self.start(&topics)?;
        let found = self_check::run(broker.bootstrap(), PROBE_TIMEOUT);
        drop(broker);
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.clone(), found.clone());
        Ok(found)
    }

    /// Starts (or connects to) the broker and creates `topics` on it.
    pub fn start(&self, topics: &[(String, i32)]) -> Result<RunningBroker, BrokerError> {
        let started = Instant::now();
        let mut broker = match self {
            BrokerProvider::MockCluster => start_mock()?,
            BrokerProvider::Container { image } => start_container(image)?,
            BrokerProvider::External { bootstrap } => RunningBroker {
                bootstrap: bootstrap.clone(),
                kind: Kind::External,
                created: Vec::new(),
                startup: Duration::ZERO,
                switch: None,
            },
        };
        let patience = match self {
            BrokerProvider::Container { .. } => CONTAINER_STARTUP_TIMEOUT,
            _ => STARTUP_TIMEOUT,
        };
        wait_until_ready(&broker.bootstrap, patience)?;
        broker.startup = started.elapsed();
        broker.create_topics(topics)?;
        Ok(broker)
    }
}

enum Kind {
    /// The client that owns the mock cluster: the cluster lives as long as it does.
    Mock(#[allow(dead_code)] BaseProducer),
    /// Removed when dropped.
    #[cfg(feature = "containers")]
    Container(Box<super::container::BrokerContainer>),
    External,
}

/// A started broker; stops (or cleans up) when dropped.
pub struct RunningBroker {
    bootstrap: String,
    kind: Kind,
    created: Vec<String>,
    startup: Duration,
    /// What restarts it, where it can be restarted.
    switch: Option<BrokerSwitch>,
}

impl fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningBroker")
            .field("bootstrap", &self.bootstrap)
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

impl RunningBroker {
    /// Its `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// How long it took to start and answer a metadata request.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The Docker id of its container, for a [`BrokerProvider::Container`].
    #[cfg(feature = "containers")]
    #[cfg_attr(docsrs, doc(cfg(feature = "containers")))]
    pub fn container_id(&self) -> Option<&str> {
        match &self.kind {
            Kind::Container(container) => Some(container.id()),
            _ => None,
        }
    }

    /// What takes it down and back for [`Fault::BrokerRestart`](crate::Fault::BrokerRestart):
    /// the mock cluster and containers, not an external cluster.
    pub(crate) fn switch(&self) -> Option<BrokerSwitch> {
        self.switch.clone()
    }

    fn create_topics(&mut self, topics: &[(String, i32)]) -> Result<(), BrokerError> {
        if topics.is_empty() {
            return Ok(());
        }
        if let Kind::Mock(owner) = &self.kind {
            let cluster = mock_handle(owner)?;
            for (name, partitions) in topics {
                let name = CString::new(name.as_str())
                    .map_err(|_| BrokerError::Unsupported(format!("topic name {name:?}")))?;
                // SAFETY: the cluster is alive (its owner is borrowed) and `name` is a valid C
                // string for the call.
                let err = unsafe {
                    rdkafka::bindings::rd_kafka_mock_topic_create(
                        cluster,
                        name.as_ptr(),
                        *partitions,
                        1,
                    )
                };
                if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Err(BrokerError::TopicCreation {
                        topic: name.to_string_lossy().into_owned(),
                        code: err.into(),
                    });
                }
            }
            return Ok(());
        }
        let existing = topic_names(&self.bootstrap)?;
        if let Kind::External = self.kind {
            if let Some((name, _)) = topics.iter().find(|(t, _)| existing.contains(t)) {
                return Err(BrokerError::TopicExists(name.clone()));
            }
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .map_err(client("creating the admin client"))?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(BrokerError::Runtime)?;
        let results = runtime
            .block_on(admin.create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT)),
            ))
            .map_err(client("creating topics"))?;
        for result in results {
            match result {
                Ok(name) => self.created.push(name),
                Err((topic, code)) => return Err(BrokerError::TopicCreation { topic, code }),
            }
        }
        Ok(())
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Some(switch) = &self.switch {
            switch.retire();
        }
        match &self.kind {
            Kind::External if !self.created.is_empty() => {
                let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
                    .set("bootstrap.servers", &self.bootstrap)
                    .create();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build();
                if let (Ok(admin), Ok(runtime)) = (admin, runtime) {
                    let names: Vec<&str> = self.created.iter().map(String::as_str).collect();
                    let _ = runtime.block_on(admin.delete_topics(&names, &AdminOptions::new()));
                }
            }
            _ => {}
        }
    }
}

fn client(step: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> BrokerError {
    move |source| BrokerError::Client { step, source }
}

fn mock_handle(
    owner: &BaseProducer,
) -> Result<*mut rdkafka::bindings::rd_kafka_mock_cluster_t, BrokerError> {
    // SAFETY: the owner's handle is valid while it is borrowed.
    let cluster =
        unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
    if cluster.is_null() {
        return Err(BrokerError::Unsupported(
            "librdkafka created no mock cluster for test.mock.num.brokers".into(),
        ));
    }
    Ok(cluster)
}

fn start_mock() -> Result<RunningBroker, BrokerError> {
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .map_err(client("creating librdkafka's mock cluster"))?;
    let cluster = mock_handle(&owner)?;
    // SAFETY: the cluster is alive while `owner` is; the returned string is owned by it and
    // copied at once.
    let bootstrap = unsafe {
        // Without this, the mock holds each group's first join for 3 seconds.
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        CStr::from_ptr(rdkafka::bindings::rd_kafka_mock_cluster_bootstraps(cluster))
            .to_string_lossy()
            .into_owned()
    };
    Ok(RunningBroker {
        bootstrap,
        kind: Kind::Mock(owner),
        created: Vec::new(),
        startup: Duration::ZERO,
        switch: Some(BrokerSwitch::mock(cluster)),
    })
}

/// Starts a container broker ([`super::container`]).
#[cfg(feature = "containers")]
fn start_container(image: &str) -> Result<RunningBroker, BrokerError> {
    let container = super::container::start(image)?;
    Ok(RunningBroker {
        bootstrap: container.bootstrap().to_string(),
        switch: Some(BrokerSwitch::container(container.id())),
        kind: Kind::Container(Box::new(container)),
        created: Vec::new(),
        startup: Duration::ZERO,
    })
}

#[cfg(not(feature = "containers"))]
fn start_container(_image: &str) -> Result<RunningBroker, BrokerError> {
    Err(BrokerError::ContainersDisabled)
}

fn topic_names(bootstrap: &str) -> Result<Vec<String>, BrokerError> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(client("creating a metadata reader"))?;
    let metadata = reader
        .fetch_metadata(None, CALL_TIMEOUT)
        .map_err(client("reading metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect())
}

/// Waits until the broker answers a metadata request.
fn wait_until_ready(bootstrap: &str, patience: Duration) -> Result<(), BrokerError> {
    let started = Instant::now();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(client("creating a metadata reader"))?;
    loop {
        let last_error = match reader.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => "the metadata lists no broker".to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > patience {
            return Err(BrokerError::NotReady {
                bootstrap: bootstrap.to_string(),
                waited: started.elapsed(),
                last_error,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_the_broker() {
        let parse = BrokerProvider::from_settings;
        assert_eq!(parse(None, None, None).unwrap(), None);
        assert_eq!(parse(Some("sim"), None, None).unwrap(), None);
        assert_eq!(
            parse(Some("mock"), None, None).unwrap(),
            Some(BrokerProvider::MockCluster)
        );
        assert_eq!(
            parse(Some("container"), None, None).unwrap(),
            Some(BrokerProvider::Container {
                image: DEFAULT_KAFKA_IMAGE.into()
            })
        );
        assert_eq!(
            parse(Some("container"), Some("local/tansu:1"), None).unwrap(),
            Some(BrokerProvider::Container {
                image: "local/tansu:1".into()
            })
        );
        assert_eq!(
            parse(Some("external"), None, Some("kafka:9092")).unwrap(),
            Some(BrokerProvider::External {
                bootstrap: "kafka:9092".into()
            })
        );
        let missing = parse(Some("external"), None, Some(" ")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("EFFECTIVELY_ONCE_BOOTSTRAP_SERVERS"),
            "{missing}"
        );
        let unknown = parse(Some("kafka"), None, None).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "EFFECTIVELY_ONCE_BROKER=\"kafka\": sim, mock, container or external"
        );
    }

    #[test]
    fn a_cluster_that_does_not_answer_is_an_error_not_a_hang() {
        let down = BrokerProvider::External {
            bootstrap: "127.0.0.1:1".into(),
        };
        let started = std::time::Instant::now();
        let error = down.start(&[]).unwrap_err();
        assert!(matches!(error, BrokerError::NotReady { .. }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        println!("{error}");
    }
}
