//! One client connection, moving bytes: read a head, decide what it asks for (a value),
//! write replies, run the stream writer. State and its rules live in `core`.
pub mod api;
pub mod decide;
pub mod reply;
pub mod serve;
pub mod status;
pub mod stream;
