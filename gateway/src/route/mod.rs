//! The route table as data: which path is which stream family, how it is authenticated,
//! which channel it subscribes, how its events are named and kept alive.
pub mod custom;
pub mod payload;
pub mod resolve;
pub mod table;
