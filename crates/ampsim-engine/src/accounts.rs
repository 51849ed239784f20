//! Companies: the B2B accounts visitors work for (`[accounts]`).
//!
//! A visitor's company is a latent trait of its device, drawn once (`Purpose::Company`, day 0):
//! a size band by its share, then one of the band's companies in the visitor's geography,
//! uniformly. So a device's company is a pure function of the definition and the device number,
//! never stored, the same in every shard; colleagues (devices that drew the same company) find
//! the site independently.
//!
//! Companies are numbered by a serial: the pools of every (geography, band) pair are laid end to
//! end, each `max(1, round(band.companies × geography share × scale))` long. A company's name,
//! domain, industry and head count are functions of its serial and the simulation's tag: the
//! serial goes through a keyed bijection onto the name space ([`crate::names::company_name`]),
//! so distinct companies have distinct names and domains.

use crate::rng::{hash_words, mix64, KeyedRng, Purpose, Weighted};
use crate::scenario::Scenario;

/// The Amplitude group type of a company, the key of `groups`.
pub const GROUP_TYPE: &str = "company";

/// The compiled `[accounts]`: the pools of companies by geography and size band.
pub struct Companies {
    bands: Weighted,
    industries: Weighted,
    /// Per geography, per band: the pool's first serial and its size.
    pools: Vec<Vec<(u32, u32)>>,
    /// Every pool's first serial, in serial order, with its geography and band.
    starts: Vec<(u32, u16, u8)>,
    /// How many companies there are.
    total: u32,
    /// The keyed bijection of serials onto names: `code = serial × mult + add` modulo the
    /// distinct names.
    mult: u64,
    add: u64,
    tag: u64,
    seed: u64,
}

/// A visitor's company: its serial, and the geography and band of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Company {
    /// The company's number, from 0.
    pub serial: u32,
    /// Index into `scenario.geography` (the company's country).
    pub geo: usize,
    /// Index into `accounts.size_bands`.
    pub band: usize,
}

/// What Amplitude is told about a company (its group properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyInfo {
    /// The company.
    pub company: Company,
    /// Display name, e.g. `Bluewave Analytics`.
    pub name: String,
    /// Its domain, e.g. `bluewaveanalytics.de`: the group value and its people's e-mail
    /// domain.
    pub domain: String,
    /// Index into `accounts.industries`.
    pub industry: usize,
    /// Employees (within its band).
    pub employees: u32,
}

impl Companies {
    /// Compiles the pools of a scenario at a population scale; `tag` keys names.
    pub fn new(s: &Scenario, scale: f64, tag: u64, seed: u64) -> Companies {
        let a = &s.accounts;
        let geo_total: f64 = s.geography.iter().map(|g| g.weight).sum();
        let mut pools = Vec::with_capacity(s.geography.len());
        let mut starts = Vec::new();
        let mut next: u64 = 0;
        for (gi, g) in s.geography.iter().enumerate() {
            let share = if geo_total > 0.0 {
                g.weight / geo_total
            } else {
                0.0
            };
            let mut row = Vec::with_capacity(a.size_bands.len());
            for (bi, b) in a.size_bands.iter().enumerate() {
                let n = (b.companies * share * scale).round().clamp(1.0, 1e9) as u64;
                let first = u32::try_from(next).expect("fewer than 2^32 companies");
                starts.push((first, gi as u16, bi as u8));
                row.push((first, n as u32));
                next += n;
            }
            pools.push(row);
        }
        Companies {
            bands: Weighted::new(a.size_bands.iter().map(|b| b.share)),
            industries: Weighted::new(a.industries.iter().map(|x| x.weight)),
            pools,
            starts,
            total: u32::try_from(next).expect("fewer than 2^32 companies"),
            mult: hash_words(&[tag, 0xc0]) | 1,
            add: hash_words(&[tag, 0xc1]),
            tag,
            seed,
        }
    }

    /// How many companies there are.
    pub fn count(&self) -> u32 {
        self.total
    }

    /// The company of a device in geography `geo`: drawn once from the device number.
    pub fn of(&self, seed: u64, device: u64, geo: usize) -> Company {
        let mut rng = KeyedRng::new(seed, 0, device, Purpose::Company);
        let band = self.bands.pick(&mut rng);
        let (first, n) = self.pools[geo][band];
        Company {
            serial: first + rng.range(0, n - 1),
            geo,
            band,
        }
    }

    /// The company with a serial, if there is one.
    pub fn by_serial(&self, serial: u32) -> Option<Company> {
        if serial >= self.total {
            return None;
        }
        let i = self.starts.partition_point(|s| s.0 <= serial) - 1;
        let (_, geo, band) = self.starts[i];
        Some(Company {
            serial,
            geo: usize::from(geo),
            band: usize::from(band),
        })
    }

    /// The name code of a serial: a bijection within each round of the name space.
    fn code(&self, serial: u32) -> u64 {
        let m = crate::names::DISTINCT_COMPANY_NAMES;
        let s = u64::from(serial);
        let (round, c) = (s / m, s % m);
        round * m + c.wrapping_mul(self.mult).wrapping_add(self.add) % m
    }

    /// Everything about a company.
    pub fn info(&self, s: &Scenario, company: Company) -> CompanyInfo {
        let (name, label) = crate::names::company_name(self.code(company.serial));
        let h = mix64(hash_words(&[self.tag, u64::from(company.serial), 0xc2]));
        let locale = crate::names::locale(&s.geography[company.geo].country_code);
        let mut domain = label;
        domain.push('.');
        domain.push_str(locale.tld((h % 100) as u32));
        let mut rng = KeyedRng::new(
            self.seed,
            0,
            u64::from(company.serial),
            Purpose::CompanyTraits,
        );
        let industry = self.industries.pick(&mut rng);
        let [lo, hi] = s.accounts.size_bands[company.band].employees;
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        let employees = (lo.ln() + rng.f64() * (hi.ln() - lo.ln()))
            .exp()
            .round()
            .clamp(lo, hi) as u32;
        CompanyInfo {
            company,
            name,
            domain,
            industry,
            employees,
        }
    }

    /// The domain of a company (what [`Companies::info`] gives, without the rest).
    pub fn domain(&self, s: &Scenario, company: Company) -> String {
        let mut label = crate::names::company_label(self.code(company.serial));
        let h = mix64(hash_words(&[self.tag, u64::from(company.serial), 0xc2]));
        let locale = crate::names::locale(&s.geography[company.geo].country_code);
        label.push('.');
        label.push_str(locale.tld((h % 100) as u32));
        label
    }

    /// The company whose domain this is, if any. The name space is searched through the
    /// bijection's inverse, so this costs a few multiplications, not a scan.
    pub fn parse_domain(&self, s: &Scenario, domain: &str) -> Option<Company> {
        let (label, _) = domain.split_once('.')?;
        let code = crate::names::company_code(label)?;
        let m = crate::names::DISTINCT_COMPANY_NAMES;
        let (round, c) = (code / m, code % m);
        // c = serial × mult + add (mod m), m a power of two and mult odd.
        let inv = inverse_mod_pow2(self.mult, m);
        let serial = round * m + (c.wrapping_sub(self.add) % m).wrapping_mul(inv) % m;
        let company = self.by_serial(u32::try_from(serial).ok()?)?;
        (self.domain(s, company) == domain).then_some(company)
    }
}

/// The inverse of an odd `a` modulo `m`, a power of two (Newton's iteration).
fn inverse_mod_pow2(a: u64, m: u64) -> u64 {
    let mut x = a; // correct to 3 bits for odd a
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x % m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_bijection_inverts() {
        let s = Scenario::default_scenario();
        let c = Companies::new(&s, 3.0, 0x1234_5678, 9);
        assert!(c.count() > 50_000);
        for serial in (0..c.count()).step_by(37) {
            let company = c.by_serial(serial).expect("in range");
            let d = c.domain(&s, company);
            assert_eq!(c.info(&s, company).domain, d);
            assert_eq!(c.parse_domain(&s, &d), Some(company), "{d}");
        }
        assert_eq!(c.by_serial(c.count()), None);
        assert_eq!(c.parse_domain(&s, "nosuchcompany.com"), None);
    }

    #[test]
    fn every_pool_has_a_company_and_serials_are_in_their_pool() {
        let s = Scenario::default_scenario();
        let c = Companies::new(&s, 0.001, 7, 1);
        for (gi, row) in c.pools.iter().enumerate() {
            for (bi, &(first, n)) in row.iter().enumerate() {
                assert!(n >= 1);
                let co = c.by_serial(first + n - 1).expect("in range");
                assert_eq!((co.geo, co.band), (gi, bi));
            }
        }
        for device in 0..2000u64 {
            let co = c.of(1, device, 3);
            assert_eq!(co.geo, 3);
            assert_eq!(c.by_serial(co.serial), Some(co));
        }
    }
}
