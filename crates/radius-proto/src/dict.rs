//! Attribute names, numbers and data types: the standard attributes and the vendor-specific
//! ones of common network equipment, so that administrators write reply attributes by name
//! (`Fortinet-Group-Name = "Admins"`, `Tunnel-Type = VLAN`) and values are encoded right.

use crate::packet::{Attribute, EncodeError, MAX_VALUE, Packet, attr};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// How an attribute's value is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// UTF-8 text.
    String,
    Octets,
    Ipaddr,
    Ipv6addr,
    Ipv6prefix,
    /// Unsigned 32 bits, big-endian.
    Integer,
    /// Unix seconds, 32 bits.
    Date,
}

impl DataType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "string" => DataType::String,
            "octets" => DataType::Octets,
            "ipaddr" => DataType::Ipaddr,
            "ipv6addr" => DataType::Ipv6addr,
            "ipv6prefix" => DataType::Ipv6prefix,
            "integer" => DataType::Integer,
            "date" => DataType::Date,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Octets => "octets",
            DataType::Ipaddr => "ipaddr",
            DataType::Ipv6addr => "ipv6addr",
            DataType::Ipv6prefix => "ipv6prefix",
            DataType::Integer => "integer",
            DataType::Date => "date",
        }
    }
}

/// One attribute of the dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrDef {
    pub name: String,
    /// 0 for standard attributes, else the vendor's enterprise number.
    pub vendor: u32,
    pub code: u8,
    pub data_type: DataType,
    /// Carries an RFC 2868 tag octet (tunnel attributes).
    pub has_tag: bool,
    /// Hidden with the shared secret (User-Password); never set by reply rules.
    pub encrypted: bool,
}

impl AttrDef {
    /// Whether a reply rule may set it: not the hidden password, nor what the protocol itself
    /// manages (Message-Authenticator, State, Proxy-State, raw Vendor-Specific).
    pub fn settable_in_reply(&self) -> bool {
        !self.encrypted
            && (self.vendor != 0
                || !matches!(
                    self.code,
                    attr::MESSAGE_AUTHENTICATOR
                        | attr::VENDOR_SPECIFIC
                        | attr::STATE
                        | attr::PROXY_STATE
                ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("unknown RADIUS attribute '{0}'")]
    UnknownAttribute(String),
    #[error("{attribute}: '{value}' is not a valid {expected}")]
    Invalid {
        attribute: String,
        value: String,
        expected: String,
    },
    #[error("{0}: the value is too long for one attribute")]
    TooLong(String),
    #[error("{0} cannot be set in a reply")]
    NotSettable(String),
}

/// A parsed dictionary.
#[derive(Debug, Default)]
pub struct Dictionary {
    attrs: Vec<AttrDef>,
    by_name: HashMap<String, usize>,
    by_code: HashMap<(u32, u8), usize>,
    values: HashMap<(usize, String), u32>,
    value_names: HashMap<(usize, u32), String>,
    vendors: Vec<(String, u32)>,
}

static BUILTIN: OnceLock<Dictionary> = OnceLock::new();
const BUILTIN_TEXT: &str = include_str!("dictionary.txt");

impl Dictionary {
    /// The dictionary shipped with Tessera.
    pub fn builtin() -> &'static Dictionary {
        BUILTIN.get_or_init(|| Dictionary::parse(BUILTIN_TEXT).unwrap_or_default())
    }

    /// Parses the dictionary format (see `dictionary.txt`).
    pub fn parse(text: &str) -> Result<Dictionary, String> {
        let mut d = Dictionary::default();
        let mut vendor: u32 = 0;
        let mut pending_values = Vec::new();
        for (no, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("line {}: cannot read '{line}'", no + 1);
            match f.as_slice() {
                ["VENDOR", name, number] => {
                    let n: u32 = number.parse().map_err(|_| bad())?;
                    d.vendors.push((name.to_string(), n));
                }
                ["BEGIN-VENDOR", name] => {
                    vendor = d
                        .vendors
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, id)| *id)
                        .ok_or_else(bad)?;
                }
                ["END-VENDOR", _] => vendor = 0,
                ["ATTRIBUTE", name, code, typ, flags @ ..] => {
                    let code: u8 = code.parse().map_err(|_| bad())?;
                    let data_type = DataType::parse(typ).ok_or_else(bad)?;
                    let def = AttrDef {
                        name: name.to_string(),
                        vendor,
                        code,
                        data_type,
                        has_tag: flags.contains(&"has_tag"),
                        encrypted: flags.contains(&"encrypt"),
                    };
                    let idx = d.attrs.len();
                    if d.by_name.insert(name.to_ascii_lowercase(), idx).is_some() {
                        return Err(format!("line {}: {name} defined twice", no + 1));
                    }
                    d.by_code.entry((vendor, code)).or_insert(idx);
                    d.attrs.push(def);
                }
                ["VALUE", attribute, name, number] => {
                    let n: u32 = number.parse().map_err(|_| bad())?;
                    pending_values.push((attribute.to_string(), name.to_string(), n));
                }
                _ => return Err(bad()),
            }
        }
        for (attribute, name, n) in pending_values {
            let idx = *d
                .by_name
                .get(&attribute.to_ascii_lowercase())
                .ok_or_else(|| format!("VALUE for unknown attribute {attribute}"))?;
            d.values.insert((idx, name.to_ascii_lowercase()), n);
            d.value_names.entry((idx, n)).or_insert(name);
        }
        Ok(d)
    }

    /// An attribute by name (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&AttrDef> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.attrs[i])
    }

    pub fn by_code(&self, vendor: u32, code: u8) -> Option<&AttrDef> {
        self.by_code.get(&(vendor, code)).map(|&i| &self.attrs[i])
    }

    pub fn attributes(&self) -> impl Iterator<Item = &AttrDef> {
        self.attrs.iter()
    }

    pub fn vendors(&self) -> impl Iterator<Item = (&str, u32)> {
        self.vendors.iter().map(|(n, id)| (n.as_str(), *id))
    }

    /// The named values of an integer attribute, e.g. `Service-Type`'s `Framed-User`.
    pub fn values_of(&self, def: &AttrDef) -> Vec<(&str, u32)> {
        let Some(&idx) = self.by_name.get(&def.name.to_ascii_lowercase()) else {
            return Vec::new();
        };
        let mut v: Vec<(&str, u32)> = self
            .value_names
            .iter()
            .filter(|((i, _), _)| *i == idx)
            .map(|((_, n), name)| (name.as_str(), *n))
            .collect();
        v.sort_by_key(|(_, n)| *n);
        v
    }

    fn index(&self, def: &AttrDef) -> Option<usize> {
        self.by_name.get(&def.name.to_ascii_lowercase()).copied()
    }

    /// Encodes `text` as a value of `def`: an attribute ready for a packet (wrapped in
    /// Vendor-Specific for vendor attributes, with a zero tag for tagged integers).
    pub fn encode(&self, def: &AttrDef, text: &str) -> Result<Attribute, ValueError> {
        if !def.settable_in_reply() {
            return Err(ValueError::NotSettable(def.name.clone()));
        }
        let invalid = |expected: &str| ValueError::Invalid {
            attribute: def.name.clone(),
            value: text.to_string(),
            expected: expected.to_string(),
        };
        let mut value: Vec<u8> = match def.data_type {
            DataType::String => text.as_bytes().to_vec(),
            DataType::Octets => match text.strip_prefix("0x") {
                Some(hex) => decode_hex(hex).ok_or_else(|| invalid("hex string (0x…)"))?,
                None => text.as_bytes().to_vec(),
            },
            DataType::Ipaddr => text
                .trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid("IPv4 address"))?
                .octets()
                .to_vec(),
            DataType::Ipv6addr => text
                .trim()
                .parse::<Ipv6Addr>()
                .map_err(|_| invalid("IPv6 address"))?
                .octets()
                .to_vec(),
            DataType::Ipv6prefix => {
                let (addr, len) = text
                    .trim()
                    .split_once('/')
                    .ok_or_else(|| invalid("IPv6 prefix (addr/len)"))?;
                let addr: Ipv6Addr = addr.parse().map_err(|_| invalid("IPv6 prefix"))?;
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= 128)
                    .ok_or_else(|| invalid("IPv6 prefix length (0–128)"))?;
                let bytes = usize::from(len).div_ceil(8);
                let mut v = vec![0, len];
                v.extend_from_slice(&addr.octets()[..bytes]);
                v
            }
            DataType::Integer | DataType::Date => {
                let t = text.trim();
                let named = self
                    .index(def)
                    .and_then(|i| self.values.get(&(i, t.to_ascii_lowercase())).copied());
                let n = match named {
                    Some(n) => n,
                    None => t.parse::<u32>().map_err(|_| {
                        let names: Vec<&str> =
                            self.values_of(def).into_iter().map(|(n, _)| n).collect();
                        if names.is_empty() {
                            invalid("number")
                        } else {
                            invalid(&format!("number or one of {}", names.join(", ")))
                        }
                    })?,
                };
                if def.has_tag {
                    if n > 0x00ff_ffff {
                        return Err(invalid("24-bit number"));
                    }
                    // RFC 2868 §3.1: tag octet, then three octets of value.
                    let b = n.to_be_bytes();
                    vec![0, b[1], b[2], b[3]]
                } else {
                    n.to_be_bytes().to_vec()
                }
            }
        };
        if def.has_tag
            && def.data_type == DataType::String
            && value.first().is_some_and(|b| *b <= 0x1f)
        {
            // A first octet that looks like a tag would be read as one: prefix tag 0.
            value.insert(0, 0);
        }
        if def.vendor == 0 {
            if value.len() > MAX_VALUE {
                return Err(ValueError::TooLong(def.name.clone()));
            }
            Ok(Attribute::new(def.code, value))
        } else {
            Attribute::vendor(def.vendor, def.code, &value).map_err(|e| match e {
                EncodeError::ValueTooLong(_) => ValueError::TooLong(def.name.clone()),
                _ => ValueError::TooLong(def.name.clone()),
            })
        }
    }

    /// Looks up `name` and encodes `text` for it.
    pub fn encode_named(&self, name: &str, text: &str) -> Result<Attribute, ValueError> {
        let def = self
            .attribute(name)
            .ok_or_else(|| ValueError::UnknownAttribute(name.to_string()))?;
        self.encode(def, text)
    }

    /// The first raw value of `def` in a packet (tag octet removed).
    pub fn find<'p>(&self, packet: &'p Packet, def: &AttrDef) -> Option<&'p [u8]> {
        let raw = if def.vendor == 0 {
            packet.get(def.code)?
        } else {
            packet.get_vendor(def.vendor, def.code)?
        };
        Some(strip_tag(def, raw))
    }

    /// A value as text: strings as they are, integers by their value name when they have one.
    pub fn format(&self, def: &AttrDef, raw: &[u8]) -> String {
        match def.data_type {
            DataType::String => String::from_utf8_lossy(raw).into_owned(),
            DataType::Octets => {
                let mut s = String::from("0x");
                for b in raw {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
            DataType::Ipaddr => <[u8; 4]>::try_from(raw)
                .map(|b| Ipv4Addr::from(b).to_string())
                .unwrap_or_default(),
            DataType::Ipv6addr => <[u8; 16]>::try_from(raw)
                .map(|b| Ipv6Addr::from(b).to_string())
                .unwrap_or_default(),
            DataType::Ipv6prefix => {
                if raw.len() < 2 {
                    return String::new();
                }
                let mut b = [0u8; 16];
                let n = (raw.len() - 2).min(16);
                b[..n].copy_from_slice(&raw[2..2 + n]);
                format!("{}/{}", Ipv6Addr::from(b), raw[1])
            }
            DataType::Integer | DataType::Date => {
                let n = match raw.len() {
                    4 => u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                    3 => u32::from_be_bytes([0, raw[0], raw[1], raw[2]]),
                    _ => return String::new(),
                };
                self.index(def)
                    .and_then(|i| self.value_names.get(&(i, n)))
                    .cloned()
                    .unwrap_or_else(|| n.to_string())
            }
        }
    }

    /// Looks up `name` in a packet and formats its first value.
    pub fn text_of(&self, packet: &Packet, name: &str) -> Option<String> {
        let def = self.attribute(name)?;
        self.find(packet, def).map(|raw| self.format(def, raw))
    }
}

fn strip_tag<'a>(def: &AttrDef, raw: &'a [u8]) -> &'a [u8] {
    if !def.has_tag {
        return raw;
    }
    match def.data_type {
        DataType::Integer if raw.len() == 4 => &raw[1..],
        DataType::String if raw.first().is_some_and(|b| *b <= 0x1f) => &raw[1..],
        _ => raw,
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Code;

    #[test]
    fn builtin_dictionary_parses_with_every_vendor() {
        let d = Dictionary::builtin();
        assert!(d.attributes().count() > 150);
        let vendors: Vec<&str> = d.vendors().map(|(n, _)| n).collect();
        for v in [
            "Cisco",
            "Cisco-ASA",
            "Microsoft",
            "Juniper",
            "Fortinet",
            "PaloAlto",
            "Aruba",
        ] {
            assert!(vendors.contains(&v), "{v} missing");
        }
        let def = d.attribute("fortinet-group-name").unwrap();
        assert_eq!(
            (def.vendor, def.code, def.data_type),
            (12356, 1, DataType::String)
        );
        assert_eq!(d.by_code(0, 18).unwrap().name, "Reply-Message");
    }

    #[test]
    fn encodes_and_formats_values() {
        let d = Dictionary::builtin();
        let a = d.encode_named("Service-Type", "Framed-User").unwrap();
        assert_eq!(a, Attribute::new(6, 2u32.to_be_bytes()));
        assert_eq!(
            d.encode_named("Session-Timeout", "3600").unwrap().value,
            3600u32.to_be_bytes()
        );
        assert_eq!(
            d.encode_named("Framed-IP-Address", "10.8.0.2")
                .unwrap()
                .value,
            [10, 8, 0, 2]
        );
        assert_eq!(
            d.encode_named("Tunnel-Type", "VLAN").unwrap().value,
            [0, 0, 0, 13]
        );
        assert_eq!(
            d.encode_named("Framed-IPv6-Prefix", "2001:db8::/32")
                .unwrap()
                .value,
            [0, 32, 0x20, 0x01, 0x0d, 0xb8]
        );
        assert_eq!(d.encode_named("Class", "0x0102").unwrap().value, [1, 2]);
        let vsa = d.encode_named("Fortinet-Group-Name", "VPN-Admins").unwrap();
        let mut p = Packet::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        p.attributes.push(vsa);
        p.attributes
            .push(d.encode_named("Tunnel-Type", "VLAN").unwrap());
        assert_eq!(
            d.text_of(&p, "Fortinet-Group-Name").as_deref(),
            Some("VPN-Admins")
        );
        assert_eq!(d.text_of(&p, "Tunnel-Type").as_deref(), Some("VLAN"));
    }

    #[test]
    fn refuses_bad_values_with_a_clear_message() {
        let d = Dictionary::builtin();
        let e = d.encode_named("Service-Type", "Sideways").unwrap_err();
        assert!(e.to_string().contains("Framed-User"), "{e}");
        assert!(d.encode_named("Framed-IP-Address", "10.0.0.300").is_err());
        assert!(matches!(
            d.encode_named("No-Such-Attribute", "x"),
            Err(ValueError::UnknownAttribute(_))
        ));
        assert!(matches!(
            d.encode_named("User-Password", "x"),
            Err(ValueError::NotSettable(_))
        ));
        assert!(matches!(
            d.encode_named("Message-Authenticator", "x"),
            Err(ValueError::NotSettable(_))
        ));
        assert!(matches!(
            d.encode_named("State", "x"),
            Err(ValueError::NotSettable(_))
        ));
        assert!(
            d.attribute("Proxy-State")
                .is_some_and(|a| !a.settable_in_reply())
        );
        assert!(d.encode_named("Reply-Message", &"x".repeat(254)).is_err());
        assert!(
            d.encode_named("Fortinet-Group-Name", &"x".repeat(248))
                .is_err()
        );
    }

    /// Every name, number and type agrees with FreeRADIUS's dictionaries (a real peer's view of
    /// the same registry), when they are installed.
    #[test]
    fn names_and_numbers_agree_with_freeradius() {
        let dir = std::path::Path::new("/usr/share/freeradius");
        if !dir.is_dir() {
            eprintln!("FreeRADIUS dictionaries not installed; scripts/test.sh installs them");
            return;
        }
        let mut theirs: HashMap<String, (u32, u8, String)> = HashMap::new();
        let mut their_values: HashMap<(String, String), u32> = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&text);
            let mut vendors: HashMap<String, u32> = HashMap::new();
            let mut vendor = 0;
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                let f: Vec<&str> = line.split_whitespace().collect();
                match f.as_slice() {
                    ["VENDOR", name, n, ..] => {
                        vendors.insert(name.to_string(), n.parse().unwrap_or(0));
                    }
                    ["BEGIN-VENDOR", name, ..] => vendor = vendors.get(*name).copied().unwrap_or(0),
                    ["END-VENDOR", ..] => vendor = 0,
                    ["ATTRIBUTE", name, code, typ, ..] => {
                        if let Ok(code) = code.parse::<u8>() {
                            theirs
                                .insert(name.to_string(), (vendor, code, typ.to_ascii_lowercase()));
                        }
                    }
                    ["VALUE", attribute, name, n, ..] => {
                        if let Ok(n) = n.parse::<u32>() {
                            their_values.insert((attribute.to_string(), name.to_string()), n);
                        }
                    }
                    _ => {}
                }
            }
        }
        if theirs.is_empty() {
            eprintln!("no FreeRADIUS dictionaries found");
            return;
        }
        let d = Dictionary::builtin();
        for def in d.attributes() {
            let (vendor, code, typ) = theirs
                .get(&def.name)
                .unwrap_or_else(|| panic!("{} is not in FreeRADIUS's dictionaries", def.name));
            assert_eq!((*vendor, *code), (def.vendor, def.code), "{}", def.name);
            if !def.encrypted {
                assert_eq!(typ, def.data_type.as_str(), "{}", def.name);
            }
            for (value, n) in d.values_of(def) {
                assert_eq!(
                    their_values.get(&(def.name.clone(), value.to_string())),
                    Some(&n),
                    "{} {}",
                    def.name,
                    value
                );
            }
        }
    }
}
