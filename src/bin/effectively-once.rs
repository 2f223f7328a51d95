//! `effectively-once check -- <command>`: verifies a consumer program, in any language, as a
//! black box (see `effectively_once::check::BlackBox`), prints the verdict and exits 0 when the
//! semantics held, 1 on a violation, 2 when the program could not be verified.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use effectively_once::Semantics;
use effectively_once::check::{BlackBox, BlackBoxError};
use effectively_once::ledger::OutputTopic;

#[derive(Parser)]
#[command(
    name = "effectively-once",
    version,
    about = "Proves a Kafka consumer's delivery semantics through crashes and failed effects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the consumer program through every crash point of a fault-free run and judges
    /// each run; the first failing one is shrunk and reported. The program gets
    /// KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, KAFKA_GROUP_ID, EFFECTS_URL and INSTANCE in its
    /// environment (or under its own names, with --env) and performs each event's side effect
    /// with POST $EFFECTS_URL/effects/<sink> and a JSON body carrying the event's "event_id".
    Check {
        /// The delivery semantics the program must have.
        #[arg(long, value_enum, default_value = "effectively-once")]
        semantics: SemanticsArg,
        /// How many instances run at once.
        #[arg(long, default_value_t = 1)]
        instances: u32,
        /// How many events the input holds.
        #[arg(long, default_value_t = 3)]
        events: usize,
        /// The topic the input is written to (KAFKA_TOPIC).
        #[arg(long, default_value = "task-events")]
        topic: String,
        /// The consumer group the instances are told to use (KAFKA_GROUP_ID).
        #[arg(long, default_value = "notification-service")]
        group: String,
        /// An effect sink every event must take effect on (repeat for several; default: email,
        /// or none with --output-topic).
        #[arg(long = "sink")]
        sinks: Vec<String>,
        /// The longest one run may take, in seconds.
        #[arg(long, default_value_t = 90)]
        time_limit: u64,
        /// How many runs go at once (each with its own broker and processes; they mostly
        /// wait for group rebalances, so more than the cores).
        #[arg(long, default_value_t = 16)]
        at_once: usize,
        /// Each record's payload, with {event_id}, {key} and {number} replaced by the event's id
        /// (evt-0, ...), key (k0, ...) and number. Default: {"event_id":"evt-0","key":"k0",
        /// "data":{"value":0}}.
        #[arg(long)]
        payload: Option<String>,
        /// Sets a variable the program reads, NAME=VALUE, with {bootstrap}, {effects_url},
        /// {instance}, {topic} and {group} filled in (repeat for several), e.g.
        /// --env KAFKA_BROKERS={bootstrap} --env EMAIL_API_URL={effects_url}/effects/email.
        #[arg(long = "env", value_name = "NAME=VALUE")]
        environment: Vec<String>,
        /// A topic the program writes its effects to (repeat for several): each event must
        /// have exactly one record there whose JSON payload's "event_id" names it, as a
        /// read_committed consumer reads the topic after each run. Without --sink, the
        /// effect service's sinks are then not counted.
        #[arg(long = "output-topic", value_name = "TOPIC")]
        output_topics: Vec<String>,
        /// Report the first failing run as found, without shrinking its input.
        #[arg(long)]
        no_shrink: bool,
        /// How many random runs with two faults follow the one-fault runs (0 for none).
        #[arg(long, default_value_t = 8)]
        random_runs: usize,
        /// The seed the random runs' faults are drawn from (default: EFFECTIVELY_ONCE_SEED,
        /// or 0).
        #[arg(long)]
        seed: Option<u64>,
        /// The consumer program and its arguments.
        #[arg(last = true, required = true)]
        program: Vec<String>,
    },
}

/// The semantics names the command line takes (Semantics' own, in kebab case).
#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::enum_variant_names)]
enum SemanticsArg {
    EffectivelyOnce,
    AtLeastOnce,
    AtMostOnce,
}

impl From<SemanticsArg> for Semantics {
    fn from(s: SemanticsArg) -> Self {
        match s {
            SemanticsArg::EffectivelyOnce => Semantics::EffectivelyOnce,
            SemanticsArg::AtLeastOnce => Semantics::AtLeastOnce,
            SemanticsArg::AtMostOnce => Semantics::AtMostOnce,
        }
    }
}

fn main() -> ExitCode {
    let Command::Check {
        semantics,
        instances,
        events,
        topic,
        group,
        sinks,
        time_limit,
        at_once,
        payload,
        environment,
        output_topics,
        no_shrink,
        random_runs,
        seed,
        program,
    } = Cli::parse().command;
    let mut black_box = BlackBox::command(program);
    black_box
        .instances(instances)
        .events(events)
        .topic(topic)
        .group(group)
        .time_limit(Duration::from_secs(time_limit))
        .at_once(at_once)
        .shrink(!no_shrink)
        .random_runs(random_runs);
    if let Some(seed) = seed {
        black_box.seed(seed);
    }
    if !sinks.is_empty() {
        black_box.sinks(sinks);
    }
    for topic in output_topics {
        black_box.output_topic(OutputTopic::json_event_id(topic, 1));
    }
    for assignment in environment {
        let Some((name, value)) = assignment.split_once('=') else {
            eprintln!("effectively-once: --env {assignment:?} is not NAME=VALUE");
            return ExitCode::from(2);
        };
        black_box.env(name, value);
    }
    if let Some(template) = payload {
        black_box.encode(move |event| {
            let n = event.event_id.trim_start_matches("evt-");
            template
                .replace("{event_id}", &event.event_id)
                .replace("{key}", &event.key)
                .replace("{number}", n)
                // The short form (clap's help cannot show it: it reads `{n}` as a line break).
                .replace("{n}", n)
                .into_bytes()
        });
    }
    match black_box.check(semantics.into()) {
        Ok(passed) => {
            println!("{passed}");
            ExitCode::SUCCESS
        }
        Err(e @ BlackBoxError::Violated(_)) => {
            println!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
