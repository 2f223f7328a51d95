//! The picture of a counterexample (`Counterexample::picture`): the page a failing check
//! writes under `target/effectively-once/`, loaded in headless Chromium (Debian's `chromium`)
//! and checked on the page it renders: a lane per instance plus the cluster, the duplicated
//! event's marks, the script's flag, no script error. Where Chromium is missing the browser
//! checks are skipped, saying why on stderr, unless `EFFECTIVELY_ONCE_REQUIRE_CHROMIUM=1`
//! (`ci/test.sh` sets it), where they fail instead.

#[path = "../fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use effectively_once::{
    CheckError, ConsumerHandle, Counterexample, FaultKind, InstanceContext, KafkaConsumer,
    Verifier, check_effectively_once,
};
use fixtures::commit_after;
use fixtures::notification::{self, BoxError, EMAIL, Notifier, TOPIC, TaskCreated};
use rdkafka::consumer::CommitMode;

const REQUIRE_CHROMIUM: &str = "EFFECTIVELY_ONCE_REQUIRE_CHROMIUM";

/// The notification service, committing after the email, that remembers in memory which
/// events it emailed: alone it survives its own session timeout (it gets its partition back
/// and remembers), but a second instance that takes the partition over emails again. So the
/// minimal counterexample keeps two instances and their rebalances.
async fn remembering_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&commit_after::config())?;
    let email = ctx.effect_sink(EMAIL);
    consumer.subscribe(&[TOPIC])?;
    let mut emailed = BTreeSet::new();
    loop {
        // A lost session or a rejected commit: the record comes again, and the memory stays.
        let Ok(message) = consumer.recv().await else {
            continue;
        };
        let event = TaskCreated::parse(&message)?;
        if emailed.insert(event.event_id.clone()) {
            email.send_notification(&event).await?;
        }
        let _ = consumer.commit_message(&message, CommitMode::Sync);
    }
}

/// Two instances, whose sessions time out.
fn verifier() -> Verifier {
    let mut v = Verifier::default();
    v.topic(TOPIC)
        .encode(notification::encode)
        .effect_sink(EMAIL)
        .persist_failures(false)
        .instances(2..=2)
        .faults(&[FaultKind::SessionTimeout]);
    v
}

fn counterexample(v: &Verifier) -> Box<Counterexample> {
    match check_effectively_once(v, remembering_service) {
        Err(CheckError::Violated(c)) => c,
        other => panic!("expected a counterexample, got {other:?}"),
    }
}

/// The Chromium binary on the `PATH`, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err("no `chromium` on the PATH (Debian: apt-get install chromium)".into())
}

/// Reports a browser check that cannot run here; fails it where Chromium is required.
fn skipped(why: &str) {
    if std::env::var(REQUIRE_CHROMIUM).is_ok_and(|v| v != "0") {
        panic!("{REQUIRE_CHROMIUM} is set, but the picture cannot be checked in a browser: {why}");
    }
    // Straight to the process's stderr: libtest would capture an `eprintln!` of a passing test.
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "effectively-once: {test} SKIPPED: {why}");
}

/// Runs headless Chromium on `url` with `args`; its stdout and stderr. Fails after a minute.
fn run_chromium(browser: &Path, profile: &Path, url: &str, args: &[String]) -> (String, String) {
    let mut command = Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("chromium starts");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("chromium runs"),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            panic!("chromium did not finish within 60 s on {url}");
        }
    };
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_counterexample_comes_with_a_picture_that_renders_in_chromium() {
    let started = Instant::now();
    let c = counterexample(&verifier());
    let report = c.to_string();
    println!("{report}");
    let page = c.picture().expect("the picture was written").to_path_buf();
    let html = std::fs::read_to_string(&page).expect("the page is readable");
    // The report names the page right after the replay line.
    let replay = report
        .lines()
        .position(|l| l.starts_with("replay: "))
        .expect("a replay line");
    let named = report.lines().nth(replay + 1).unwrap_or_default();
    assert!(
        named.starts_with("picture: ")
            && named.ends_with(
                "effectively-once/report_picture.a_counterexample_comes_with_a_picture_that_renders_in_chromium.effectively-once.html"
            ),
        "{named}"
    );
    assert!(
        page.is_absolute() || page.starts_with("target"),
        "{}",
        page.display()
    );
    // The same seed writes the same bytes.
    let again = counterexample(&verifier());
    assert_eq!(again.to_string(), report);
    assert_eq!(
        std::fs::read_to_string(&page).expect("the page is readable"),
        html,
        "the same check writes the same page"
    );
    let instances = c.scenario.instances as usize;
    let duplicated = c.violation().event_ids[0].clone();
    println!(
        "{} instances, duplicated {duplicated}; two checks took {:?}",
        instances,
        started.elapsed()
    );

    let browser = match chromium() {
        Ok(browser) => browser,
        Err(why) => return skipped(&why),
    };
    let page = std::fs::canonicalize(&page).expect("the page exists");
    let url = format!("file://{}", page.display());
    let profile = page.with_extension(format!("chromium-{}", std::process::id()));
    let (dom, stderr) = run_chromium(
        &browser,
        &profile,
        &url,
        &["--virtual-time-budget=2000".into(), "--dump-dom".into()],
    );
    // The script lights up every mark of the event the address names.
    let (lit, _) = run_chromium(
        &browser,
        &profile,
        &format!("{url}#event={duplicated}"),
        &["--virtual-time-budget=2000".into(), "--dump-dom".into()],
    );
    let of_duplicated = format!(r#"" data-ev="{duplicated}""#);
    let marked = lit.matches(&of_duplicated).count();
    let lit_up = lit.matches(&format!(r#" hl{of_duplicated}"#)).count();
    assert!(
        marked >= 6,
        "the event's chip, deliveries, effects, commits: {marked}"
    );
    assert_eq!(
        lit_up, marked,
        "every mark of {duplicated} lights up:\n{lit}"
    );
    assert_eq!(
        dom.matches(" hl\"").count(),
        0,
        "nothing lit without the fragment"
    );
    let screenshot = page.with_extension("png");
    let _ = std::fs::remove_file(&screenshot);
    let (_, shot_stderr) = run_chromium(
        &browser,
        &profile,
        &url,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1500,1300".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let _ = std::fs::remove_dir_all(&profile);

    // The script ran to its end, without an error.
    for log in [&stderr, &shot_stderr] {
        assert!(
            !log.contains("Uncaught") && !log.contains("SyntaxError"),
            "a script error in the page:\n{log}"
        );
    }
    let body = dom
        .lines()
        .find(|l| l.contains("<body"))
        .unwrap_or_else(|| panic!("no <body> in the rendered page:\n{dom}"));
    assert!(body.contains(r#"data-rendered="ok""#), "{body}");
    // One lane per instance plus the cluster.
    let lanes: Vec<&str> = dom
        .match_indices(r#"data-lane=""#)
        .map(|(at, m)| {
            let rest = &dom[at + m.len()..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .collect();
    let mut expected = vec!["cluster".to_string()];
    expected.extend((0..instances).map(|i| format!("i{i}")));
    assert_eq!(lanes, expected);
    // Every mark the page drew, counted by its script.
    let marks = dom.matches(r#"<g class="mark "#).count() - 20; // the legend's 20 samples
    assert!(
        body.contains(&format!(r#"data-marks="{marks}""#)),
        "{body} {marks}"
    );
    // The duplicated event: its two effects marked as duplicates, its deliveries as offending.
    let of_event = |class: &str| {
        dom.matches(&format!(r#"class="mark {class}" data-ev="{duplicated}""#))
            .count()
    };
    assert_eq!(of_event("effect performed dup off"), 2, "{dom}");
    assert!(of_event("recv off") >= 2, "delivered at least twice");
    assert_eq!(instances, 2, "the minimal case needs both instances");
    assert!(dom.contains(r#"class="mark fault"#), "the fault is drawn");
    assert!(
        dom.contains(r#"class="mark generation""#),
        "rebalances are drawn"
    );
    assert!(dom.contains(r#"class="life""#), "the lives are drawn");
    let png = std::fs::read(&screenshot).expect("chromium wrote a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", screenshot.display());
}

#[test]
fn the_picture_can_be_turned_off() {
    let mut v = verifier();
    v.picture(false);
    let c = counterexample(&v);
    assert_eq!(c.picture(), None);
    assert!(!c.to_string().contains("\npicture: "), "{c}");
}
