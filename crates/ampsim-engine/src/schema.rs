//! The one description of an event's fields.
//!
//! Every output of an event is produced from [`FIELDS`]: the canonical JSON that digests cover
//! and the HTTP V2 JSON lines ([`crate::json`]), the protobuf bytes of `ampsim.v1.Event`
//! (the server's `wire` module; a test checks the `.proto` against this table), the Parquet
//! columns and the Amplitude Export layout (the server's `export` modules). Adding a field is
//! one line in the [`fields!`] table below, its value in [`EventRecord::value`] of the rendered
//! [`Event`](crate::Event), its line in `simulator.proto`, and its tests; every output then
//! carries it.
//!
//! A representation of an event (the rendered [`Event`](crate::Event), a borrowed view of its
//! protobuf bytes) implements [`EventRecord`]: it gives the [`Value`] of a field by
//! [`FieldId`]. Writers walk [`FIELDS`] in order, or, on the hot paths, call
//! [`visit_fields`], which hands each field to a [`FieldVisitor`] as a compile-time constant,
//! so a generic writer compiles to the same straight-line code as a hand-written one.

/// How a field's values are typed, in every output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string every event has (protobuf `string`; a required STRING column).
    Str,
    /// A string some events have: protobuf leaves it empty, JSON leaves it out, columns hold
    /// null.
    OptStr,
    /// An integer every event has (protobuf `int64`/`uint32`; a required INT64 column).
    Int,
    /// Event time in ms since the epoch: an integer every event has, a timestamp column.
    TimeMs,
    /// A float some events have (protobuf `optional double`).
    OptFloat,
    /// An integer some events have (protobuf `optional int64`).
    OptInt,
    /// A property map with string keys and typed values (protobuf `map<string,
    /// PropertyValue>`; a JSON object; a STRING column holding that object).
    Props,
    /// A property map some events have: absent when empty (protobuf has no entries, JSON
    /// leaves it out, the column holds null).
    OptProps,
}

impl Kind {
    /// True for the kinds that some events leave out.
    pub const fn is_optional(self) -> bool {
        matches!(
            self,
            Kind::OptStr | Kind::OptFloat | Kind::OptInt | Kind::OptProps
        )
    }

    /// True for property maps.
    pub const fn is_props(self) -> bool {
        matches!(self, Kind::Props | Kind::OptProps)
    }
}

/// Where Amplitude's Export layout puts a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportAs {
    /// Under the same name (an empty string is exported as `null`).
    Same,
    /// Under another name (Export renames a few HTTP V2 fields, e.g. `$insert_id`).
    Renamed(&'static str),
    /// Inside `event_properties` under this key: the SDKs' form of the revenue fields.
    EventProperty(&'static str),
    /// As the layout's timestamp strings (`event_time`, `client_event_time`, ...).
    Timestamps,
    /// The layout's own `groups` and `group_properties` (group values as lists; each group's
    /// properties as Amplitude knows them at the event, from the `$groupidentify` events
    /// before it).
    Groups,
}

/// One field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its position in [`FIELDS`].
    pub id: FieldId,
    /// The Amplitude HTTP V2 name: the JSON key, the Parquet column and the protobuf field.
    pub name: &'static str,
    /// The field number in `ampsim.v1.Event`.
    pub tag: u32,
    /// How its values are typed.
    pub kind: Kind,
    /// Every event of one user on one day has the same value (browser, device and place), so
    /// writers may encode it once per user-day.
    pub per_user_day: bool,
    /// Where the Export layout puts it.
    pub export: ExportAs,
    /// What it holds.
    pub doc: &'static str,
}

/// A field's value in one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a, P> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A property map.
    Props(P),
    /// An optional field this event does not have.
    Absent,
}

/// A property value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PropValue<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// A property map of some representation of an event.
pub trait PropMap<'a>: Copy {
    /// Number of entries (a repeated key counts each time).
    fn len(&self) -> usize;
    /// True without entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with each entry, in the map's own order.
    fn for_each(&self, f: impl FnMut(&'a str, PropValue<'a>));
}

/// Some representation of an event: it gives each field's value.
pub trait EventRecord {
    /// The representation's property maps.
    type Props<'a>: PropMap<'a>
    where
        Self: 'a;
    /// The value of field `f`.
    fn value(&self, f: FieldId) -> Value<'_, Self::Props<'_>>;
}

/// Receives each field as a compile-time constant from [`visit_fields`]: inside
/// [`FieldVisitor::field`], `At::<I>::FIELD` is a constant, so matches on its kind or id fold
/// away.
pub trait FieldVisitor {
    /// Called once per field, in [`FIELDS`] order.
    fn field<const I: usize>(&mut self);
}

/// Field `I` of [`FIELDS`], as an associated constant (usable in const-generic code).
pub struct At<const I: usize>;

impl<const I: usize> At<I> {
    /// The field.
    pub const FIELD: Field = FIELDS[I];
}

/// Declares the fields: [`FieldId`], [`FIELDS`] and [`visit_fields`] come from one table.
macro_rules! fields {
    ($(
        $(#[doc = $doc:literal])+
        $id:ident = $tag:literal, $name:literal, $kind:ident, per_user_day: $shared:literal,
            export: $export:expr;
    )+) => {
        /// Names a field: its index in [`FIELDS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum FieldId {
            $( $(#[doc = $doc])+ $id, )+
        }

        /// Every field of an event, in protobuf field-number order (the order of the
        /// canonical JSON, the protobuf bytes and the Parquet columns).
        pub const FIELDS: [Field; FIELD_COUNT] = [$(
            Field {
                id: FieldId::$id,
                name: $name,
                tag: $tag,
                kind: Kind::$kind,
                per_user_day: $shared,
                export: $export,
                doc: concat!($($doc),+),
            },
        )+];

        /// The number of fields.
        pub const FIELD_COUNT: usize = [$(FieldId::$id),+].len();

        /// Hands every field, in order, to `v` as a compile-time constant.
        #[inline(always)]
        pub fn visit_fields(v: &mut impl FieldVisitor) {
            $( v.field::<{ FieldId::$id as usize }>(); )+
        }
    };
}

fields! {
    /// Event name, e.g. `page_view`, `trial_started`, `purchase`.
    EventType = 1, "event_type", Str, per_user_day: false, export: ExportAs::Same;
    /// The user id: set from the identifying form on, absent before.
    UserId = 2, "user_id", OptStr, per_user_day: false, export: ExportAs::Same;
    /// The persistent device id (cookie).
    DeviceId = 3, "device_id", Str, per_user_day: false, export: ExportAs::Same;
    /// Event time, ms since the epoch.
    Time = 4, "time", TimeMs, per_user_day: false, export: ExportAs::Timestamps;
    /// The session's start time in ms, or -1 for events outside a session.
    SessionId = 5, "session_id", Int, per_user_day: false, export: ExportAs::Same;
    /// Stable deduplication key: the same event always has the same insert_id.
    InsertId = 6, "insert_id", Str, per_user_day: false, export: ExportAs::Renamed("$insert_id");
    /// Per-device event counter, starting at 1.
    EventId = 7, "event_id", Int, per_user_day: false, export: ExportAs::Same;
    /// `Web`.
    Platform = 8, "platform", Str, per_user_day: true, export: ExportAs::Same;
    /// Browser name (Amplitude's os_name for web traffic).
    OsName = 9, "os_name", Str, per_user_day: true, export: ExportAs::Same;
    /// Browser version.
    OsVersion = 10, "os_version", Str, per_user_day: true, export: ExportAs::Same;
    /// Country.
    Country = 13, "country", Str, per_user_day: true, export: ExportAs::Same;
    /// Region.
    Region = 14, "region", Str, per_user_day: true, export: ExportAs::Same;
    /// City.
    City = 15, "city", Str, per_user_day: true, export: ExportAs::Same;
    /// Language.
    Language = 16, "language", Str, per_user_day: true, export: ExportAs::Same;
    /// Unit price, on purchases.
    Price = 19, "price", OptFloat, per_user_day: false, export: ExportAs::EventProperty("$price");
    /// Quantity, on purchases.
    Quantity = 20, "quantity", OptInt, per_user_day: false,
        export: ExportAs::EventProperty("$quantity");
    /// Revenue = price × quantity, on purchases.
    Revenue = 21, "revenue", OptFloat, per_user_day: false,
        export: ExportAs::EventProperty("$revenue");
    /// Product SKU, on purchases (Amplitude's camelCase name).
    ProductId = 22, "productId", OptStr, per_user_day: false,
        export: ExportAs::EventProperty("$productId");
    /// Revenue type, on purchases (Amplitude's camelCase name).
    RevenueType = 23, "revenueType", OptStr, per_user_day: false,
        export: ExportAs::EventProperty("$revenueType");
    /// Device manufacturer as the user agent names it (`Apple`, `Samsung`); absent when it
    /// names none.
    DeviceManufacturer = 24, "device_manufacturer", OptStr, per_user_day: true,
        export: ExportAs::Same;
    /// Device model as the Browser SDK reports it (`Macintosh`, `iPhone`, `SM-S921B`, or the
    /// OS name, `Windows`, when the user agent names no model).
    DeviceModel = 25, "device_model", Str, per_user_day: true, export: ExportAs::Same;
    /// Event properties (page, UTM, form_type, trial_path, product_sku, ...), typed.
    EventProperties = 26, "event_properties", Props, per_user_day: false, export: ExportAs::Same;
    /// User properties: attribution on a session's first event; plan on conversion. Typed.
    UserProperties = 27, "user_properties", Props, per_user_day: false, export: ExportAs::Same;
    /// ISO 4217 currency of price and revenue, on purchases.
    Currency = 28, "currency", OptStr, per_user_day: false,
        export: ExportAs::EventProperty("$currency");
    /// Amplitude groups, `{"company": "<domain>"}`: on every event of an identified user.
    Groups = 29, "groups", OptProps, per_user_day: false, export: ExportAs::Groups;
    /// The group's properties (name, domain, industry, size_band, employees, country): on
    /// `$groupidentify` events only.
    GroupProperties = 30, "group_properties", OptProps, per_user_day: false,
        export: ExportAs::Groups;
}

impl FieldId {
    /// The field's description.
    pub const fn field(self) -> &'static Field {
        &FIELDS[self as usize]
    }
}

/// The largest field number.
pub const MAX_TAG: u32 = max_tag();

const fn max_tag() -> u32 {
    let mut i = 0;
    let mut max = 0;
    while i < FIELD_COUNT {
        if FIELDS[i].tag > max {
            max = FIELDS[i].tag;
        }
        i += 1;
    }
    max
}

/// The field of each protobuf field number: `BY_TAG[tag]` is the index in [`FIELDS`] + 1, or 0
/// for a number that is not an event field.
pub const BY_TAG: [u8; MAX_TAG as usize + 1] = by_tag();

const fn by_tag() -> [u8; MAX_TAG as usize + 1] {
    let mut t = [0u8; MAX_TAG as usize + 1];
    let mut i = 0;
    while i < FIELD_COUNT {
        assert!(t[FIELDS[i].tag as usize] == 0, "two fields share a number");
        t[FIELDS[i].tag as usize] = i as u8 + 1;
        i += 1;
    }
    t
}

/// The fields in byte order of their names: the key order of the HTTP V2 JSON lines.
pub const BY_NAME: [FieldId; FIELD_COUNT] = by_name();

const fn name_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

const fn by_name() -> [FieldId; FIELD_COUNT] {
    let mut order = [FieldId::EventType; FIELD_COUNT];
    let mut i = 0;
    while i < FIELD_COUNT {
        order[i] = FIELDS[i].id;
        i += 1;
    }
    // Insertion sort: a few dozen names, at compile time.
    let mut i = 1;
    while i < FIELD_COUNT {
        let mut j = i;
        while j > 0
            && name_less(
                FIELDS[order[j] as usize].name,
                FIELDS[order[j - 1] as usize].name,
            )
        {
            let t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    order
}

const _: () = {
    // FIELDS is indexed by FieldId and sorted by field number.
    let mut i = 0;
    while i < FIELD_COUNT {
        assert!(FIELDS[i].id as usize == i, "FIELDS out of FieldId order");
        assert!(
            i == 0 || FIELDS[i - 1].tag < FIELDS[i].tag,
            "FIELDS out of number order"
        );
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.id as usize, i);
            assert_eq!(BY_TAG[f.tag as usize] as usize, i + 1);
            assert_eq!(f.id.field(), f);
            assert!(!f.doc.is_empty());
        }
        let names: Vec<&str> = BY_NAME.iter().map(|f| f.field().name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), FIELD_COUNT);
        // Field numbers are never reused: those of engine versions 1-5's
        // `device_family`/`device_type` and string-valued property maps stay free.
        for retired in [11, 12, 17, 18] {
            assert_eq!(BY_TAG[retired], 0, "field number {retired} is retired");
        }
    }

    #[test]
    fn the_visitor_sees_every_field_once_in_order() {
        struct Seen(Vec<FieldId>);
        impl FieldVisitor for Seen {
            fn field<const I: usize>(&mut self) {
                self.0.push(At::<I>::FIELD.id);
            }
        }
        let mut seen = Seen(Vec::new());
        visit_fields(&mut seen);
        let all: Vec<FieldId> = FIELDS.iter().map(|f| f.id).collect();
        assert_eq!(seen.0, all);
    }
}
