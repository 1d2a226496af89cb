//! Source sockets of the load generator: a MID budget per socket and never a source port used
//! earlier in the run, since the RD deduplicates on (peer, MID) for EXCHANGE_LIFETIME.

/// A fresh source socket after this many messages: 65,536 MIDs must not wrap within 247 s.
pub const MIDS_PER_SOCKET: u32 = 30_000;

/// Source ports this run has used. The RD remembers (peer, MID) for EXCHANGE_LIFETIME, so a
/// new socket that the kernel happens to give a port used minutes ago could collide with old
/// MIDs and be answered from the RD's cache (seen as lost requests plus stray answers).
static USED_PORTS: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
    std::sync::Mutex::new(None);

fn claim_port(port: u16) -> bool {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    used.get_or_insert_with(Default::default).insert(port)
}

/// Open sockets until one has a port not used before in this run (≤ 64 tries); the rejected
/// ones stay open meanwhile so the kernel cannot hand their port out again at once.
pub fn fresh_port<S>(mut open: impl FnMut() -> std::io::Result<(S, u16)>) -> std::io::Result<S> {
    let mut rejected = Vec::new();
    for _ in 0..64 {
        let (s, port) = open()?;
        if claim_port(port) {
            return Ok(s);
        }
        rejected.push(s);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no fresh source port in 64 tries",
    ))
}
