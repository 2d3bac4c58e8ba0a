//! A `redis-server` of the benchmark's own on a free loopback port, and the small pieces every
//! Redis benchmark here needs: a one-shot command, `PUBLISH` in RESP, a monotonic clock that
//! all of a process's threads share, and CPU time (a thread's, or another process's).
//!
//! Used by `redis_sub_compare` (one subscriber, two client libraries) and `fleet_model` (K
//! subscribers, one Redis).

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Errors of a benchmark binary: printed, then exit 1.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Process-wide origin of all timestamps, so the publisher and subscriber threads agree.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's first call (monotonic, shared by all its threads).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU time (user + system) consumed so far by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: `rusage` is plain old data, all-zero is a valid value, and getrusage only writes
    // into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live `rusage`; RUSAGE_THREAD is supported since Linux 2.6.26.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system, all threads) of process `pid` so far, in nanoseconds, from
/// `/proc/<pid>/stat` (clock ticks: 10 ms resolution, so measure over seconds).
pub fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc stat"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((tick(11)? + tick(12)?) * 1_000_000_000 / hz)
}

/// A redis-server child process, stopped by PID when dropped (also on error paths and panics).
pub struct RedisServer {
    /// The child; its PID is what we signal.
    child: Child,
    /// Loopback port it listens on.
    pub port: u16,
}

impl RedisServer {
    /// Starts `binary` on a free loopback port without persistence, with `extra` arguments
    /// (`["--io-threads", "2"]`), and waits (up to 5 s) until it answers PING. A subscriber
    /// that falls behind is not disconnected by Redis's pub/sub output limit: benchmarks
    /// measure the subscriber or Redis, not the limit.
    pub fn start(binary: &str, extra: &[&str]) -> Result<RedisServer, BoxError> {
        let mut last_error: BoxError = "redis-server did not start".into();
        // The port is free when we pick it but another process may take it before Redis binds:
        // retry with a new one.
        for _ in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(binary);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--client-output-buffer-limit", "pubsub 0 0 0"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // If this process dies without running destructors (SIGKILL), take Redis with it.
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .spawn()
                .map_err(|e| format!("cannot run {binary}: {e} (apt-get install redis-server)"))?;
            let mut server = RedisServer { child, port };
            match server.wait_ready(Duration::from_secs(5)) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e, // dropping `server` kills it
            }
        }
        Err(last_error)
    }

    /// The server's PID, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("redis-server exited at start-up: {status}").into());
            }
            if let Ok(reply) = redis_command(self.port, &["PING"]) {
                if reply.starts_with(b"+PONG") {
                    return Ok(());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer PING within 5 s".into())
    }

    /// Stops the server: SIGTERM, then SIGKILL if it is still there after 2 s.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall on our own child's PID, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Sends one command on a fresh blocking connection and returns the first reply line.
pub fn redis_command(port: u16, args: &[&str]) -> io::Result<Vec<u8>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut out = Vec::new();
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode_command(&mut out, &args);
    stream.write_all(&out)?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        reply.push(byte[0]);
    }
    Ok(reply)
}

/// Appends one command in RESP (an array of bulk strings).
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args.iter() {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `PUBLISH <channel> <payload>` in RESP.
pub fn encode_publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    encode_command(out, &[b"PUBLISH", channel, payload]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_publish(&mut out, b"SSE::1::2", b"{}");
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$9\r\nSSE::1::2\r\n$2\r\n{}\r\n"
        );
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(process_cpu_ns(std::process::id()).unwrap() > 0);
        assert!(thread_cpu_ns() > 0);
    }
}
