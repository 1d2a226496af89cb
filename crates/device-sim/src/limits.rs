//! Raising the open-file limit so one `device-sim` process can hold 10,000 sockets (one per
//! simulated device). Called once by [`super::run`] before any socket is bound.

/// Raise RLIMIT_NOFILE's soft limit to at least `wanted` (capped by the hard limit). Returns the
/// soft limit in force afterwards.
pub fn raise_open_files(wanted: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass, which lives on the
    // stack for the duration of each call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= wanted {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = wanted.min(lim.rlim_max);
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}
