//! People's names and e-mail domains by country, for user ids (work e-mail addresses).
//!
//! A user's name comes from the name lists of the country of its geography, and its company's
//! domain ends in a top-level domain that companies of that country use (a national domain or
//! `.com`, with weights). The lists are common given names and surnames of each country
//! (national statistics offices' frequency lists: US Census and SSA, ONS, Destatis and the
//! German name surveys, INSEE, CBS, INE, IBGE, SCB, GUS, the ISTAT-style lists of each
//! country), written in ASCII as an e-mail address would be.

/// The names and domains of one country (or a country group).
pub struct Locale {
    /// Given names.
    pub first: &'static [&'static str],
    /// Surnames.
    pub last: &'static [&'static str],
    /// Top-level domains of company addresses, with weights (summing to 100).
    pub tlds: &'static [(&'static str, u32)],
}

const US_FIRST: &[&str] = &[
    "james", "mary", "michael", "jennifer", "david", "linda", "john", "sarah", "robert", "jessica",
    "daniel", "emily", "chris", "ashley", "matthew", "megan", "kevin", "lauren", "brian", "rachel",
    "jose", "maria", "wei", "priya", "andrew", "nicole", "tyler", "amanda", "jason", "kimberly",
];
const US_LAST: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "thompson",
    "white",
    "harris",
    "clark",
    "lewis",
    "nguyen",
    "kim",
    "patel",
    "chen",
    "walker",
];
const GB_FIRST: &[&str] = &[
    "oliver", "amelia", "harry", "olivia", "george", "isla", "jack", "emily", "charlie", "sophie",
    "thomas", "jessica", "james", "lucy", "william", "grace", "daniel", "hannah", "samuel",
    "chloe", "joseph", "ella", "liam", "aoife", "sean", "niamh", "mohammed", "priya",
];
const GB_LAST: &[&str] = &[
    "smith", "jones", "williams", "taylor", "brown", "davies", "evans", "wilson", "thomas",
    "johnson", "roberts", "robinson", "thompson", "wright", "walker", "white", "edwards", "hughes",
    "green", "hall", "murphy", "kelly", "obrien", "byrne", "khan", "patel", "campbell", "stewart",
];
const DE_FIRST: &[&str] = &[
    "lukas",
    "anna",
    "felix",
    "lena",
    "jonas",
    "laura",
    "leon",
    "julia",
    "maximilian",
    "sarah",
    "paul",
    "lisa",
    "tim",
    "katharina",
    "jan",
    "hannah",
    "florian",
    "sophie",
    "tobias",
    "marie",
    "stefan",
    "sabine",
    "michael",
    "claudia",
    "niklas",
    "johanna",
    "luca",
    "nina",
];
const DE_LAST: &[&str] = &[
    "mueller",
    "schmidt",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "schulz",
    "hoffmann",
    "schaefer",
    "koch",
    "bauer",
    "richter",
    "klein",
    "wolf",
    "schroeder",
    "neumann",
    "schwarz",
    "zimmermann",
    "braun",
    "krueger",
    "hofmann",
    "hartmann",
    "keller",
    "huber",
    "meier",
    "frei",
];
const FR_FIRST: &[&str] = &[
    "lucas", "emma", "hugo", "lea", "louis", "chloe", "gabriel", "manon", "arthur", "camille",
    "jules", "ines", "thomas", "sarah", "nicolas", "julie", "antoine", "pauline", "maxime",
    "claire", "mathieu", "marion", "pierre", "sophie",
];
const FR_LAST: &[&str] = &[
    "martin", "bernard", "thomas", "petit", "robert", "richard", "durand", "dubois", "moreau",
    "laurent", "simon", "michel", "lefebvre", "leroy", "roux", "david", "bertrand", "morel",
    "fournier", "girard", "bonnet", "dupont", "lambert", "fontaine",
];
const NL_FIRST: &[&str] = &[
    "daan", "emma", "sem", "julia", "lucas", "tess", "levi", "sophie", "finn", "anna", "thijs",
    "lotte", "jesse", "sanne", "bram", "fleur", "ruben", "lisa", "niels", "eva",
];
const NL_LAST: &[&str] = &[
    "dejong",
    "jansen",
    "devries",
    "vandenberg",
    "vandijk",
    "bakker",
    "janssen",
    "visser",
    "smit",
    "meijer",
    "deboer",
    "mulder",
    "degroot",
    "bos",
    "vos",
    "peters",
    "hendriks",
    "vanleeuwen",
    "dekker",
    "brouwer",
];
const ES_FIRST: &[&str] = &[
    "hugo",
    "lucia",
    "martin",
    "sofia",
    "pablo",
    "maria",
    "alejandro",
    "paula",
    "daniel",
    "laura",
    "javier",
    "carmen",
    "diego",
    "ana",
    "carlos",
    "elena",
    "jose",
    "isabel",
    "miguel",
    "valeria",
    "luis",
    "fernanda",
    "jorge",
    "ximena",
];
const ES_LAST: &[&str] = &[
    "garcia",
    "rodriguez",
    "gonzalez",
    "fernandez",
    "lopez",
    "martinez",
    "sanchez",
    "perez",
    "gomez",
    "martin",
    "jimenez",
    "ruiz",
    "hernandez",
    "diaz",
    "moreno",
    "alvarez",
    "romero",
    "torres",
    "ramirez",
    "flores",
    "castillo",
    "vargas",
    "morales",
    "ortiz",
];
const BR_FIRST: &[&str] = &[
    "miguel",
    "helena",
    "arthur",
    "alice",
    "gael",
    "laura",
    "heitor",
    "maria",
    "theo",
    "valentina",
    "davi",
    "beatriz",
    "gabriel",
    "julia",
    "pedro",
    "mariana",
    "lucas",
    "fernanda",
    "rafael",
    "camila",
    "thiago",
    "larissa",
];
const BR_LAST: &[&str] = &[
    "silva",
    "santos",
    "oliveira",
    "souza",
    "rodrigues",
    "ferreira",
    "alves",
    "pereira",
    "lima",
    "gomes",
    "costa",
    "ribeiro",
    "martins",
    "carvalho",
    "almeida",
    "lopes",
    "soares",
    "fernandes",
    "vieira",
    "barbosa",
    "rocha",
    "dias",
];
const SE_FIRST: &[&str] = &[
    "william", "alice", "liam", "maja", "noah", "elsa", "hugo", "astrid", "lucas", "wilma",
    "oscar", "freja", "erik", "ebba", "johan", "sara", "anders", "karin", "per", "linnea",
];
const SE_LAST: &[&str] = &[
    "andersson",
    "johansson",
    "karlsson",
    "nilsson",
    "eriksson",
    "larsson",
    "olsson",
    "persson",
    "svensson",
    "gustafsson",
    "pettersson",
    "jonsson",
    "jansson",
    "hansson",
    "bengtsson",
    "lindberg",
    "lindqvist",
    "berg",
    "lundgren",
    "holm",
];
const PL_FIRST: &[&str] = &[
    "jakub",
    "zuzanna",
    "antoni",
    "julia",
    "jan",
    "zofia",
    "szymon",
    "hanna",
    "franciszek",
    "maja",
    "piotr",
    "anna",
    "krzysztof",
    "katarzyna",
    "tomasz",
    "magdalena",
    "pawel",
    "agnieszka",
    "michal",
    "monika",
];
const PL_LAST: &[&str] = &[
    "nowak",
    "kowalski",
    "wisniewski",
    "wojcik",
    "kowalczyk",
    "kaminski",
    "lewandowski",
    "zielinski",
    "szymanski",
    "wozniak",
    "dabrowski",
    "kozlowski",
    "jankowski",
    "mazur",
    "kwiatkowski",
    "krawczyk",
    "piotrowski",
    "grabowski",
    "nowakowski",
    "pawlowski",
];
const IN_FIRST: &[&str] = &[
    "aarav", "ananya", "vivaan", "diya", "aditya", "priya", "arjun", "sneha", "rahul", "pooja",
    "rohan", "neha", "vikram", "kavya", "sanjay", "divya", "amit", "shreya", "karthik", "lakshmi",
    "suresh", "anjali",
];
const IN_LAST: &[&str] = &[
    "sharma",
    "patel",
    "singh",
    "kumar",
    "gupta",
    "reddy",
    "iyer",
    "nair",
    "rao",
    "mehta",
    "joshi",
    "shah",
    "verma",
    "agarwal",
    "menon",
    "pillai",
    "das",
    "banerjee",
    "chatterjee",
    "krishnan",
    "desai",
    "malhotra",
];
const JP_FIRST: &[&str] = &[
    "haruto", "yui", "sota", "aoi", "yuto", "hina", "riku", "sakura", "takumi", "yuna", "kenji",
    "emi", "hiroshi", "yuki", "daiki", "mei", "kaito", "rin", "shota", "nanami",
];
const JP_LAST: &[&str] = &[
    "sato",
    "suzuki",
    "takahashi",
    "tanaka",
    "watanabe",
    "ito",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
    "yoshida",
    "yamada",
    "sasaki",
    "yamaguchi",
    "matsumoto",
    "inoue",
    "kimura",
    "hayashi",
    "shimizu",
    "mori",
];
const SG_FIRST: &[&str] = &[
    "wei", "jia", "jun", "hui", "ming", "xin", "kai", "mei", "ryan", "rachel", "darren",
    "michelle", "aisyah", "muhammad", "nur", "priya", "arun", "divya", "ethan", "chloe",
];
const SG_LAST: &[&str] = &[
    "tan", "lim", "lee", "ng", "ong", "wong", "goh", "chua", "chan", "koh", "teo", "ang", "yeo",
    "tay", "ho", "low", "rahman", "ismail", "kumar", "nair",
];
const IL_FIRST: &[&str] = &[
    "noam", "tamar", "itai", "noa", "yosef", "maya", "david", "shira", "ariel", "yael", "omer",
    "michal", "eitan", "roni", "amit", "dana", "lior", "neta", "avi", "hila",
];
const IL_LAST: &[&str] = &[
    "cohen",
    "levi",
    "mizrahi",
    "peretz",
    "biton",
    "dahan",
    "avraham",
    "friedman",
    "agbaria",
    "katz",
    "azulay",
    "malka",
    "yosef",
    "david",
    "shapiro",
    "ben-david",
    "goldberg",
    "rosen",
    "amar",
    "levin",
];

macro_rules! locale {
    ($first:expr, $last:expr, [$($tld:literal = $w:literal),+ $(,)?]) => {
        Locale { first: $first, last: $last, tlds: &[$(($tld, $w)),+] }
    };
}

const US: Locale = locale!(
    US_FIRST,
    US_LAST,
    ["com" = 72, "io" = 14, "co" = 7, "ai" = 7]
);
const CA: Locale = locale!(US_FIRST, US_LAST, ["ca" = 40, "com" = 50, "io" = 10]);
const GB: Locale = locale!(GB_FIRST, GB_LAST, ["co.uk" = 60, "com" = 34, "io" = 6]);
const IE: Locale = locale!(GB_FIRST, GB_LAST, ["ie" = 50, "com" = 45, "io" = 5]);
const AU: Locale = locale!(GB_FIRST, GB_LAST, ["com.au" = 65, "com" = 30, "io" = 5]);
const DE: Locale = locale!(DE_FIRST, DE_LAST, ["de" = 75, "com" = 22, "io" = 3]);
const CH: Locale = locale!(DE_FIRST, DE_LAST, ["ch" = 70, "com" = 27, "io" = 3]);
const FR: Locale = locale!(FR_FIRST, FR_LAST, ["fr" = 70, "com" = 27, "io" = 3]);
const NL: Locale = locale!(NL_FIRST, NL_LAST, ["nl" = 70, "com" = 26, "io" = 4]);
const ES: Locale = locale!(ES_FIRST, ES_LAST, ["es" = 65, "com" = 32, "io" = 3]);
const MX: Locale = locale!(ES_FIRST, ES_LAST, ["com.mx" = 55, "mx" = 10, "com" = 35]);
const BR: Locale = locale!(BR_FIRST, BR_LAST, ["com.br" = 70, "com" = 30]);
const SE: Locale = locale!(SE_FIRST, SE_LAST, ["se" = 70, "com" = 27, "io" = 3]);
const PL: Locale = locale!(PL_FIRST, PL_LAST, ["pl" = 70, "com" = 28, "io" = 2]);
const IN: Locale = locale!(
    IN_FIRST,
    IN_LAST,
    ["in" = 30, "co.in" = 15, "com" = 45, "io" = 10]
);
const JP: Locale = locale!(JP_FIRST, JP_LAST, ["co.jp" = 60, "jp" = 10, "com" = 30]);
const SG: Locale = locale!(
    SG_FIRST,
    SG_LAST,
    ["com.sg" = 50, "sg" = 10, "com" = 35, "io" = 5]
);
const IL: Locale = locale!(IL_FIRST, IL_LAST, ["co.il" = 55, "com" = 40, "io" = 5]);

/// The locale of an ISO 3166-1 alpha-2 country code; other countries use the US lists with
/// `.com` and `.io` domains.
pub fn locale(country_code: &str) -> &'static Locale {
    match country_code {
        "US" => &US,
        "CA" => &CA,
        "GB" => &GB,
        "IE" => &IE,
        "AU" | "NZ" => &AU,
        "DE" | "AT" => &DE,
        "CH" => &CH,
        "FR" | "BE" => &FR,
        "NL" => &NL,
        "ES" | "AR" | "CO" | "CL" => &ES,
        "MX" => &MX,
        "BR" | "PT" => &BR,
        "SE" | "NO" | "DK" | "FI" => &SE,
        "PL" => &PL,
        "IN" => &IN,
        "JP" => &JP,
        "SG" | "MY" | "HK" => &SG,
        "IL" => &IL,
        _ => &US,
    }
}

impl Locale {
    /// The top-level domain for a uniform draw `u` in `0..100`.
    pub fn tld(&self, u: u32) -> &'static str {
        let mut acc = 0;
        for &(t, w) in self.tlds {
            acc += w;
            if u < acc {
                return t;
            }
        }
        self.tlds[self.tlds.len() - 1].0
    }
}

/// Company names: a first word, a second word and a kind of business, 64 of each, so that
/// 262,144 companies have distinct names (and domains) before a number is added.
const COMPANY_FIRST: [&str; 64] = [
    "blue", "north", "silver", "bright", "red", "green", "stone", "iron", "clear", "swift", "true",
    "deep", "high", "wide", "oak", "pine", "cedar", "maple", "river", "lake", "sea", "sky", "sun",
    "star", "moon", "cloud", "storm", "frost", "fire", "gold", "amber", "coral", "jade", "ruby",
    "pearl", "onyx", "crystal", "summit", "ridge", "vale", "glen", "harbor", "bay", "cape", "port",
    "bridge", "tower", "gate", "field", "meadow", "grove", "brook", "falls", "peak", "crest",
    "arc", "nova", "terra", "astro", "lumen", "vector", "pixel", "quant", "mint",
];
const COMPANY_SECOND: [&str; 64] = [
    "wave", "path", "point", "line", "works", "mark", "light", "forge", "stack", "loop", "base",
    "flow", "grid", "sign", "craft", "scope", "sight", "wise", "hub", "field", "leaf", "rock",
    "wood", "way", "spring", "view", "dale", "gate", "ford", "haven", "shore", "wind", "hill",
    "side", "core", "beam", "spark", "bit", "byte", "cast", "trail", "rise", "shift", "fox",
    "hawk", "wolf", "bear", "lynx", "owl", "wren", "finch", "heron", "orca", "otter", "elm",
    "birch", "ash", "reed", "moss", "bloom", "stream", "nest", "lane", "mill",
];
const COMPANY_KIND: [&str; 64] = [
    "Labs",
    "Systems",
    "Analytics",
    "Software",
    "Group",
    "Partners",
    "Technologies",
    "Digital",
    "Networks",
    "Solutions",
    "Ventures",
    "Media",
    "Health",
    "Capital",
    "Logistics",
    "Studio",
    "Works",
    "Retail",
    "Foods",
    "Energy",
    "Learning",
    "Security",
    "Cloud",
    "Data",
    "Robotics",
    "Mobility",
    "Commerce",
    "Interactive",
    "Consulting",
    "Games",
    "Bio",
    "Financial",
    "Insurance",
    "Travel",
    "Fashion",
    "Home",
    "Motors",
    "Telecom",
    "Apparel",
    "Supply",
    "Brands",
    "Pharma",
    "Foundry",
    "Collective",
    "Industries",
    "Dynamics",
    "Holdings",
    "Markets",
    "Payments",
    "Platforms",
    "Research",
    "Services",
    "Products",
    "Devices",
    "Sciences",
    "Engineering",
    "Design",
    "Marketing",
    "Education",
    "Studios",
    "Outdoor",
    "Legal",
    "Hospitality",
    "Aerospace",
];

/// How many companies have distinct names before a number is appended.
pub const DISTINCT_COMPANY_NAMES: u64 = 64 * 64 * 64;

/// The display name (`Bluewave Analytics`) and the domain label (`bluewaveanalytics`) of the
/// company named by `code`: distinct codes below [`DISTINCT_COMPANY_NAMES`] give distinct names,
/// and a larger code repeats a name with a number (`Bluewave Analytics 2`,
/// `bluewaveanalytics2`), so every code's name and label are its own.
pub fn company_name(code: u64) -> (String, String) {
    let (round, c) = (code / DISTINCT_COMPANY_NAMES, code % DISTINCT_COMPANY_NAMES);
    let (a, b, k) = (
        COMPANY_FIRST[(c % 64) as usize],
        COMPANY_SECOND[(c / 64 % 64) as usize],
        COMPANY_KIND[(c / 4096) as usize],
    );
    let mut name = String::with_capacity(40);
    name.push(a.as_bytes()[0].to_ascii_uppercase() as char);
    name.push_str(&a[1..]);
    name.push_str(b);
    name.push(' ');
    name.push_str(k);
    let mut label = String::with_capacity(40);
    label.push_str(a);
    label.push_str(b);
    label.push_str(&k.to_ascii_lowercase());
    if round > 0 {
        name.push_str(&format!(" {}", round + 1));
        label.push_str(&(round + 1).to_string());
    }
    (name, label)
}

/// The domain label of [`company_name`] alone (what every identified event needs).
pub fn company_label(code: u64) -> String {
    let (round, c) = (code / DISTINCT_COMPANY_NAMES, code % DISTINCT_COMPANY_NAMES);
    let mut label = String::with_capacity(40);
    label.push_str(COMPANY_FIRST[(c % 64) as usize]);
    label.push_str(COMPANY_SECOND[(c / 64 % 64) as usize]);
    for b in COMPANY_KIND[(c / 4096) as usize].bytes() {
        label.push(b.to_ascii_lowercase() as char);
    }
    if round > 0 {
        label.push_str(itoa::Buffer::new().format(round + 1));
    }
    label
}

/// The code of a company's domain label ([`company_name`]'s inverse), or `None` if the label
/// is not one.
pub fn company_code(label: &str) -> Option<u64> {
    for (ai, a) in COMPANY_FIRST.iter().enumerate() {
        let Some(rest) = label.strip_prefix(a) else {
            continue;
        };
        for (bi, b) in COMPANY_SECOND.iter().enumerate() {
            let Some(rest) = rest.strip_prefix(b) else {
                continue;
            };
            for (ki, k) in COMPANY_KIND.iter().enumerate() {
                let k = k.to_ascii_lowercase();
                let Some(digits) = rest.strip_prefix(k.as_str()) else {
                    continue;
                };
                let round = if digits.is_empty() {
                    0
                } else if digits.starts_with('0') || !digits.bytes().all(|d| d.is_ascii_digit()) {
                    continue;
                } else {
                    match digits.parse::<u64>() {
                        Ok(n) if (2..1 << 20).contains(&n) => n - 1,
                        _ => continue,
                    }
                };
                let c = ai as u64 + 64 * bi as u64 + 4096 * ki as u64;
                return Some(round * DISTINCT_COMPANY_NAMES + c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_are_well_formed() {
        for cc in [
            "US", "CA", "GB", "IE", "AU", "DE", "CH", "FR", "NL", "ES", "MX", "BR", "SE", "PL",
            "IN", "JP", "SG", "IL",
        ] {
            let l = locale(cc);
            assert_eq!(l.tlds.iter().map(|t| t.1).sum::<u32>(), 100, "{cc}");
            assert!(l.first.len() >= 20 && l.last.len() >= 20, "{cc}");
            for n in l.first.iter().chain(l.last) {
                assert!(
                    n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                    "{cc}: {n}"
                );
            }
        }
        assert_eq!(locale("DE").tld(0), "de");
        assert_eq!(locale("DE").tld(99), "io");
    }

    #[test]
    fn company_names_are_distinct() {
        let mut names = std::collections::BTreeSet::new();
        let mut labels = std::collections::BTreeSet::new();
        for code in (0..DISTINCT_COMPANY_NAMES).chain([
            DISTINCT_COMPANY_NAMES,
            DISTINCT_COMPANY_NAMES + 7,
            3 * DISTINCT_COMPANY_NAMES + 1,
        ]) {
            let (name, label) = company_name(code);
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{label}"
            );
            assert_eq!(company_code(&label), Some(code), "{label}");
            assert_eq!(company_label(code), label);
            assert!(names.insert(name), "code {code}");
            assert!(labels.insert(label), "code {code}");
        }
        assert_eq!(company_code("bluewavelabs1"), None);
        assert_eq!(company_code("bluewavelabs02"), None);
        assert_eq!(company_code("acme"), None);
        assert_eq!(company_name(0).0, "Bluewave Labs");
        assert_eq!(company_name(DISTINCT_COMPANY_NAMES).1, "bluewavelabs2");
    }
}
