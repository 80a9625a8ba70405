//! `sendmmsg(2)` and the socket addresses it takes: many datagrams per system call.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use super::packed::Packed;

/// A destination as the kernel reads it.
pub(super) struct Address {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Address {
    pub(super) fn of_inet(target: SocketAddr) -> Address {
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match target {
            SocketAddr::V4(v4) => {
                let sin: &mut libc::sockaddr_in = as_family(&mut storage);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6: &mut libc::sockaddr_in6 = as_family(&mut storage);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        Address {
            storage,
            len: len as libc::socklen_t,
        }
    }

    /// `None` if the path does not fit a sockaddr_un.
    pub(super) fn of_path(path: &Path) -> Option<Address> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sun: &mut libc::sockaddr_un = as_family(&mut storage);
        // The path and its terminating zero.
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return None;
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (slot, byte) in sun.sun_path.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        Some(Address {
            storage,
            len: len as libc::socklen_t,
        })
    }
}

/// Marker of the socket address types a sockaddr_storage holds.
trait SocketAddress {}
impl SocketAddress for libc::sockaddr_in {}
impl SocketAddress for libc::sockaddr_in6 {}
impl SocketAddress for libc::sockaddr_un {}

/// The storage seen as one address family's struct.
fn as_family<T: SocketAddress>(storage: &mut libc::sockaddr_storage) -> &mut T {
    // SAFETY: sockaddr_storage is large and aligned enough for every socket address type,
    // and those are plain integers and byte arrays, valid for any bytes.
    unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast::<T>() }
}

/// Writes every datagram of `datagrams` to `address` from socket `fd`, as few system calls
/// as the kernel allows, until one fails.
pub(super) fn send_many(
    fd: libc::c_int,
    address: &Address,
    datagrams: &Packed,
) -> (usize, Option<io::Error>) {
    let mut iovecs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero bytes are a valid mmsghdr (no name, no control data).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = &address.storage as *const _ as *mut libc::c_void;
            header.msg_hdr.msg_namelen = address.len;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    let mut sent = 0;
    while sent < headers.len() {
        let rest = &mut headers[sent..];
        // SAFETY: every header points at one iovec over a datagram of `datagrams` and at
        // `address`, all alive for the call; the kernel only reads them (and writes
        // msg_len).
        let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return (sent, Some(error));
        }
        sent += n as usize;
    }
    (sent, None)
}
