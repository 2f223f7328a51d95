//! Broker containers, through [testcontainers](https://docs.rs/testcontainers) (the `containers`
//! feature): started on a mapped loopback port, labelled as the kit's, removed when the
//! [`RunningBroker`](super::RunningBroker) holding them drops (also while a panic unwinds), and
//! their network cut and restored through the Docker API for broker restarts.
//!
//! Three kinds of image:
//! - `apache/kafka` (and `apache/kafka-native`): testcontainers-modules' Kafka module, whose
//!   KRaft settings advertise the port Docker mapped once the container runs, plus the group
//!   settings the kit relies on (no initial rebalance delay, sessions down to 1 s);
//! - an image whose name contains `tansu`: a local image (`ci/tansu-image.sh`), which reads its
//!   advertised listener at start, so the port is chosen first (a clash with another process
//!   is retried on a new port);
//! - any other: as Apache Kafka's image, configured through `KAFKA_*` variables.
//!
//! A process that dies without unwinding (SIGKILL) leaves its containers behind: each start
//! first removes the kit's containers whose owning process is gone (the `effectively-once.pid`
//! label).

use std::net::TcpListener;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{
    ListContainersOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use testcontainers::core::{ContainerPort, IntoContainerPort};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};
use testcontainers_modules::kafka::apache::Kafka;

use super::BrokerError;

/// The label every broker container of the kit carries.
pub const LABEL: &str = "effectively-once";
/// The label naming the process that started the container.
pub const PID_LABEL: &str = "effectively-once.pid";

/// The port brokers listen on inside their container.
const BROKER_PORT: ContainerPort = ContainerPort::Tcp(9092);

/// How many times a Tansu container is started on a new port when the chosen one was taken
/// between choosing it and Docker binding it.
const PORT_ATTEMPTS: usize = 3;

/// The Docker network broker containers are started on (Docker's default).
const NETWORK: &str = "bridge";

/// A running broker container; removed when dropped.
pub(crate) struct BrokerContainer {
    /// Kept for its drop, which removes the container.
    _container: Started,
    id: String,
    bootstrap: String,
}

enum Started {
    Kafka(#[allow(dead_code)] Container<Kafka>),
    Generic(#[allow(dead_code)] Container<GenericImage>),
}

impl BrokerContainer {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

fn docker_error(what: &str) -> impl Fn(String) -> BrokerError + '_ {
    move |e| BrokerError::Docker(format!("{what}: {e}"))
}

/// Splits `repository[:tag]` (a registry host may carry a port: `host:5000/name:tag`).
fn name_and_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

fn free_port() -> Result<u16, BrokerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BrokerError::Docker(format!("finding a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BrokerError::Docker(format!("finding a free port: {e}")))
}

/// Starts a broker container of `image`.
pub(crate) fn start(image: &str) -> Result<BrokerContainer, BrokerError> {
    remove_orphans();
    let pid = std::process::id().to_string();
    let (name, tag) = name_and_tag(image);
    if name == "apache/kafka" || name == "apache/kafka-native" {
        let container = Kafka::default()
            .with_jvm_image()
            .with_name(name)
            .with_tag(tag)
            .with_label(LABEL, "broker")
            .with_label(PID_LABEL, pid)
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            // The kit caps consumers' session.timeout.ms at 2 s (Kafka's minimum is 6 s).
            .with_env_var("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .map_err(|e| BrokerError::Docker(format!("starting {image}: {e}")))?;
        let port = container
            .get_host_port_ipv4(BROKER_PORT)
            .map_err(|e| BrokerError::Docker(format!("the port of {image}: {e}")))?;
        return Ok(BrokerContainer {
            id: container.id().to_string(),
            bootstrap: format!("127.0.0.1:{port}"),
            _container: Started::Kafka(container),
        });
    }
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let advertised = format!("127.0.0.1:{port}");
        let mut request = GenericImage::new(name, tag)
            .with_exposed_port(BROKER_PORT)
            .with_mapped_port(port, 9092.tcp())
            .with_label(LABEL, "broker")
            .with_label(PID_LABEL, pid.clone());
        let env: Vec<(String, String)> = if image.contains("tansu") {
            vec![(
                "ADVERTISED_LISTENER_URL".into(),
                format!("tcp://{advertised}"),
            )]
        } else {
            kraft_env(&advertised)
        };
        for (key, value) in env {
            request = request.with_env_var(key, value);
        }
        match request.start() {
            Ok(container) => {
                return Ok(BrokerContainer {
                    id: container.id().to_string(),
                    bootstrap: advertised,
                    _container: Started::Generic(container),
                });
            }
            // Most likely the port was taken meanwhile: try another.
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(BrokerError::Docker(format!(
        "starting {image} ({PORT_ATTEMPTS} attempts): {last_error}; is Docker running, and \
         is the image available locally or from a registry?"
    )))
}

/// Apache Kafka in KRaft mode through its image's `KAFKA_*` variables.
fn kraft_env(advertised: &str) -> Vec<(String, String)> {
    [
        ("KAFKA_NODE_ID", "1".to_string()),
        ("KAFKA_PROCESS_ROLES", "broker,controller".into()),
        (
            "KAFKA_LISTENERS",
            "PLAINTEXT://:9092,CONTROLLER://:9093".into(),
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://{advertised}"),
        ),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
        ),
        ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093".into()),
        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
        ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
        ("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs a Docker API call on a thread and runtime of its own: the callers are synchronous,
/// some of them inside the run's runtime (a broker restart fired by a client call).
fn with_docker<T: Send>(
    f: impl AsyncFnOnce(&Docker) -> Result<T, bollard::errors::Error> + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(f(&docker)).map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the Docker API call panicked".into()))
    })
}

/// Cuts the container off its network (`up == false`: its published port refuses
/// connections) or reconnects it.
pub(crate) fn set_network(id: &str, up: bool) -> Result<(), String> {
    let id = id.to_string();
    with_docker(async move |docker| {
        if up {
            let request = NetworkConnectRequest {
                container: Some(id),
                ..Default::default()
            };
            docker.connect_network(NETWORK, request).await
        } else {
            let request = NetworkDisconnectRequest {
                container: Some(id),
                force: Some(true),
            };
            docker.disconnect_network(NETWORK, request).await
        }
    })
    .map_err(|e| {
        let verb = if up { "connecting" } else { "disconnecting" };
        format!("{verb} the broker container's network: {e}")
    })
}

/// Lists every container (running or not) that carries `label` (`key` or `key=value`).
fn labelled(label: String) -> ListContainersOptions {
    let filters = std::collections::HashMap::from([("label".to_string(), vec![label])]);
    ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build()
}

/// The ids of the kit's broker containers (running or not) started by process `pid`, or by
/// any process of the kit when `None`.
pub fn labelled_containers(pid: Option<u32>) -> Result<Vec<String>, BrokerError> {
    let label = match pid {
        Some(pid) => format!("{PID_LABEL}={pid}"),
        None => LABEL.to_string(),
    };
    let options = labelled(label);
    let listed = with_docker(async move |docker| docker.list_containers(Some(options)).await)
        .map_err(docker_error("listing the kit's containers"))?;
    Ok(listed.into_iter().filter_map(|c| c.id).collect())
}

/// Removes the kit's containers whose owning process is gone (it was killed before it could
/// remove them). Best effort: a failure here must not stop a run.
fn remove_orphans() {
    // Without /proc (not Linux) a process cannot be told alive: remove nothing.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let options = labelled(LABEL.to_string());
    let _ = with_docker(async move |docker| {
        let listed = docker.list_containers(Some(options)).await?;
        for container in listed {
            let owner = container
                .labels
                .as_ref()
                .and_then(|l| l.get(PID_LABEL))
                .and_then(|p| p.parse::<u32>().ok());
            let alive =
                owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            if let (false, Some(id)) = (alive, container.id) {
                let remove = RemoveContainerOptionsBuilder::new().force(true).build();
                let _ = docker.remove_container(&id, Some(remove)).await;
            }
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_name_and_tag() {
        assert_eq!(
            name_and_tag("apache/kafka:3.9.0"),
            ("apache/kafka", "3.9.0")
        );
        assert_eq!(
            name_and_tag("effectively-once-tansu:local"),
            ("effectively-once-tansu", "local")
        );
        assert_eq!(
            name_and_tag("localhost:5000/kafka"),
            ("localhost:5000/kafka", "latest")
        );
        assert_eq!(
            name_and_tag("localhost:5000/kafka:1"),
            ("localhost:5000/kafka", "1")
        );
    }
}
