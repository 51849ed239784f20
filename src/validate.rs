//! Validation of request fields, in one place: ids, dates, scales. Errors are
//! [`Error::InvalidArgument`] naming the field.

use crate::error::{Error, Result};
use chrono::NaiveDate;

pub use ampsim_engine::engine::MAX_SCALE;

/// Validates a simulation id: 1–64 characters of `[A-Za-z0-9_.-]`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `simulation_id`.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("simulation_id", "must not be empty"));
    }
    if id.len() > 64 {
        return Err(Error::invalid(
            "simulation_id",
            format!("must be at most 64 characters, got {}", id.len()),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(
            "simulation_id",
            "may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// Parses a `YYYY-MM-DD` date between 1970-01-01 and 9999-12-31.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate> {
    parse_ymd(s).map_err(|m| Error::invalid(field, m))
}

/// [`parse_date`] for a command-line flag (clap's `value_parser`), whose error clap prefixes
/// with the flag.
///
/// # Errors
/// What is wrong with the date.
pub fn parse_ymd(s: &str) -> std::result::Result<NaiveDate, String> {
    if s.len() != 10 {
        return Err(format!("expected YYYY-MM-DD, got {:?}", truncate(s)));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected YYYY-MM-DD, got {s:?} ({e})"))?;
    let min = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let max = NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid");
    if d < min || d > max {
        return Err(format!(
            "must be between 1970-01-01 and 9999-12-31, got {s}"
        ));
    }
    Ok(d)
}

/// The first 40 characters of a value, to quote it in an error message.
pub fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Validates a population scale; 0 means 1.0 (proto3's default).
///
/// # Errors
/// [`Error::InvalidArgument`] naming `population_scale`.
pub fn validate_scale(scale: f64) -> Result<f64> {
    if scale == 0.0 {
        return Ok(1.0);
    }
    ampsim_engine::SimConfig::check_scale(scale)
        .map_err(|e| Error::invalid("population_scale", format!("{e} (0 means 1.0)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_dates_are_validated() {
        assert!(validate_id("sim-1.a_b").is_ok());
        for bad in ["", "a b", "x;drop", &"x".repeat(65), "ünï"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(parse_date("d", "2025-02-29").is_err());
        assert!(parse_date("d", "1969-12-31").is_err());
        assert!(parse_date("d", "2025-1-1").is_err());
        assert_eq!(
            parse_date("d", "2024-02-29").unwrap(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        assert_eq!(validate_scale(0.0).unwrap(), 1.0);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(validate_scale(bad).is_err(), "{bad}");
        }
    }
}
