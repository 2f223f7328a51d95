//! Who did something: an instance slot and one life of it.

use std::fmt;

/// One consumer instance of the simulated deployment (a process slot that restarts after a
/// crash), printed as `i0`, `i1`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub u32);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

/// One life of an instance, from start to crash or exit, printed as `i0#1`, `i0#2`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incarnation {
    /// The instance slot.
    pub instance: InstanceId,
    /// 1 for the first start, incremented on every restart.
    pub number: u32,
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.instance, self.number)
    }
}
