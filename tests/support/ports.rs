//! Free loopback TCP ports for the services the tests start. A port is
//! found by binding 127.0.0.1:0 and reading what the kernel picked; the
//! listener is dropped right away so the service can bind it. A process-wide
//! set remembers every port handed out, so two parallel tests in one run
//! never get the same port (another process may still race us for it, which
//! is why the service starters retry on a failed start).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and has not been returned
/// before by this process.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
        let port = listener
            .local_addr()
            .expect("local_addr of probe listener")
            .port();
        drop(listener);
        let mut set = handed_out()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if set.insert(port) {
            return port;
        }
    }
    panic!("could not find a loopback port not already handed out");
}
