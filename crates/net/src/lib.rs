//! `sluice-net`: what both listeners (gRPC and the Kinesis API) share so that one client
//! cannot stall, starve or exhaust the server for the others.
//!
//! - `gate`: [`Gate`], caps on open connections in total and per client address;
//! - `conn`: [`Conn`], an accepted socket holding its slot, with the first-request and
//!   idle timeouts enforced on the socket itself, and [`ConnInfo`], what a request knows
//!   of its connection;
//! - `listener`: [`Listener`], the accept loop: admission, `TCP_NODELAY`, and no busy
//!   loop when the process is out of file descriptors;
//! - `budget`: [`Budget`], the request bytes in flight, in total and per address;
//! - `body`: reading a whole HTTP request body under the budget and a deadline;
//! - `http`: serving an HTTP/1.1 + h2c service (the Kinesis API) on a [`Listener`].
//!
//! The gRPC listener is served by tonic, on [`Listener::incoming`], with the budget
//! applied by `sluice-grpc`'s layer. This crate knows sockets and HTTP, not the broker.

#![warn(missing_docs)]

pub mod body;
pub mod budget;
pub mod conn;
pub mod gate;
pub mod http;
pub mod listener;

pub use budget::{Budget, Charge, Throttled};
pub use conn::{Conn, ConnInfo, ConnTimeouts};
pub use gate::{Client, Gate, Refused};
pub use listener::Listener;
