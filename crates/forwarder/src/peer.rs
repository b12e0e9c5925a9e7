//! Who is connecting: the owner (uid) of a loopback client socket, read from
//! `/proc/net/tcp`.
//!
//! The forwarder listens on 127.0.0.1, where any local user could connect and ride
//! the account's credentials. We cannot cheaply tell *which* of our own processes
//! connected (that needs a scan of every `/proc/*/fd`), but the user is the
//! boundary that matters: a process of our own user could read the credentials from
//! our memory anyway. So clients of other users are refused.

use std::net::{IpAddr, SocketAddr};

/// True when the socket at `peer`, connected to our `local`, belongs to our
/// effective uid. Unknown (no `/proc`, an address we cannot look up) counts as not.
pub(crate) fn is_own_user(local: SocketAddr, peer: SocketAddr) -> bool {
    let (file, want_local, want_remote) = match (peer.ip(), local.ip()) {
        (IpAddr::V4(p), IpAddr::V4(l)) => {
            ("/proc/net/tcp", hex4(p, peer.port()), hex4(l, local.port()))
        }
        _ => return false,
    };
    let Ok(table) = std::fs::read_to_string(file) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    owner_of(&table, &want_local, &want_remote) == Some(me)
}

fn hex4(ip: std::net::Ipv4Addr, port: u16) -> String {
    // The kernel prints the address as the host-order number of its network-order
    // bytes, and the port as a plain number.
    format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), port)
}

/// The uid column of the `/proc/net/tcp` row whose local and remote addresses match.
fn owner_of(table: &str, local: &str, remote: &str) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid ...
        (cols.len() > 7
            && cols[1].eq_ignore_ascii_case(local)
            && cols[2].eq_ignore_ascii_case(remote))
        .then(|| cols[7].parse().ok())
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_owner_row() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                     0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 111 1\n   \
                     1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 112 1\n";
        assert_eq!(
            owner_of(table, "0100007F:9C40", "0100007F:1F90"),
            Some(1000)
        );
        assert_eq!(owner_of(table, "0100007F:1F90", "0100007F:9C40"), Some(0));
        assert_eq!(owner_of(table, "0100007F:0001", "0100007F:1F90"), None);
    }

    #[test]
    fn a_connection_of_our_own_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(is_own_user(server.local_addr().unwrap(), peer));
        // The listening side's address pair reversed is not the client's row owner check
        // for a port nobody holds.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!is_own_user(server.local_addr().unwrap(), nobody));
    }
}
