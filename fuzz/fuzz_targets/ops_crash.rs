//! An operation sequence (appends, batches, durable appends, syncs, reopens,
//! prefix truncations) on a memory directory whose power is cut after an
//! arbitrary number of operations, crash after crash, each image under its
//! own seeded policy. After every crash the directory opens again, and what
//! replays is a gap-free, batch-aligned prefix of what was attempted that
//! holds every acknowledged entry (see `zerodur_fuzz::model`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zerodur_fuzz::model::{run, Input};

fuzz_target!(|input: Input| run(input));
