//! Small helpers with no home of their own, below every other module (they import none).
pub mod duration;
