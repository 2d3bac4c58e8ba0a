//! One client connection: the request loop, the API handlers and the SSE stream writer.
pub mod api;
pub mod serve;
pub mod stream;
