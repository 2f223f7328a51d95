//! The kit's speed and how it scales: `ci/bench.sh` runs this in release mode
//! (`cargo bench --bench kit`). Each figure is the median of three runs, with min and max; the
//! summary goes to `target/bench/summary.json`, a table to stdout. Under `cargo test` (no
//! `--bench` argument) it makes one quick pass with small sizes and writes nothing.
//!
//! `-- --sim-only` measures the simulator's figures only (records/s, allocations, peak memory)
//! and writes nothing. The binary counts its heap allocations (a counting global allocator, switched on around
//! the runs it measures) and re-executes itself with `--rss-records N` to read the peak memory
//! of one run of its own (`VmHWM` is a process-wide peak).

#[path = "../fixtures/mod.rs"]
mod fixtures;
#[path = "../tests/zoo/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use effectively_once::broker::BrokerProvider;
use effectively_once::check::{compare_on_broker, run_scenario};
use effectively_once::history::HistoryEvent;
use effectively_once::scenario::{Scenario, ScenarioSpace};
use effectively_once::{
    CheckError, ConsumerHandle, FaultKind, InputRecord, InstanceContext, InstanceExit,
    KafkaConsumer, Outcome, Passed, Semantics, Simulation, Verifier, check,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use rdkafka::ClientConfig;
use serde_json::{Value, json};

use fixtures::dedup_same_transaction::{INBOX, INBOX_QUERY, Mark};
use fixtures::notification::{BoxError, GROUP, TOPIC};
use fixtures::scenarios::hundred_events_three_crashes;
use fixtures::services::*;
use fixtures::state_check::{NOTIFIED, NOTIFIED_QUERY, Transition};
use fixtures::upsert_natural_key::{TASK_ROW, TASK_ROW_QUERY, Write};
use support::{store_verifier, verifier as email_verifier};

/// The system allocator, counting the allocations (and reallocations) made while
/// [`COUNTING`] is set.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count_one() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches no memory of the
// allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the number of allocations it made.
fn counting_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    let result = f();
    COUNTING.store(false, Ordering::SeqCst);
    (result, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

/// Median, min and max of a figure over several runs.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        Stats {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }

    fn json(&self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

/// One row of the table.
struct Row {
    figure: String,
    unit: &'static str,
    stats: Result<Stats, String>,
}

fn row(figure: impl Into<String>, unit: &'static str, stats: Result<Stats, String>) -> Row {
    let row = Row {
        figure: figure.into(),
        unit,
        stats,
    };
    eprintln!("measured {}", row.figure);
    row
}

/// Set when the binary runs under `cargo test` (without `--bench`): a quick pass over every
/// figure with small sizes and one run each, to keep the benchmark working; nothing is written.
static QUICK: AtomicBool = AtomicBool::new(false);

fn repeats() -> usize {
    if QUICK.load(Ordering::Relaxed) { 1 } else { 3 }
}

fn runs<T>(n: usize, mut f: impl FnMut() -> Result<T, String>) -> Result<Vec<T>, String> {
    (0..n).map(|_| f()).collect()
}

fn seconds(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64()
}

/// The trivial consumer: receives, and lets auto-commit commit.
async fn trivial_consumer(ctx: InstanceContext) -> Result<(), BoxError> {
    let mut config = ClientConfig::new();
    config
        .set("group.id", GROUP)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest");
    let consumer = ctx.create_consumer(&config)?;
    consumer.subscribe(&[TOPIC])?;
    loop {
        consumer.recv().await?;
    }
}

/// `records` keyed records (100 keys) on a topic of 3 partitions, consumed by `instances`
/// instances; on a real broker the same input is written before the instances start.
fn trivial_simulation(instances: u32, records: usize) -> Result<Simulation, String> {
    let mut sim = Simulation::builder();
    sim.topic(TOPIC, 3).instances(instances);
    // A run takes 3 ms of virtual time per record on average (the recv latency): a million
    // records outlast the default 30-minute limit.
    sim.time_limit(Duration::from_secs(30 * 60).max(Duration::from_millis(10 * records as u64)));
    for n in 0..records {
        sim.produce(
            InputRecord::new(TOPIC)
                .key(format!("k{}", n % 100))
                .payload(format!("{n}")),
        );
    }
    sim.build().map_err(|e| e.to_string())
}

/// Checks that the run handed every record to the consumer.
fn all_delivered(outcome: &Outcome, records: usize) -> Result<(), String> {
    let delivered = outcome
        .history()
        .events()
        .filter(|e| matches!(e, HistoryEvent::Delivered { .. }))
        .count();
    if delivered < records {
        return Err(format!("only {delivered} of {records} records delivered"));
    }
    Ok(())
}

/// Records delivered and committed per second through the trivial consumer: the wall time of
/// the run (`Simulation::run`, which returns the history and the cluster), not of reading it.
fn sim_records_per_sec(instances: u32, records: usize) -> Result<Stats, String> {
    let sim = trivial_simulation(instances, records)?;
    let rates = runs(repeats(), || {
        let started = Instant::now();
        let outcome = sim.run(trivial_consumer).map_err(|e| e.to_string())?;
        let wall = started.elapsed().as_secs_f64();
        all_delivered(&outcome, records)?;
        Ok(records as f64 / wall)
    })?;
    Ok(Stats::of(rates))
}

/// Heap allocations per delivered record in one run through one instance (the count is the
/// same on every run: one run is measured).
fn sim_allocations_per_record(records: usize) -> Result<Stats, String> {
    let sim = trivial_simulation(1, records)?;
    let (outcome, allocations) = counting_allocations(|| sim.run(trivial_consumer));
    let outcome = outcome.map_err(|e| e.to_string())?;
    all_delivered(&outcome, records)?;
    Ok(Stats::of(vec![allocations as f64 / records as f64]))
}

/// `--rss-records N`: one run of N records through one instance; prints the process's peak
/// resident set (`VmHWM`, kB) once it is over, for [`sim_peak_rss_mib`].
fn rss_child(records: usize) -> Result<(), String> {
    let sim = trivial_simulation(1, records)?;
    let outcome = sim.run(trivial_consumer).map_err(|e| e.to_string())?;
    all_delivered(&outcome, records)?;
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("VmHWM {}", hwm.trim());
    drop(outcome);
    Ok(())
}

/// The peak resident memory of a process that builds a run of `records` records and runs it
/// (this binary again, with `--rss-records`), in MiB.
fn sim_peak_rss_mib(records: usize) -> Result<Stats, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = std::process::Command::new(exe)
        .args(["--rss-records", &records.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the --rss-records run failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let kb: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM "))
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM line in {stdout:?}"))?;
    Ok(Stats::of(vec![kb / 1024.0]))
}

/// The same run as [`sim_records_per_sec`] on librdkafka's mock cluster, in real time: the
/// wall time of `Simulation::run_on`, broker start, input write and the settle period
/// included (what a test on the mock cluster pays).
fn mock_cluster_records_per_sec(records: usize) -> Result<Stats, String> {
    let sim = trivial_simulation(1, records)?;
    let rates = runs(repeats(), || {
        let started = Instant::now();
        let outcome = sim
            .run_on(&BrokerProvider::MockCluster, trivial_consumer)
            .map_err(|e| e.to_string())?;
        let wall = started.elapsed().as_secs_f64();
        all_delivered(&outcome, records)?;
        Ok(records as f64 / wall)
    })?;
    Ok(Stats::of(rates))
}

/// Cases per second of a passing check with 50-event scenarios and every fault kind, judged on
/// `threads` threads.
fn cases_per_sec<F, Fut>(
    verifier: &Verifier,
    cases: u32,
    threads: usize,
    factory: F,
) -> Result<Stats, String>
where
    F: Fn(InstanceContext) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let mut v = verifier.clone();
    v.cases(cases)
        .events(50..=50)
        .faults(&FaultKind::ALL)
        .threads(threads);
    let rates = runs(repeats(), || {
        let started = Instant::now();
        let passed: Passed =
            check(Semantics::EffectivelyOnce, &v, factory.clone()).map_err(|e| e.to_string())?;
        Ok(passed.cases as f64 / started.elapsed().as_secs_f64())
    })?;
    Ok(Stats::of(rates))
}

/// Milliseconds to the first counterexample, milliseconds to shrink it, and its size.
fn zoo_fixture<F, Fut>(
    name: &str,
    semantics: Semantics,
    verifier: &Verifier,
    factory: F,
) -> Vec<Row>
where
    F: Fn(InstanceContext) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let counterexample = |v: &Verifier| match check(semantics, v, factory.clone()) {
        Err(CheckError::Violated(c)) => Ok(c),
        other => Err(format!("expected a counterexample: {other:?}")),
    };
    let mut unshrunk = verifier.clone();
    unshrunk.max_shrink_iters(0);
    let measured = runs(repeats(), || {
        let started = Instant::now();
        counterexample(&unshrunk)?;
        let first = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let c = counterexample(verifier)?;
        let total = started.elapsed().as_secs_f64() * 1000.0;
        Ok((
            first,
            (total - first).max(0.0),
            (c.scenario.events.len(), c.scenario.faults.len()),
        ))
    });
    match measured {
        Err(e) => vec![row(format!("{name}: counterexample"), "ms", Err(e))],
        Ok(measured) => {
            let (events, faults) = measured[0].2;
            vec![
                row(
                    format!("{name}: first counterexample"),
                    "ms",
                    Ok(Stats::of(measured.iter().map(|m| m.0).collect())),
                ),
                row(
                    format!("{name}: shrinking (minimal: {events} event(s), {faults} fault(s))"),
                    "ms",
                    Ok(Stats::of(measured.iter().map(|m| m.1).collect())),
                ),
            ]
        }
    }
}

/// A scenario of `events` events from the default space with every fault kind.
fn scenario_of(events: usize) -> Scenario {
    let mut space = ScenarioSpace::default();
    space.events(events..=events).faults(&FaultKind::ALL);
    space
        .strategy()
        .new_tree(&mut TestRunner::deterministic())
        .expect("the default space generates")
        .current()
}

fn time_per_case(events: usize) -> Result<Stats, String> {
    let scenario = scenario_of(events);
    let v = email_verifier();
    let times = runs(repeats(), || {
        let mut result = Ok(());
        let wall = seconds(|| {
            result = run_scenario(
                Semantics::EffectivelyOnce,
                &v,
                &scenario,
                idempotency_key_service,
            )
            .map(drop)
            .map_err(|e| e.to_string());
        });
        result.map(|()| wall * 1000.0)
    })?;
    Ok(Stats::of(times))
}

fn broker_rows(provider: &BrokerProvider, name: &str) -> Vec<Row> {
    let start = runs(repeats(), || {
        let broker = provider
            .start(&[("bench".to_string(), 1)])
            .map_err(|e| e.to_string())?;
        Ok(broker.startup().as_secs_f64())
    })
    .map(Stats::of);
    let scenario = hundred_events_three_crashes();
    let v = email_verifier();
    let wall = provider
        .self_check()
        .map_err(|e| e.to_string())
        .and_then(|_| {
            runs(repeats(), || {
                let compared = compare_on_broker(
                    Semantics::EffectivelyOnce,
                    &v,
                    provider,
                    &scenario,
                    idempotency_key_service,
                )
                .map_err(|e| e.to_string())?;
                match compared.agrees() {
                    Some(true) => Ok(compared.broker_wall.as_secs_f64()),
                    _ => Err(compared.to_string()),
                }
            })
        })
        .map(Stats::of);
    vec![
        row(format!("{name}: broker start"), "s", start),
        row(
            format!("{name}: 100 events, 3 crashes (verdict agrees)"),
            "s",
            wall,
        ),
    ]
}

fn main() {
    // `--profile-records N`: one run of N records through one instance and nothing else, for an
    // instruction count under callgrind (`ci/instructions.sh`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--profile-records") {
        let records = args
            .get(n + 1)
            .and_then(|v| v.parse().ok())
            .expect("--profile-records takes a record count");
        QUICK.store(true, Ordering::Relaxed);
        match sim_records_per_sec(1, records) {
            Ok(stats) => println!("{records} records: {:.0} records/s", stats.median),
            Err(e) => {
                eprintln!("profile run failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `--profile-cases N [--inbox] [--threads T]`: one check of N cases of the idempotency-key
    // consumer (or the SQLite inbox consumer) on T threads (default 1), for an instruction count
    // under callgrind.
    if let Some(n) = args.iter().position(|a| a == "--profile-cases") {
        let cases = args
            .get(n + 1)
            .and_then(|v| v.parse().ok())
            .expect("--profile-cases takes a case count");
        QUICK.store(true, Ordering::Relaxed);
        let threads = args
            .iter()
            .position(|a| a == "--threads")
            .and_then(|n| args.get(n + 1)?.parse().ok())
            .unwrap_or(1);
        let measured = if args.iter().any(|a| a == "--inbox") {
            cases_per_sec(&store_verifier(INBOX, INBOX_QUERY), cases, threads, |ctx| {
                inbox_service(ctx, Mark::SameTransaction)
            })
        } else {
            cases_per_sec(&email_verifier(), cases, threads, idempotency_key_service)
        };
        match measured {
            Ok(stats) => println!("{cases} cases: {:.0} cases/s", stats.median),
            Err(e) => {
                eprintln!("profile run failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `--rss-records N`: one run of N records, then the peak memory (see `sim_peak_rss_mib`).
    if let Some(n) = args.iter().position(|a| a == "--rss-records") {
        let records = args
            .get(n + 1)
            .and_then(|v| v.parse().ok())
            .expect("--rss-records takes a record count");
        if let Err(e) = rss_child(records) {
            eprintln!("rss run failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    QUICK.store(quick, Ordering::Relaxed);
    let (records, rss_records, cases, scaling): (usize, usize, u32, &[usize]) = if quick {
        (1_000, 10_000, 5, &[10, 100])
    } else {
        (100_000, 1_000_000, 200, &[10, 100, 1_000, 10_000])
    };
    let mut rows = Vec::new();
    for instances in [1, 3] {
        rows.push(row(
            format!("sim_records_per_sec: {instances} instance(s), {records} records"),
            "records/s",
            sim_records_per_sec(instances, records),
        ));
    }
    rows.push(row(
        format!("sim_allocations_per_record: 1 instance, {records} records"),
        "allocations/record",
        sim_allocations_per_record(records),
    ));
    rows.push(row(
        format!("sim_peak_rss: 1 instance, {rss_records} records (whole process)"),
        "MiB",
        sim_peak_rss_mib(rss_records),
    ));
    if std::env::args().any(|a| a == "--sim-only") {
        // The simulator's rows only, printed and not written (to compare two builds).
        report(&rows, false);
        return;
    }
    let all_threads = std::thread::available_parallelism().map_or(1, usize::from);
    for threads in [1, all_threads] {
        let on = |what: &str| {
            format!("cases_per_sec: 50 events, all fault kinds, {what}, {threads} thread(s)")
        };
        rows.push(row(
            on("idempotency-key consumer"),
            "cases/s",
            cases_per_sec(&email_verifier(), cases, threads, idempotency_key_service),
        ));
        rows.push(row(
            on("SQLite dedup (inbox) consumer"),
            "cases/s",
            cases_per_sec(
                &store_verifier(INBOX, INBOX_QUERY),
                cases / 2 + 1,
                threads,
                |ctx| inbox_service(ctx, Mark::SameTransaction),
            ),
        ));
    }
    use Semantics::*;
    let email = email_verifier();
    rows.extend(zoo_fixture(
        "auto-commit",
        AtLeastOnce,
        &email,
        auto_commit_service,
    ));
    rows.extend(zoo_fixture(
        "commit before",
        AtLeastOnce,
        &email,
        commit_before_service,
    ));
    rows.extend(zoo_fixture(
        "commit after",
        EffectivelyOnce,
        &email,
        commit_after_service,
    ));
    rows.extend(zoo_fixture(
        "dedup after effect",
        EffectivelyOnce,
        &email,
        dedup_after_effect_service,
    ));
    rows.extend(zoo_fixture(
        "inbox, separate transaction",
        EffectivelyOnce,
        &store_verifier(INBOX, INBOX_QUERY),
        |ctx| inbox_service(ctx, Mark::SeparateTransaction),
    ));
    rows.extend(zoo_fixture(
        "plain insert",
        EffectivelyOnce,
        &store_verifier(TASK_ROW, TASK_ROW_QUERY),
        |ctx| task_table_service(ctx, Write::PlainInsert),
    ));
    rows.extend(zoo_fixture(
        "unconditional transition",
        EffectivelyOnce,
        &store_verifier(NOTIFIED, NOTIFIED_QUERY),
        |ctx| state_check_service(ctx, Transition::Unconditional),
    ));
    rows.extend(zoo_fixture(
        "poison record panics",
        EffectivelyOnce,
        &email,
        poison_panics_service,
    ));
    for &events in scaling {
        rows.push(row(
            format!("scaling: one case of {events} events"),
            "ms",
            time_per_case(events),
        ));
    }
    if quick {
        // Real brokers take seconds per run; `cargo test` covers them in tests/brokers.
        report(&rows, false);
        return;
    }
    rows.extend(broker_rows(&BrokerProvider::MockCluster, "mock cluster"));
    rows.extend(mock_cluster_comparison(MOCK_CLUSTER_RECORDS));
    match std::env::var("EFFECTIVELY_ONCE_KAFKA_IMAGE") {
        Ok(image) => rows.extend(broker_rows(
            &BrokerProvider::Container {
                image: image.clone(),
            },
            &format!("container {image}"),
        )),
        Err(_) => rows.push(row(
            "container",
            "s",
            Err(
                "not measured: EFFECTIVELY_ONCE_KAFKA_IMAGE is not set (ci/bench.sh sets it)"
                    .into(),
            ),
        )),
    }
    report(&rows, true);
}

/// How many records the trivial consumer reads on the mock cluster: with 100,000 the run
/// fails, reading the topic back for the cluster snapshot takes longer than the 10 s the
/// broker backend allows (26,288 records read in 10 s); 20,000 take about 14 s a run.
const MOCK_CLUSTER_RECORDS: usize = 20_000;

/// The trivial consumer on the mock cluster, and the simulator's speed against it on the
/// same input.
fn mock_cluster_comparison(records: usize) -> Vec<Row> {
    let mock = mock_cluster_records_per_sec(records);
    let ratio = match (&mock, sim_records_per_sec(1, records)) {
        (Ok(mock), Ok(sim)) => Ok(Stats::of(vec![sim.median / mock.median])),
        (Err(e), _) => Err(format!("no mock-cluster figure: {e}")),
        (_, Err(e)) => Err(format!("no simulator figure: {e}")),
    };
    vec![
        row(
            format!(
                "mock_cluster_records_per_sec: 1 instance, {records} records (100000 do not \
                 fit: reading the topic back exceeds the backend's 10 s)"
            ),
            "records/s",
            mock,
        ),
        row(
            format!("sim / mock cluster ratio: 1 instance, {records} records (medians)"),
            "x",
            ratio,
        ),
    ]
}

/// Prints the table; with `write`, also the summary file.
fn report(rows: &[Row], write: bool) {
    println!("| figure | median | min | max | unit |");
    println!("|---|---:|---:|---:|---|");
    let mut summary = serde_json::Map::new();
    for r in rows {
        match &r.stats {
            Ok(s) => {
                println!(
                    "| {} | {:.3} | {:.3} | {:.3} | {} |",
                    r.figure, s.median, s.min, s.max, r.unit
                );
                let mut entry = s.json();
                entry["unit"] = json!(r.unit);
                summary.insert(r.figure.clone(), entry);
            }
            Err(why) => {
                println!("| {} | not measured: {why} | | | {} |", r.figure, r.unit);
                summary.insert(r.figure.clone(), json!({ "error": why, "unit": r.unit }));
            }
        }
    }
    if rows.iter().any(|r| r.stats.is_err()) {
        eprintln!("some figures were not measured (see the table)");
        std::process::exit(1);
    }
    if !write {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        std::fs::write(
            format!("{dir}/summary.json"),
            serde_json::to_string_pretty(&Value::Object(summary)).expect("plain JSON"),
        )
    });
    match written {
        Ok(()) => eprintln!("summary: {dir}/summary.json"),
        Err(e) => {
            eprintln!("could not write {dir}/summary.json: {e}");
            std::process::exit(1);
        }
    }
}
