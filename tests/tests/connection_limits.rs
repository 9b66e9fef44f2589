#![allow(clippy::unwrap_used)]
//! Regression tests for issue 22, item 3: neither listener had a connection cap, a
//! header-read timeout or an idle timeout. One client holding about 20,000 idle TCP
//! connections took every file descriptor of the process (limit 20,000): every new
//! Kinesis and gRPC connection then timed out, and a segment roll failed with EMFILE.
//!
//! Against the real server with small configured caps and short timeouts: connections
//! past the caps (total, and per client address) are closed at once while other clients
//! are served; a client that trickles its headers, or that sends nothing, is cut at the
//! header timeout on both listeners; a silent connection is closed at the idle timeout;
//! a flood of connections leaves the descriptors shard logs need for their rolls; and a
//! server out of descriptors does not spin on `accept`.
//!
//! Client addresses: 127.0.0.1 is the well-behaved client, 127.0.0.2 and 127.0.0.3 the
//! others (all loopback). Every wait is bounded; the bounds are many times the
//! configured timeouts, so a busy machine does not make them fail.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::Server;
use support::hostile::{
    closed_within, connect_from, grpc_end, grpc_head, grpc_prefix, h2_connect, kinesis_call,
    trickle_until_closed, try_kinesis_call_on,
};
use tokio::io::AsyncWriteExt;

const JSON: &str = "application/x-amz-json-1.1";
/// How long the server may take to act on a timeout or a cap, many times what is set.
const BOUND: Duration = Duration::from_secs(30);

/// A connection from `source` that has been served one request (so it is known to be
/// admitted) and stays open.
async fn admitted_kinesis_connection(server: &Server, source: u8) -> tokio::net::TcpStream {
    try_admitted_kinesis_connection(server, source)
        .await
        .expect("the connection was closed before its reply")
}

/// [`admitted_kinesis_connection`], or `None` if the server closed the connection.
async fn try_admitted_kinesis_connection(
    server: &Server,
    source: u8,
) -> Option<tokio::net::TcpStream> {
    let mut stream = connect_from(source, server.kinesis_addr()).await;
    let request = support::hostile::kinesis_bytes("DescribeLimits", JSON, b"{}", 2);
    stream.write_all(&request).await.ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head and the start of the JSON body are in.
    while !String::from_utf8_lossy(&reply).contains("\r\n\r\n{") {
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
        match tokio::time::timeout(BOUND, read).await.unwrap() {
            Ok(n) if n > 0 => reply.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    Some(stream)
}

/// Whether a ListStreams call from client 1 on a fresh connection is answered 200 within
/// 5 s (not closed, refused or left waiting).
async fn serves_kinesis(kinesis: SocketAddr) -> bool {
    let stream = connect_from(1, kinesis).await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        try_kinesis_call_on(stream, "ListStreams", JSON, b"{}".to_vec()),
    )
    .await;
    matches!(reply, Ok(Some(r)) if r.status == 200)
}

/// Retries `attempt` until it returns true, for at most [`BOUND`]: for states the server
/// reaches on its own (a closed connection noticed).
async fn eventually<F, Fut>(mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    while !attempt().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn connections_past_the_caps_are_closed_while_other_clients_are_served() {
    let server = Server::start_temp(&[
        ("SLUICE_NETWORK_CONNECTIONS_MAX", "6"),
        ("SLUICE_NETWORK_CONNECTIONS_PER_CLIENT_MAX", "4"),
    ]);
    let kinesis = server.kinesis_addr();
    let grpc = server.addr;
    support::run_async(async {
        // One client takes its four connections; its fifth is closed at once.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(admitted_kinesis_connection(&server, 2).await);
        }
        let mut fifth = connect_from(2, kinesis).await;
        assert!(closed_within(&mut fifth, BOUND).await, "the fifth was kept");
        let mut fifth_grpc = connect_from(2, grpc).await;
        assert!(closed_within(&mut fifth_grpc, BOUND).await);
        // Meanwhile another client is served on both listeners.
        let reply = kinesis_call(kinesis, 1, "ListStreams", JSON, b"{}".to_vec()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let mut client = server.client().await;
        support::create_active(&mut client, "s", 1).await;
        // Six open in all (4 + the gRPC client + one more, once the server has noticed
        // the end of the call above): the next is closed, from any address, on either
        // listener.
        let deadline = tokio::time::Instant::now() + BOUND;
        let _sixth = loop {
            if let Some(stream) = try_admitted_kinesis_connection(&server, 3).await {
                break stream;
            }
            assert!(tokio::time::Instant::now() < deadline, "no sixth slot");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut seventh = connect_from(1, kinesis).await;
        assert!(closed_within(&mut seventh, BOUND).await);
        let mut seventh_grpc = connect_from(3, grpc).await;
        assert!(closed_within(&mut seventh_grpc, BOUND).await);
        // Once the first client lets go, new connections are served again.
        drop(held);
        eventually(|| serves_kinesis(kinesis)).await;
        support::put(&mut client, "s", "k", b"still serving").await;
    });
    wait_for_log(&server, "connection refused: at its cap");
}

#[test]
fn slow_and_silent_clients_are_cut_at_the_header_timeout_on_both_listeners() {
    let server = Server::start_temp(&[
        ("SLUICE_NETWORK_HEADER_READ_TIMEOUT", "1s"),
        ("SLUICE_NETWORK_IDLE_TIMEOUT", "2s"),
    ]);
    let kinesis = server.kinesis_addr();
    let grpc = server.addr;
    support::run_async(async {
        // Headers trickled a byte every 100 ms: bytes keep moving, the request never ends.
        let slow_headers = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut slow = connect_from(2, kinesis).await;
        let slow_kinesis = tokio::spawn(async move {
            trickle_until_closed(&mut slow, slow_headers, Duration::from_millis(100), BOUND).await
        });
        // The HTTP/2 preface, trickled the same way, on the gRPC port.
        let mut slow = connect_from(2, grpc).await;
        let slow_grpc = tokio::spawn(async move {
            trickle_until_closed(
                &mut slow,
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                Duration::from_millis(100),
                BOUND,
            )
            .await
        });
        // Connections that send nothing at all.
        let mut silent_kinesis = connect_from(2, kinesis).await;
        let mut silent_grpc = connect_from(2, grpc).await;
        // A normal client is served while they hang on.
        let reply = kinesis_call(kinesis, 1, "ListStreams", JSON, b"{}".to_vec()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let mut client = server.client().await;
        support::create_active(&mut client, "s", 1).await;
        assert!(
            slow_kinesis.await.unwrap(),
            "the trickled HTTP/1.1 headers were not cut"
        );
        assert!(
            slow_grpc.await.unwrap(),
            "the trickled HTTP/2 preface was not cut"
        );
        assert!(closed_within(&mut silent_kinesis, BOUND).await);
        assert!(closed_within(&mut silent_grpc, BOUND).await);
        support::put(&mut client, "s", "k", b"served").await;
    });
}

#[test]
fn silent_connections_are_closed_at_the_idle_timeout() {
    let server = Server::start_temp(&[
        ("SLUICE_NETWORK_HEADER_READ_TIMEOUT", "1s"),
        ("SLUICE_NETWORK_IDLE_TIMEOUT", "1s"),
    ]);
    let kinesis = server.kinesis_addr();
    let grpc = server.addr;
    support::run_async(async {
        // An HTTP/1.1 keep-alive connection after its request.
        let mut kept = admitted_kinesis_connection(&server, 2).await;
        // An HTTP/2 connection after a complete gRPC call (ListStreams, empty message).
        let (mut send, conn) = h2_connect(grpc, 2).await;
        let driven = conn.spawn();
        let (response, mut body) = send.send_request(grpc_head("ListStreams"), false).unwrap();
        body.send_data(grpc_prefix(0), true).unwrap();
        assert_eq!(grpc_end(response).await.code, 0);
        assert!(closed_within(&mut kept, BOUND).await, "HTTP/1.1 kept open");
        tokio::time::timeout(BOUND, driven)
            .await
            .expect("the idle HTTP/2 connection was kept open")
            .unwrap();
        // Subscriptions are not idle: their heartbeat moves bytes every 5 s. A call
        // made now on a fresh connection is served.
        let reply = kinesis_call(kinesis, 1, "ListStreams", JSON, b"{}".to_vec()).await;
        assert_eq!(reply.status, 200);
    });
}

#[test]
fn a_connection_flood_leaves_the_descriptors_segment_rolls_need() {
    // 300 descriptors in all, 200 kept for the data path: at most 100 connections.
    let server = Server::start_temp_with_open_files(
        &[
            ("SLUICE_NETWORK_FD_RESERVE", "200"),
            ("SLUICE_NETWORK_CONNECTIONS_PER_CLIENT_MAX", "100000"),
            ("SLUICE_STORAGE_SEGMENT_SIZE_MAX", "4KiB"),
        ],
        Some(300),
    );
    let kinesis = server.kinesis_addr();
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "rolls", 4).await;
        // 400 idle connections: the server keeps at most 99 more and closes the rest.
        let mut closing = tokio::task::JoinSet::new();
        for _ in 0..400 {
            let mut stream = connect_from(2, kinesis).await;
            closing.spawn(async move {
                let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
                (closed, stream)
            });
        }
        let mut closed = 0;
        let mut kept = Vec::new();
        while let Some(result) = closing.join_next().await {
            let (was_closed, stream) = result.unwrap();
            closed += usize::from(was_closed);
            kept.push(stream);
        }
        // Every put still gets the descriptors its shard's rolls need: 4 KiB segments
        // roll every few records, each roll opening a new segment and its indexes.
        for i in 0..200u32 {
            let key = format!("k{i}");
            support::put(&mut client, "rolls", &key, &[7u8; 1024]).await;
        }
        assert!(closed >= 300, "only {closed} of 400 closed");
    });
    assert!(
        !server
            .log()
            .iter()
            .any(|l| l.contains("Too many open files")),
        "{:?}",
        server.log()
    );
}

#[test]
fn a_server_out_of_descriptors_backs_off_instead_of_spinning_and_recovers() {
    // No reserve and no cap: the server runs out of descriptors on `accept` itself.
    let server = Server::start_temp_with_open_files(
        &[
            ("SLUICE_NETWORK_FD_RESERVE", "0"),
            ("SLUICE_NETWORK_CONNECTIONS_PER_CLIENT_MAX", "100000"),
        ],
        Some(128),
    );
    let kinesis = server.kinesis_addr();
    let pid = server.pid();
    support::run_async(async {
        let mut flood = Vec::new();
        for _ in 0..100 {
            flood.push(connect_from(2, kinesis).await);
            flood.push(connect_from(2, server.addr).await);
        }
        // Connections wait in the backlog, and every `accept` fails with EMFILE. Over
        // 4 s a spinning accept loop burns at least a third of a core even on a busy
        // machine; one that backs off (up to 1 s) burns almost nothing.
        let before = cpu_ms(pid);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let used = cpu_ms(pid) - before;
        assert!(
            used < 500,
            "{used} ms of CPU in 4 s while out of descriptors"
        );
        drop(flood);
        eventually(|| serves_kinesis(kinesis)).await;
    });
    wait_for_log(&server, "cannot accept connections");
}

/// Waits (bounded) for a line of the server's log that contains `needle`: the test reads
/// the log from a pipe, so a line written a moment ago may not show yet.
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = std::time::Instant::now() + BOUND;
    while !server.log().iter().any(|l| l.contains(needle)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in {:?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// User plus system CPU time of a process, in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 14th field
    // of the line, stime the 15th, in clock ticks.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = rustix::param::clock_ticks_per_second();
    ticks * 1000 / hz
}
