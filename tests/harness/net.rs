//! Loopback client sockets with a chosen source address (`127.0.0.N`, so per-address limits
//! can be exercised from one machine) and, for clients that do not read, small buffers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use super::STEP;

/// A loopback source address: `127.0.0.N`.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A TCP connection to `to` from the loopback address `from`; with `small_buffers` its socket
/// buffers are a few KiB, so a client that does not read fills them quickly.
pub async fn connect_from(from: IpAddr, to: SocketAddr, small_buffers: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if small_buffers {
        socket.set_recv_buffer_size(4096).unwrap();
        socket.set_send_buffer_size(4096).unwrap();
    }
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(STEP, socket.connect(to)).await.expect("connect in time").expect("connect")
}

/// A loopback address where connections are refused, and the socket that keeps it so: bound and
/// never listening, the port answers a SYN with a reset, and no other socket (a server another
/// test starts meanwhile) can take it while the returned socket lives. Binding a listener,
/// reading its port and closing it instead leaves the port free for anyone to take.
pub fn refusing_address() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(loopback(1), 0)).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}
