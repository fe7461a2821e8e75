//! The Gherkin conformance suite: runs `features/*.feature` against a real `imsg-gateway run`
//! talking to fake-imsg, or to a real imsg when `IMSG_CONFORMANCE_CLI=/path/to/imsg`.
//!
//! This file owns the run: the command line (`--junit PATH` / `CONFORMANCE_JUNIT`, a
//! positional name filter, cucumber's own options), skipping `@fake-only` scenarios against a
//! real imsg (reported as skipped, never as passed), the writers (console and JUnit), the
//! per-scenario teardown, and the final `N passed, N failed` line CI reads.
//! `harness` runs processes and reads the tap log; `steps` holds the phrases; `support` is
//! what the other process-level tests share (binaries, signals, stopping a child).

mod support;

#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/steps.rs"]
mod steps;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cucumber::writer::Stats as _;
use cucumber::{cli, event, writer, World as _, WriterExt as _};

use steps::GatewayWorld;

/// Scenario outcomes, counted as each scenario finishes (its after hook).
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Options of this test binary on top of cucumber's own.
#[derive(Debug, Clone, Default, clap::Args)]
struct SuiteArgs {
    /// Also write a JUnit XML report here (or set CONFORMANCE_JUNIT).
    #[arg(long, value_name = "PATH", env = "CONFORMANCE_JUNIT")]
    junit: Option<PathBuf>,
    /// Run only scenarios whose name contains this text (like a libtest filter).
    #[arg(value_name = "FILTER")]
    filter: Option<String>,
}

/// The step that marks a scenario as needing fake-imsg. No step definition matches it, so
/// cucumber reports the scenario as skipped at that point.
const NEEDS_FAKE: &str = "Given this scenario can only run against fake-imsg";

/// libtest flags `cargo test -- ...` may pass to every test binary; meaningless here.
fn is_libtest_flag(arg: &str) -> bool {
    matches!(
        arg,
        "--nocapture"
            | "--show-output"
            | "--quiet"
            | "-q"
            | "--include-ignored"
            | "--ignored"
            | "--exact"
    ) || arg.starts_with("--test-threads")
        || arg.starts_with("--format")
        || arg.starts_with("--color=")
}

#[tokio::main]
async fn main() {
    let bins = match harness::init_binaries() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("conformance: {e:#}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };
    let features = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/features"));
    // Keeps the rewritten copy of the features alive for the run.
    let (features, _copy) = if bins.real {
        let copy = tempfile::Builder::new()
            .prefix("imsg-conformance-features-")
            .tempdir()
            .expect("temp dir for the features");
        mark_fake_only(&features, copy.path()).expect("copy the features");
        (copy.path().to_path_buf(), Some(copy))
    } else {
        (features, None)
    };
    eprintln!(
        "conformance: imsg under test: {} ({})",
        bins.imsg.display(),
        if bins.real {
            "real imsg; @fake-only scenarios are skipped"
        } else {
            "fake-imsg"
        }
    );

    let args: Vec<String> = std::env::args().filter(|a| !is_libtest_flag(a)).collect();
    let opts = <cli::Opts<_, _, _, SuiteArgs> as clap::Parser>::parse_from(args);
    let suite = opts.custom.clone();
    let opts = cli::Opts {
        re_filter: opts.re_filter,
        tags_filter: opts.tags_filter,
        parser: opts.parser,
        runner: opts.runner,
        writer: opts.writer,
        custom: cli::Empty,
    };

    let junit_out: Box<dyn io::Write> =
        match &suite.junit {
            Some(path) => Box::new(std::fs::File::create(path).unwrap_or_else(|e| {
                panic!("cannot create the JUnit report {}: {e}", path.display())
            })),
            None => Box::new(io::sink()),
        };
    let filter = suite.filter.clone();

    let started = std::time::Instant::now();
    let writer = GatewayWorld::cucumber()
        .max_concurrent_scenarios(8)
        .after(|_feature, _rule, _scenario, finished, world| {
            let failed = !matches!(
                finished,
                event::ScenarioFinished::StepPassed | event::ScenarioFinished::StepSkipped
            );
            let counter = match finished {
                event::ScenarioFinished::StepPassed => &PASSED,
                event::ScenarioFinished::StepSkipped => &SKIPPED,
                _ => &FAILED,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if let Some(w) = world {
                    steps::finish(w, failed).await;
                }
            })
        })
        .with_writer(
            writer::Basic::raw(io::stdout(), writer::Coloring::Auto, 0)
                .summarized()
                .tee::<GatewayWorld, _>(writer::JUnit::for_tee(junit_out, 0))
                .normalized(),
        )
        .with_cli(opts)
        .filter_run(features, move |_, _, sc| {
            filter.as_deref().is_none_or(|f| sc.name.contains(f))
        })
        .await;

    let (passed, mut failed, skipped) = (
        PASSED.load(Ordering::SeqCst),
        FAILED.load(Ordering::SeqCst),
        SKIPPED.load(Ordering::SeqCst),
    );
    if !bins.real && skipped > 0 {
        // Against the fake nothing may be skipped: a skipped step is an undefined phrase.
        eprintln!(
            "conformance: {skipped} scenario(s) skipped against fake-imsg: a step has no definition"
        );
        failed += skipped;
    }
    let broken = writer.parsing_errors() + writer.hook_errors();
    eprintln!(
        "conformance: {} scenario(s) in {:.1} s; {skipped} skipped",
        passed + failed + skipped,
        started.elapsed().as_secs_f64(),
    );
    if broken > 0 {
        eprintln!("conformance: {broken} parsing or hook error(s)");
    }
    println!("{passed} passed, {} failed", failed + broken);
    if failed + broken > 0 || writer.execution_has_failed() {
        std::process::exit(1);
    }
}

/// Copies the feature files, inserting `NEEDS_FAKE` as the first step of every scenario
/// tagged `@fake-only` (on the scenario or on its feature), so a real-imsg run reports those
/// scenarios as skipped with the reason in the step text.
fn mark_fake_only(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "feature") {
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(to.join(path.file_name().unwrap()), insert_skip_steps(&text))?;
        }
    }
    Ok(())
}

fn insert_skip_steps(text: &str) -> String {
    let mut out = String::new();
    let mut pending_tags: Vec<String> = Vec::new();
    let mut feature_fake = false;
    for line in text.lines() {
        let t = line.trim_start();
        out.push_str(line);
        out.push('\n');
        if t.starts_with('@') {
            pending_tags.extend(t.split_whitespace().map(str::to_string));
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let fake = pending_tags.iter().any(|tag| tag == "@fake-only");
        if t.starts_with("Feature:") {
            feature_fake = fake;
        } else if (fake || feature_fake)
            && [
                "Scenario:",
                "Scenario Outline:",
                "Scenario Template:",
                "Example:",
            ]
            .iter()
            .any(|k| t.starts_with(k))
        {
            let indent = &line[..line.len() - t.len()];
            out.push_str(&format!("{indent}  {NEEDS_FAKE}\n"));
        }
        pending_tags.clear();
    }
    out
}
