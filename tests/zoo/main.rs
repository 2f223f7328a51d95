//! The bug zoo: each reference consumer from the seeds gets its exact verdict.

#[path = "../../fixtures/mod.rs"]
mod fixtures;

mod batch_forwarder;
mod corpus;
mod db_offsets;
mod diagnoses;
mod pipelines;
mod scale_out;
mod support;
mod verdicts;
