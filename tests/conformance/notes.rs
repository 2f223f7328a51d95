//! What a consumer under test saw, noted in order for assertions after the run: shared by the
//! conformance tests and the broker tests (which include this file), so that a case written once
//! notes the same way on the simulator and on a real broker.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

/// A shared log of observations made inside consumers.
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn push(&self, note: impl Into<String>) {
        self.0.lock().unwrap().push(note.into());
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}
