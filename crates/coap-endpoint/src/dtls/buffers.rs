//! Giving an idle session's record buffers back, which the `openssl` crate does not wrap and
//! `SSL_MODE_RELEASE_BUFFERS` does not do for DTLS. Every `SSL` holds a read buffer (~16.7 KB,
//! `ssl3_setup_read_buffer`) and a write buffer (~16.6 KB, `ssl3_setup_write_buffer`) from
//! `DTLSv1_listen` on; OpenSSL 3.0 releases them under `RELEASE_BUFFERS` in the TLS record
//! layer only (`ssl3_read_bytes`, `ssl3_write_bytes`), never in `dtls1_read_bytes` /
//! `do_dtls1_write`.
//!
//! `SSL_free_buffers` frees both, and refuses (returns 0) while a record is partly read or
//! unread or a write is pending (`RECORD_LAYER_read_pending`, `_write_pending`, and since
//! 3.0.14 `_data_present`, CVE-2024-4741). What it leaves to the caller: the DTLS record
//! layer reallocates the read buffer when it next reads (`ssl3_read_n`), but `do_dtls1_write`
//! writes into `wbuf[0].buf` without ever setting it up, so any write after a free (a
//! response, a retransmitted flight inside `SSL_read`, close_notify) dereferences NULL. Hence
//! the pair: [`free`] only when idle, [`alloc`] (`SSL_alloc_buffers`, i.e.
//! `ssl3_setup_buffers`) before every call that may read or write.

use std::os::raw::c_int;

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;

extern "C" {
    fn SSL_free_buffers(s: *mut openssl_sys::SSL) -> c_int;
    fn SSL_alloc_buffers(s: *mut openssl_sys::SSL) -> c_int;
    fn SSL_has_pending(s: *const openssl_sys::SSL) -> c_int;
}

/// Free `ssl`'s record buffers unless it holds undelivered data; true when they were freed.
/// The caller must [`alloc`] before the `SSL` next reads or writes.
pub(crate) fn free(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a live SSL. SSL_has_pending only reads it. SSL_free_buffers frees the
    // record buffers only when no record data is buffered in them (it checks, and so do we
    // first, for a libssl older than 3.0.14 whose check is incomplete); records queued by the
    // DTLS layer own their own copies. Nothing of ours points into these buffers.
    unsafe {
        if SSL_has_pending(ssl.as_ptr()) != 0 {
            return false;
        }
        SSL_free_buffers(ssl.as_ptr()) == 1
    }
}

/// Give `ssl` its record buffers again (a no-op for buffers it has); false when out of memory.
pub(crate) fn alloc(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a live SSL; SSL_alloc_buffers allocates only the buffers that are
    // missing and touches nothing else.
    unsafe { SSL_alloc_buffers(ssl.as_ptr()) == 1 }
}
