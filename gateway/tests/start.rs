//! The server as a library: `start_on` with listeners the caller bound, and its handshake
//! (a core that cannot serve on its listener fails the start with that core's error).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gateway::config::Config;
use gateway::error::StartError;
use gateway::server::start::{bind, start_on};

fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn start_on_serves_on_the_given_listeners_and_stops_on_drain() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listeners = bind(addr, 2).expect("bind");
    let running = start_on(listeners, Config::default()).expect("start");
    let addr = running.local_addr();
    assert_ne!(addr.port(), 0);
    let answer = healthz(addr);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(running.node().drain(Duration::ZERO));
    running.wait();
}

#[test]
fn a_listener_that_is_not_listening_fails_the_start_naming_its_core() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut listeners = bind(addr, 1).expect("bind");
    // Bound, never listening: no core can accept on it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).unwrap();
    listeners.push(socket.into());
    let err = match start_on(listeners, Config::default()) {
        Ok(running) => {
            running.node().drain(Duration::ZERO);
            running.wait();
            panic!("started on a socket that does not listen");
        }
        Err(e) => e,
    };
    assert!(
        matches!(err, StartError::Listener { core: 1, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("core 1") && msg.contains("not listening"),
        "{msg}"
    );
}
