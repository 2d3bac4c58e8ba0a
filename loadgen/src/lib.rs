//! loadgen: a load generator and capacity planner for SSE servers.
//!
//! It opens many event streams over HTTP/1.1, publishes events that carry their intended send
//! time and a per-channel sequence number, and reports delivery latency (HDR histograms,
//! corrected for coordinated omission), lost and duplicated events, and the CPU and memory of
//! the processes under test. It works against any SSE server: URLs, channel names, tokens and
//! publish bodies are templates.
//!
//! The map:
//! - `opts`: the command line, one struct, shipped to workers as JSON.
//! - `coord`: the parent process: spawns workers, runs the scenarios (`steady`, `broadcast`,
//!   `storm`, `plan`, `idle`, `deploy`), aggregates their reports.
//! - `worker`: a worker process: its share of the streams, one task each, with accounting.
//! - `publish`: the Redis (RESP: `PUBLISH`, or the gateway's `FCALL ssegw_publish`), Redis
//!   Cluster (`SPUBLISH` on each channel's master) and HTTP publishers, paced by intended send
//!   time.
//! - `cluster`: the Redis Cluster publisher's routing: the slot map, each channel's master.
//! - `http`, `chunked`, `sse`: pure parsers for the response head, chunked framing and the
//!   event stream (incremental, borrowed slices, cheap).
//! - `seqs`: loss and duplicate accounting.
//! - `fleet`: what a plan's knee means for a fleet on one Redis (the fleet model's table).
//! - `template`: `{i}`, `{player}`, `{channel}`, `{token}`, ... expansion.
//! - `report`: progress, per-worker and run reports, the per-second series; table and JSON.
//! - `html`: the report as one self-contained HTML page with SVG plots (`--html`).
//! - `proc`: CPU and memory of a process by PID.
//! - `stalls`: the machine's own stalls during a phase, and so which latency percentiles
//!   measure the server (a delivery that lands while the machine stalls is late by the stall).
//!
//! Why processes: a process may hold 20,000 open files here and one source address has about
//! 28,000 ephemeral ports towards one server, so 50,000 streams need several processes and
//! several source addresses (127.0.0.2 upwards; loopback owns all of 127/8).
#![warn(missing_docs)]

pub mod chunked;
pub mod cluster;
pub mod coord;
pub mod fleet;
pub mod html;
pub mod http;
pub mod opts;
pub mod proc;
pub mod publish;
pub mod report;
pub mod seqs;
pub mod sse;
pub mod stalls;
pub mod template;
pub mod worker;

/// Wall-clock time in unix microseconds (`CLOCK_REALTIME`, the same in every process of the
/// machine, so a publisher and a worker process compare their stamps directly).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
