//! (issue 18: to be written)
