//! Client-side exchange rules (RFC 7252 §4.2, §4.8, §5.3.1): the retransmission schedule with
//! its randomised initial timeout and exponential back-off, and token generation. Pure apart
//! from the random source passed in.

use std::time::Duration;

use rand::Rng;

use super::params::TransmissionParams;

/// Retransmission state of one CON message.
#[derive(Clone, Debug)]
pub struct Backoff {
    timeout: Duration,
    retransmissions: u32,
    max_retransmit: u32,
}

impl Backoff {
    /// `unit` is a sample from [0, 1): the initial timeout is ACK_TIMEOUT scaled into
    /// [1, ACK_RANDOM_FACTOR] (§4.2).
    pub fn new(params: &TransmissionParams, unit: f64) -> Backoff {
        let factor = 1.0 + (params.ack_random_factor - 1.0) * unit.clamp(0.0, 1.0);
        Backoff {
            timeout: params.ack_timeout.mul_f64(factor),
            retransmissions: 0,
            max_retransmit: params.max_retransmit,
        }
    }

    pub fn with_rng(params: &TransmissionParams, rng: &mut impl Rng) -> Backoff {
        Backoff::new(params, rng.gen::<f64>())
    }

    /// How long to wait for an ACK before the next step.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The timer fired: true if the message is to be retransmitted (timeout doubled), false
    /// when MAX_RETRANSMIT is exhausted and the exchange has failed.
    pub fn on_timeout(&mut self) -> bool {
        if self.retransmissions >= self.max_retransmit {
            return false;
        }
        self.retransmissions += 1;
        self.timeout *= 2;
        true
    }

    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }
}

/// 8 random bytes (RFC 7252 §5.3.1: tokens should carry enough randomness against spoofing).
pub fn new_token(rng: &mut impl Rng) -> [u8; 8] {
    rng.gen()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_retransmit() {
        let p = TransmissionParams::default();
        let mut b = Backoff::new(&p, 0.0);
        assert_eq!(b.timeout(), Duration::from_secs(2));
        let mut total = b.timeout();
        let mut sends = 1;
        while b.on_timeout() {
            sends += 1;
            total += b.timeout();
        }
        assert_eq!(sends, 5, "1 + MAX_RETRANSMIT");
        assert_eq!(total, Duration::from_secs(62), "2+4+8+16+32");
        let hi = Backoff::new(&p, 0.999_999);
        assert!(
            hi.timeout() > Duration::from_millis(2990) && hi.timeout() <= Duration::from_secs(3)
        );
    }

    #[test]
    fn tokens_are_random() {
        let mut rng = rand::thread_rng();
        assert_ne!(new_token(&mut rng), new_token(&mut rng));
    }
}
