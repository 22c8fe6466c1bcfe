//! What FIX 4.2 and 4.4 define, as far as an acceptor of execution reports must know it to
//! tell a well-formed message from a malformed one: which tag numbers exist, which belong to
//! the standard header and trailer, the bodies of the administrative messages, and the
//! repeating groups of the header, the Logon and the ExecutionReport.
//!
//! These are facts of the FIX specification; `tests/dictionary.rs` checks every one of them
//! against QuickFIX's data dictionaries (FIX42.xml, FIX44.xml) when the test suite has built its
//! QuickFIX venv. Messages of other application types are checked only for what holds in every
//! message (defined tags, header before body before trailer, values present): their groups are
//! not modelled, because the acceptor does not act on them.

/// A FIX version the codec decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Fix42,
    Fix44,
}

impl Version {
    pub fn from_begin_string(begin_string: &[u8]) -> Option<Version> {
        match begin_string {
            b"FIX.4.2" => Some(Version::Fix42),
            b"FIX.4.4" => Some(Version::Fix44),
            _ => None,
        }
    }

    /// Whether a message of this version may carry this tag number: one the version defines,
    /// one of the user-defined range, and in a 4.2 message also one that 4.4 added. Venues send
    /// "FIX 4.2 with extensions" (the Parties block above all, which the decoder reads for the
    /// executing trader); refusing those would dead-letter whole counterparties. A tag 4.4
    /// retired (ExecTransType, 20) stays undefined in a 4.4 message.
    pub fn defines(self, tag: u32) -> bool {
        TagFacts::of(tag).defined_in(self)
    }
}

/// Tags FIX leaves to firms and venues (5000-9999 registered user-defined fields, 10000-19999
/// internal, 20000-39999 reserved for them): drop copies carry them, so they are never
/// "undefined". QuickFIX's acceptance case 14a refuses 5000; here it passes, on purpose.
pub const USER_DEFINED: std::ops::RangeInclusive<u32> = 5000..=39999;

/// Tag numbers up to `max` minus `gaps`, the numbers the version retired or never assigned.
const fn defined_set(max: u32, gaps: &[u32]) -> [u64; 16] {
    let mut bits = [0u64; 16];
    let mut tag = 1;
    while tag <= max {
        bits[(tag / 64) as usize] |= 1 << (tag % 64);
        tag += 1;
    }
    let mut i = 0;
    while i < gaps.len() {
        bits[(gaps[i] / 64) as usize] &= !(1 << (gaps[i] % 64));
        i += 1;
    }
    bits
}

const fn tag_set(tags: &[u32]) -> [u64; 16] {
    let mut bits = [0u64; 16];
    let mut i = 0;
    while i < tags.len() {
        bits[(tags[i] / 64) as usize] |= 1 << (tags[i] % 64);
        i += 1;
    }
    bits
}

const fn contains(bits: &[u64; 16], tag: u32) -> bool {
    tag < 1024 && bits[(tag / 64) as usize] & (1 << (tag % 64)) != 0
}

pub const FIX42_MAX_TAG: u32 = 446;
pub const FIX42_UNASSIGNED: &[u32] = &[
    101, 220, 221, 222, 224, 225, 226, 227, 228, 229, 230, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256, 257, 258,
    259, 260, 261,
];
pub const FIX44_MAX_TAG: u32 = 956;
pub const FIX44_UNASSIGNED: &[u32] = &[
    20, 24, 46, 47, 51, 76, 86, 92, 101, 105, 109, 125, 166, 173, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 187, 204, 205, 219, 261, 314, 319, 370, 439, 440, 449, 450,
    465, 653, 685, 809, 831,
];
const FIX42_DEFINED: [u64; 16] = defined_set(FIX42_MAX_TAG, FIX42_UNASSIGNED);
const FIX44_DEFINED: [u64; 16] = defined_set(FIX44_MAX_TAG, FIX44_UNASSIGNED);

/// The standard header of both versions (370 is 4.2's, the NoHops group 627 is 4.4's; each is
/// undefined in the other version).
pub const HEADER: &[u32] = &[
    8, 9, 35, 49, 56, 115, 128, 90, 91, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 52, 122,
    212, 213, 347, 369, 370, 627,
];
/// The standard trailer.
pub const TRAILER: &[u32] = &[93, 89, 10];
const HEADER_SET: [u64; 16] = tag_set(HEADER);
const TRAILER_SET: [u64; 16] = tag_set(TRAILER);

/// Where a field belongs in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Header,
    Body,
    Trailer,
}

pub fn section(tag: u32) -> Section {
    TagFacts::of(tag).section()
}

/// The body fields of an administrative message type, or `None` for an application message.
pub fn admin_body(msg_type: &[u8]) -> Option<&'static [u32]> {
    Some(match msg_type {
        b"0" | b"1" => &[112],
        b"2" => &[7, 16],
        b"3" => &[45, 371, 372, 373, 58, 354, 355],
        b"4" => &[123, 36],
        b"5" => &[58, 354, 355],
        b"A" => &[98, 108, 95, 96, 141, 789, 383, 384, 464, 553, 554],
        _ => return None,
    })
}

/// Whether the message type's repeating groups are modelled, so that a tag appearing twice
/// outside them is an error rather than a member of a group this dictionary does not know.
pub fn groups_modelled(msg_type: &[u8]) -> bool {
    msg_type == b"8" || admin_body(msg_type).is_some()
}

/// A repeating group: its NumInGroup field and its member fields, the first of which starts
/// every entry. A member that is itself a NumInGroup field opens a nested group.
#[derive(Debug, PartialEq, Eq)]
pub struct Group {
    pub count_tag: u32,
    pub members: &'static [u32],
}

impl Group {
    const fn new(count_tag: u32, members: &'static [u32]) -> Group {
        Group { count_tag, members }
    }

    pub fn delimiter(&self) -> u32 {
        self.members[0]
    }
}

/// Every group this dictionary knows.
pub const GROUPS: &[Group] = &[
    // Header: NoHops (4.4).
    Group::new(627, &[628, 629, 630]),
    // Logon: NoMsgTypes.
    Group::new(384, &[372, 385]),
    // ExecutionReport: Parties with PartySubIDs.
    Group::new(453, &[448, 447, 452, 802]),
    Group::new(802, &[523, 803]),
    // ContraBrokers.
    Group::new(382, &[375, 337, 437, 438, 655]),
    // SecurityAltID.
    Group::new(454, &[455, 456]),
    // Events.
    Group::new(864, &[865, 866, 867, 868]),
    // Underlyings, with their SecurityAltIDs and Stipulations.
    Group::new(
        711,
        &[
            311, 312, 309, 305, 457, 462, 463, 310, 763, 313, 542, 315, 241, 242, 243, 244, 245,
            246, 256, 595, 592, 593, 594, 247, 316, 941, 317, 436, 435, 308, 306, 362, 363, 307,
            364, 365, 877, 878, 318, 879, 810, 882, 883, 884, 885, 886, 887,
        ],
    ),
    Group::new(457, &[458, 459]),
    Group::new(887, &[888, 889]),
    // Stipulations.
    Group::new(232, &[233, 234]),
    // ContAmts.
    Group::new(518, &[519, 520, 521]),
    // Legs, with their SecurityAltIDs, Stipulations and NestedParties.
    Group::new(
        555,
        &[
            600, 601, 602, 603, 604, 607, 608, 609, 764, 610, 611, 248, 249, 250, 251, 252, 253,
            257, 599, 596, 597, 598, 254, 612, 942, 613, 614, 615, 616, 617, 618, 619, 620, 621,
            622, 623, 624, 556, 740, 739, 955, 956, 687, 690, 683, 564, 565, 539, 654, 566, 587,
            588, 637,
        ],
    ),
    Group::new(604, &[605, 606]),
    Group::new(683, &[688, 689]),
    Group::new(539, &[524, 525, 538, 804]),
    Group::new(804, &[545, 805]),
    // MiscFees.
    Group::new(136, &[137, 138, 139, 891]),
];

const fn count_tags() -> [u64; 16] {
    let mut bits = [0u64; 16];
    let mut i = 0;
    while i < GROUPS.len() {
        let tag = GROUPS[i].count_tag;
        bits[(tag / 64) as usize] |= 1 << (tag % 64);
        i += 1;
    }
    bits
}
const COUNT_TAGS: [u64; 16] = count_tags();

/// The group whose NumInGroup field is `tag`. Asked for every field of every message, so the
/// common answer (no group) comes from a bit set, not a search.
pub fn group(tag: u32) -> Option<&'static Group> {
    if !contains(&COUNT_TAGS, tag) {
        return None;
    }
    GROUPS.iter().find(|group| group.count_tag == tag)
}

/// What the structure check asks of every field's tag, in one lookup: whether each version
/// defines it ([`Version::defines`]), its section ([`section`]) and whether it counts a group.
/// Worked out field by field, with searches of the lists, they were part of a check that was
/// about a seventh of the replay bench's parse stage in `perf`; the group's own bit set, looked
/// up apart (a call per field), cost 4-6% of the parse stage (`eod-bench-parse`, 2026-12-07).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagFacts(u8);

const DEFINED_IN_42: u8 = 1;
const DEFINED_IN_44: u8 = 2;
const IN_HEADER: u8 = 4;
const IN_TRAILER: u8 = 8;
const USER: u8 = 16;
const GROUP_COUNT: u8 = 32;

impl TagFacts {
    pub fn of(tag: u32) -> TagFacts {
        match TAG_FACTS.get(tag as usize) {
            Some(&facts) => TagFacts(facts),
            None if USER_DEFINED.contains(&tag) => TagFacts(DEFINED_IN_42 | DEFINED_IN_44 | USER),
            None => TagFacts(0),
        }
    }

    pub fn defined_in(self, version: Version) -> bool {
        let bit = match version {
            Version::Fix42 => DEFINED_IN_42,
            Version::Fix44 => DEFINED_IN_44,
        };
        self.0 & bit != 0
    }

    pub fn section(self) -> Section {
        if self.0 & IN_HEADER != 0 {
            Section::Header
        } else if self.0 & IN_TRAILER != 0 {
            Section::Trailer
        } else {
            Section::Body
        }
    }

    /// In the user-defined range ([`USER_DEFINED`]).
    pub fn user_defined(self) -> bool {
        self.0 & USER != 0
    }

    /// The group whose NumInGroup field this tag is ([`group`]), looked for only when the
    /// table says there is one.
    pub fn group(self, tag: u32) -> Option<&'static Group> {
        if self.0 & GROUP_COUNT == 0 {
            return None;
        }
        group(tag)
    }
}

/// [`TagFacts`] of the tags below 1024 (every tag a bit set above holds; above it only the
/// user-defined range is defined).
static TAG_FACTS: [u8; 1024] = tag_facts();

const fn tag_facts() -> [u8; 1024] {
    let mut facts = [0u8; 1024];
    let mut tag = 0;
    while tag < 1024 {
        let mut f = 0;
        // 4.2 messages may carry 4.4's tags (see `Version::defines`).
        if contains(&FIX44_DEFINED, tag) {
            f |= DEFINED_IN_42 | DEFINED_IN_44;
        } else if contains(&FIX42_DEFINED, tag) {
            f |= DEFINED_IN_42;
        }
        if contains(&HEADER_SET, tag) {
            f |= IN_HEADER;
        } else if contains(&TRAILER_SET, tag) {
            f |= IN_TRAILER;
        }
        if contains(&COUNT_TAGS, tag) {
            f |= GROUP_COUNT;
        }
        facts[tag as usize] = f;
        tag += 1;
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_defined_by_version() {
        assert!(Version::Fix42.defines(20) && !Version::Fix44.defines(20));
        assert!(Version::Fix44.defines(453) && Version::Fix42.defines(453));
        assert!(!Version::Fix42.defines(999) && !Version::Fix42.defines(101));
        assert!(!Version::Fix44.defines(999) && !Version::Fix44.defines(0));
        assert!(Version::Fix42.defines(5000) && Version::Fix44.defines(39999));
        assert!(!Version::Fix44.defines(40000));
    }

    /// The table, built at compile time, against the lists and sets it was built from.
    #[test]
    fn tag_facts_answer_as_the_lists_do() {
        for tag in 0..45_000 {
            let facts = TagFacts::of(tag);
            let user = USER_DEFINED.contains(&tag);
            let in_44 = user || contains(&FIX44_DEFINED, tag);
            assert_eq!(facts.defined_in(Version::Fix44), in_44, "{tag}");
            let in_42 = in_44 || contains(&FIX42_DEFINED, tag);
            assert_eq!(facts.defined_in(Version::Fix42), in_42, "{tag}");
            let section = if HEADER.contains(&tag) {
                Section::Header
            } else if TRAILER.contains(&tag) {
                Section::Trailer
            } else {
                Section::Body
            };
            assert_eq!(facts.section(), section, "{tag}");
            assert_eq!(facts.user_defined(), user, "{tag}");
            let counts_group = GROUPS.iter().find(|g| g.count_tag == tag);
            assert_eq!(facts.group(tag), counts_group, "{tag}");
        }
    }

    #[test]
    fn every_group_is_found_by_its_count_tag() {
        for g in GROUPS {
            assert_eq!(group(g.count_tag), Some(g));
            // An entry's fields are tracked in a 64-bit mask.
            assert!(g.members.len() <= 64);
        }
        assert_eq!(group(55), None);
        assert_eq!(section(34), Section::Header);
        assert_eq!(section(93), Section::Trailer);
        assert_eq!(section(55), Section::Body);
    }
}
