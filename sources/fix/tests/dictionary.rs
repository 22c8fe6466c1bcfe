//! The codec's dictionary against an independent one: QuickFIX's FIX42.xml and FIX44.xml, from
//! the QuickFIX venv the full test command builds (`EOD_QUICKFIX_PYTHON`). Python's own XML
//! parser reads them, so nothing here shares code with what it checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use eod_fix::dictionary::{self, Version, FIX42_MAX_TAG, FIX44_MAX_TAG};

/// Prints, per version, every defined tag, the header and trailer, the admin message bodies,
/// and every group of the header, the admin messages and the ExecutionReport (with nesting
/// flattened: a group's members, nested groups' count tags among them).
const DUMP: &str = r#"
import sys, xml.etree.ElementTree as ET
for name in ("FIX42", "FIX44"):
    root = ET.parse(f"{sys.argv[1]}/{name}.xml").getroot()
    tags = {f.get("name"): int(f.get("number")) for f in root.find("fields")}
    parts = root.find("components")
    components = {c.get("name"): c for c in parts} if parts is not None else {}
    def expand(node):
        out = []
        for child in node:
            if child.tag == "field":
                out.append(tags[child.get("name")])
            elif child.tag == "component":
                out += expand(components[child.get("name")])
            elif child.tag == "group":
                members = expand(child)
                out.append(("group", tags[child.get("name")], members))
        return out
    def flat(items):
        return [i[1] if isinstance(i, tuple) else i for i in items]
    def groups(items):
        for item in items:
            if isinstance(item, tuple):
                print(name, "group", item[1], *flat(item[2]))
                groups(item[2])
    print(name, "defined", *sorted(tags.values()))
    header, trailer = expand(root.find("header")), expand(root.find("trailer"))
    print(name, "header", *flat(header))
    print(name, "trailer", *flat(trailer))
    groups(header)
    for message in root.find("messages"):
        body = expand(message)
        if message.get("msgcat") == "admin" and message.get("msgtype") != "n":
            print(name, "admin", message.get("msgtype"), *flat(body))
            groups(body)
        if message.get("msgtype") == "8":
            groups(body)
"#;

#[test]
fn the_dictionary_agrees_with_quickfix() {
    let Some(python) = std::env::var("EOD_QUICKFIX_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!(
            "skipped: EOD_QUICKFIX_PYTHON is not set (scripts/test-all.sh builds a QuickFIX venv)"
        );
        return;
    };
    let spec_dir = Path::new(&python)
        .parent()
        .and_then(Path::parent)
        .expect("venv/bin/python")
        .join("share/quickfix");
    let out = Command::new(&python)
        .arg("-c")
        .arg(DUMP)
        .arg(&spec_dir)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut defined: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut lines = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (version, kind) = (words.next().unwrap(), words.next().unwrap());
        let rest: Vec<&str> = words.collect();
        let numbers =
            |words: &[&str]| -> Vec<u32> { words.iter().map(|w| w.parse().unwrap()).collect() };
        lines += 1;
        match kind {
            "defined" => {
                defined.insert(version, numbers(&rest).into_iter().collect());
            }
            "header" => {
                let theirs: BTreeSet<u32> = numbers(&rest).into_iter().collect();
                for tag in &theirs {
                    assert_eq!(
                        dictionary::section(*tag),
                        dictionary::Section::Header,
                        "{version} header {tag}"
                    );
                }
                // Ours is both versions' header: each version's extra is undefined in the other.
                for tag in dictionary::HEADER {
                    assert!(
                        theirs.contains(tag) || !defined[version].contains(tag),
                        "{version}: {tag} is no header field"
                    );
                }
            }
            "trailer" => assert_eq!(numbers(&rest), dictionary::TRAILER, "{version}"),
            "admin" => {
                let msg_type = rest[0];
                let theirs: BTreeSet<u32> = numbers(&rest[1..]).into_iter().collect();
                let ours: BTreeSet<u32> = dictionary::admin_body(msg_type.as_bytes())
                    .expect("an admin message")
                    .iter()
                    .copied()
                    .filter(|tag| defined[version].contains(tag))
                    .collect();
                assert_eq!(ours, theirs, "{version} admin {msg_type}");
            }
            "group" => {
                let members = numbers(&rest[1..]);
                let count_tag: u32 = rest[0].parse().unwrap();
                // The 4.4 definition is the one both versions use; 4.2's groups are the same
                // minus fields 4.2 does not have.
                let entry = groups.entry(count_tag).or_default();
                if entry.len() < members.len() {
                    *entry = members;
                }
            }
            other => panic!("unexpected line kind {other}"),
        }
    }
    assert!(lines > 20, "the dump printed {lines} lines:\n{text}");

    for (version, max, ours) in [
        ("FIX42", FIX42_MAX_TAG, Version::Fix42),
        ("FIX44", FIX44_MAX_TAG, Version::Fix44),
    ] {
        let theirs = &defined[version];
        assert_eq!(theirs.last(), Some(&max), "{version}");
        for tag in 1..=1100u32 {
            // A 4.2 message may carry what 4.4 defines (see `Version::defines`).
            let expected = theirs.contains(&tag)
                || (version == "FIX42" && defined["FIX44"].contains(&tag))
                || dictionary::USER_DEFINED.contains(&tag);
            assert_eq!(ours.defines(tag), expected, "{version} tag {tag}");
        }
    }
    let ours: BTreeMap<u32, Vec<u32>> = dictionary::GROUPS
        .iter()
        .map(|g| (g.count_tag, g.members.to_vec()))
        .collect();
    assert_eq!(ours, groups);
}
