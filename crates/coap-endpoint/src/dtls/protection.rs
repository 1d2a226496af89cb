//! The record layer of an established DTLS 1.2 session (RFC 6347 §4.1, RFC 5246 §6.2.3.3):
//! AEAD protection of records with the keys of `dtls/keys.rs`, the sequence numbers, and the
//! anti-replay window (RFC 6347 §4.1.2.6).
//!
//! A session switches to it from OpenSSL once the peer has shown it finished the handshake
//! (`dtls/session.rs`), so it never has to retransmit a handshake flight; what it handles is
//! application data and alerts in the session's epoch. Everything else in a datagram (an old
//! epoch's retransmission, a renegotiation attempt, a forged or replayed record) is dropped
//! silently, as RFC 6347 §4.1.2.7 asks.
//!
//! The per-record AEAD is OpenSSL's (`EVP_CIPHER_CTX`): the same implementation the handshake
//! uses, with AES-NI where the CPU has it.

use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use std::sync::OnceLock;

use super::keys::{Aead, DirectionKeys, KeyBlock, FIXED_IV_LEN};
use super::record::RECORD_HEADER;

/// ContentType values (RFC 5246 §6.2.1).
pub(crate) const CONTENT_ALERT: u8 = 21;
pub(crate) const CONTENT_APPLICATION_DATA: u8 = 23;
/// DTLS 1.2's wire version.
const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
/// The explicit nonce part each AEAD record carries (RFC 5288 §3, RFC 6655 §3).
const EXPLICIT_NONCE: usize = 8;
/// The largest plaintext a record may carry (RFC 5246 §6.2.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// The last usable 48-bit sequence number; a session never wraps (RFC 6347 §4.1).
const MAX_SEQUENCE: u64 = (1 << 48) - 1;
/// Records the replay window remembers below the highest one (RFC 6347 §4.1.2.6: at least 32).
const WINDOW: u64 = 64;
/// Alert levels and the one description every close uses (RFC 5246 §7.2).
const ALERT_WARNING: u8 = 1;
const ALERT_FATAL: u8 = 2;
const CLOSE_NOTIFY: u8 = 0;

/// Which end of the handshake this session was: it decides which keys are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// Received sequence numbers: the highest, and which of the `WINDOW` below it were seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` was received (bit 0 is `highest` itself).
    seen: u64,
}

impl ReplayWindow {
    /// A window in which every number up to and including `through` counts as received: the
    /// records OpenSSL read before the switch are never accepted again.
    pub(crate) fn seen_through(through: u64) -> ReplayWindow {
        ReplayWindow {
            highest: through,
            seen: u64::MAX,
        }
    }

    /// Whether `sequence` may still be accepted (new, and not too old to tell).
    pub(crate) fn is_fresh(&self, sequence: u64) -> bool {
        if sequence > self.highest {
            return true;
        }
        let age = self.highest - sequence;
        age < WINDOW && self.seen & (1 << age) == 0
    }

    /// Remember `sequence`, which authenticated.
    pub(crate) fn mark(&mut self, sequence: u64) {
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = sequence;
        } else {
            let age = self.highest - sequence;
            if age < WINDOW {
                self.seen |= 1 << age;
            }
        }
    }
}

/// What one received record turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    ApplicationData(Vec<u8>),
    /// A close_notify or a fatal alert: the session is over.
    Closed {
        fatal: bool,
        description: u8,
    },
}

/// The records a datagram held, and how many of its records were dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    pub records: Vec<Record>,
    pub dropped: usize,
}

/// One established session's record protection: both directions' keys, the epoch, the next
/// sequence number to send and the replay window of the received ones.
pub(crate) struct Protection {
    aead: Aead,
    epoch: u16,
    write: DirectionKeys,
    read: DirectionKeys,
    next_write: u64,
    replay: ReplayWindow,
}

impl Protection {
    /// Protection for `role`'s end of a session in `epoch` whose next record to send is
    /// `next_write` and whose received records up to `read_through` were consumed.
    pub(crate) fn new(
        aead: Aead,
        keys: KeyBlock,
        role: Role,
        epoch: u16,
        next_write: u64,
        read_through: u64,
    ) -> Protection {
        let (write, read) = match role {
            Role::Client => (keys.client, keys.server),
            Role::Server => (keys.server, keys.client),
        };
        Protection {
            aead,
            epoch,
            write,
            read,
            next_write,
            replay: ReplayWindow::seen_through(read_through),
        }
    }

    /// One record of application data; `None` once the sequence numbers are used up (the
    /// session must then end) or if the cipher fails.
    pub(crate) fn seal_application_data(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        self.seal(CONTENT_APPLICATION_DATA, plaintext)
    }

    /// The close_notify alert (RFC 5246 §7.2.1).
    pub(crate) fn seal_close_notify(&mut self) -> Option<Vec<u8>> {
        self.seal(CONTENT_ALERT, &[ALERT_WARNING, CLOSE_NOTIFY])
    }

    fn seal(&mut self, content_type: u8, plaintext: &[u8]) -> Option<Vec<u8>> {
        if plaintext.len() > MAX_PLAINTEXT || self.next_write > MAX_SEQUENCE {
            return None;
        }
        let sequence = self.next_write;
        let tag_len = self.aead.tag_len();
        let length = u16::try_from(EXPLICIT_NONCE + plaintext.len() + tag_len).ok()?;
        // epoch + 48-bit sequence number: the record's header field, its explicit nonce (as
        // OpenSSL and libcoap send it) and the start of the additional data.
        let epoch_sequence = epoch_sequence(self.epoch, sequence);
        let nonce = nonce(&self.write.fixed_iv, &epoch_sequence);
        let aad = additional_data(&epoch_sequence, content_type, plaintext.len());
        let mut record = Vec::with_capacity(RECORD_HEADER + usize::from(length));
        record.push(content_type);
        record.extend_from_slice(&DTLS_1_2);
        record.extend_from_slice(&epoch_sequence);
        record.extend_from_slice(&length.to_be_bytes());
        record.extend_from_slice(&epoch_sequence);
        let body = record.len();
        record.resize(body + plaintext.len() + tag_len, 0);
        let (ciphertext, tag) = record[body..].split_at_mut(plaintext.len());
        seal_in(
            self.aead,
            &self.write.key,
            &nonce,
            &aad,
            plaintext,
            ciphertext,
            tag,
        )
        .ok()?;
        self.next_write += 1;
        Some(record)
    }

    /// Every record of a datagram from the peer: the authentic, fresh ones of this epoch are
    /// returned; the rest are counted in `dropped`.
    pub(crate) fn open(&mut self, datagram: &[u8]) -> Opened {
        let mut opened = Opened::default();
        let mut rest = datagram;
        while !rest.is_empty() {
            let Some(header) = rest.get(..RECORD_HEADER) else {
                opened.dropped += 1;
                break;
            };
            let length = usize::from(u16::from_be_bytes([header[11], header[12]]));
            let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + length) else {
                // A record longer than what is left: the datagram is damaged from here.
                opened.dropped += 1;
                break;
            };
            match self.open_record(header, fragment) {
                Some(record) => opened.records.push(record),
                None => opened.dropped += 1,
            }
            rest = &rest[RECORD_HEADER + length..];
        }
        opened
    }

    fn open_record(&mut self, header: &[u8], fragment: &[u8]) -> Option<Record> {
        let content_type = header[0];
        if header[1..3] != DTLS_1_2 || u16::from_be_bytes([header[3], header[4]]) != self.epoch {
            return None;
        }
        // Only what an established session carries; a handshake record in this epoch would
        // be a renegotiation, which the gateway refuses (and a CCS has no place here).
        if content_type != CONTENT_APPLICATION_DATA && content_type != CONTENT_ALERT {
            return None;
        }
        let mut epoch_sequence = [0u8; 8];
        epoch_sequence.copy_from_slice(&header[3..11]);
        let sequence = u64::from_be_bytes([
            0, 0, header[5], header[6], header[7], header[8], header[9], header[10],
        ]);
        if !self.replay.is_fresh(sequence) {
            return None;
        }
        let tag_len = self.aead.tag_len();
        let plaintext_len = fragment.len().checked_sub(EXPLICIT_NONCE + tag_len)?;
        if plaintext_len > MAX_PLAINTEXT {
            return None;
        }
        let (explicit, sealed) = fragment.split_at(EXPLICIT_NONCE);
        let (ciphertext, tag) = sealed.split_at(plaintext_len);
        let nonce = nonce(&self.read.fixed_iv, explicit);
        let aad = additional_data(&epoch_sequence, content_type, plaintext_len);
        let mut plaintext = vec![0u8; plaintext_len];
        open_in(
            self.aead,
            &self.read.key,
            &nonce,
            &aad,
            ciphertext,
            tag,
            &mut plaintext,
        )
        .ok()?;
        // Authentic: only now may it move the window (a forged record must not).
        self.replay.mark(sequence);
        match content_type {
            CONTENT_APPLICATION_DATA => Some(Record::ApplicationData(plaintext)),
            _ => match plaintext.as_slice() {
                [level, description] if *level == ALERT_FATAL || *description == CLOSE_NOTIFY => {
                    Some(Record::Closed {
                        fatal: *level == ALERT_FATAL,
                        description: *description,
                    })
                }
                // A warning other than close_notify changes nothing.
                _ => None,
            },
        }
    }
}

/// The AEAD's implementation, fetched from OpenSSL's provider once. Passing OpenSSL 3 the
/// legacy `EVP_aes_128_ccm()` instead makes every record's init look the implementation up by
/// name (locks, string compares): a tenth of the gateway's CPU on a lookup over DTLS.
fn cipher(aead: Aead) -> &'static CipherRef {
    static CCM: OnceLock<Option<Cipher>> = OnceLock::new();
    static GCM: OnceLock<Option<Cipher>> = OnceLock::new();
    let (slot, name, legacy): (_, _, fn() -> &'static CipherRef) = match aead {
        Aead::Ccm8 => (&CCM, "AES-128-CCM", Cipher::aes_128_ccm),
        Aead::Gcm => (&GCM, "AES-128-GCM", Cipher::aes_128_gcm),
    };
    match slot.get_or_init(|| Cipher::fetch(None, name, None).ok()) {
        Some(fetched) => fetched,
        None => legacy(),
    }
}

/// AEAD-encrypt `plaintext` into `ciphertext` (same length) and `tag`. CCM wants the nonce
/// and tag lengths before the key and the message length before the data (RFC 3610's
/// B_0 block holds them), so the context is set up in that order for both AEADs.
fn seal_in(
    aead: Aead,
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
    ciphertext: &mut [u8],
    tag: &mut [u8],
) -> Result<(), ErrorStack> {
    let mut ctx = CipherCtx::new()?;
    ctx.encrypt_init(Some(cipher(aead)), None, None)?;
    ctx.set_iv_length(nonce.len())?;
    if aead == Aead::Ccm8 {
        ctx.set_tag_length(tag.len())?;
    }
    ctx.encrypt_init(None, Some(key), Some(nonce))?;
    if aead == Aead::Ccm8 {
        ctx.set_data_len(plaintext.len())?;
    }
    ctx.cipher_update(aad, None)?;
    let n = ctx.cipher_update(plaintext, Some(ciphertext))?;
    ctx.cipher_final(&mut ciphertext[n..])?;
    ctx.tag(tag)
}

/// AEAD-decrypt `ciphertext` into `plaintext` (same length); an error when `tag` does not
/// authenticate it (the plaintext must then not be used).
fn open_in(
    aead: Aead,
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
    plaintext: &mut [u8],
) -> Result<(), ErrorStack> {
    let mut ctx = CipherCtx::new()?;
    ctx.decrypt_init(Some(cipher(aead)), None, None)?;
    ctx.set_iv_length(nonce.len())?;
    if aead == Aead::Ccm8 {
        // CCM checks the tag in the update itself, so it must be known first.
        ctx.set_tag(tag)?;
    }
    ctx.decrypt_init(None, Some(key), Some(nonce))?;
    if aead == Aead::Ccm8 {
        ctx.set_data_len(ciphertext.len())?;
    }
    ctx.cipher_update(aad, None)?;
    let n = ctx.cipher_update(ciphertext, Some(plaintext))?;
    if aead == Aead::Gcm {
        ctx.set_tag(tag)?;
        ctx.cipher_final(&mut plaintext[n..])?;
    }
    Ok(())
}

fn epoch_sequence(epoch: u16, sequence: u64) -> [u8; 8] {
    let mut out = sequence.to_be_bytes();
    out[..2].copy_from_slice(&epoch.to_be_bytes());
    out
}

/// The AEAD nonce: the direction's fixed part and the record's explicit part.
fn nonce(fixed_iv: &[u8; FIXED_IV_LEN], explicit: &[u8]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..FIXED_IV_LEN].copy_from_slice(fixed_iv);
    nonce[FIXED_IV_LEN..].copy_from_slice(explicit);
    nonce
}

/// `seq_num + type + version + length` (RFC 5246 §6.2.3.3; in DTLS the sequence number is
/// epoch + 48-bit sequence, RFC 6347 §4.1.2.1), the length being the plaintext's.
fn additional_data(epoch_sequence: &[u8; 8], content_type: u8, plaintext_len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(epoch_sequence);
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&DTLS_1_2);
    // plaintext_len ≤ MAX_PLAINTEXT, so it fits.
    aad[11..13].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::keys::key_block;

    fn pair(aead: Aead) -> (Protection, Protection) {
        let keys = key_block(&[9; 48], &[1; 32], &[2; 32]).unwrap();
        (
            Protection::new(aead, keys.clone(), Role::Client, 1, 0, 0),
            Protection::new(aead, keys, Role::Server, 1, 5, 0),
        )
    }

    fn data(records: &[Record]) -> Vec<&[u8]> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::ApplicationData(d) => Some(d.as_slice()),
                Record::Closed { .. } => None,
            })
            .collect()
    }

    #[test]
    fn each_direction_opens_what_the_other_sealed() {
        for aead in [Aead::Ccm8, Aead::Gcm] {
            let (mut client, mut server) = pair(aead);
            let up = client.seal_application_data(b"GET /rd-lookup/ep").unwrap();
            assert_eq!(up.len(), RECORD_HEADER + 8 + 17 + aead.tag_len());
            assert_eq!(&up[..3], &[23, 0xfe, 0xfd]);
            // The client's first record in epoch 1 after the handshake's Finished (seq 0)
            // would be 1; this one starts at 0, and the server saw "through 0"...
            let opened = server.open(&up);
            // ...so it is a replay of what OpenSSL consumed, and dropped.
            assert_eq!(opened.dropped, 1);
            let up = client.seal_application_data(b"GET /rd-lookup/ep").unwrap();
            let opened = server.open(&up);
            assert_eq!(data(&opened.records), vec![&b"GET /rd-lookup/ep"[..]]);
            let down = server.seal_application_data(b"2.05 Content").unwrap();
            // The server's sequence numbers continue where it was told (5).
            assert_eq!(&down[5..11], &[0, 0, 0, 0, 0, 5]);
            assert_eq!(
                data(&client.open(&down).records),
                vec![&b"2.05 Content"[..]]
            );
        }
    }

    #[test]
    fn a_replayed_record_is_dropped_and_an_old_one_in_the_window_accepted_once() {
        let (mut client, mut server) = pair(Aead::Ccm8);
        let _ = client.seal_application_data(b"x");
        let r1 = client.seal_application_data(b"one").unwrap();
        let r2 = client.seal_application_data(b"two").unwrap();
        assert_eq!(data(&server.open(&r2).records), vec![&b"two"[..]]);
        assert_eq!(server.open(&r2).dropped, 1, "replay of the newest");
        // Reordered: 1 arrives after 2, inside the window.
        assert_eq!(data(&server.open(&r1).records), vec![&b"one"[..]]);
        assert_eq!(server.open(&r1).dropped, 1, "replay of an older one");
    }

    #[test]
    fn a_tampered_record_is_dropped_and_does_not_move_the_window() {
        let (mut client, mut server) = pair(Aead::Gcm);
        let _ = client.seal_application_data(b"x");
        let good = client.seal_application_data(b"payload").unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(server.open(&bad).dropped, 1);
        // A forged record with a far sequence number must not push the window past the
        // real ones either.
        let mut far = good.clone();
        far[5..11].copy_from_slice(&[0x10, 0, 0, 0, 0, 0]);
        assert_eq!(server.open(&far).dropped, 1);
        assert_eq!(data(&server.open(&good).records), vec![&b"payload"[..]]);
    }

    #[test]
    fn other_epochs_types_and_truncations_are_dropped() {
        let (mut client, mut server) = pair(Aead::Ccm8);
        let _ = client.seal_application_data(b"x");
        let good = client.seal_application_data(b"hello").unwrap();
        let mut epoch0 = good.clone();
        epoch0[4] = 0;
        assert_eq!(server.open(&epoch0).dropped, 1);
        let mut handshake = good.clone();
        handshake[0] = 22;
        assert_eq!(server.open(&handshake).dropped, 1);
        assert_eq!(server.open(&good[..good.len() - 1]).dropped, 1);
        assert_eq!(server.open(&good[..5]).dropped, 1);
        let mut short = good[..RECORD_HEADER + 3].to_vec();
        short[11..13].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(server.open(&short).dropped, 1);
        assert_eq!(server.open(&[]), Opened::default());
    }

    #[test]
    fn two_records_in_one_datagram_both_open() {
        let (mut client, mut server) = pair(Aead::Ccm8);
        let _ = client.seal_application_data(b"x");
        let mut datagram = client.seal_application_data(b"a").unwrap();
        datagram.extend(client.seal_application_data(b"b").unwrap());
        assert_eq!(data(&server.open(&datagram).records), vec![&b"a"[..], b"b"]);
    }

    #[test]
    fn close_notify_and_fatal_alerts_close_the_session() {
        let (mut client, mut server) = pair(Aead::Gcm);
        let _ = client.seal_application_data(b"x");
        let close = client.seal_close_notify().unwrap();
        assert_eq!(close[0], CONTENT_ALERT);
        assert_eq!(
            server.open(&close).records,
            vec![Record::Closed {
                fatal: false,
                description: CLOSE_NOTIFY
            }]
        );
        let fatal = client.seal(CONTENT_ALERT, &[ALERT_FATAL, 20]).unwrap();
        assert_eq!(
            server.open(&fatal).records,
            vec![Record::Closed {
                fatal: true,
                description: 20
            }]
        );
        // A warning that is not close_notify is authentic but changes nothing.
        let warning = client.seal(CONTENT_ALERT, &[ALERT_WARNING, 90]).unwrap();
        assert_eq!(server.open(&warning).dropped, 1);
    }

    #[test]
    fn sequence_numbers_never_wrap() {
        let keys = key_block(&[9; 48], &[1; 32], &[2; 32]).unwrap();
        let mut end = Protection::new(Aead::Ccm8, keys, Role::Client, 1, MAX_SEQUENCE, 0);
        assert!(end.seal_application_data(b"last").is_some());
        assert!(end.seal_application_data(b"one too many").is_none());
        assert!(end
            .seal_application_data(&vec![0; MAX_PLAINTEXT + 1])
            .is_none());
    }

    #[test]
    fn the_window_forgets_what_is_too_old_to_tell() {
        let mut w = ReplayWindow::seen_through(0);
        assert!(!w.is_fresh(0));
        w.mark(100);
        assert!(w.is_fresh(99));
        assert!(w.is_fresh(37));
        assert!(!w.is_fresh(36), "older than the window: refused");
        w.mark(99);
        assert!(!w.is_fresh(99));
        w.mark(1_000);
        assert!(!w.is_fresh(100));
        assert!(w.is_fresh(999));
    }
}
