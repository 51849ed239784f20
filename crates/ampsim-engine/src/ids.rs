//! Identifiers: device ids, user ids and insert ids.
//!
//! Internally a user is a *device number*: `(first_day << 32) | index`, dense and ordered by
//! arrival. Outside, Amplitude wants opaque strings. The strings here are reversible: a device id
//! is a version-4 UUID (RFC 9562: version nibble 4, variant bits 10) whose 122 free bits hold a
//! keyed Feistel permutation of the device number (64 bits) and a keyed check word (58 bits), and
//! a user id is an e-mail address whose tag is the same kind of permutation. So the server can
//! find a user's stored events from either id without an id → user table, and a made-up id is
//! rejected by its check word instead of matching someone. Insert ids are version-4 UUIDs too.

use super::rng::{hash_words, mix64};

/// Builds a device number from the day the user first arrived and its index that day.
#[inline]
pub fn device_num(first_day: u32, index: u32) -> u64 {
    (u64::from(first_day) << 32) | u64::from(index)
}

/// The day a device number first arrived.
#[inline]
pub fn first_day_of(device: u64) -> u32 {
    (device >> 32) as u32
}

/// The bit that marks a person's second device: its device number is the person's (its first
/// device's) with bit 31 of the day index set. Day indexes stay below 2^31 (arrivals per day
/// are capped there), so the two never collide.
pub const SECOND_DEVICE_BIT: u64 = 1 << 31;

/// The device number of a person's second device.
#[inline]
pub fn second_device_of(person: u64) -> u64 {
    person | SECOND_DEVICE_BIT
}

/// The person (first device number) a device number belongs to: itself for a first device.
#[inline]
pub fn person_of(device: u64) -> u64 {
    device & !SECOND_DEVICE_BIT
}

/// Whether a device number is a second device.
#[inline]
pub fn is_second_device(device: u64) -> bool {
    device & SECOND_DEVICE_BIT != 0
}

const ROUNDS: u64 = 4;

fn feistel(x: u64, key: u64) -> u64 {
    let (mut l, mut r) = ((x >> 32) as u32, x as u32);
    for round in 0..ROUNDS {
        let f = mix64(u64::from(r) ^ key.wrapping_add(round.wrapping_mul(0x9e37_79b9))) as u32;
        (l, r) = (r, l ^ f);
    }
    (u64::from(l) << 32) | u64::from(r)
}

fn feistel_inv(y: u64, key: u64) -> u64 {
    let (mut l, mut r) = ((y >> 32) as u32, y as u32);
    for round in (0..ROUNDS).rev() {
        let f = mix64(u64::from(l) ^ key.wrapping_add(round.wrapping_mul(0x9e37_79b9))) as u32;
        (l, r) = (r ^ f, l);
    }
    (u64::from(l) << 32) | u64::from(r)
}

/// Writes 128 bits as a lowercase hyphenated UUID (8-4-4-4-12 hex digits).
pub fn write_uuid(out: &mut String, hi: u64, lo: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut src = [0u8; 16];
    src[..8].copy_from_slice(&hi.to_be_bytes());
    src[8..].copy_from_slice(&lo.to_be_bytes());
    let mut b = [b'-'; 36];
    let mut j = 0;
    for (i, byte) in src.iter().enumerate() {
        // 8-4-4-4-12 digits: a hyphen before bytes 4, 6, 8 and 10.
        if matches!(i, 4 | 6 | 8 | 10) {
            j += 1;
        }
        b[j] = HEX[usize::from(byte >> 4)];
        b[j + 1] = HEX[usize::from(byte & 0xf)];
        j += 2;
    }
    out.push_str(std::str::from_utf8(&b).expect("hex digits and hyphens are ASCII"));
}

fn parse_uuid(s: &str) -> Option<(u64, u64)> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut hex = String::with_capacity(32);
    for (i, c) in s.chars().enumerate() {
        if ![8, 13, 18, 23].contains(&i) {
            if !c.is_ascii_hexdigit() {
                return None;
            }
            hex.push(c);
        }
    }
    let hi = u64::from_str_radix(&hex[..16], 16).ok()?;
    let lo = u64::from_str_radix(&hex[16..], 16).ok()?;
    Some((hi, lo))
}

/// The 58 bits of a device id's check word.
const CHECK_BITS: u64 = (1 << 58) - 1;

/// Lays 64 payload bits and 58 check bits out as a version-4 UUID's 128 bits: the version
/// nibble (bits 76-79, `4`) and the variant (bits 62-63, `10`) are fixed, the rest carry data.
fn v4_layout(payload: u64, check: u64) -> (u64, u64) {
    let hi = (payload & !0xffff) | (0x4 << 12) | ((payload >> 4) & 0xfff);
    let lo = (0b10 << 62) | ((payload & 0xf) << 58) | (check & CHECK_BITS);
    (hi, lo)
}

/// The payload and check bits of a version-4 layout, or `None` if the fixed bits are wrong.
fn v4_fields(hi: u64, lo: u64) -> Option<(u64, u64)> {
    if (hi >> 12) & 0xf != 0x4 || lo >> 62 != 0b10 {
        return None;
    }
    let payload = (hi & !0xffff) | ((hi & 0xfff) << 4) | ((lo >> 58) & 0xf);
    Some((payload, lo & CHECK_BITS))
}

/// Sets the version (4) and variant (`10`) bits of 128 random bits.
fn v4_random(hi: u64, lo: u64) -> (u64, u64) {
    ((hi & !0xf000) | 0x4000, (lo & !(0b11 << 62)) | (0b10 << 62))
}

/// Encodes and decodes the ids of one simulation (keyed by its tag).
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    tag: u64,
}

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl Ids {
    /// The ids of the simulation with this tag.
    pub fn new(tag: u64) -> Self {
        Ids { tag }
    }

    fn device_keys(&self) -> (u64, u64) {
        (hash_words(&[self.tag, 0xd1]), hash_words(&[self.tag, 0xd2]))
    }

    /// Appends the device id string of a device number: a version-4 UUID.
    pub fn write_device_id(&self, device: u64, out: &mut String) {
        let (k1, k2) = self.device_keys();
        let p = feistel(device, k1);
        let (hi, lo) = v4_layout(p, mix64(p ^ k2));
        write_uuid(out, hi, lo);
    }

    /// The device id string of a device number.
    pub fn device_id(&self, device: u64) -> String {
        let mut s = String::with_capacity(36);
        self.write_device_id(device, &mut s);
        s
    }

    /// The device number of a device id, or `None` if it is not one of this simulation's ids.
    pub fn parse_device_id(&self, s: &str) -> Option<u64> {
        let (k1, k2) = self.device_keys();
        let (hi, lo) = parse_uuid(&s.to_ascii_lowercase())?;
        let (p, check) = v4_fields(hi, lo)?;
        (mix64(p ^ k2) & CHECK_BITS == check).then(|| feistel_inv(p, k1))
    }

    /// Appends the user id (a work e-mail address) of a device number whose user lives in a
    /// country of `locale`: a name of that country, then a reversible code, at `domain` (its
    /// company's).
    pub fn write_user_id(
        &self,
        device: u64,
        locale: &crate::names::Locale,
        domain: &str,
        out: &mut String,
    ) {
        let code = feistel(device, hash_words(&[self.tag, 0xe1]));
        let h = mix64(code ^ self.tag);
        out.push_str(locale.first[(h % locale.first.len() as u64) as usize]);
        out.push('.');
        out.push_str(locale.last[((h >> 8) % locale.last.len() as u64) as usize]);
        out.push('.');
        let mut digits = [0u8; 13];
        let mut n = code;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = BASE36[(n % 36) as usize];
            n /= 36;
            if n == 0 {
                break;
            }
        }
        out.push_str(std::str::from_utf8(&digits[i..]).expect("ascii"));
        out.push('@');
        out.push_str(domain);
    }

    /// The device number a user id's code names, or `None` if it has no code. The caller
    /// checks the whole address ([`crate::Engine::parse_user_id`]).
    pub fn user_code_device(&self, s: &str) -> Option<u64> {
        let local = s.split('@').next()?;
        let code_str = local.rsplit('.').next()?;
        if code_str.is_empty() || code_str.len() > 13 {
            return None;
        }
        let mut code: u64 = 0;
        for c in code_str.bytes() {
            let d = BASE36.iter().position(|&b| b == c)? as u64;
            code = code.checked_mul(36)?.checked_add(d)?;
        }
        Some(feistel_inv(code, hash_words(&[self.tag, 0xe1])))
    }

    /// Appends the insert id of an event: a version-4 UUID hashed from (simulation, device,
    /// event id), stable across regenerations so that re-uploads dedupe.
    pub fn write_insert_id(&self, device: u64, event_id: u32, out: &mut String) {
        let hi = hash_words(&[self.tag, device, u64::from(event_id), 0x1a]);
        let (hi, lo) = v4_random(hi, mix64(hi ^ 0x1b));
        write_uuid(out, hi, lo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_hyphenated_lowercase_hex() {
        for (hi, lo) in [
            (0, 0),
            (u64::MAX, 1),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
        ] {
            let mut s = String::new();
            write_uuid(&mut s, hi, lo);
            let want = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xffff,
                hi & 0xffff,
                lo >> 48,
                lo & 0xffff_ffff_ffff
            );
            assert_eq!(s, want);
            assert_eq!(parse_uuid(&s), Some((hi, lo)));
        }
    }

    #[test]
    fn ids_round_trip_and_reject_foreign_ids() {
        let ids = Ids::new(42);
        for dev in [0, 1, device_num(0, 7), device_num(364, 43_999), u64::MAX] {
            let d = ids.device_id(dev);
            assert_eq!(d.len(), 36);
            assert_eq!(ids.parse_device_id(&d), Some(dev), "{d}");
            let mut u = String::new();
            ids.write_user_id(dev, crate::names::locale("DE"), "example.de", &mut u);
            assert!(u.ends_with("@example.de"), "{u}");
            assert!(u.contains('@'), "{u}");
            assert_eq!(ids.user_code_device(&u), Some(dev), "{u}");
        }
        // Version 4, variant 10 (RFC 9562), device and insert ids alike.
        for dev in [0, 5, device_num(200, 9), u64::MAX] {
            let mut ins = String::new();
            ids.write_insert_id(dev, 7, &mut ins);
            for id in [ids.device_id(dev), ins] {
                assert_eq!(&id[14..15], "4", "{id}");
                assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            }
        }
        // A flipped payload bit or a wrong version is refused.
        let d = ids.device_id(5);
        let mut flipped = d.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            ids.parse_device_id(std::str::from_utf8(&flipped).unwrap()),
            None
        );
        let mut v3 = d.clone().into_bytes();
        v3[14] = b'3';
        assert_eq!(ids.parse_device_id(std::str::from_utf8(&v3).unwrap()), None);
        let other = Ids::new(43);
        let d = ids.device_id(5);
        assert_eq!(other.parse_device_id(&d), None);
        assert_eq!(ids.parse_device_id("not-a-device"), None);
        assert_eq!(ids.user_code_device("someone.@example.com"), None);
        assert_eq!(ids.user_code_device("a.b.not_base36@example.com"), None);
        assert_ne!(ids.device_id(1), ids.device_id(2));
    }
}
