//! HTTP/1.1, hand-rolled on `httparse`: pure parsing and response writing, no I/O; and which
//! origins get CORS headers.
pub mod cors;
pub mod query;
pub mod request;
pub mod response;
