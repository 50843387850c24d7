//! zerodur itself. NOT YET WIRED: every operation returns [`Skip::NotWired`], which the
//! report shows as "n/a".
//!
//! To wire an operation, replace its body with calls to zerodur's API that match the
//! semantics stated on [`Contender`]'s method (and mirrored by the peers' modules):
//!
//! - time only the measured part; open/create outside the timed region, and do one untimed
//!   warm-up append before timed appends, as the peers do;
//! - durable means: the call returns only when the entry survives power loss;
//! - `replay`, `checkpoint_load_*` and `recovery` must check integrity (CRCs, validation) and
//!   touch every entry/pair, and must return `Skip::Failed` via [`expect_count`] when the
//!   count is wrong;
//! - `*_prepare` steps build the input once per run (untimed); each round measures a
//!   page-cached copy of it.
//!
//! Helpers: [`append_for`] for the multi-thread operation, [`expect_count`] for checks.
//!
//! [`append_for`]: crate::harness::append_for
//! [`expect_count`]: crate::harness::expect_count

use std::path::Path;
use std::time::Duration;

use crate::harness::{Contender, Outcome, ResumeLog, Skip, Work};

/// zerodur's name; the report's ratio columns are computed against it.
pub const NAME: &str = "zerodur";

/// The zerodur contender.
pub struct Zerodur;

impl Contender for Zerodur {
    fn name(&self) -> &'static str {
        NAME
    }

    fn method(&self) -> &'static str {
        "not yet wired"
    }

    fn durable_append_latency(
        &self,
        _dir: &Path,
        _payload: &[u8],
        _appends: usize,
    ) -> Outcome<Vec<Duration>> {
        Err(Skip::NotWired)
    }

    fn durable_append_threads(
        &self,
        _dir: &Path,
        _payload: &[u8],
        _threads: usize,
        _run_for: Duration,
    ) -> Outcome<Work> {
        Err(Skip::NotWired)
    }

    fn buffered_append(&self, _dir: &Path, _payload: &[u8], _appends: usize) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn replay_prepare(&self, _dir: &Path, _payload: &[u8], _entries: usize) -> Outcome<()> {
        Err(Skip::NotWired)
    }

    fn replay(&self, _dir: &Path, _entries: usize) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn checkpoint_write_pairs(&self, _dir: &Path, _pairs: &[(u64, u64)]) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn checkpoint_prepare_pairs(&self, _dir: &Path, _pairs: &[(u64, u64)]) -> Outcome<()> {
        Err(Skip::NotWired)
    }

    fn checkpoint_load_pairs(&self, _dir: &Path, _pairs: usize) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn checkpoint_write_blob(&self, _dir: &Path, _blob: &[u8]) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn checkpoint_prepare_blob(&self, _dir: &Path, _blob: &[u8]) -> Outcome<()> {
        Err(Skip::NotWired)
    }

    fn checkpoint_load_blob(&self, _dir: &Path, _blob_bytes: usize) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn recovery_prepare(
        &self,
        _dir: &Path,
        _pairs: &[(u64, u64)],
        _payload: &[u8],
        _entries: usize,
    ) -> Outcome<()> {
        Err(Skip::NotWired)
    }

    fn recovery(&self, _dir: &Path, _pairs: usize, _entries: usize) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }

    fn resume_prepare(&self, _dir: &Path, _log: ResumeLog) -> Outcome<()> {
        Err(Skip::NotWired)
    }

    fn resume(&self, _dir: &Path, _log: ResumeLog) -> Outcome<Duration> {
        Err(Skip::NotWired)
    }
}
