//! Hostile input and faults: fuzzed admin API (schemathesis) and webhook (proptest), and
//! injected dependency faults (a switchable loopback proxy). Every test adds to one tally and the last one to finish
//! prints the suite's summary line (written to the real stderr, so it shows without
//! `--nocapture`). `TORTURE=1` (`make torture`) scales the counts up.

use std::{
    io::Write,
    sync::atomic::{AtomicU64, Ordering},
};

mod admin_fuzz;
mod crash;
mod faults;
mod instances;
mod load;
mod webhook_fuzz;

/// How many tests in this module report to the tally (the last one prints the summary).
const TESTS: u64 = 14;

pub static CASES: AtomicU64 = AtomicU64::new(0);
pub static FAULTS: AtomicU64 = AtomicU64::new(0);
pub static CRASHES: AtomicU64 = AtomicU64::new(0);
pub static LOST: AtomicU64 = AtomicU64::new(0);
pub static DUPLICATED: AtomicU64 = AtomicU64::new(0);
pub static WRONGLY_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);

/// `TORTURE=1`: the heavier knobs.
pub fn torture() -> bool {
    std::env::var("TORTURE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `n` normally, `n * factor` under `TORTURE=1`.
pub fn scaled(n: u64, factor: u64) -> u64 {
    if torture() {
        n * factor
    } else {
        n
    }
}

/// Writes straight to the process's stderr (libtest captures only the print macros).
pub fn report(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// One test's contribution; call once at the end of a passing test.
pub fn finish(test: &str, cases: u64, faults: u64, crashes: u64) {
    CASES.fetch_add(cases, Ordering::SeqCst);
    FAULTS.fetch_add(faults, Ordering::SeqCst);
    CRASHES.fetch_add(crashes, Ordering::SeqCst);
    report(&format!(
        "hostile {test}: {cases} cases, {faults} faults injected, {crashes} crashes; 0 lost, 0 duplicated, 0 wrongly accepted"
    ));
    if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS {
        report(&format!(
            "HOSTILE SUMMARY: {} cases tried, {} faults injected, {} crashes; {} lost, {} duplicated, {} wrongly accepted",
            CASES.load(Ordering::SeqCst),
            FAULTS.load(Ordering::SeqCst),
            CRASHES.load(Ordering::SeqCst),
            LOST.load(Ordering::SeqCst),
            DUPLICATED.load(Ordering::SeqCst),
            WRONGLY_ACCEPTED.load(Ordering::SeqCst),
        ));
    }
}

/// The suite's seed: `HOSTILE_SEED`, else a fixed one, so a failure reproduces.
pub fn seed() -> u64 {
    std::env::var("HOSTILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_301)
}

/// A small deterministic generator (splitmix64) for kill points, jitter and interleavings.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
