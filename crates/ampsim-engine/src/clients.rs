//! The device catalogue, compiled: each device's model and the browser version it runs on a
//! date. Browsers ship new versions during a simulation (a release cycle or a list of releases)
//! and each device updates a fixed number of days after a release, so versions overlap as they
//! do in real traffic.

use super::rng::{KeyedRng, Purpose, Weighted};
use super::scenario::{parse_date, Device, Scenario};
use chrono::{Duration, NaiveDate};

/// One device kind of the scenario, compiled.
struct Kind {
    models: Option<Weighted>,
    /// (first date, version), by date; before the first, the scenario's `os_version`.
    versions: Vec<(NaiveDate, String)>,
    update_lag_days: u32,
}

/// The compiled device catalogue.
pub struct Clients {
    kinds: Vec<Kind>,
}

/// A device's fixed client traits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Index into the device kind's `models` (0 when it has none).
    pub model: usize,
    /// Days after a release before this device runs it.
    pub lag_days: u32,
}

impl Clients {
    /// Compiles the scenario's devices for a simulation whose days lie in `[from, to]`.
    pub fn new(s: &Scenario, from: NaiveDate, to: NaiveDate) -> Clients {
        let kinds = s
            .devices
            .iter()
            .map(|d| Kind {
                models: (!d.models.is_empty())
                    .then(|| Weighted::new(d.models.iter().map(|m| m.weight))),
                versions: versions(d, from, to),
                update_lag_days: d.update_lag_days,
            })
            .collect();
        Clients { kinds }
    }

    /// The fixed traits of `device`, a device of kind `kind`.
    pub fn client(&self, seed: u64, device: u64, kind: usize) -> Client {
        let k = &self.kinds[kind];
        let mut rng = KeyedRng::new(seed, 0, device, Purpose::Client);
        let model = k.models.as_ref().map_or(0, |w| w.pick(&mut rng));
        let lag_days = rng.range(0, k.update_lag_days);
        Client { model, lag_days }
    }

    /// The browser version a device of kind `kind` with `client`'s lag runs on `date`.
    pub fn version<'a>(
        &'a self,
        s: &'a Scenario,
        kind: usize,
        client: Client,
        date: NaiveDate,
    ) -> &'a str {
        let k = &self.kinds[kind];
        let seen = date - Duration::days(i64::from(client.lag_days));
        let i = k.versions.partition_point(|(d, _)| *d <= seen);
        if i == 0 {
            &s.devices[kind].os_version
        } else {
            &k.versions[i - 1].1
        }
    }

    /// What a device of kind `kind` reports about itself (manufacturer and model) and how
    /// Amplitude's Export shows it (family and type).
    pub fn model(s: &Scenario, kind: usize, client: Client) -> ModelNames<'_> {
        let d = &s.devices[kind];
        match d.models.get(client.model) {
            Some(m) => ModelNames {
                manufacturer: if m.device_manufacturer.is_empty() {
                    &d.device_manufacturer
                } else {
                    &m.device_manufacturer
                },
                model: &m.device_model,
                family: &d.device_family,
                device_type: &m.device_type,
            },
            None => ModelNames {
                manufacturer: &d.device_manufacturer,
                model: &d.device_model,
                family: &d.device_family,
                device_type: &d.device_type,
            },
        }
    }
}

/// A device model's names: the HTTP V2 request's (`device_manufacturer`, `device_model`, what
/// the Browser SDK reads from the user agent) and the Export layout's (`device_family`,
/// `device_type`, which Amplitude derives on ingestion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelNames<'a> {
    /// `device_manufacturer`; empty when the user agent names none.
    pub manufacturer: &'a str,
    /// `device_model`.
    pub model: &'a str,
    /// The Export layout's `device_family`.
    pub family: &'a str,
    /// The Export layout's `device_type`.
    pub device_type: &'a str,
}

/// How Amplitude's Export shows the devices of a scenario: (`device_manufacturer`,
/// `device_model`) of an event → (`device_family`, `device_type`). Validation makes it a
/// function: a manufacturer and model pair has one family and type across device kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportDeviceNames {
    names: std::collections::BTreeMap<(String, String), (String, String)>,
}

impl ExportDeviceNames {
    /// The names of every model of `s`'s devices.
    pub fn new(s: &Scenario) -> Self {
        let mut names = std::collections::BTreeMap::new();
        for (kind, d) in s.devices.iter().enumerate() {
            let n = d.models.len().max(1);
            for model in 0..n {
                let m = Clients::model(s, kind, Client { model, lag_days: 0 });
                names
                    .entry((m.manufacturer.to_string(), m.model.to_string()))
                    .or_insert_with(|| (m.family.to_string(), m.device_type.to_string()));
            }
        }
        ExportDeviceNames { names }
    }

    /// (`device_family`, `device_type`) of an event's manufacturer and model (the
    /// manufacturer empty when the event has none); `None` for a pair the scenario does not
    /// have.
    pub fn get(&self, manufacturer: &str, model: &str) -> Option<(&str, &str)> {
        self.names
            .get(&(manufacturer.to_string(), model.to_string()))
            .map(|(f, t)| (f.as_str(), t.as_str()))
    }
}

/// The releases of a device kind that matter in `[from, to]` (with the one in force at `from`).
fn versions(d: &Device, from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, String)> {
    if let Some(c) = &d.version_cycle {
        let released = parse_date(&c.released).expect("validated");
        let every = i64::from(c.every_days);
        // Cycles from the one in force at `from` to the last before `to`.
        let k0 = (from - released).num_days().div_euclid(every);
        let k1 = (to - released).num_days().div_euclid(every);
        (k0..=k1)
            .filter_map(|k| {
                let v = i64::from(c.version) + k;
                (v >= 1).then(|| (released + Duration::days(k * every), v.to_string()))
            })
            .collect()
    } else {
        d.releases
            .iter()
            .map(|r| (parse_date(&r.date).expect("validated"), r.version.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_cycle_advances_every_period_and_lags_per_device() {
        let mut s = Scenario::default_scenario();
        s.devices.truncate(1);
        let dev = &mut s.devices[0];
        dev.os_version = "130".into();
        dev.releases.clear();
        dev.version_cycle = Some(super::super::scenario::VersionCycle {
            version: 131,
            released: "2024-11-12".into(),
            every_days: 28,
        });
        dev.update_lag_days = 10;
        let c = Clients::new(&s, d(2024, 1, 1), d(2026, 1, 1));
        let now = Client {
            model: 0,
            lag_days: 0,
        };
        let late = Client {
            model: 0,
            lag_days: 10,
        };
        assert_eq!(c.version(&s, 0, now, d(2024, 11, 12)), "131");
        assert_eq!(c.version(&s, 0, now, d(2024, 12, 9)), "131");
        assert_eq!(c.version(&s, 0, now, d(2024, 12, 10)), "132");
        assert_eq!(c.version(&s, 0, late, d(2024, 12, 19)), "131");
        assert_eq!(c.version(&s, 0, late, d(2024, 12, 20)), "132");
        // A year later: 13 cycles of 28 days.
        assert_eq!(c.version(&s, 0, now, d(2025, 11, 11)), "144");
        // Before the release, earlier versions of the cycle.
        assert_eq!(c.version(&s, 0, now, d(2024, 10, 20)), "130");
    }

    #[test]
    fn releases_apply_from_their_dates() {
        let mut s = Scenario::default_scenario();
        s.devices.truncate(1);
        let dev = &mut s.devices[0];
        dev.os_version = "18.1".into();
        dev.version_cycle = None;
        dev.releases = vec![
            super::super::scenario::Release {
                date: "2024-12-11".into(),
                version: "18.2".into(),
            },
            super::super::scenario::Release {
                date: "2025-09-15".into(),
                version: "26.0".into(),
            },
        ];
        let c = Clients::new(&s, d(2024, 1, 1), d(2026, 1, 1));
        let now = Client {
            model: 0,
            lag_days: 0,
        };
        assert_eq!(c.version(&s, 0, now, d(2024, 12, 10)), "18.1");
        assert_eq!(c.version(&s, 0, now, d(2024, 12, 11)), "18.2");
        assert_eq!(c.version(&s, 0, now, d(2025, 9, 14)), "18.2");
        assert_eq!(c.version(&s, 0, now, d(2025, 12, 1)), "26.0");
    }
}
