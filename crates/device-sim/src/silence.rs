//! Which simulated devices go silent, and the stdin control language of `device-sim`.
//!
//! Pure: called by `sim::fleet` when it starts the fleet and for every stdin line. Every
//! command is answered with one line on stdout (`device-sim: <command>: <what it did>`).

use thiserror::Error;

/// Whether device `index` belongs to the silent `fraction` (0.0..=1.0). The chosen devices are
/// spread evenly over the indices — exactly `floor(count * fraction)` of the first `count` —
/// so any contiguous range of devices has its share of silent ones.
pub fn is_in_silent_fraction(index: usize, fraction: f64) -> bool {
    // NaN and anything not above zero select nobody.
    if fraction.is_nan() || fraction <= 0.0 {
        return false;
    }
    let f = fraction.min(1.0);
    ((index + 1) as f64 * f).floor() > (index as f64 * f).floor()
}

/// A line on `device-sim`'s stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceCommand {
    /// `silent <i>`: device i drops all traffic (no answers, not even to pings).
    Silent(usize),
    /// `wake <i>`: device i answers again.
    Wake(usize),
    /// `silent all` / `wake all`: every device.
    SilentAll,
    WakeAll,
    /// `silent fraction` / `wake fraction`: the `--silent-fraction` devices (what
    /// `--silent-after` and `--return-after` act on).
    SilentFraction,
    WakeFraction,
}

impl std::fmt::Display for SilenceCommand {
    /// The command as typed, e.g. `silent 3`: the prefix of its reply line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SilenceCommand::Silent(i) => write!(f, "silent {i}"),
            SilenceCommand::Wake(i) => write!(f, "wake {i}"),
            SilenceCommand::SilentAll => f.write_str("silent all"),
            SilenceCommand::WakeAll => f.write_str("wake all"),
            SilenceCommand::SilentFraction => f.write_str("silent fraction"),
            SilenceCommand::WakeFraction => f.write_str("wake fraction"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown command {0:?}: expected `silent <i>`, `wake <i>` (device i), `silent all`, \
     `wake all` (every device), `silent fraction` or `wake fraction` (the --silent-fraction \
     devices)"
)]
pub struct SilenceCommandError(pub String);

/// Parse one control line; blank lines are `Ok(None)`.
pub fn parse_command(line: &str) -> Result<Option<SilenceCommand>, SilenceCommandError> {
    let mut words = line.split_whitespace();
    let (Some(verb), arg, None) = (words.next(), words.next(), words.next()) else {
        return if line.trim().is_empty() {
            Ok(None)
        } else {
            Err(SilenceCommandError(line.trim().to_string()))
        };
    };
    let bad = || SilenceCommandError(line.trim().to_string());
    match (verb, arg) {
        ("silent", Some("all")) => Ok(Some(SilenceCommand::SilentAll)),
        ("wake", Some("all")) => Ok(Some(SilenceCommand::WakeAll)),
        ("silent", Some("fraction")) => Ok(Some(SilenceCommand::SilentFraction)),
        ("wake", Some("fraction")) => Ok(Some(SilenceCommand::WakeFraction)),
        ("silent", Some(i)) => Ok(Some(SilenceCommand::Silent(i.parse().map_err(|_| bad())?))),
        ("wake", Some(i)) => Ok(Some(SilenceCommand::Wake(i.parse().map_err(|_| bad())?))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_picks_the_exact_share_spread_out() {
        let picked: Vec<usize> = (0..100)
            .filter(|&i| is_in_silent_fraction(i, 0.1))
            .collect();
        assert_eq!(picked.len(), 10);
        assert_eq!(picked[0], 9);
        assert!(picked.windows(2).all(|w| w[1] - w[0] == 10));
        assert_eq!(
            (0..10_000)
                .filter(|&i| is_in_silent_fraction(i, 0.1))
                .count(),
            1000
        );
        assert_eq!((0..7).filter(|&i| is_in_silent_fraction(i, 1.0)).count(), 7);
        assert_eq!((0..7).filter(|&i| is_in_silent_fraction(i, 0.0)).count(), 0);
        assert!(!is_in_silent_fraction(3, f64::NAN));
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_command("silent 3"),
            Ok(Some(SilenceCommand::Silent(3)))
        );
        assert_eq!(
            parse_command("  wake 12 "),
            Ok(Some(SilenceCommand::Wake(12)))
        );
        assert_eq!(
            parse_command("silent all"),
            Ok(Some(SilenceCommand::SilentAll))
        );
        assert_eq!(parse_command("wake all"), Ok(Some(SilenceCommand::WakeAll)));
        assert_eq!(
            parse_command("silent fraction"),
            Ok(Some(SilenceCommand::SilentFraction))
        );
        assert_eq!(
            parse_command("wake fraction"),
            Ok(Some(SilenceCommand::WakeFraction))
        );
        assert_eq!(parse_command(""), Ok(None));
        for bad in ["silent", "silent x", "wake 1 2", "reboot 1", "silent -1"] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
