//! The keys of an established session's record layer, derived from its master secret as
//! TLS 1.2 does (RFC 5246 §6.3, the SHA-256 PRF of §5), for the AEAD suites the gateway
//! offers: `TLS_PSK_WITH_AES_128_CCM_8` and `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8` (RFC 6655,
//! RFC 7251) and their `AES_128_GCM_SHA256` counterparts (RFC 5288, RFC 5487).
//!
//! Why derive them ourselves: once the handshake is over, a session needs only these 40 bytes,
//! a sequence number and a replay window, while OpenSSL's `SSL` keeps ~30 KB per session
//! (`dtls/protection.rs` says what runs on them). OpenSSL still does the handshake.

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The AEAD of a suite the record layer can run; every one uses AES-128 and a 4-byte implicit
/// nonce part (the "salt" of RFC 5288 §3, the fixed IV of RFC 6655 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aead {
    /// AES-128-CCM with an 8-byte tag (RFC 6655): what RFC 7252 §9 makes mandatory.
    Ccm8,
    /// AES-128-GCM with a 16-byte tag (RFC 5288).
    Gcm,
}

impl Aead {
    /// The AEAD of the suite OpenSSL negotiated (by OpenSSL's suite name); `None` for a suite
    /// this record layer does not run, which then stays with OpenSSL.
    pub(crate) fn of_suite(openssl_name: &str) -> Option<Aead> {
        match openssl_name {
            "PSK-AES128-CCM8" | "ECDHE-ECDSA-AES128-CCM8" => Some(Aead::Ccm8),
            "PSK-AES128-GCM-SHA256" | "ECDHE-ECDSA-AES128-GCM-SHA256" => Some(Aead::Gcm),
            _ => None,
        }
    }

    pub(crate) fn tag_len(self) -> usize {
        match self {
            Aead::Ccm8 => 8,
            Aead::Gcm => 16,
        }
    }
}

pub(crate) const KEY_LEN: usize = 16;
pub(crate) const FIXED_IV_LEN: usize = 4;

/// One direction's key and implicit nonce part.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DirectionKeys {
    pub key: [u8; KEY_LEN],
    pub fixed_iv: [u8; FIXED_IV_LEN],
}

impl std::fmt::Debug for DirectionKeys {
    // Key material never reaches a log, not even a debug one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKeys(..)")
    }
}

/// Both directions' keys (RFC 5246 §6.3: client_write_key, server_write_key,
/// client_write_IV, server_write_IV, in that order; AEAD suites have no MAC keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyBlock {
    pub client: DirectionKeys,
    pub server: DirectionKeys,
}

/// `key_block = PRF(master_secret, "key expansion", server_random + client_random)`.
pub(crate) fn key_block(
    master_secret: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> Result<KeyBlock, ErrorStack> {
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(server_random);
    seed[32..].copy_from_slice(client_random);
    let mut block = [0u8; 2 * KEY_LEN + 2 * FIXED_IV_LEN];
    prf_sha256(master_secret, b"key expansion", &seed, &mut block)?;
    let mut keys = KeyBlock {
        client: DirectionKeys {
            key: [0; KEY_LEN],
            fixed_iv: [0; FIXED_IV_LEN],
        },
        server: DirectionKeys {
            key: [0; KEY_LEN],
            fixed_iv: [0; FIXED_IV_LEN],
        },
    };
    let (client_key, rest) = block.split_at(KEY_LEN);
    let (server_key, rest) = rest.split_at(KEY_LEN);
    let (client_iv, server_iv) = rest.split_at(FIXED_IV_LEN);
    keys.client.key.copy_from_slice(client_key);
    keys.server.key.copy_from_slice(server_key);
    keys.client.fixed_iv.copy_from_slice(client_iv);
    keys.server.fixed_iv.copy_from_slice(server_iv);
    block.fill(0);
    Ok(keys)
}

/// TLS 1.2's PRF with SHA-256 (RFC 5246 §5): `P_SHA256(secret, label + seed)`.
pub(crate) fn prf_sha256(
    secret: &[u8],
    label: &[u8],
    seed: &[u8],
    out: &mut [u8],
) -> Result<(), ErrorStack> {
    let key = PKey::hmac(secret)?;
    let hmac = |parts: &[&[u8]]| -> Result<Vec<u8>, ErrorStack> {
        let mut signer = Signer::new(MessageDigest::sha256(), &key)?;
        for part in parts {
            signer.update(part)?;
        }
        signer.sign_to_vec()
    };
    // A(1) = HMAC(secret, label + seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = hmac(&[label, seed])?;
    for chunk in out.chunks_mut(32) {
        let block = hmac(&[&a, label, seed])?;
        chunk.copy_from_slice(&block[..chunk.len()]);
        a = hmac(&[&a])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The value OpenSSL's own TLS1-PRF KDF gives for these inputs
    /// (`openssl kdf -keylen 100 -kdfopt digest:SHA256 -kdfopt hexsecret:… -kdfopt
    /// hexseed:<label+seed> TLS1-PRF`), an implementation independent of this one.
    #[test]
    fn the_prf_matches_openssls_tls1_prf() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 100];
        prf_sha256(&secret, b"test label", &seed, &mut out).unwrap();
        assert_eq!(out.to_vec(), hex(PRF_VECTOR));
    }

    const PRF_VECTOR: &str = concat!(
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a",
        "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab",
        "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701",
        "87347b66",
    );

    #[test]
    fn the_key_block_splits_in_rfc_5246_order() {
        let master = [7u8; 48];
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let keys = key_block(&master, &c, &s).unwrap();
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(&s);
        seed[32..].copy_from_slice(&c);
        let mut block = [0u8; 40];
        prf_sha256(&master, b"key expansion", &seed, &mut block).unwrap();
        assert_eq!(keys.client.key, block[0..16]);
        assert_eq!(keys.server.key, block[16..32]);
        assert_eq!(keys.client.fixed_iv, block[32..36]);
        assert_eq!(keys.server.fixed_iv, block[36..40]);
    }

    #[test]
    fn suites_map_to_their_aead_and_others_stay_with_openssl() {
        assert_eq!(Aead::of_suite("PSK-AES128-CCM8"), Some(Aead::Ccm8));
        assert_eq!(
            Aead::of_suite("ECDHE-ECDSA-AES128-GCM-SHA256"),
            Some(Aead::Gcm)
        );
        assert_eq!(Aead::of_suite("PSK-AES256-GCM-SHA384"), None);
        assert_eq!(Aead::Ccm8.tag_len(), 8);
        assert_eq!(Aead::Gcm.tag_len(), 16);
    }

    #[test]
    fn keys_do_not_print() {
        let keys = key_block(&[1; 48], &[0; 32], &[0; 32]).unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains(&format!("{:?}", keys.client.key)));
    }
}
