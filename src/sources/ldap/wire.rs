//! The wire form of search result entries: parsed without ldap3's panicking constructor,
//! hashed canonically for the population's provenance, and turned into text values (binary
//! values as base64; `objectGUID` and `objectSid` in their canonical text forms, see
//! `entry::binary_text`).

use std::io::Write as _;

use ldap3::asn1::StructureTag;
use sha2::{Digest, Sha256};

use crate::sources::entry::{Entry, binary_text};

/// An entry as the server sent it: the DN and every value as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawEntry {
    dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    pub(super) fn into_entry(self) -> Entry {
        let attrs = self.attrs.into_iter().map(|(name, values)| {
            let text = values
                .into_iter()
                .map(|value| binary_text(&name, value))
                .collect();
            (name, text)
        });
        Entry {
            dn: self.dn,
            attrs: attrs.collect(),
        }
    }
}

/// Reads a SearchResultEntry (application tag 4) without ldap3's panicking `construct`.
pub(super) fn parse_entry(tag: StructureTag) -> Option<RawEntry> {
    let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs = Vec::new();
    for partial in parts.next()?.expect_constructed()? {
        let mut partial = partial.expect_constructed()?.into_iter();
        let name = String::from_utf8(partial.next()?.expect_primitive()?).ok()?;
        let values = partial.next()?.expect_constructed()?.into_iter();
        let values = values
            .map(StructureTag::expect_primitive)
            .collect::<Option<Vec<_>>>()?;
        attrs.push((name, values));
    }
    Some(RawEntry { dn, attrs })
}

/// Feeds one entry into the population hash. Canonical form: `D<len>:<dn>`, then per
/// attribute, sorted by lower-cased name, `A<len>:<lower-cased name>` and its values sorted
/// bytewise as `V<len>:<bytes>`, then `E\n`; lengths are decimal byte counts.
pub(super) fn hash_entry(hasher: &mut Sha256, entry: &RawEntry) {
    let field = |hasher: &mut Sha256, kind: &[u8], bytes: &[u8]| {
        // `<kind><decimal length>:` without allocating (this runs for every value).
        let mut prefix = [0u8; 24];
        let mut cursor = std::io::Cursor::new(&mut prefix[..]);
        let _ = std::io::Write::write_all(&mut cursor, kind);
        let _ = write!(cursor, "{}:", bytes.len());
        let written = cursor.position() as usize;
        hasher.update(&prefix[..written]);
        hasher.update(bytes);
    };
    field(hasher, b"D", entry.dn.as_bytes());
    let mut attrs: Vec<(String, Vec<&[u8]>)> = entry
        .attrs
        .iter()
        .map(|(name, values)| {
            let mut values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            values.sort();
            (name.to_ascii_lowercase(), values)
        })
        .collect();
    attrs.sort();
    for (name, values) in attrs {
        field(hasher, b"A", name.as_bytes());
        for value in values {
            field(hasher, b"V", value);
        }
    }
    hasher.update(b"E\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ldap3::asn1::{PL, TagClass};

    fn octets(bytes: &[u8]) -> StructureTag {
        let payload = PL::P(bytes.to_vec());
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload,
        }
    }

    fn seq(id: u64, class: TagClass, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(inner),
        }
    }

    fn wire_entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> StructureTag {
        let attrs = attrs.iter().map(|(name, values)| {
            let values = values.iter().map(|v| octets(v)).collect();
            let inner = vec![
                octets(name.as_bytes()),
                seq(17, TagClass::Universal, values),
            ];
            seq(16, TagClass::Universal, inner)
        });
        let attrs = seq(16, TagClass::Universal, attrs.collect());
        seq(4, TagClass::Application, vec![octets(dn.as_bytes()), attrs])
    }

    #[test]
    fn wire_entry_parses_and_binary_values_become_text() {
        let guid: [u8; 16] = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        // S-1-5-21-1004336348-1177238915-682003330-512
        let sid: [u8; 28] = [
            1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xdc, 0xf4, 0xdc, 0x3b, 0x83, 0x3d, 0x2b, 0x46,
            0x82, 0x8b, 0xa6, 0x28, 0x00, 0x02, 0x00, 0x00,
        ];
        let tag = wire_entry(
            "uid=ann,dc=x",
            &[
                ("uid", &[b"ann"]),
                ("photo", &[b"\xff\x00"]),
                ("objectGUID", &[&guid]),
                ("objectSid", &[&sid]),
            ],
        );
        let e = parse_entry(tag).unwrap().into_entry();
        assert_eq!(e.dn, "uid=ann,dc=x");
        assert_eq!(e.first("UID"), Some("ann"));
        assert_eq!(e.first("photo"), Some("base64:/wA="));
        assert_eq!(
            e.first("objectguid"),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(
            e.first("objectSid"),
            Some("S-1-5-21-1004336348-1177238915-682003330-512")
        );
        assert!(parse_entry(octets(b"junk")).is_none());
    }

    #[test]
    fn hash_is_canonical_over_attribute_and_value_order() {
        let a = RawEntry {
            dn: "uid=a".into(),
            attrs: vec![
                ("uid".into(), vec![b"a".to_vec()]),
                ("cn".into(), vec![b"y".to_vec(), b"x".to_vec()]),
            ],
        };
        let b = RawEntry {
            dn: "uid=a".into(),
            attrs: vec![
                ("CN".into(), vec![b"x".to_vec(), b"y".to_vec()]),
                ("uid".into(), vec![b"a".to_vec()]),
            ],
        };
        let digest = |e: &RawEntry| {
            let mut h = Sha256::new();
            hash_entry(&mut h, e);
            hex::encode(h.finalize())
        };
        assert_eq!(digest(&a), digest(&b));
        let expected = hex::encode(Sha256::digest(b"D5:uid=aA2:cnV1:xV1:yA3:uidV1:aE\n"));
        assert_eq!(digest(&a), expected);
    }
}
